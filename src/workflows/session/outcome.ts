/**
 * Outcomes (`user.define_outcome`): what the work should achieve. When the agent ends its turn, a `gradeOutcome`
 * activity with its own context grades the work against the rubric; a `needs_revision` verdict sends the agent back
 * to work with the grader's feedback in the log, up to `max_iterations`.
 */
import { ActivityFailure, isCancellation, uuid4, workflowInfo } from '@temporalio/workflow';
import { Signals } from '../../shared/names.js';
import type { OutcomeVerdict, Usage, UserDefineOutcome } from '../../shared/types.js';
import type { SessionCore } from './core.js';
import type { Hands } from './hands.js';

export class Outcomes {
  constructor(
    private readonly s: SessionCore,
    private readonly hands: Hands,
  ) {}

  /** `user.define_outcome`: the agent reads the outcome as user input and works towards it. */
  define(payload: unknown): void {
    const s = this.s;
    const v = s.accept<UserDefineOutcome>(Signals.defineOutcome, payload);
    if (!v) return;
    s.state.outcome = {
      outcome_id: v.outcome_id ?? `outc_${uuid4().replace(/-/g, '').slice(0, 24)}`,
      description: v.description,
      rubric: v.rubric.content,
      max_iterations: v.max_iterations ?? 3,
      iteration: 0,
      result: 'running',
      explanation: null,
    };
    s.newInput = true;
  }

  /** Whether an outcome is being worked towards (its verdict is not yet terminal). */
  active(): boolean {
    return this.s.state.outcome?.result === 'running';
  }

  /**
   * Grades the work against the active outcome and records the verdict. Returns true when the agent should revise:
   * the feedback is in the log, where its next call reads it.
   */
  async evaluate(): Promise<boolean> {
    const s = this.s;
    const outcome = s.state.outcome!;
    const { outcome_id, iteration } = outcome;
    outcome.result = 'evaluating';
    s.record({ type: 'span.outcome_evaluation_start', outcome_id, iteration });
    let verdict: OutcomeVerdict;
    let explanation: string;
    let usage: Usage | undefined;
    try {
      const graded = await s.interruptible(() =>
        s.model.gradeOutcome({
          session_id: s.info.workflowId,
          run_id: s.info.runId,
          cursor: workflowInfo().historyLength,
          outcome,
          ...(s.state.sandboxes.length > 0 ? { sandbox: this.hands.ref() } : {}),
        }),
      );
      ({ result: verdict, explanation, usage } = graded);
      s.addUsage(graded.usage);
      s.budget.add(graded.list_cost_micros);
    } catch (err) {
      if (s.sessionCancelled(err)) throw err;
      if (s.interrupted && isCancellation(err)) {
        verdict = 'interrupted';
        explanation = 'The user interrupted the evaluation.';
      } else if (err instanceof ActivityFailure) {
        verdict = 'failed';
        explanation = `The grader could not run: ${err.cause?.message ?? err.message}`;
      } else throw err;
    }
    if (verdict === 'needs_revision' && iteration + 1 >= outcome.max_iterations) verdict = 'max_iterations_reached';
    outcome.result = verdict;
    outcome.explanation = explanation;
    s.record({ type: 'span.outcome_evaluation_end', outcome_id, iteration, result: verdict, explanation, ...(usage ? { usage } : {}) });
    if (verdict !== 'needs_revision') return false;
    outcome.iteration++;
    outcome.result = 'running';
    return true;
  }
}
