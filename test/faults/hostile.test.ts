/**
 * The sandbox as an attacker: a scripted session tries, from inside its sandbox, each hole the hardening issue
 * found, and ends with the session and the worker healthy. Every case ends with the suite's intact-session check.
 */
import { readFileSync, statSync } from 'node:fs';
import Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { readHistory } from '../../src/client/log.js';
import { reply, toolUse } from '../fakes/messages-server.js';
import { sandboxName, startWorker, testAgent, toolResults, useHarness } from '../helpers/env.js';
import { expectSessionIntact, idle } from './check.js';

const h = useHarness('fault-hostile');
const docker = new Docker();
const THIEF = readFileSync(new URL('../fixtures/hostile/line-thief.py', import.meta.url), 'utf8');

async function end(id: string): Promise<void> {
  await h.tandem.temporal.workflow.getHandle(id).cancel();
  await h.tandem.temporal.workflow.getHandle(id).result().catch(() => undefined);
}

/** The content of the result of `toolUseId` in the latest model request. */
function result(toolUseId: string) {
  return toolResults(h.model.requests.at(-1)!).get(toolUseId)!;
}

/** Restarts the in-process worker: its process's channel sockets go away and a new one appears on the next call. */
async function restartWorker(): Promise<void> {
  await h.worker.shutdown();
  await h.worker.done;
  h.worker = await startWorker(h.queue, h.model.url);
}

describe('the toolbox line against a thief inside the sandbox', () => {
  // Each mode: the thief takes the line across a worker restart and answers the next call wrongly. The host cuts it
  // (bounded before it buffers anything), replaces the sandbox, and runs the call again for real.
  for (const [mode, why] of [
    ['huge', /broke the channel protocol: a frame of 62914560 bytes/],
    ['notjson', /broke the channel protocol: a frame that is not JSON/],
    ['shape', /broke the channel protocol: a result whose content is not a string/],
    ['silent', /stopped answering/],
  ] as const) {
    it(`${mode}: the sandbox is replaced and the call runs again`, async () => {
      h.model.push(
        reply(toolUse('write', { file_path: '/tmp/thief.py', content: THIEF }, `tu_w_${mode}`)),
        reply(toolUse('bash', { command: `nohup python3 /tmp/thief.py ${mode} > /tmp/thief.log 2>&1 &\nsleep 1; cat /tmp/thief.log` }, `tu_arm_${mode}`)),
        reply('armed'),
      );
      const id = await h.tandem.start({ agent: testAgent(), message: `steal the line (${mode})` });
      await idle(h.tandem, id, 3);
      expect(result(`tu_arm_${mode}`).content).toMatch(/^known \['ch-/);
      const first = (await h.tandem.getSession(id)).sandboxes[0]!.container_id;

      await restartWorker();
      h.model.push(reply(toolUse('bash', { command: `echo after-${mode}` }, `tu_after_${mode}`)), reply('done'));
      await h.tandem.sendMessage(id, 'go on');
      await idle(h.tandem, id, 5, 180_000);
      expect(result(`tu_after_${mode}`)).toMatchObject({ content: `after-${mode}`, is_error: false });
      const events = await expectSessionIntact(h.tandem, h.model, id, [`steal the line (${mode})`, 'go on']);
      const lost = events.filter((e) => e.type === 'sandbox.lost');
      expect(lost.map((e) => JSON.stringify(e.error)).join('\n')).toMatch(why);
      expect((await h.tandem.getSession(id)).sandboxes[0]!.container_id).not.toBe(first);
      // Nothing of what the thief sent reached history.
      const history = await readHistory(h.tandem.temporal, id);
      expect(Math.max(...history.map((e) => JSON.stringify(e).length))).toBeLessThan(256 * 1024);
      await end(id);
    }, 300_000);
  }
});

describe('limits the sandbox cannot lift', () => {
  it('cannot replace the host sockets, and has no toolbox socket of its own to replace', async () => {
    h.model.push(
      reply(
        toolUse(
          'bash',
          {
            command:
              'ls /run/tandem-host; rm -f /run/tandem-host/ch-*.sock; touch /run/tandem-host/ch-x.sock; ' +
              'ls /run/tandem/toolbox.sock; echo done',
          },
          'tu_sock',
        ),
      ),
      reply(toolUse('bash', { command: 'echo still-answering' }, 'tu_next')),
      reply('ok'),
    );
    const id = await h.tandem.start({ agent: testAgent(), message: 'replace the socket' });
    await idle(h.tandem, id, 3);
    const out = toolResults(h.model.requests.at(-1)!);
    expect(out.get('tu_sock')!.content).toMatch(/Read-only file system/);
    expect(out.get('tu_sock')!.content).toMatch(/toolbox\.sock'?: No such file/);
    expect(out.get('tu_next')!.content).toBe('still-answering');
    await expectSessionIntact(h.tandem, h.model, id, ['replace the socket']);
    await end(id);
  });

  it('a flood on the container output stays within the log limit', async () => {
    h.model.push(reply(toolUse('bash', { command: 'timeout 8 yes > /proc/1/fd/1; echo flooded' }, 'tu_flood')), reply('ok'));
    const id = await h.tandem.start({ agent: testAgent(), message: 'flood the log' });
    await idle(h.tandem, id, 2);
    expect(result('tu_flood').content).toContain('flooded');
    const { LogPath } = await docker.getContainer(sandboxName(id)).inspect();
    const size = (p: string) => {
      try {
        return statSync(p).size;
      } catch {
        return 0;
      }
    };
    // json-file, max-size 1m, max-file 2: the current file and one rotated one.
    expect(size(LogPath) + size(`${LogPath}.1`)).toBeLessThan(2.5 * 1024 * 1024);
    await expectSessionIntact(h.tandem, h.model, id, ['flood the log']);
    await end(id);
  });

  it('a workspace fills up at its disk_mb and says so; freeing space lets writes go on', async (ctx) => {
    if (h.worker.hands.slots.mode !== 'quota') ctx.skip(); // a host without root or loop devices has no quota
    h.model.push(
      reply(
        toolUse(
          'bash',
          { command: 'dd if=/dev/zero of=/workspace/fill bs=1M count=100 2>&1 | head -1; df -m /workspace | tail -1' },
          'tu_fill',
        ),
      ),
      reply(toolUse('bash', { command: 'rm /workspace/fill && echo kept > /workspace/after && cat /workspace/after' }, 'tu_free')),
      reply('ok'),
    );
    const id = await h.tandem.start({ agent: testAgent({ sandbox: { memory_mb: 256, disk_mb: 48 } }), message: 'fill the disk' });
    await idle(h.tandem, id, 3);
    const out = toolResults(h.model.requests.at(-1)!);
    expect(out.get('tu_fill')!.content).toMatch(/No space left on device/);
    const size = Number(/\s(\d+)\s+\d+\s+\d+\s+\d+%/.exec(out.get('tu_fill')!.content)?.[1]);
    expect(size).toBeGreaterThan(30);
    expect(size).toBeLessThanOrEqual(48);
    expect(out.get('tu_free')!.content).toBe('kept');
    await expectSessionIntact(h.tandem, h.model, id, ['fill the disk']);
    await end(id);
  });
});
