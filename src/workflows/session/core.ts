/**
 * The core every part of a session shares: its input, its state, the activities it calls, and the few things all
 * parts do the same way (record an event, change status, report an error, accept a signal, run a step that an
 * interrupt cancels). Each part (hands, tool routing, answers, delegation, outcomes, continue-as-new) keeps its own
 * state in its own module and reaches the rest through this.
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  CancellationScope,
  CancelledFailure,
  isCancellation,
  patched,
  proxyActivities,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
  type ActivityInterfaceFor,
  type WorkflowInfo,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { checkSignal } from '../../log/events.js';
import type { RecordedEvent } from '../../log/events.js';
import { MEMO_EVENT, SA_ARCHIVED, SA_STATUS } from '../../shared/names.js';
import { resolveTools, type ResolvedTool } from '../../shared/tools.js';
import type { DelegationResult, Limits, ModelBlock, SessionErrorInfo, SessionInput, SessionState, SessionStatus, StopReason, Usage } from '../../shared/types.js';
import type { Activities } from '../../activities/index.js';
import { Budget } from './budget.js';
import { SessionFiles } from './files.js';

/** The session's activities, as the workflow calls them. */
export type Acts = ActivityInterfaceFor<Activities>;
import { SessionDetails } from '../summaries.js';

export const statusKey = defineSearchAttributeKey(SA_STATUS, SearchAttributeType.KEYWORD);
export const archivedKey = defineSearchAttributeKey(SA_ARCHIVED, SearchAttributeType.KEYWORD);

/** The session workflow's signature (children and continue-as-new start it by name). */
export type AgentSessionWorkflow = (input: SessionInput) => Promise<DelegationResult | void>;

/** A tool call of a model reply. */
export type ToolUse = Extract<ModelBlock, { type: 'tool_use' }>;

/** Patch: a step does not start once an interrupt has arrived (sessions begun before it start it). */
const INTERRUPT_GATES_STEPS = 'interrupt-gates-steps';
/** Patch: cancelling a session ends it at once, without recording the cancelled step as a failure. */
const CANCEL_ENDS_SESSION = 'cancel-ends-session';

export class SessionCore {
  readonly info: WorkflowInfo = workflowInfo();
  readonly limits: Limits;
  /** A child that was handed its parent's sandbox runs its tools there, and never stops or removes it. */
  readonly ownsSandbox: boolean;
  readonly state: SessionState;
  readonly details: SessionDetails;
  readonly tools: Map<string, ResolvedTool>;
  /** The model and grader activities (any worker). */
  readonly model: Acts;
  /** Tool calls on the session's own task queue: MCP tools, and the sandbox of sessions begun before hands hosts. */
  readonly hands: Acts;
  /** Short activities on any worker: removals, stops, replay reads. */
  readonly housekeeping: Acts;
  /** Ids of the signals taken (a signal sent twice is taken once). */
  readonly seenIds: Set<string>;
  /** New user input (or an outcome) arrived: the session has a turn to run. */
  newInput: boolean;
  /** `wake` asked to retry a turn that ended on an error. */
  wakeRequested: boolean;
  /** The latest reply's text: a delegated session answers its parent with it. */
  lastText: string | null;
  /** The user interrupted the turn. */
  interrupted = false;
  /** The session's ceilings, and the meter of its cost budget. */
  readonly budget: Budget;
  /** The files mounted in the session. */
  readonly files: SessionFiles;
  private inFlight: CancellationScope | undefined;

  constructor(readonly input: SessionInput) {
    this.limits = { ...input.agent.limits, ...input.limits };
    this.ownsSandbox = !input.delegation?.sandbox;
    this.tools = resolveTools(input.agent);
    const carry = input.carry;
    this.state = carry?.state ?? {
      id: this.info.workflowId,
      status: 'idle',
      stop_reason: null,
      turn: 0,
      usage: { input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
      sandboxes: [],
      pending: [],
      last_error: null,
      // A fork's workspace starts as its origin's snapshot at the fork point (restored by its first provision).
      ...(input.fork?.snapshot_id ? { snapshot: { snapshot_id: input.fork.snapshot_id, at: 'fork' } } : {}),
    };
    this.details = new SessionDetails(this.state);
    this.seenIds = new Set(carry?.seen_ids ?? []);
    // A fork at a user message answers it first, as its origin did next.
    this.newInput = carry ? carry.new_input : (input.initial_events?.length ?? 0) > 0 || input.fork?.pending_input === true;
    this.wakeRequested = carry?.wake_requested ?? false;
    this.lastText = carry?.last_text ?? null;
    this.model = proxyActivities<Activities>({
      startToCloseTimeout: '10 minutes',
      heartbeatTimeout: '10 seconds',
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      retry: {
        initialInterval: '1 second',
        backoffCoefficient: 2,
        maximumInterval: '1 minute',
        maximumAttempts: this.limits.model_attempts ?? 5,
      },
    });
    this.hands = proxyActivities<Activities>({
      startToCloseTimeout: '15 minutes',
      heartbeatTimeout: '10 seconds',
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: this.limits.tool_attempts ?? 3 },
    });
    this.housekeeping = proxyActivities<Activities>({
      startToCloseTimeout: '2 minutes',
      retry: { initialInterval: '1 second', maximumAttempts: 5 },
    });
    this.budget = new Budget(this);
    this.files = new SessionFiles(this);
  }

