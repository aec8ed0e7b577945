/**
 * The hands: tool calls in real, hardened Docker containers driven by the real session workflow.
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import { reply, toolUse, text } from '../fakes/messages-server.js';
import { readHistory } from '../../src/log/read.js';
import { reapClosedSessions } from '../../src/worker.js';
import { loadRuntimeConfig, sandboxScope } from '../../src/config/env.js';
import { Signals } from '../../src/shared/names.js';
import {
  sendMessage,
  sessionEvents,
  sessionState,
  startSession,
  testAgent,
  toolResults,
  waitFor,
  useHarness,
  waitIdle,
  workerEnv,
  sandboxName,
} from '../helpers/env.js';

const docker = new Docker();
const h = useHarness('tools', { assertDone: true, record: 'tools' });

async function cleanup(sessionId: string): Promise<void> {
  await h.worker.hands.activities.removeSandbox({ session_id: sessionId, config: {} });
}

describe('tools in a real container', () => {
  it('runs all six built-in tools; files persist and the shell keeps its state', async () => {
    h.model.push(
      reply(text('Writing files.'), toolUse('write', { file_path: '/workspace/notes/a.txt', content: 'alpha\nbeta\n' }, 'tu_write')),
      reply(toolUse('bash', { command: 'cd /workspace/notes && export MARK=42 && echo started' }, 'tu_bash1')),
      reply(toolUse('bash', { command: 'pwd; echo "mark=$MARK"; whoami' }, 'tu_bash2')),
      reply(toolUse('edit', { file_path: '/workspace/notes/a.txt', old_string: 'beta', new_string: 'gamma' }, 'tu_edit')),
      reply(toolUse('read', { file_path: '/workspace/notes/a.txt' }, 'tu_read')),
      reply(toolUse('glob', { pattern: '**/*.txt' }, 'tu_glob')),
      reply(toolUse('grep', { pattern: 'gamma' }, 'tu_grep')),
      reply('All done.'),
    );
    const handle = await startSession(h.client, h.queue, {}, 'use every tool');
    const state = await waitIdle(handle, 'end_turn', 8);
    expect(state.sandboxes).toHaveLength(1);
    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_write')?.is_error).toBeFalsy();
    expect(results.get('tu_bash2')?.content).toContain('/workspace/notes');
    expect(results.get('tu_bash2')?.content).toContain('mark=42');
    expect(results.get('tu_bash2')?.content).toContain('agent');
    expect(results.get('tu_read')?.content).toContain('gamma');
    expect(results.get('tu_read')?.content).not.toContain('beta');
    expect(results.get('tu_glob')?.content).toContain('a.txt');
    expect(results.get('tu_grep')?.content).toContain('a.txt');
    // The file is really in the session's workspace volume.
    const container = docker.getContainer(sandboxName(handle.workflowId));
    const exec = await container.exec({ Cmd: ['cat', '/workspace/notes/a.txt'], AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({});
    const chunks: Buffer[] = [];
    await new Promise<void>((resolve) => {
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', resolve);
    });
    expect(Buffer.concat(chunks).toString()).toContain('alpha');
    const events = await sessionEvents(h.client, handle);
    expect(events.filter((e) => e.type === 'agent.tool_result')).toHaveLength(7);
    expect(events.filter((e) => e.type === 'sandbox.provisioned')).toHaveLength(1);
    await handle.cancel();
    await waitFor(() => container.inspect().then(() => 'exists', () => 'gone'), (s) => s === 'gone', 30_000, 'container removal');
  });

  it('provisions a container with every hardening setting', async () => {
    h.model.push(reply(toolUse('bash', { command: 'id -u; ulimit -n' }, 'tu_id')), reply('ok'));
    const handle = await startSession(h.client, h.queue, {}, 'who am i');
    await waitIdle(handle, 'end_turn', 2);
    const info = await docker.getContainer(sandboxName(handle.workflowId)).inspect();
    const hc = info.HostConfig;
    expect(hc.CapDrop).toEqual(['ALL']);
    expect(hc.SecurityOpt).toContain('no-new-privileges:true');
    expect(hc.ReadonlyRootfs).toBe(true);
    expect(Object.keys(hc.Tmpfs ?? {})).toContain('/tmp');
    expect(hc.Privileged).toBe(false);
    expect(hc.NetworkMode).toBe('none');
    expect(hc.PidsLimit).toBe(256);
    expect(hc.Memory).toBe(256 * 1024 * 1024);
    expect(hc.MemorySwap).toBe(hc.Memory);
    expect(hc.NanoCpus).toBe(1e9);
    expect(info.Config.User).toBe('1000:1000');
    const workspace = info.Mounts.find((m) => m.Destination === '/workspace');
    expect(workspace?.Type).toBe(h.worker.hands.slots.mode === 'quota' ? 'bind' : 'volume');
    // The host's control directory (toolbox channel, gateway sockets) is read-only for the sandbox.
    expect(info.Mounts.find((m) => m.Destination === '/run/tandem-host')).toMatchObject({ Type: 'bind', RW: false });
    expect(info.Mounts.some((m) => m.Source.includes('docker.sock'))).toBe(false);
    expect(hc.Ulimits).toEqual([{ Name: 'nofile', Soft: 4096, Hard: 4096 }]);
    expect(hc.LogConfig).toEqual({ Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '2' } });
    expect(toolResults(h.model.requests.at(-1)!).get('tu_id')?.content.trim()).toBe('1000\n4096');
    await handle.cancel();
  });

  it('survives docker kill in the middle of a long bash call: a fresh container runs the call', async () => {
    h.model.push(
      reply(toolUse('bash', { command: 'echo before > /workspace/keep.txt' }, 'tu_prep')),
      reply(toolUse('bash', { command: 'sleep 4; echo survived; cat /workspace/keep.txt' }, 'tu_long')),
      reply('finished'),
    );
    const handle = await startSession(h.client, h.queue, {}, 'long job');
    const name = sandboxName(handle.workflowId);
    // Wait until the long call is running, then kill the container under it.
    await h.model.waitForRequests(h.model.requests.length + 2, 30_000);
    const first = await waitFor(() => docker.getContainer(name).inspect(), (i) => i.State.Running, 30_000);
    await new Promise((r) => setTimeout(r, 1500));
    await docker.getContainer(name).kill();
    const state = await waitIdle(handle, 'end_turn', 3, 120_000);
    const second = await docker.getContainer(name).inspect();
    expect(second.Id).not.toBe(first.Id);
    expect(state.sandboxes[0]?.container_id).toBe(second.Id);
    const result = toolResults(h.model.requests.at(-1)!).get('tu_long');
    expect(result?.is_error).toBeFalsy();
    expect(result?.content).toContain('survived');
    expect(result?.content).toContain('before'); // the workspace volume survived the container
    // History shows the failed attempt: the execute activity started twice, the first failure was Sandbox.Lost.
    const history = await readHistory(h.client, handle.workflowId);
    const retried = history
      .filter((e) => (e.activityTaskStartedEventAttributes?.attempt ?? 0) > 1)
      .map((e) => e.activityTaskStartedEventAttributes?.lastFailure?.applicationFailureInfo?.type);
    expect(retried).toContain('Sandbox.Lost');
    const events = await sessionEvents(h.client, handle);
    expect(events.some((e) => e.type === 'sandbox.lost')).toBe(true);
    expect(events.filter((e) => e.type === 'sandbox.provisioned')).toHaveLength(2);
    await handle.cancel();
    await cleanup(handle.workflowId);
  });

  it('interrupt cancels a running tool call; the session goes idle and takes the next message', async () => {
    h.model.push(reply(toolUse('bash', { command: 'sleep 60; echo never' }, 'tu_sleep')));
    const handle = await startSession(h.client, h.queue, {}, 'sleep');
    await waitFor(() => sessionEvents(h.client, handle), (ev) => ev.some((e) => e.type === 'sandbox.provisioned'), 30_000);
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = Date.now();
    await handle.signal(Signals.interrupt, {});
    await waitIdle(handle, 'end_turn', 1, 30_000);
    expect(Date.now() - t0).toBeLessThan(20_000);
    h.model.push(reply('ok, stopped'));
    await sendMessage(handle, 'what happened?');
    await waitIdle(handle, 'end_turn', 2);
    const result = toolResults(h.model.requests.at(-1)!).get('tu_sleep');
    expect(result?.is_error).toBe(true);
    expect(result?.content).toMatch(/interrupted/i);
    await handle.cancel();
    await cleanup(handle.workflowId);
  });

  it('waits with requires_action for an always_ask tool, then runs it when allowed and not when denied', async () => {
    const agent = testAgent({
      tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'bash', permission_policy: { type: 'always_ask' } }] }],
    });
    h.model.push(reply(toolUse('bash', { command: 'echo allowed-ran' }, 'tu_ask1'), toolUse('bash', { command: 'echo denied-ran' }, 'tu_ask2')), reply('done'));
    const handle = await startSession(h.client, h.queue, { agent }, 'ask first');
    const waiting = await waitIdle(handle, 'requires_action', 1);
    expect(waiting.stop_reason).toEqual({ type: 'requires_action', event_ids: ['tu_ask1', 'tu_ask2'] });
    expect(waiting.pending.map((p) => p.kind)).toEqual(['confirmation', 'confirmation']);
    await handle.signal(Signals.toolConfirmation, { tool_use_id: 'tu_ask1', result: 'allow' });
    await handle.signal(Signals.toolConfirmation, { tool_use_id: 'tu_ask2', result: 'deny', deny_message: 'not that one' });
    await waitIdle(handle, 'end_turn', 2);
    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_ask1')?.content).toContain('allowed-ran');
    expect(results.get('tu_ask2')).toEqual({ content: 'not that one', is_error: true });
    await handle.cancel();
    await cleanup(handle.workflowId);
  });

  it('hands a custom tool call to the client and feeds its answer back; unknown tools are tool errors', async () => {
    const agent = testAgent({
      tools: [{ type: 'custom', name: 'lookup', description: 'Look a thing up', input_schema: { type: 'object', properties: { q: { type: 'string' } } } }],
    });
    h.model.push(reply(toolUse('lookup', { q: 'x' }, 'tu_custom'), toolUse('no_such_tool', {}, 'tu_unknown')), reply('thanks'));
    const handle = await startSession(h.client, h.queue, { agent }, 'look it up');
    const waiting = await waitIdle(handle, 'requires_action', 1);
    expect(waiting.pending).toEqual([{ tool_use_id: 'tu_custom', name: 'lookup', kind: 'custom_tool', input: { q: 'x' } }]);
    await handle.signal(Signals.customToolResult, { custom_tool_use_id: 'tu_custom', content: 'the answer is 7' });
    const done = await waitIdle(handle, 'end_turn', 2);
    expect(done.sandboxes).toEqual([]); // no built-in tool ran: no container
    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_custom')).toEqual({ content: 'the answer is 7', is_error: false });
    expect(results.get('tu_unknown')?.is_error).toBe(true);
    expect(results.get('tu_unknown')?.content).toMatch(/Unknown tool "no_such_tool"/);
    const events = await sessionEvents(h.client, handle);
    expect(events.some((e) => e.type === 'agent.custom_tool_use' && e.name === 'lookup')).toBe(true);
    await handle.cancel();
  });

  it('takes a custom tool answer sent while the same reply\'s other tool still runs', async () => {
    const agent = testAgent({
      tools: [
        { type: 'agent_toolset_20260401' },
        { type: 'custom', name: 'lookup', description: 'Look a thing up', input_schema: { type: 'object', properties: {} } },
      ],
    });
    h.model.push(reply(toolUse('bash', { command: 'sleep 6; echo slow' }, 'tu_slow'), toolUse('lookup', {}, 'tu_early')), reply('ok'));
    const handle = await startSession(h.client, h.queue, { agent }, 'answer early');
    // The client answers as soon as the call is in the log, while bash still runs and nothing is pending yet.
    await waitFor(() => sessionEvents(h.client, handle), (ev) => ev.some((e) => e.type === 'agent.custom_tool_use'), 60_000, 'custom call');
    expect((await sessionState(handle)).pending).toEqual([]);
    await handle.signal(Signals.customToolResult, { id: 'early-1', custom_tool_use_id: 'tu_early', content: 'early answer' });
    const done = await waitIdle(handle, 'end_turn', 2);
    expect(done.last_error).toBeNull();
    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_early')).toEqual({ content: 'early answer', is_error: false });
    expect(results.get('tu_slow')?.content).toBe('slow');
    await handle.cancel();
  });

  it('gives the model a tool error when every attempt loses its container', async () => {
    // The command kills the sandbox's toolbox, so the container dies on each of the 3 attempts.
    h.model.push(reply(toolUse('bash', { command: 'kill -9 $(pgrep -f "toolbox.mjs serve")' }, 'tu_die')), reply('gave up'));
    const handle = await startSession(h.client, h.queue, {}, 'break it');
    const state = await waitIdle(handle, 'end_turn', 2, 120_000);
    expect(state.status).toBe('idle');
    const result = toolResults(h.model.requests.at(-1)!).get('tu_die');
    expect(result?.is_error).toBe(true);
    expect(result?.content).toMatch(/failed after 3 attempt\(s\).*Sandbox\.Lost/);
    const events = await sessionEvents(h.client, handle);
    expect(events.find((e) => e.type === 'agent.tool_result')?.error).toMatchObject({ type: 'Sandbox.Lost' });
    await handle.cancel();
    await cleanup(handle.workflowId);
  });

  it('removes the sandbox of a session that was terminated (worker reaper)', async () => {
    h.model.push(reply(toolUse('bash', { command: 'true' }, 'tu_true')), reply('ok'));
    const handle = await startSession(h.client, h.queue, {}, 'then terminate');
    await waitIdle(handle, 'end_turn', 2);
    const name = sandboxName(handle.workflowId);
    expect((await docker.getContainer(name).inspect()).State.Running).toBe(true);
    await handle.terminate('test');
    const scope = sandboxScope(loadRuntimeConfig(workerEnv(h.queue, h.model.url)));
    const { slots } = h.worker.hands;
    const slot = slots.paths(handle.workflowId);
    expect(existsSync(slot.dir)).toBe(true);
    const { removeSandbox } = h.worker.hands.activities;
    // Another deployment on the same Docker host leaves it alone; this one removes it.
    expect(await reapClosedSessions(docker, h.client, removeSandbox, 'other-namespace@elsewhere:7233', slots)).toEqual([]);
    expect((await docker.getContainer(name).inspect()).Config.Labels['tandem.scope']).toBe(scope);
    const removed = await reapClosedSessions(docker, h.client, removeSandbox, scope, slots);
    expect(removed).toContain(handle.workflowId);
    await expect(docker.getContainer(name).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect(existsSync(slot.dir)).toBe(false);
    if (slots.mode === 'volume') await expect(docker.getVolume(slot.workspace).inspect()).rejects.toMatchObject({ statusCode: 404 });
  });

  it('bounds a huge output with head and tail and names the file that holds all of it', async () => {
    h.model.push(reply(toolUse('bash', { command: 'seq 1 200000' }, 'tu_big')), reply('ok'));
    const handle = await startSession(h.client, h.queue, {}, 'big output');
    await waitIdle(handle, 'end_turn', 2);
    const result = toolResults(h.model.requests.at(-1)!).get('tu_big');
    expect(result!.content.length).toBeLessThan(32_000);
    expect(result!.content.startsWith('1\n2\n3\n')).toBe(true);
    expect(result!.content.trimEnd().endsWith('200000')).toBe(true);
    const events = await sessionEvents(h.client, handle);
    const ev = events.find((e) => e.type === 'agent.tool_result' && e.tool_use_id === 'tu_big');
    expect(ev?.truncated).toBe(true);
    expect(String(ev?.output_path)).toMatch(/^\/run\/tandem\/outputs\//);
    expect(result!.content).toContain(String(ev?.output_path));
    await handle.cancel();
    await cleanup(handle.workflowId);
  });

  it('keeps every event under the payload limit when a tool writes 5 MB of output; the session goes on', async () => {
    h.model.push(
      reply(toolUse('bash', { command: "head -c 5000000 /dev/zero | tr '\\0' 'z'; echo; echo END" }, 'tu_5mb')),
      reply(toolUse('bash', { command: 'echo still-working' }, 'tu_after')),
      reply('ok'),
    );
    const handle = await startSession(h.client, h.queue, {}, 'flood');
    await waitIdle(handle, 'end_turn', 3);
    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_5mb')!.content.length).toBeLessThanOrEqual(30_000);
    expect(results.get('tu_5mb')!.content).toContain('END');
    expect(results.get('tu_after')!.content).toBe('still-working');
    const history = await readHistory(h.client, handle.workflowId);
    const largest = Math.max(...history.map((e) => JSON.stringify(e).length));
    expect(largest).toBeLessThan(256 * 1024);
    await handle.cancel();
    await cleanup(handle.workflowId);
  });

  it('stops an idle container after the idle timeout and brings a fresh one on the next tool call', async () => {
    const agent = testAgent({ sandbox: { memory_mb: 256, idle_timeout_s: 2 } });
    h.model.push(reply(toolUse('write', { file_path: '/workspace/x.txt', content: 'kept' }, 'tu_w')), reply('written'));
    const handle = await startSession(h.client, h.queue, { agent }, 'write');
    await waitIdle(handle, 'end_turn', 2);
    await waitFor(() => docker.getContainer(sandboxName(handle.workflowId)).inspect(), (i) => !i.State.Running, 30_000, 'idle stop');
    // The session records the stop when its stop activity completes, a moment after the engine reports it.
    await waitFor(() => sessionState(handle), (st) => st.sandboxes[0]?.state === 'stopped', 30_000, 'the session to record the stop');
    h.model.push(reply(toolUse('read', { file_path: '/workspace/x.txt' }, 'tu_r')), reply('read it'));
    await sendMessage(handle, 'read it back');
    const state = await waitIdle(handle, 'end_turn', 4);
    expect(state.sandboxes[0]?.state).toBe('running');
    expect(toolResults(h.model.requests.at(-1)!).get('tu_r')?.content).toContain('kept');
    await handle.cancel();
    await cleanup(handle.workflowId);
  });
});
