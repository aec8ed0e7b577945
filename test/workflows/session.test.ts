/**
 * The session workflow's parts, each on its own: tool routing, the hands (placement, the turn's snapshot, moving off
 * a host that stopped answering), calls that wait for the user, delegation, outcomes and continue-as-new's carried
 * state. Real workflow code on the run's dev server, stubbed activities: no Docker, seconds per case.
 */
import { describe, expect, it } from 'vitest';
import type { WorkflowHandle } from '@temporalio/client';
import { readSessionLog } from '../../src/log/read.js';
import { Signals } from '../../src/shared/names.js';
import type { SessionEvent } from '../../src/log/events.js';
import { testAgent, waitFor, waitIdle } from '../helpers/env.js';
import { call, modelReply, useStubHarness } from './harness.js';

const h = useStubHarness();

async function events(handle: WorkflowHandle): Promise<SessionEvent[]> {
  return (await readSessionLog(h.env.client, handle.workflowId)).events;
}

/** The tool results of a session's log, by call id: their text and whether they are errors. */
async function results(handle: WorkflowHandle): Promise<Map<string, { text: string; is_error: boolean }>> {
  const out = new Map<string, { text: string; is_error: boolean }>();
  for (const e of await events(handle)) {
    if (e.type !== 'agent.tool_result') continue;
    const content = e.content as Array<{ text?: string }>;
    out.set(e.tool_use_id as string, { text: content.map((c) => c.text ?? '').join(''), is_error: e.is_error === true });
  }
  return out;
}

const executesOf = (handle: WorkflowHandle) => h.calls.execute.filter((c) => c.sandbox.session_id === handle.workflowId);

