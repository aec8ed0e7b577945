/**
 * A long session spans several runs (continue-as-new at the server's suggestion, lowered here) and still reads as
 * one gap-free, ordered log; a follower started with the session sees every event exactly once.
 */
import { describe, expect, it } from 'vitest';
import { compareEventIds } from '../../src/client/index.js';
import { readRunChain } from '../../src/log/read.js';
import type { SessionEvent } from '../../src/log/events.js';
import { reply, toolUse } from '../fakes/messages-server.js';
import { testAgent, useHarness, waitFor } from '../helpers/env.js';

const TOOL_CALLS = 300;
// A dev server that suggests continue-as-new after 500 events instead of thousands.
const h = useHarness('can', { continueAsNewAfter: 500 });

describe('continue-as-new', () => {
  it(`runs ${TOOL_CALLS} tool calls across several runs and reads as one ordered log`, async () => {
    for (let i = 1; i <= TOOL_CALLS; i++) h.model.push(reply(toolUse('bash', { command: `echo step-${i}` }, `tu_${i}`)));
    h.model.push(reply('all steps done'));
    const sessionId = await h.tandem.start({ agent: testAgent({ limits: { max_turns: 1000 } }), message: 'run the steps' });
    const followed: SessionEvent[] = [];
    const follower = (async () => {
      for await (const e of h.tandem.followEvents(sessionId)) {
        followed.push(e);
        if (e.type === 'session.status_idle' && (e.stop_reason as { type: string }).type === 'end_turn') return;
      }
    })();
    // Steer once in the middle: the message must reach the model exactly once, in order.
    await waitFor(() => Promise.resolve(h.model.requests.length), (n) => n >= TOOL_CALLS / 2, 300_000, 'half the calls');
    await h.tandem.sendMessage(sessionId, 'steering in the middle', 'steer-mid');
    await follower;
    h.model.assertDone();

    const runs = await readRunChain(h.tandem.temporal, sessionId);
    expect(runs.length).toBeGreaterThanOrEqual(3);

    const events = await h.tandem.getEvents(sessionId);
    // Positions strictly increase and every id is unique: one gap-free order across runs.
    for (let i = 1; i < events.length; i++) expect(compareEventIds(events[i - 1]!.id, events[i]!.id)).toBeLessThan(0);
    const results = events.filter((e) => e.type === 'agent.tool_result');
    expect(results.map((e) => e.tool_use_id)).toEqual(Array.from({ length: TOOL_CALLS }, (_, i) => `tu_${i + 1}`));
    expect(results.every((e) => e.is_error === false)).toBe(true);
    expect(events.filter((e) => e.type === 'user.message').map((e) => (e.content as Array<{ text: string }>)[0]!.text)).toEqual([
      'run the steps',
      'steering in the middle',
    ]);
    // The follower saw the same log, each event once.
    expect(followed.map((e) => e.id)).toEqual(events.slice(0, followed.length).map((e) => e.id));
    expect(followed.at(-1)!.type).toBe('session.status_idle');

    // The last model call saw the whole conversation, steering included, exactly once.
    const last = h.model.requests.at(-1)!.body.messages!;
    const texts = last.flatMap((m) => (Array.isArray(m.content) ? (m.content as Array<{ type: string; text?: string }>) : []));
    expect(texts.filter((b) => b.type === 'tool_result')).toHaveLength(TOOL_CALLS);
    expect(texts.filter((b) => b.text === 'steering in the middle')).toHaveLength(1);

    const state = await h.tandem.getSession(sessionId);
    expect(state.turn).toBe(TOOL_CALLS + 1);
    expect(state.status).toBe('idle');
    await h.tandem.temporal.workflow.getHandle(sessionId).cancel();
  }, 600_000);

  it('slices the log across runs by position, count and type', async () => {
    const [sessionId] = await (async () => {
      const ids: string[] = [];
      for await (const w of h.tandem.temporal.workflow.list({ query: `TaskQueue = "${h.queue}"` })) ids.push(w.workflowId);
      return ids;
    })();
    const all = await h.tandem.getEvents(sessionId!);
    const runs = await readRunChain(h.tandem.temporal, sessionId!);
    const boundary = runs[1]!.offset; // first position of the second run
    const after = await h.tandem.getEvents(sessionId!, { after: boundary, limit: 25 });
    expect(after).toHaveLength(25);
    expect(after[0]!.seq).toBeGreaterThan(boundary);
    expect(after.map((e) => e.id)).toEqual(all.filter((e) => e.seq > boundary).slice(0, 25).map((e) => e.id));
    const toolUses = await h.tandem.getEvents(sessionId!, { types: ['agent.tool_use'] });
    expect(toolUses).toHaveLength(TOOL_CALLS);
    const afterId = toolUses[99]!.id;
    const next = await h.tandem.getEvents(sessionId!, { after: afterId, types: ['agent.tool_use'], limit: 2 });
    expect(next.map((e) => e.tool_use_id)).toEqual(['tu_101', 'tu_102']);
  });
});
