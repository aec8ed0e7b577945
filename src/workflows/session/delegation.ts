/**
 * Delegation: a model turn's `delegate` calls run as child sessions (the same workflow), bounded per turn and in
 * number at a time, with a fresh sandbox or sharing this session's. The log decoder turns each child's final answer
 * into its call's tool result.
 */
import {
  ChildWorkflowCancellationType,
  ChildWorkflowFailure,
  executeChild,
  isCancellation,
  ParentClosePolicy,
  patched,
} from '@temporalio/workflow';
import { SESSION_WORKFLOW } from '../../shared/names.js';
import { roster } from '../../shared/tools.js';
import type { AgentDefinition, SessionInput } from '../../shared/types.js';
import type { Answers } from './answers.js';
import type { AgentSessionWorkflow, SessionCore, ToolUse } from './core.js';
import { provisionFailed, type Hands } from './hands.js';

/** Patch: delegations are capped per turn and run a bounded number at a time. */
const BOUNDED_DELEGATIONS = 'bounded-delegations';
/** Default of `multiagent.max_concurrent`: child sessions of one session running at once. */
const DEFAULT_MAX_CONCURRENT = 4;
/** Default of `multiagent.max_delegations_per_turn`: delegations one model turn may ask for. */
const DEFAULT_MAX_DELEGATIONS = 16;

export class Delegation {
  /** The child sessions running now. */
  readonly children = new Set<string>();
  private readonly subAgents: Map<string, AgentDefinition>;
  private readonly depth: number;
  private readonly maxDepth: number;

  constructor(
    private readonly s: SessionCore,
    private readonly hands: Hands,
    private readonly answers: Answers,
  ) {
    const { input } = s;
    this.subAgents = roster(input.agent);
    this.depth = input.delegation?.depth ?? 0;
    this.maxDepth = input.delegation?.max_depth ?? input.agent.multiagent?.max_depth ?? 2;
  }

  /**
   * Runs a turn's delegations as child sessions: those with a fresh sandbox all at once, those sharing this
   * session's sandbox one after another (unless the agent allows concurrent use). The parent's own tool calls of
   * the turn have finished by then, so two sessions never run tools in one sandbox at the same time.
   */
  async run(uses: ToolUse[]): Promise<void> {
    const s = this.s;
    if (uses.length === 0) return;
    const multiagent = s.input.agent.multiagent;
    // A turn may ask for a bounded number of delegations, and they run a bounded number at a time: a coordinator
    // talked into asking for hundreds of sandboxes gets tool errors, not hundreds of containers (nor N² below it).
    const bounded = patched(BOUNDED_DELEGATIONS);
    const maxPerTurn = multiagent?.max_delegations_per_turn ?? DEFAULT_MAX_DELEGATIONS;
    if (bounded && uses.length > maxPerTurn) {
      for (const u of uses.slice(maxPerTurn))
        s.toolError(u, `Delegation refused: one turn may delegate at most ${maxPerTurn} tasks. Wait for these results, then delegate the rest.`);
      uses = uses.slice(0, maxPerTurn);
    }
    const shared = uses.filter((u) => u.input.sandbox === 'share');
    const fresh = uses.filter((u) => !shared.includes(u));
    if (shared.length > 0) {
      try {
        await this.hands.ensureSandbox();
      } catch (err) {
        const failure = s.stepFailure(err);
        if (!failure) return;
        for (const u of shared) s.toolError(u, provisionFailed(failure));
        shared.length = 0; // the fresh delegations still run
      }
    }
    const together = multiagent?.concurrent_sandbox === true;
    const maxConcurrent = bounded ? (multiagent?.max_concurrent ?? DEFAULT_MAX_CONCURRENT) : Infinity;
    await s
      .interruptible(async () => {
        const inTurn = async () => {
          for (const u of shared) await this.delegate(u);
        };
        const parallel = together ? [...fresh, ...shared] : fresh;
        const lanes = Array.from({ length: Math.min(maxConcurrent, parallel.length) }, async () => {
          for (let u = parallel.shift(); u; u = parallel.shift()) await this.delegate(u);
        });
        await Promise.all([...lanes, ...(together ? [] : [inTurn()])]);
      })
      .catch((err: unknown) => {
        if (!(s.interrupted && isCancellation(err))) throw err;
      });
  }

  /** One delegation: a child session whose final answer the log decoder turns into this call's tool result. */
  private async delegate(use: ToolUse): Promise<void> {
    const s = this.s;
    const { agent: name, task, sandbox } = use.input;
    const sub = typeof name === 'string' ? this.subAgents.get(name) : undefined;
    if (!sub) return s.toolError(use, `Unknown sub-agent ${JSON.stringify(name)}. Available: ${[...this.subAgents.keys()].join(', ')}`);
    if (typeof task !== 'string' || task.trim() === '') return s.toolError(use, '"task" must be a non-empty string.');
    if (sandbox !== undefined && sandbox !== 'share' && sandbox !== 'fresh') return s.toolError(use, '"sandbox" must be "share" or "fresh".');
    if (this.depth >= this.maxDepth) {
      return s.toolError(
        use,
        `Delegation refused: sessions may nest at most ${this.maxDepth} deep and this one is at depth ${this.depth}. Do the task yourself.`,
      );
    }
    const childId = `${s.info.workflowId}.${use.id}`;
    const childInput: SessionInput = {
      agent: sub,
      title: `${sub.name}: ${task.slice(0, 80)}`,
      initial_events: [{ content: [{ type: 'text', text: task }] }],
      delegation: {
        parent_session_id: s.info.workflowId,
        tool_use_id: use.id,
        depth: this.depth + 1,
        max_depth: this.maxDepth,
        ...(sandbox === 'share' ? { sandbox: this.hands.ref() } : {}),
      },
    };
    // A child may spend what is left of its parent's budget (or less, by its own limits); its spend is the parent's.
    const left = s.budget.remaining();
    if (left !== undefined) {
      const own = sub.limits?.max_cost_usd;
      childInput.limits = { max_cost_usd: Math.min(left / 1_000_000, own ?? Infinity) };
    }
    this.children.add(childId);
    s.state.children = [...this.children];
    try {
      const result = await executeChild<AgentSessionWorkflow>(SESSION_WORKFLOW, {
        workflowId: childId,
        args: [childInput],
        cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
      });
      s.budget.add(result?.spend_micros);
    } catch (err) {
      // The log decoder reports a child that failed, or could not start, as this call's tool error.
      if (!(err instanceof ChildWorkflowFailure || isCancellation(err) || (err as Error).name === 'WorkflowExecutionAlreadyStartedError'))
        throw err;
    } finally {
      this.children.delete(childId);
      s.state.children = [...this.children];
      this.answers.childEnded(childId);
    }
  }
}