describe('session parts (stubbed activities)', () => {
  it('tool routing: built-in calls run on the placed host, the last one takes the turn snapshot', async () => {
    const s = await h.start({ agent: testAgent() }, 'go', [
      modelReply(call('bash', { command: 'one' }, 'tu_a'), call('read', { file_path: '/x' }, 'tu_b')),
      modelReply('done'),
    ]);
    const state = await waitIdle(s, 'end_turn', 2, 30_000);
    const runs = executesOf(s);
    expect(runs.map((r) => [r.tool_use_id, r.host, r.snapshot])).toEqual([
      ['tu_a', 'h1', undefined],
      ['tu_b', 'h1', true],
    ]);
    expect(h.calls.place.filter((p) => p.session_id === s.workflowId)).toHaveLength(1);
    expect(h.calls.snapshot).not.toContain(s.workflowId); // no snapshot activity of its own
    expect(state.snapshot?.snapshot_id).toMatch(/^snap-/);
    const r = await results(s);
    expect(r.get('tu_a')).toEqual({ text: 'ran bash on h1', is_error: false });
    expect(r.get('tu_b')).toEqual({ text: 'ran read on h1', is_error: false });
  });

  it('tool routing: an unknown tool and a refused input are tool errors, and nothing runs', async () => {
    const s = await h.start({ agent: testAgent() }, 'go', [
      modelReply(call('nope', {}, 'tu_n'), call('bash', { tandem_error: 'The input was too large to keep.' }, 'tu_r')),
      modelReply('ok'),
    ]);
    await waitIdle(s, 'end_turn', 2, 30_000);
    const r = await results(s);
    expect(r.get('tu_n')?.is_error).toBe(true);
    expect(r.get('tu_n')?.text).toMatch(/^Unknown tool "nope"\. Available: .*bash/);
    expect(r.get('tu_r')).toEqual({ text: 'The input was too large to keep.', is_error: true });
    expect(executesOf(s)).toHaveLength(0);
    expect(h.calls.place.filter((p) => p.session_id === s.workflowId)).toHaveLength(0);
  });

  it('answers: calls that ask wait as pending until answered; deny is a tool error, allow runs the call', async () => {
    const agent = testAgent({
      tools: [
        { type: 'agent_toolset_20260401', default_config: { permission_policy: { type: 'always_ask' } } },
        { type: 'custom', name: 'lookup', description: 'Looks a thing up.', input_schema: { type: 'object' } },
      ],
    });
    const s = await h.start({ agent }, 'go', [
      modelReply(call('bash', { command: 'rm -rf /' }, 'tu_ask'), call('lookup', { q: 'x' }, 'tu_custom')),
      modelReply(call('bash', { command: 'ls' }, 'tu_ok')),
      modelReply('done'),
    ]);
    const waiting = await waitIdle(s, 'requires_action', 1, 30_000);
    expect(waiting.pending.map((p) => [p.tool_use_id, p.kind])).toEqual([
      ['tu_ask', 'confirmation'],
      ['tu_custom', 'custom_tool'],
    ]);
    // An answer to a call that does not wait is refused, and the session keeps waiting.
    await s.signal(Signals.toolConfirmation, { tool_use_id: 'tu_other', result: 'allow' });
    await s.signal(Signals.toolConfirmation, { tool_use_id: 'tu_ask', result: 'deny', deny_message: 'not that' });
    await s.signal(Signals.customToolResult, { custom_tool_use_id: 'tu_custom', content: '42' });
    await waitIdle(s, 'requires_action', 2, 30_000);
    await s.signal(Signals.toolConfirmation, { tool_use_id: 'tu_ok', result: 'allow' });
    await waitIdle(s, 'end_turn', 3, 30_000);

    expect((await results(s)).get('tu_ask')).toEqual({ text: 'not that', is_error: true });
    expect(executesOf(s).map((r) => r.tool_use_id)).toEqual(['tu_ok']);
    const errors = (await events(s)).filter((e) => e.type === 'session.error');
    expect(errors.map((e) => (e.error as { message: string }).message)).toEqual([
      `${Signals.toolConfirmation}: no pending tool call tu_other`,
    ]);
  });

  it("delegation: a child session's answer is the call's result; nesting past max_depth is refused", async () => {
    const agent = testAgent({ multiagent: { type: 'coordinator', agents: [{ type: 'self' }], max_depth: 1 } });
    const s = await h.start(
      { agent },
      'go',
      [modelReply(call('delegate', { agent: 'test-agent', task: 'sub task' }, 'tu_d1')), modelReply('parent done')],
      { tu_d1: [modelReply(call('delegate', { agent: 'test-agent', task: 'deeper' }, 'tu_d2')), modelReply('child done')] },
    );
    await waitIdle(s, 'end_turn', 2, 60_000);
    const childId = `${s.workflowId}.tu_d1`;
    expect((await results(s)).get('tu_d1')).toEqual({ text: 'child done', is_error: false });
    const child = h.env.client.workflow.getHandle(childId);
    expect(await child.result()).toMatchObject({ final_message: 'child done', stop_reason: { type: 'end_turn' }, turns: 2 });
    const refused = (await results(child)).get('tu_d2');
    expect(refused?.is_error).toBe(true);
    expect(refused?.text).toContain('sessions may nest at most 1 deep and this one is at depth 1');
  });

  it('outcomes: graded after the turn, revised on needs_revision, done when satisfied', async () => {
    const s = await h.start({ agent: testAgent() }, 'hello', [modelReply('hi'), modelReply('draft'), modelReply('final')]);
    await waitIdle(s, 'end_turn', 1, 30_000);
    h.verdicts.push('needs_revision', 'satisfied');
    await s.signal(Signals.defineOutcome, { description: 'a report', rubric: { type: 'text', content: 'has a title' } });
    const ends = await waitFor(
      async () => (await events(s)).filter((e) => e.type === 'span.outcome_evaluation_end'),
      (e) => e.length === 2,
      30_000,
      'two evaluations',
    );
    expect(ends.map((e) => [e.iteration, e.result])).toEqual([
      [0, 'needs_revision'],
      [1, 'satisfied'],
    ]);
    const state = await waitIdle(s, 'end_turn', 3, 30_000);
    expect(state.outcome).toMatchObject({ result: 'satisfied', iteration: 1 });
    expect(h.calls.grade.filter((id) => id === s.workflowId)).toHaveLength(2);
  });

  it("continue-as-new: a run carries the turn's call count, and stops at max_turns", async () => {
    const first = await h.start({ agent: testAgent() }, 'hello', [modelReply('hi')]);
    const carried = await waitIdle(first, 'end_turn', 1, 30_000);
    const s = await h.start(
      {
        agent: testAgent({ limits: { max_turns: 5 } }),
        carry: { state: { ...carried, status: 'running' }, seen_ids: [], new_input: false, wake_requested: false, in_turn: { calls: 4 } },
      },
      undefined,
      [modelReply(call('bash', { command: 'x' }, 'tu_c'))],
    );
    const state = await waitIdle(s, 'budget_reached', 2, 30_000);
    expect(state.turn).toBe(carried.turn + 1);
    expect(state.usage.output_tokens).toBe(carried.usage.output_tokens * 2);
    expect(executesOf(s).map((r) => r.tool_use_id)).toEqual(['tu_c']);
    expect(h.calls.model.filter((id) => id === s.workflowId)).toHaveLength(1);
  });

  it('hands: a host that stops answering loses the sandbox to another host, restored from the snapshot', async () => {
    await h.startHost('h2');
    h.hosts.push('h2');
    const s = await h.start({ agent: testAgent() }, 'one', [
      modelReply(call('bash', { command: 'one' }, 'tu_1')),
      modelReply('first done'),
      modelReply(call('bash', { command: 'two' }, 'tu_2')),
      modelReply('second done'),
    ]);
    const before = await waitIdle(s, 'end_turn', 2, 30_000);
    await h.stopHost('h1');
    await s.signal(Signals.message, { content: [{ type: 'text', text: 'two' }] });
    await waitIdle(s, 'end_turn', 4, 60_000);

    const places = h.calls.place.filter((p) => p.session_id === s.workflowId);
    expect(places.map((p) => p.exclude ?? [])).toEqual([[], ['h1']]);
    const onH2 = h.calls.provision.filter((p) => p.session_id === s.workflowId && p.host === 'h2');
    expect(onH2.map((p) => p.restore)).toEqual([before.snapshot!.snapshot_id]);
    const text = (await results(s)).get('tu_2')!.text;
    expect(text).toContain('because hands host h1 stopped answering');
    expect(text).toContain(`latest snapshot (${before.snapshot!.snapshot_id.slice(0, 12)}`);
    expect(text).toMatch(/ran bash on h2$/);
    expect((await events(s)).some((e) => e.type === 'sandbox.lost')).toBe(true);
  });
});
