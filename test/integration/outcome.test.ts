/**
 * Outcomes: `user.define_outcome` (here through `tandem outcome`), a grader with its own context that looks at the
 * sandbox with read-only tools, revision turns driven by its feedback, and the terminal verdicts.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hang, reply, toolUse, type PlainStep, type RecordedRequest } from '../fakes/messages-server.js';
import { runCli, sessionState, startSession, toolResults, useHarness, waitFor, waitIdle } from '../helpers/env.js';

/** The agent and the grader have scripts of their own: the grader is told apart by its system prompt. */
const agentSteps: PlainStep[] = [];
const graderSteps: PlainStep[] = [];
const graderRequests: RecordedRequest[] = [];
const agentRequests: RecordedRequest[] = [];
function route(req: RecordedRequest): PlainStep {
  const isGrader = JSON.stringify(req.body.system ?? '').includes('You are the grader');
  (isGrader ? graderRequests : agentRequests).push(req);
  const step = (isGrader ? graderSteps : agentSteps).shift();
  if (!step) throw new Error(`no ${isGrader ? 'grader' : 'agent'} step left`);
  return step;
}

const h = useHarness('outcome', { responder: route, record: 'outcome' });

describe('outcomes', () => {
  it('grades the work, sends feedback back for one revision, and ends satisfied', async () => {
    agentSteps.push(
      reply(toolUse('write', { file_path: '/workspace/report.md', content: '# Report\ndraft\n' }, 'tu_w1')),
      reply('The report is written.'),
      reply(toolUse('edit', { file_path: '/workspace/report.md', old_string: 'draft', new_string: 'Conclusion: done.' }, 'tu_e1')),
      reply('Added the conclusion.'),
    );
    graderSteps.push(
      reply(toolUse('read', { file_path: '/workspace/report.md' }, 'gr_r1')),
      reply(toolUse('submit_verdict', { result: 'needs_revision', explanation: 'The report has no conclusion.' }, 'gr_v1')),
      reply(toolUse('read', { file_path: '/workspace/report.md' }, 'gr_r2')),
      reply(toolUse('submit_verdict', { result: 'satisfied', explanation: 'Every criterion is met.' }, 'gr_v2')),
    );
    const handle = await startSession(h.client, h.queue, {});
    const rubric = join(mkdtempSync(join(tmpdir(), 'tandem-rubric-')), 'rubric.md');
    writeFileSync(rubric, '- /workspace/report.md exists\n- it ends with a conclusion\n');
    const run = await runCli(['outcome', handle.workflowId, '--rubric', rubric, '--description', 'Write the report.', '--wait'], h.queue, h.model.url);
    expect(run.stderr).toContain('satisfied (Every criterion is met.)');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/span\.outcome_evaluation_end\s+needs_revision \(iteration 0\): The report has no conclusion\./);

    const state = await sessionState(handle);
    expect(state.stop_reason).toEqual({ type: 'end_turn' });
    expect(state.outcome).toMatchObject({ result: 'satisfied', iteration: 1, explanation: 'Every criterion is met.' });
    const events = await h.tandem.getEvents(handle.workflowId);
    const defined = events.find((e) => e.type === 'user.define_outcome')!;
    expect(defined).toMatchObject({ description: 'Write the report.', rubric: { type: 'text', content: expect.stringContaining('conclusion') } });
    const starts = events.filter((e) => e.type === 'span.outcome_evaluation_start');
    const ends = events.filter((e) => e.type === 'span.outcome_evaluation_end');
    expect(starts.map((e) => e.iteration)).toEqual([0, 1]);
    expect(ends.map((e) => [e.result, e.outcome_evaluation_start_id])).toEqual([
      ['needs_revision', starts[0]!.id],
      ['satisfied', starts[1]!.id],
    ]);
    expect(new Set([defined.outcome_id, ...starts.map((e) => e.outcome_id)]).size).toBe(1);

    // The grader has its own context (not the agent's system prompt) and really looked at the file.
    expect(JSON.stringify(graderRequests[0]!.body.system)).not.toContain('You are a test agent');
    expect(toolResults(graderRequests[1]!).get('gr_r1')?.content).toContain('draft');
    expect(toolResults(graderRequests[3]!).get('gr_r2')?.content).toContain('Conclusion: done.');
    expect((graderRequests[0]!.body.tools ?? []).map((t) => t.name).sort()).toEqual(['glob', 'grep', 'read', 'submit_verdict']);
    // The agent read the outcome first, and the feedback before its revision.
    expect(JSON.stringify(agentRequests[0]!.body.messages)).toContain('Write the report.');
    expect(JSON.stringify(agentRequests[2]!.body.messages)).toContain('The report has no conclusion.');
    expect(agentRequests).toHaveLength(4);
    await handle.cancel();
  });

  it('with max_iterations 1, a needs_revision verdict ends the outcome as max_iterations_reached', async () => {
    agentSteps.push(reply('I think it is done.'));
    graderSteps.push(reply(toolUse('submit_verdict', { result: 'needs_revision', explanation: 'Nothing was written.' }, 'gr_v')));
    const handle = await startSession(h.client, h.queue, {});
    await h.tandem.defineOutcome(handle.workflowId, { description: 'Write a file.', rubric: 'a file exists', max_iterations: 1 });
    const state = await waitIdle(handle, 'end_turn', 1);
    expect(state.outcome).toMatchObject({ result: 'max_iterations_reached', explanation: 'Nothing was written.' });
    const ends = (await h.tandem.getEvents(handle.workflowId)).filter((e) => e.type === 'span.outcome_evaluation_end');
    expect(ends.map((e) => e.result)).toEqual(['max_iterations_reached']);
    // No sandbox was ever needed, so the grader was offered only its verdict tool; no revision turn followed.
    expect((graderRequests.at(-1)!.body.tools ?? []).map((t) => t.name)).toEqual(['submit_verdict']);
    expect(agentSteps).toHaveLength(0);
    await handle.cancel();
  });

  it('an interrupt during the evaluation ends the outcome as interrupted', async () => {
    agentSteps.push(reply('Done, I believe.'));
    graderSteps.push(hang());
    const handle = await startSession(h.client, h.queue, {});
    await h.tandem.defineOutcome(handle.workflowId, { description: 'Anything.', rubric: 'anything' });
    await waitFor(() => sessionState(handle), (s) => s.outcome?.result === 'evaluating', 60_000, 'evaluation');
    await h.tandem.interrupt(handle.workflowId);
    const state = await waitIdle(handle, 'end_turn', 1);
    expect(state.outcome).toMatchObject({ result: 'interrupted' });
    const ends = (await h.tandem.getEvents(handle.workflowId)).filter((e) => e.type === 'span.outcome_evaluation_end');
    expect(ends.map((e) => e.result)).toEqual(['interrupted']);
    await handle.cancel();
  });

  it('refuses a malformed outcome with a clear error and keeps working', async () => {
    const handle = await startSession(h.client, h.queue, {});
    await handle.signal('user.define_outcome', { description: 'x', rubric: { type: 'file', file_id: 'file_1' } });
    await expect(
      h.tandem.defineOutcome(handle.workflowId, { description: '', rubric: 'r' }),
    ).rejects.toThrow(/description/);
    const state = await sessionState(handle);
    expect(state.last_error?.message).toMatch(/file rubrics are not supported/);
    expect(state.outcome ?? null).toBeNull();
    await handle.cancel();
  });
});