  /** Records a session-level event in history (a memo change), so the log shows it in order. */
  record(event: RecordedEvent): void {
    upsertMemo({ [MEMO_EVENT]: event });
  }

  setStatus(status: SessionStatus, stopReason: StopReason | null = null): void {
    const state = this.state;
    const changed = state.status !== status || JSON.stringify(state.stop_reason) !== JSON.stringify(stopReason);
    state.status = status;
    state.stop_reason = stopReason;
    if (!changed) return;
    upsertSearchAttributes([{ key: statusKey, value: status }]);
    this.details.refresh();
    if (status === 'idle') this.record({ type: 'session.status_idle', stop_reason: stopReason });
    else if (status === 'running') this.record({ type: 'session.status_running' });
    else if (status === 'rescheduling') this.record({ type: 'session.status_rescheduled' });
    else this.record({ type: 'session.status_terminated' });
  }

  reportError(error: SessionErrorInfo): void {
    this.state.last_error = error;
    this.record({ type: 'session.error', error });
  }

  /** Validates and de-duplicates a signal; a bad one is reported as `session.error` and otherwise ignored. */
  accept<T>(name: string, payload: unknown, refuse?: (v: T) => string | undefined): T | undefined {
    const check = checkSignal(name, payload);
    if (!check.ok) {
      this.reportError({ type: 'Signal.Invalid', message: check.error, retryable: false });
      return undefined;
    }
    const problem = refuse?.(check.value as T);
    if (problem !== undefined) {
      // Not marked as seen: the same id sent again once it makes sense is still taken.
      this.reportError({ type: 'Signal.Invalid', message: problem, retryable: false });
      return undefined;
    }
    const id = (check.value as { id?: string }).id;
    if (id !== undefined) {
      if (this.seenIds.has(id)) return undefined;
      this.seenIds.add(id);
    }
    return check.value as T;
  }

  /** `user.interrupt`: the step in flight is cancelled, and the turn ends. */
  interrupt(): void {
    this.interrupted = true;
    this.inFlight?.cancel();
  }

  /** Whether `err` is the cancellation of the whole session (not an interrupt): it ends the session, not a step. */
  sessionCancelled(err: unknown): boolean {
    return isCancellation(err) && !this.interrupted && patched(CANCEL_ENDS_SESSION);
  }

  /**
   * Why a step (an activity) failed: undefined when the user interrupted it, and the caller stops; the activity's
   * failure when it failed for good. The cancellation of the whole session, or a bug, is thrown on.
   */
  stepFailure(err: unknown): ActivityFailure | undefined {
    if (this.interrupted && isCancellation(err)) return undefined;
    if (this.sessionCancelled(err)) throw err;
    if (!(err instanceof ActivityFailure)) throw err;
    return err;
  }

  /** Runs `fn` in a scope that `user.interrupt` cancels. */
  async interruptible<T>(fn: () => Promise<T>): Promise<T> {
    // An interrupt that arrived while the last step was finishing stops the next one before it starts.
    if (this.interrupted && patched(INTERRUPT_GATES_STEPS)) throw new CancelledFailure('interrupted by the user');
    const scope = new CancellationScope();
    this.inFlight = scope;
    try {
      return await scope.run(fn);
    } finally {
      this.inFlight = undefined;
    }
  }

  /** A tool error the model sees, recorded in the log. */
  toolError(use: ToolUse, text: string): void {
    this.record({ type: 'agent.tool_result', tool_use_id: use.id, name: use.name, is_error: true, content: [{ type: 'text', text }] });
  }

  /** Adds a model or grader call's tokens to the session's usage. */
  addUsage(usage: Usage): void {
    for (const k of Object.keys(this.state.usage) as Array<keyof Usage>) this.state.usage[k] += usage[k];
  }
}
