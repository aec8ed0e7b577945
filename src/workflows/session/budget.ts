/**
 * The session's ceilings: model calls per turn (`max_turns`), output tokens (`max_output_tokens`) and list cost
 * (`max_cost_usd`, the API's `budget`). The cost is metered in micro-dollars from each model and grader call's
 * `list_cost_micros` and each sub-agent's spend. At a ceiling the session goes idle with `budget_reached` and a
 * `session.error` that names it; the `tandem.session_budget` update replaces or removes the cost budget, and a
 * raised one resumes a session that stopped at it.
 */
import { defineUpdate, patched, setHandler } from '@temporalio/workflow';
import { Failure } from '../../shared/failures.js';
import { SESSION_BUDGET_UPDATE } from '../../shared/names.js';
import { dollars } from '../../shared/pricing.js';
import type { StopReason } from '../../shared/types.js';
import type { SessionCore } from './core.js';

/** Patch: a session stops at its cost budget, and every ceiling it stops at is told in a `session.error`. */
const COST_BUDGET = 'cost-budget';

/** The update's argument: the new budget in micro-dollars, or null to remove it. */
export interface BudgetChange {
  budget_micros: number | null;
}

export const budgetUpdate = defineUpdate<{ budget_micros: number | null }, [BudgetChange]>(SESSION_BUDGET_UPDATE);

export class Budget {
  /** The budget was raised while the session stood at it: it has work again. */
  raised = false;

  constructor(private readonly s: SessionCore) {
    const usd = s.limits.max_cost_usd;
    // Carried over a continue-as-new, the state already holds the budget (and any change made to it).
    if (s.state.budget_micros === undefined && usd !== undefined) s.state.budget_micros = Math.round(usd * 1_000_000);
  }

  /** Sets the update handler (with its validator, which refuses a change before it reaches history). */
  setHandler(): void {
    setHandler(budgetUpdate, (change) => this.apply(change), { validator: (change) => this.validate(change) });
  }

  /** Adds the list cost of a model call, an evaluation or a sub-agent. */
  add(micros: number | undefined): void {
    if (micros) this.s.state.spend_micros = (this.s.state.spend_micros ?? 0) + micros;
  }

  /** What is left of the cost budget in micro-dollars, or undefined when there is none. */
  remaining(): number | undefined {
    const budget = this.s.state.budget_micros;
    return budget == null ? undefined : Math.max(0, budget - (this.s.state.spend_micros ?? 0));
  }

  /**
   * Before a model call: the stop reason when a ceiling is reached (after a `session.error` that names it), else
   * undefined.
   */
  check(calls: number): StopReason | undefined {
    const { state, limits } = this.s;
    const maxTurns = limits.max_turns ?? 200;
    let why: string | undefined;
    if (calls >= maxTurns) why = `this turn made ${calls} model calls, its ceiling (max_turns); send a message to go on`;
    else if (limits.max_output_tokens !== undefined && state.usage.output_tokens >= limits.max_output_tokens)
      why = `the session used ${state.usage.output_tokens} output tokens, its ceiling of ${limits.max_output_tokens} (max_output_tokens)`;
    else if (this.remaining() === 0 && patched(COST_BUDGET))
      why = `the session spent ${dollars(state.spend_micros ?? 0)} of its ${dollars(state.budget_micros!)} budget; raise the budget to go on`;
    if (why === undefined) return undefined;
    if (patched(COST_BUDGET)) this.s.reportError({ type: Failure.BudgetReached, message: `Budget reached: ${why}.`, retryable: false });
    return { type: 'budget_reached' };
  }

  private validate(change: BudgetChange): void {
    const { state } = this.s;
    const v: unknown = (change as Partial<BudgetChange> | null)?.budget_micros;
    if (v !== null && !(typeof v === 'number' && Number.isSafeInteger(v) && v > 0))
      throw new Error('budget: budget_micros must be a positive whole number of micro-dollars, or null');
    if (state.status === 'terminated') throw new Error('session_terminated: the session has ended; its budget cannot change');
    if (state.budget_micros === undefined)
      throw new Error('budget_create_only: this session was created without a budget, and one cannot be added to it');
    if (state.budget_micros === null) throw new Error('budget_create_only: this session\'s budget was removed, and it cannot be added again');
    if (v !== null && v <= (state.spend_micros ?? 0))
      throw new Error(`budget_not_raised: the session already spent ${dollars(state.spend_micros ?? 0)}; a budget must be more than that`);
  }

  private apply({ budget_micros }: BudgetChange): { budget_micros: number | null } {
    const { state } = this.s;
    const stoppedAtIt = this.remaining() === 0 && state.status === 'idle' && state.stop_reason?.type === 'budget_reached';
    state.budget_micros = budget_micros;
    this.s.record({ type: 'session.updated', budget_micros });
    // A session that stopped at its budget goes on now that there is room again (or no budget at all).
    if (stoppedAtIt && this.remaining() !== 0) this.raised = true;
    return { budget_micros };
  }
}
