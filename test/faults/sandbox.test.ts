/**
 * Faults and abuse in the hands: containers killed, paused, OOM-killed or stripped of their volume mid-call;
 * hostile tool inputs; escape attempts. Each case ends with the same check (expectSessionIntact).
 */
import { describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import { reply, toolUse } from '../fakes/messages-server.js';
import { testAgent, toolResults, useHarness, waitFor, sandboxName } from '../helpers/env.js';
import { expectSessionIntact, idle } from './check.js';

const h = useHarness('fault-sandbox');
const docker = new Docker();
const results = toolResults;

async function end(id: string): Promise<void> {
  await h.tandem.temporal.workflow.getHandle(id).cancel();
  await h.tandem.temporal.workflow.getHandle(id).result().catch(() => undefined);
}

/** Starts a session whose one tool call sleeps, and applies `fault` to its container mid-call. */
async function midCall(fault: (c: Docker.Container, sessionId: string) => Promise<void>, agent = testAgent()) {
  h.model.push(
    reply(toolUse('bash', { command: 'echo before > /workspace/mark; sleep 3; echo after-$(cat /workspace/mark 2>/dev/null || echo none)' }, 'tu_mid')),
    reply('finished'),
  );
  const id = await h.tandem.start({ agent, message: 'do the long thing' });
  await waitFor(() => h.tandem.getEvents(id), (ev) => ev.some((e) => e.type === 'sandbox.provisioned'), 60_000, 'provisioned');
  await new Promise((r) => setTimeout(r, 1200));
  await fault(docker.getContainer(sandboxName(id)), id);
  await idle(h.tandem, id, 2);
  return { id, result: results(h.model.requests.at(-1)!).get('tu_mid')! };
}

describe('container faults in the middle of a tool call', () => {
  it('killed: a fresh container runs the call again on the same workspace', async () => {
    const { id, result } = await midCall((c) => c.kill());
    expect(result.content).toContain('after-before');
    await expectSessionIntact(h.tandem, h.model, id, ['do the long thing']);
    await end(id);
  });

  it('shell killed with its container (an engine going down): the call runs again, not answered as a dead shell', async () => {
    const { id, result } = await midCall(async (c) => {
      // The shell dies first and the toolbox answers for it; then the container goes, as when its engine dies.
      const exec = await c.exec({
        // As the sandbox's own user, who may signal its processes (root in the container holds no CAP_KILL).
        Cmd: ['sh', '-c', 'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = bash ] && kill -9 ${p#/proc/}; done'],
      });
      await exec.start({ Detach: true });
      await waitFor(() => exec.inspect(), (i) => !i.Running, 30_000, 'the shell killed');
      await c.kill();
    });
    expect(result.content).toContain('after-before');
    const events = await expectSessionIntact(h.tandem, h.model, id, ['do the long thing']);
    expect(events.some((e) => e.type === 'sandbox.lost')).toBe(true);
    await end(id);
  });

  it('paused: the call is not stuck until its timeout; a fresh container runs it', async () => {
    const t0 = Date.now();
    const { id, result } = await midCall((c) => c.pause());
    expect(Date.now() - t0).toBeLessThan(60_000);
    expect(result.content).toContain('after-');
    const events = await expectSessionIntact(h.tandem, h.model, id, ['do the long thing']);
    expect(events.some((e) => e.type === 'sandbox.lost' && JSON.stringify(e.error).includes('paused'))).toBe(true);
    await end(id);
  });

  it('workspace removed with the container: the call runs again in a fresh, empty workspace', async () => {
    const { id, result } = await midCall(async (c, sessionId) => {
      await c.remove({ force: true });
      const { slots } = h.worker.hands;
      if (slots.mode === 'quota') await slots.unmountWorkspace(slots.paths(sessionId), true);
      else await docker.getVolume(slots.paths(sessionId).workspace).remove();
    });
    expect(result.content).toContain('after-before');
    await expectSessionIntact(h.tandem, h.model, id, ['do the long thing']);
    await end(id);
  });

  it('OOM: a tool that allocates past the memory limit fails as a tool error; the sandbox goes on', async () => {
    h.model.push(
      reply(toolUse('bash', { command: "python3 -c 'b = bytearray(900 * 1024 * 1024); print(len(b))'" }, 'tu_oom')),
      reply(toolUse('bash', { command: 'echo alive' }, 'tu_alive')),
      reply('ok'),
    );
    const id = await h.tandem.start({ agent: testAgent({ sandbox: { memory_mb: 256 } }), message: 'eat memory' });
    await idle(h.tandem, id, 3);
    const r = results(h.model.requests.at(-1)!);
    expect(r.get('tu_oom')!.is_error).toBe(true);
    expect(r.get('tu_alive')!.content).toBe('alive');
    await expectSessionIntact(h.tandem, h.model, id, ['eat memory']);
    await end(id);
  });
});

describe('hostile tool inputs', () => {
  it('paths outside the workspace, binary reads, 10 MB writes, a full /tmp, a fork bomb: the limits hold', async () => {
    h.model.push(
      reply(
        toolUse('read', { file_path: '/etc/passwd' }, 'tu_outside'),
        toolUse('write', { file_path: '/workspace/../etc/evil', content: 'x' }, 'tu_escape_write'),
        toolUse('read', { file_path: '/usr/bin/ls' }, 'tu_binary'),
        toolUse('bash', { command: 'head -c 10000000 /dev/urandom > /workspace/big.bin && ls -l /workspace/big.bin | cut -d" " -f5' }, 'tu_10mb'),
        toolUse('bash', { command: 'dd if=/dev/zero of=/tmp/fill bs=1M count=1000 2>&1; rm -f /tmp/fill' }, 'tu_fill'),
        toolUse('bash', { command: 'bomb() { bomb | bomb & }; bomb; sleep 2; echo survived', timeout_ms: 15000 }, 'tu_bomb'),
        toolUse('bash', { command: 'echo after-bomb' }, 'tu_after'),
      ),
      reply('done'),
    );
    const id = await h.tandem.start({ agent: testAgent(), message: 'misbehave' });
    await idle(h.tandem, id, 2, 180_000);
    const r = results(h.model.requests.at(-1)!);
    expect(r.get('tu_outside')!.is_error).toBe(true);
    expect(r.get('tu_escape_write')!.is_error).toBe(true);
    expect(r.get('tu_binary')!.content.length).toBeLessThanOrEqual(30_000);
    expect(r.get('tu_10mb')!.content.trim()).toBe('10000000');
    expect(r.get('tu_fill')!.content).toMatch(/No space left on device/);
    // The bomb runs into the process limit, and the model reads what the shell said about it.
    expect(r.get('tu_bomb')!.content).toMatch(/fork: .*Resource temporarily unavailable/);
    expect(r.get('tu_after')!.content).toBe('after-bomb');
    const info = await docker.getContainer(sandboxName(id)).inspect();
    expect(info.HostConfig.PidsLimit).toBe(256);
    await expectSessionIntact(h.tandem, h.model, id, ['misbehave']);
    await end(id);
  });

  it('escape attempts fail inside the container and come back as tool results', async () => {
    const attempts: Record<string, string> = {
      mount: 'mount -t tmpfs none /mnt 2>&1; echo "rc=$?"',
      rawsock: `python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)' 2>&1 | tail -1`,
      dockersock: 'ls -l /var/run/docker.sock 2>&1; ls /run 2>&1 | grep -c docker',
      rootfs: 'echo x > /usr/bin/evil 2>&1; echo x > /etc/evil 2>&1; echo "rc=$?"',
      setuid: `python3 -c 'import os; os.setuid(0)' 2>&1 | tail -1; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status`,
      hostenv: 'cat /proc/*/environ 2>/dev/null | tr "\\0" "\\n" | grep -ciE "anthropic|temporal|api_key|docker_host" || true',
      network: `python3 -c 'import socket; socket.create_connection(("1.1.1.1", 80), timeout=3)' 2>&1 | tail -1`,
    };
    h.model.push(reply(...Object.entries(attempts).map(([k, command]) => toolUse('bash', { command }, `tu_${k}`))), reply('all blocked'));
    const id = await h.tandem.start({ agent: testAgent(), message: 'try to escape' });
    await idle(h.tandem, id, 2, 120_000);
    const r = results(h.model.requests.at(-1)!);
    const out = (k: string) => r.get(`tu_${k}`)!.content;
    expect(out('mount')).toMatch(/permission denied|must be superuser|Operation not permitted/i);
    expect(out('rawsock')).toMatch(/PermissionError|Operation not permitted/);
    expect(out('dockersock')).toMatch(/No such file or directory/);
    expect(out('rootfs')).toMatch(/Read-only file system/);
    expect(out('setuid')).toMatch(/PermissionError|Operation not permitted/);
    expect(out('setuid')).toMatch(/NoNewPrivs:\s+1/);
    expect(out('setuid')).toMatch(/CapEff:\s+0000000000000000/);
    expect(out('hostenv').trim()).toBe('0'); // no worker-side variable in any process of the sandbox
    expect(out('network')).toMatch(/Network is unreachable|OSError|timed out/);
    await expectSessionIntact(h.tandem, h.model, id, ['try to escape']);
    await end(id);
  });
});
