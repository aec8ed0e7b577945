/**
 * Fork: a new session from another one at an event. Its context is the origin's log up to there (its first model
 * call is the one the origin made next), its workspace the origin's snapshot at that point; the two go their own
 * ways and never share a sandbox.
 */
import { describe, expect, it } from 'vitest';
import { MEMO_FORK } from '../../src/shared/names.js';
import { reply, toolUse } from '../fakes/messages-server.js';
import { recordSession, runCli, sessionState, testAgent, toolResults, useHarness, waitFor } from '../helpers/env.js';

const h = useHarness('fork', { assertDone: true, record: 'fork' });

const idleAfter = (id: string, turns: number) =>
  waitFor(() => sessionState(h.client.workflow.getHandle(id)), (s) => s.status === 'idle' && s.turn >= turns, 60_000, `${id} idle`);

describe('fork', () => {
  it('starts from the origin at an event: the same next model request, the files as they were, separate ways after', async () => {
    const agent = testAgent();
    h.model.push(reply(toolUse('write', { file_path: '/workspace/shared.txt', content: 'base' }, 'tu_base')), reply('set up'));
    const origin = await h.tandem.start({ agent, message: 'set up' });
    await idleAfter(origin, 2);
    h.model.push(reply('plan A'));
    await h.tandem.sendMessage(origin, 'which approach?');
    await idleAfter(origin, 3);
    const originNext = h.model.requests.at(-1)!.body;
    const at = (await h.tandem.getEvents(origin, { types: ['user.message'] })).at(-1)!;

    // The fork answers the message it was made at: the request the origin made next, exactly.
    h.model.push(reply('plan B'));
    const fork = await h.tandem.fork(origin, { at: at.id });
    for (const id of [origin, fork]) recordSession(h.client.workflow.getHandle(id));
    await idleAfter(fork, 1);
    const forkFirst = h.model.requests.at(-1)!.body;
    expect(forkFirst.messages).toEqual(originNext.messages);
    expect(forkFirst.system).toEqual(originNext.system);
    expect(forkFirst.tools).toEqual(originNext.tools);

    // Its log: the origin's up to the fork point, then its own; the UI's memo names the origin.
    const events = await h.tandem.getEvents(fork);
    const forked = events.findIndex((e) => e.type === 'session.forked');
    expect(events[forked]).toMatchObject({ origin_session_id: origin, origin_event_id: at.id });
    expect(events.slice(0, forked).map((e) => e.id)).toEqual((await h.tandem.getEvents(origin)).filter((e) => e.seq <= at.seq).map((e) => e.id));
    expect(JSON.stringify(events.slice(forked))).toContain('plan B');
    expect(JSON.stringify(events)).not.toContain('plan A');
    const memo = (await h.client.workflow.getHandle(fork).describe()).memo;
    expect(memo?.[MEMO_FORK]).toEqual({ session_id: origin, event_id: at.id });
    const cli = await runCli(['events', fork], h.queue, h.model.url);
    expect(cli.stdout).toMatch(new RegExp(`session\\.forked\\s+${origin} at ${at.id.replace('.', '\\.')}`));

    // The files: the fork starts from the origin's snapshot, then each writes its own.
    h.model.push(reply(toolUse('bash', { command: 'cat /workspace/shared.txt; echo; echo fork > /workspace/shared.txt' }, 'tu_f1')), reply('fork wrote'));
    await h.tandem.sendMessage(fork, 'write yours');
    await idleAfter(fork, 3);
    expect(toolResults(h.model.requests.at(-1)!).get('tu_f1')?.content.trim()).toBe('base');
    h.model.push(reply(toolUse('bash', { command: 'echo origin > /workspace/shared.txt' }, 'tu_o1')), reply('origin wrote'));
    await h.tandem.sendMessage(origin, 'write yours');
    await idleAfter(origin, 5);
    for (const [id, want, turns] of [[fork, 'fork', 5], [origin, 'origin', 7]] as const) {
      h.model.push(reply(toolUse('read', { file_path: '/workspace/shared.txt' }, `tu_r_${want}`)), reply('read'));
      await h.tandem.sendMessage(id, 'read it');
      await idleAfter(id, turns);
      expect(toolResults(h.model.requests.at(-1)!).get(`tu_r_${want}`)?.content).toContain(want);
    }
    const [a, b] = await Promise.all([origin, fork].map((id) => h.tandem.getSession(id)));
    expect(a!.sandboxes[0]!.container_id).not.toBe(b!.sandboxes[0]!.container_id);
    await Promise.all([origin, fork].map((id) => h.client.workflow.getHandle(id).cancel()));
  });

  it('refuses an event that is not in the log, and a rewind into the part of a fork that is its origin', async () => {
    h.model.push(reply('hi'));
    const origin = await h.tandem.start({ agent: testAgent(), message: 'hello' });
    await idleAfter(origin, 1);
    await expect(h.tandem.fork(origin, { at: '99999.0' })).rejects.toThrow(/event 99999.0 is not in the log/);
    const at = (await h.tandem.getEvents(origin, { types: ['user.message'] }))[0]!;
    h.model.push(reply('hi again'));
    const fork = await h.tandem.fork(origin, { at: at.id });
    await idleAfter(fork, 1);
    await expect(h.tandem.rewind(fork, at.id)).rejects.toThrow(/was forked from/);
    await Promise.all([origin, fork].map((id) => h.client.workflow.getHandle(id).cancel()));
  });
});
