/**
 * Context engineering against the real SDK: over the configured budget, old turns are compacted into a summary
 * made by a model call and stored as an event; every request the model receives stays under the budget.
 */
import { describe, expect, it } from 'vitest';
import { reply, toolUse, type RecordedRequest } from '../fakes/messages-server.js';
import { testAgent, useHarness, waitIdle } from '../helpers/env.js';

const BUDGET = 3000; // estimated tokens (4 characters a token)
const isSummary = (r: RecordedRequest) => JSON.stringify(r.body.system ?? '').includes('compact the context');
let summaries = 0;
const h = useHarness('compact', {
  responder: (r) => (isSummary(r) ? reply(`SUMMARY ${++summaries}: the user asked numbered questions.`) : undefined),
});

const size = (r: RecordedRequest) => JSON.stringify({ system: r.body.system, messages: r.body.messages, tools: r.body.tools }).length / 4;

describe('compaction', () => {
  it('compacts older turns when the context passes its budget and keeps every request under it', async () => {
    const agent = testAgent({ limits: { context_tokens: BUDGET } });
    const turns = 8;
    for (let i = 0; i < turns; i++) h.model.push(reply(`answer ${i} `.padEnd(2000, '.')));
    const id = await h.tandem.start({ agent, message: `question 0 `.padEnd(500, '?') });
    const handle = h.client.workflow.getHandle(id);
    await waitIdle(handle, 'end_turn', 1);
    for (let i = 1; i < turns; i++) {
      await h.tandem.sendMessage(id, `question ${i} `.padEnd(500, '?'));
      await waitIdle(handle, 'end_turn', i + 1);
    }
    h.model.assertDone();
    const calls = h.model.requests.filter((r) => r.kind === 'messages' && !isSummary(r));
    const summaries = h.model.requests.filter(isSummary);
    expect(calls).toHaveLength(turns);
    expect(summaries.length).toBeGreaterThanOrEqual(1);
    for (const r of calls) expect(size(r)).toBeLessThanOrEqual(BUDGET);
    // Without compaction the last request would have been about three times the budget.
    const events = await h.tandem.getEvents(id);
    const compactions = events.filter((e) => e.type === 'agent.thread_context_compacted');
    expect(compactions).toHaveLength(summaries.length);
    expect(compactions[0]!.tokens_before as number).toBeGreaterThan(BUDGET);
    expect(compactions[0]!.tokens_after as number).toBeLessThanOrEqual(BUDGET);
    const last = calls.at(-1)!.body.messages!;
    expect(JSON.stringify(last[0])).toContain(`SUMMARY ${summaries.length}`);
    expect(JSON.stringify(last)).toContain(`question ${turns - 1}`);
    expect(JSON.stringify(last)).not.toContain('question 0 ');
    // The log itself is never altered: every turn is still there.
    expect(events.filter((e) => e.type === 'user.message')).toHaveLength(turns);
    expect(events.filter((e) => e.type === 'agent.message')).toHaveLength(turns);
    await handle.cancel();
  });

  it('trims old tool results before compacting', async () => {
    const agent = testAgent({ limits: { context_tokens: BUDGET } });
    for (let i = 0; i < 4; i++) h.model.push(reply(toolUse('bash', { command: `head -c 5000 /dev/zero | tr '\\0' '${i}'` }, `tu_${i}`)));
    h.model.push(reply('done'));
    const id = await h.tandem.start({ agent, message: 'make output' });
    await waitIdle(h.client.workflow.getHandle(id), 'end_turn', 5);
    h.model.assertDone();
    const calls = h.model.requests.slice(-5);
    expect(calls.some(isSummary)).toBe(false);
    for (const r of calls) expect(size(r)).toBeLessThanOrEqual(BUDGET);
    expect(JSON.stringify(calls.at(-1)!.body.messages)).toContain('tool output removed from the context');
    expect(JSON.stringify(calls.at(-1)!.body.messages)).toContain('3333333333');
    await h.client.workflow.getHandle(id).cancel();
  });
});
