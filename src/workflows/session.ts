/**
 * `agentSession`: one session. Its history is the session log; this code is the stateless half of the harness that
 * decides the next step. It keeps only what it needs to decide (status, pending tool calls, counters); the model's
 * context is built by `callModel` from the log itself, so no transcript lives here or in any activity input.
 */
import {
  ActivityCancellationType,
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  ChildWorkflowCancellationType,
  ChildWorkflowFailure,
  condition,
  continueAsNew,
  executeChild,
  getExternalWorkflowHandle,
  isCancellation,
  ParentClosePolicy,
  patched,
  proxyActivities,
  setDefaultSignalHandler,
  TimeoutFailure,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { checkSignal } from '../shared/events.js';
import type { RecordedEvent } from '../shared/events.js';
import { Failure } from '../shared/failures.js';
import { MEMO_EVENT, MEMO_SESSION, placementQueue, SA_AGENT, SA_ARCHIVED, SA_STATUS, Signals } from '../shared/names.js';
import { sessionResources } from '../shared/repositories.js';
import { resolveTools, roster } from '../shared/tools.js';
import type {
  CallModelResult,
  CarriedState,
  DelegationResult,
  OutcomeVerdict,
  ModelBlock,
  PendingAction,
  Placement,
  SandboxRef,
  SessionErrorInfo,
  SessionInput,
  SessionState,
  SessionStatus,
  StopReason,
  TextBlock,
  UserCustomToolResult,
  Usage,
  UserDefineOutcome,
  UserToolConfirmation,
} from '../shared/types.js';
import type { Activities } from '../activities/index.js';
import {
  childPendingSignal,
  customToolResultSignal,
  defineOutcomeSignal,
  getSessionQuery,
  sessionUpdateSignal,
  toolConfirmationSignal,
  userInterruptSignal,
  userMessageSignal,
  wakeSignal,
} from './messages.js';
import { mcpRoute, toolErrorEvent } from './mcp.js';
import { SessionDetails, toolSummary } from './summaries.js';

const statusKey = defineSearchAttributeKey(SA_STATUS, SearchAttributeType.KEYWORD);
const agentKey = defineSearchAttributeKey(SA_AGENT, SearchAttributeType.KEYWORD);
const archivedKey = defineSearchAttributeKey(SA_ARCHIVED, SearchAttributeType.KEYWORD);

type ToolUse = Extract<ModelBlock, { type: 'tool_use' }>;

/** Patch: a step does not start once an interrupt has arrived (sessions begun before it start it). */
const INTERRUPT_GATES_STEPS = 'interrupt-gates-steps';
/** Patch: cancelling a session ends it at once, without recording the cancelled step as a failure. */
const CANCEL_ENDS_SESSION = 'cancel-ends-session';
/** Patch: a delegated session passes its own sub-agents' waiting calls on to its parent. */
const RELAY_CHILD_PENDING = 'relay-child-pending';
/** Patch: delegations are capped per turn and run a bounded number at a time. */
const BOUNDED_DELEGATIONS = 'bounded-delegations';
/** Default of `multiagent.max_concurrent`: child sessions of one session running at once. */
const DEFAULT_MAX_CONCURRENT = 4;
/** Default of `multiagent.max_delegations_per_turn`: delegations one model turn may ask for. */
const DEFAULT_MAX_DELEGATIONS = 16;
/**
 * Patch: the sandbox is placed on a hands host and every call for it goes to that host's task queue; the workspace
 * is snapshotted after each tool turn, and a host that stops answering gets the sandbox placed again elsewhere,
 * restored from the latest snapshot.
 */
const HANDS_HOSTS = 'hands-hosts';
/**
 * Patch: a tool turn's snapshot is taken by its last call's `execute`, after the call, instead of by a
 * `snapshotSandbox` activity of its own (which stays for turns that end otherwise, and when that snapshot failed).
 */
const SNAPSHOT_WITH_CALL = 'snapshot-with-call';
/** Times one tool call may move its sandbox to another host before it is a tool error. */
const MAX_MOVES = 3;


/**
 * Runs one session until it is cancelled. A session started by a delegation ends when its turn does, and returns
 * its final answer to the parent.
 */
export async function agentSession(input: SessionInput): Promise<DelegationResult | void> {
  const info = workflowInfo();
  const limits = { ...input.agent.limits, ...input.limits };
  // A child that was handed its parent's sandbox runs its tools there, and never stops or removes it.
  const ownsSandbox = !input.delegation?.sandbox;
  const resources = sessionResources(input);
  const sandboxRef: SandboxRef = input.delegation?.sandbox ?? {
    session_id: info.workflowId,
    config: { ...input.agent.sandbox, ...input.sandbox },
    ...(resources.length > 0 ? { resources } : {}),
  };
  const tools = resolveTools(input.agent);
  const subAgents = roster(input.agent);
  const depth = input.delegation?.depth ?? 0;
  const maxDepth = input.delegation?.max_depth ?? input.agent.multiagent?.max_depth ?? 2;
  const maxTurns = limits.max_turns ?? 200;
  const idleTimeoutMs = (sandboxRef.config.idle_timeout_s ?? 600) * 1000;

  const model = proxyActivities<Activities>({
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout: '10 seconds',
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      initialInterval: '1 second',
      backoffCoefficient: 2,
      maximumInterval: '1 minute',
      maximumAttempts: limits.model_attempts ?? 5,
    },
  });
  const hands = proxyActivities<Activities>({
    startToCloseTimeout: '15 minutes',
    heartbeatTimeout: '10 seconds',
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: limits.tool_attempts ?? 3 },
  });
  const housekeeping = proxyActivities<Activities>({
    startToCloseTimeout: '2 minutes',
    retry: { initialInterval: '1 second', maximumAttempts: 5 },
  });
  /** The hands activities of the host a sandbox is placed on (its own queue; a host that stops answering times out). */
  const onHost = (taskQueue: string) =>
    proxyActivities<Activities>({
      taskQueue,
      startToCloseTimeout: '15 minutes',
      // No poller on the host's queue this long, or no heartbeat from a started call (they beat every 2 s): the
      // host is lost. A false alarm on a busy host costs a move to another host, never a result.
      scheduleToStartTimeout: '4 seconds',
      heartbeatTimeout: '5 seconds',
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
      retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: limits.tool_attempts ?? 3 },
    });
  /** Snapshots, idle stops and removals on a host: they may find it gone, and then give up. */
  const onHostHousekeeping = (taskQueue: string) =>
    proxyActivities<Activities>({
      taskQueue,
      startToCloseTimeout: '5 minutes',
      scheduleToStartTimeout: '30 seconds',
      heartbeatTimeout: '30 seconds',
      retry: { initialInterval: '1 second', maximumAttempts: 3 },
    });
  const placement = proxyActivities<Activities>({
    taskQueue: placementQueue(info.taskQueue),
    startToCloseTimeout: '1 minute',
    retry: { initialInterval: '1 second', maximumInterval: '10 seconds', maximumAttempts: 30 },
  });

  const carry = input.carry;
  const state: SessionState = carry?.state ?? {
    id: info.workflowId,
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
  const details = new SessionDetails(state);
  // Sessions on hands hosts (from this patch on). A session begun before it keeps the sandbox it has on the task
  // queue (its later runs too), and so does a child sharing such a sandbox.
  const legacySandbox = ownsSandbox
    ? state.sandboxes.length > 0 && !state.sandboxes[0]!.task_queue
    : !input.delegation?.sandbox?.placement;
  const onHosts = !legacySandbox && patched(HANDS_HOSTS);
  const snapshotWithCall = onHosts && ownsSandbox && patched(SNAPSHOT_WITH_CALL);
  /** Where this session's sandbox runs, when it runs on a hands host: its own, or its parent's when shared. */
  const placed = (): Placement | undefined => {
    const s = state.sandboxes[0];
    if (s?.host && s.task_queue) return { host_id: s.host, task_queue: s.task_queue };
    return input.delegation?.sandbox?.placement;
  };
  /** The sandbox reference with its placement, as the host's activities take it. */
  const refOn = (p: Placement): SandboxRef => ({ ...sandboxRef, placement: p });
  /** Whether a builtin tool ran since the last snapshot. */
  let touched = false;
  /** This run is a rewind's (a reset keeps the first run's id on its start event and gets a new one). */
  const rewound = info.runId !== info.originalExecutionRunId;
  /**
   * After a rewind, the first tool call sets the workspace back to the latest snapshot as of the rewind point (or
   * empties it when there was none), so the files agree with the log. What the call does is in its activity's
   * input only, decided when the call is made live (never while the history from before the rewind replays: that
   * input was another then, and a replay does not compare inputs); that it happened comes back in its result, so
   * every replay of this run knows it.
   */
  const rewindNow = () =>
    onHosts && ownsSandbox && rewound && state.rewound_run !== info.runId && !workflowInfo().unsafe.isReplaying
      ? { snapshot_id: state.snapshot?.snapshot_id ?? null }
      : undefined;
  const seenIds = new Set<string>(carry?.seen_ids ?? []);
  const answers = new Map<string, UserToolConfirmation | UserCustomToolResult>();
  // A fork at a user message answers it first, as its origin did next.
  let newInput = carry ? carry.new_input : (input.initial_events?.length ?? 0) > 0 || input.fork?.pending_input === true;
  let wakeRequested = carry?.wake_requested ?? false;
  let lastText = carry?.last_text ?? null;
  let interrupted = false;
  let inFlight: CancellationScope | undefined;
  /** Tool calls of the latest model reply while they are being handled. */
  let replyUses = new Set<string>();
  const children = new Set<string>();

  /** Records a session-level event in history (a memo change), so the log shows it in order. */
  function record(event: RecordedEvent): void {
    upsertMemo({ [MEMO_EVENT]: event });
  }

  function setStatus(status: SessionStatus, stopReason: StopReason | null = null): void {
    const changed = state.status !== status || JSON.stringify(state.stop_reason) !== JSON.stringify(stopReason);
    state.status = status;
    state.stop_reason = stopReason;
    if (!changed) return;
    upsertSearchAttributes([{ key: statusKey, value: status }]);
    details.refresh();
    if (status === 'idle') record({ type: 'session.status_idle', stop_reason: stopReason });
    else if (status === 'running') record({ type: 'session.status_running' });
    else if (status === 'rescheduling') record({ type: 'session.status_rescheduled' });
    else record({ type: 'session.status_terminated' });
  }

  function reportError(error: SessionErrorInfo): void {
    state.last_error = error;
    record({ type: 'session.error', error });
  }

  /** Validates and de-duplicates a signal; a bad one is reported as `session.error` and otherwise ignored. */
  function accept<T>(name: string, payload: unknown, refuse?: (v: T) => string | undefined): T | undefined {
    const check = checkSignal(name, payload);
    if (!check.ok) {
      reportError({ type: 'Signal.Invalid', message: check.error, retryable: false });
      return undefined;
    }
    const problem = refuse?.(check.value as T);
    if (problem !== undefined) {
      // Not marked as seen: the same id sent again once it makes sense is still taken.
      reportError({ type: 'Signal.Invalid', message: problem, retryable: false });
      return undefined;
    }
    const id = (check.value as { id?: string }).id;
    if (id !== undefined) {
      if (seenIds.has(id)) return undefined;
      seenIds.add(id);
    }
    return check.value as T;
  }

  setHandler(getSessionQuery, () => state);
  setHandler(userMessageSignal, (payload) => {
    if (accept(Signals.message, payload)) newInput = true;
  });
  setHandler(userInterruptSignal, (payload) => {
    if (accept(Signals.interrupt, payload) === undefined) return;
    if (state.status !== 'running' && state.pending.length === 0) return;
    interrupted = true;
    inFlight?.cancel();
  });
  setHandler(wakeSignal, (payload) => {
    if (!accept(Signals.wake, payload)) return;
    // Only a session waiting on an error is retried; a wake during a turn must not retry a later failure unasked.
    if (state.status === 'idle') wakeRequested = true;
    // A child waiting on an error is woken with its parent.
    for (const id of children) getExternalWorkflowHandle(id).signal(wakeSignal, {}).catch(() => undefined);
  });
  const answerId = (v: UserToolConfirmation | UserCustomToolResult) => ('tool_use_id' in v ? v.tool_use_id : v.custom_tool_use_id);
  const answer = (name: string, kind: PendingAction['kind']) => (payload: unknown) => {
    // A call of the latest reply may be answered as soon as it is in the log, before the session lists it as pending.
    const v = accept<UserToolConfirmation | UserCustomToolResult>(name, payload, (a) =>
      state.pending.some((p) => p.tool_use_id === answerId(a) && p.kind === kind) || replyUses.has(answerId(a))
        ? undefined
        : `${name}: no pending tool call ${answerId(a)}`,
    );
    if (!v) return;
    // A sub-agent's call is answered in the child session that waits on it.
    const child = state.pending.find((p) => p.tool_use_id === answerId(v) && p.session_id)?.session_id;
    if (child) getExternalWorkflowHandle(child).signal(name, v).catch(() => undefined);
    else answers.set(answerId(v), v);
  };
  /** Calls of running sub-agents that wait for the user, by child session: shown as this session's. */
  const childPending = new Map<string, PendingAction[]>();
  setHandler(childPendingSignal, ({ session_id, pending }) => {
    if (!children.has(session_id)) return;
    if (pending.length > 0) childPending.set(session_id, pending.map((p) => ({ ...p, session_id })));
    else childPending.delete(session_id);
    state.pending = [...childPending.values()].flat();
    if (state.pending.length > 0) setStatus('idle', { type: 'requires_action', event_ids: state.pending.map((p) => p.tool_use_id) });
    else setStatus('running');
    // A sub-agent's sub-agent waits for the user too: its calls go up to the session at the top, and answers come
    // down one session at a time (each forwards to the child its pending entry names).
    if (input.delegation && patched(RELAY_CHILD_PENDING)) void tellParent(state.pending);
  });
  setHandler(defineOutcomeSignal, (payload) => {
    const v = accept<UserDefineOutcome>(Signals.defineOutcome, payload);
    if (!v) return;
    state.outcome = {
      outcome_id: v.outcome_id ?? `outc_${uuid4().replace(/-/g, '').slice(0, 24)}`,
      description: v.description,
      rubric: v.rubric.content,
      max_iterations: v.max_iterations ?? 3,
      iteration: 0,
      result: 'running',
      explanation: null,
    };
    newInput = true; // the agent reads the outcome as user input and works towards it
  });
  setHandler(sessionUpdateSignal, (payload) => {
    const p = payload as { memo?: unknown; changed?: unknown } | null;
    const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (!isObj(p) || !isObj(p.memo) || !isObj(p.changed)) {
      reportError({ type: 'Signal.Invalid', message: 'tandem.session_update: expected {memo: {...}, changed: {...}}', retryable: false });
      return;
    }
    upsertMemo({ [MEMO_SESSION]: p.memo, [MEMO_EVENT]: { ...p.changed, type: 'session.updated' } });
    if (typeof p.memo.archived_at === 'string') upsertSearchAttributes([{ key: archivedKey, value: 'true' }]);
  });
  setHandler(toolConfirmationSignal, answer(Signals.toolConfirmation, 'confirmation'));
  setHandler(customToolResultSignal, answer(Signals.customToolResult, 'custom_tool'));
  // Last: signals that arrived before the handlers existed are delivered as each handler is set, and only the
  // ones no handler takes should reach this one.
  setDefaultSignalHandler((name) => {
    reportError({ type: 'Signal.Invalid', message: `unknown signal "${name}"`, retryable: false });
  });

  /** Whether `err` is the cancellation of the whole session (not an interrupt): it ends the session, not a step. */
  function sessionCancelled(err: unknown): boolean {
    return isCancellation(err) && !interrupted && patched(CANCEL_ENDS_SESSION);
  }

  /**
   * Why a step (an activity) failed: undefined when the user interrupted it, and the caller stops; the activity's
   * failure when it failed for good. The cancellation of the whole session, or a bug, is thrown on.
   */
  function stepFailure(err: unknown): ActivityFailure | undefined {
    if (interrupted && isCancellation(err)) return undefined;
    if (sessionCancelled(err)) throw err;
    if (!(err instanceof ActivityFailure)) throw err;
    return err;
  }

  /** The tool error of a call whose sandbox could not be provisioned. */
  const provisionFailed = (f: ActivityFailure) => `The sandbox could not be provisioned: ${f.cause?.message ?? f.message}`;

  /** Runs `fn` in a scope that `user.interrupt` cancels. */
  async function interruptible<T>(fn: () => Promise<T>): Promise<T> {
    // An interrupt that arrived while the last step was finishing stops the next one before it starts.
    if (interrupted && patched(INTERRUPT_GATES_STEPS)) throw new CancelledFailure('interrupted by the user');
    const scope = new CancellationScope();
    inFlight = scope;
    try {
      return await scope.run(fn);
    } finally {
      inFlight = undefined;
    }
  }

  async function ensureSandbox(): Promise<void> {
    if (state.sandboxes.length > 0) return;
    if (!onHosts) {
      const { sandbox } = await interruptible(() => hands.provision(sandboxRef));
      state.sandboxes = [sandbox];
      return;
    }
    // A child that shares its parent's sandbox uses it where it is; otherwise the sandbox is placed (again), on a
    // host other than those that stopped answering, and a workspace new to its host gets the latest snapshot.
    const shared = ownsSandbox ? undefined : input.delegation?.sandbox?.placement;
    const where =
      shared ??
      (await interruptible(() =>
        placement.placeSandbox({
          session_id: sandboxRef.session_id,
          ...(sandboxRef.config.image ? { image: sandboxRef.config.image } : {}),
          ...(state.lost_hosts?.length ? { exclude: state.lost_hosts } : {}),
        }),
      ));
    const rewind = rewindNow();
    const restore = ownsSandbox && state.snapshot ? { restore: state.snapshot.snapshot_id } : {};
    try {
      const result = await interruptible(() =>
        onHost(where.task_queue).provision({ ...refOn(where), ...restore, ...(rewind ? { wipe: true } : {}) }),
      );
      const { sandbox } = result;
      if (result.wiped) state.rewound_run = info.runId;
      state.sandboxes = [{ ...sandbox, host: where.host_id, task_queue: where.task_queue }];
    } catch (err) {
      // A host that took no provision is not placed on again by this session.
      if (ownsSandbox && err instanceof ActivityFailure && err.cause instanceof TimeoutFailure)
        state.lost_hosts = [...new Set([...(state.lost_hosts ?? []), where.host_id])].slice(-8);
      throw err;
    }
  }

  /** Removes the session's sandbox (the session has ended); a host that is gone keeps it until its reaper runs. */
  async function removeSandbox(): Promise<void> {
    const where = placed();
    if (!onHosts || !where) return housekeeping.removeSandbox(sandboxRef);
    await onHostHousekeeping(where.task_queue).removeSandbox(refOn(where)).catch(() => undefined);
  }

  /** Stops the idle session's container (it comes back on the next tool call). */
  async function stopSandbox(): Promise<void> {
    const where = placed();
    if (!onHosts || !where) return housekeeping.stopSandbox(sandboxRef);
    await onHostHousekeeping(where.task_queue).stopSandbox(refOn(where)).catch(() => undefined);
  }

  /** Whether a step failed because its hands host stopped answering (its queue or its heartbeats timed out). */
  const hostLost = (f: ActivityFailure) => onHosts && f.cause instanceof TimeoutFailure;

  /**
   * Gives up the sandbox of a host that stopped answering: it is placed elsewhere next, and the old host, should it
   * come back, removes what it held (without ending the session's snapshots).
   */
  function moveOff(): string | undefined {
    const p = placed();
    if (!p || !ownsSandbox) return undefined;
    state.lost_hosts = [...new Set([...(state.lost_hosts ?? []), p.host_id])].slice(-8);
    state.sandboxes = [];
    onHostHousekeeping(p.task_queue)
      .removeSandbox({ ...refOn(p), moved: true })
      .catch(() => undefined);
    const snap = state.snapshot;
    return (
      `[Tandem: this call runs in a new sandbox, because hands host ${p.host_id} stopped answering. ` +
      (snap
        ? `The workspace is as it was at its latest snapshot (${snap.snapshot_id.slice(0, 12)}, ${snap.at}); changes made after it are gone.]`
        : 'The session had no snapshot yet, so the workspace is empty.]')
    );
  }

  /**
   * Runs one built-in or MCP tool call; a failure after the retry budget becomes a tool error the model sees. With
   * `snapshot`, the call's host snapshots the workspace after it (sessions on hands hosts).
   */
  async function runTool(use: ToolUse, snapshot = false): Promise<void> {
    const mcp = mcpRoute(input.agent, info.workflowId, use);
    if (mcp) {
      // MCP tools run on the worker, with the vault's credentials: no sandbox is needed or told anything.
      try {
        await interruptible(() => hands.callMcpTool(mcp.call));
      } catch (err) {
        stepFailure(err); // the decoder shows the failure as an agent.mcp_tool_result
      }
      return;
    }
    if (onHosts) return runOnHost(use, snapshot);
    try {
      await ensureSandbox();
    } catch (err) {
      const failure = stepFailure(err);
      if (failure) toolError(use, provisionFailed(failure));
      return;
    }
    try {
      const summary = toolSummary(use.name, use.input);
      details.step(summary);
      const result = await interruptible(() =>
        hands.execute.executeWithOptions({ summary }, [
          { sandbox: sandboxRef, tool_use_id: use.id, name: use.name, input: use.input },
        ]),
      );
      if (result.provisioned) state.sandboxes = [result.provisioned];
    } catch (err) {
      // The log decoder turns the failed activity into an `agent.tool_result` with `is_error`.
      const cause = stepFailure(err)?.cause;
      if (cause instanceof ApplicationFailure && cause.type === Failure.SandboxLost) state.sandboxes = [];
    }
  }

  /**
   * Runs one built-in tool call on the sandbox's hands host. A host that stops answering (a timeout on its queue:
   * the log decoder shows it as `sandbox.lost`, not as the call's result) gets the sandbox placed again and the call
   * run there, with a note for the model; after MAX_MOVES the call is a tool error.
   */
  async function runOnHost(use: ToolUse, snapshot: boolean): Promise<void> {
    let notice: string | undefined;
    for (let moves = 0; ; moves++) {
      try {
        await ensureSandbox();
      } catch (err) {
        const failure = stepFailure(err);
        if (!failure) return;
        if (hostLost(failure) && moves < MAX_MOVES) {
          notice = moveOff() ?? notice;
          continue;
        }
        return toolError(use, provisionFailed(failure));
      }
      const where = placed()!;
      try {
        const summary = toolSummary(use.name, use.input);
        details.step(summary);
        const rewind = rewindNow();
        const call = {
          sandbox: refOn(where),
          tool_use_id: use.id,
          name: use.name,
          input: use.input,
          ...(notice ? { notice } : {}),
          ...(rewind ? { rewind } : {}),
          ...(snapshot ? { snapshot: true as const } : {}),
        };
        const result = await interruptible(() => onHost(where.task_queue).execute.executeWithOptions({ summary }, [call]));
        if (result.provisioned) state.sandboxes = [{ ...result.provisioned, host: where.host_id, task_queue: where.task_queue }];
        if (result.wiped) state.rewound_run = info.runId;
        // A snapshot taken after this call covers it and every call before it.
        touched = !result.snapshot;
        if (result.snapshot?.changed) state.snapshot = { snapshot_id: result.snapshot.snapshot_id, at: new Date().toISOString() };
        return;
      } catch (err) {
        const failure = stepFailure(err);
        if (!failure) return;
        if (hostLost(failure)) {
          if (moves < MAX_MOVES && ownsSandbox) {
            notice = moveOff() ?? notice;
            continue;
          }
          return toolError(use, `The sandbox's hands host stopped answering (${failure.cause?.message ?? failure.message}), ${moves + 1} time(s).`);
        }
        // Any other failure is the call's result in the log (the decoder shows it as a tool error).
        const cause = failure.cause;
        if (cause instanceof ApplicationFailure && cause.type === Failure.SandboxLost) state.sandboxes = [];
        return;
      }
    }
  }

  /**
   * Snapshots the workspace after a tool turn that ran a built-in tool (sessions on hands hosts that own their
   * sandbox), so the files outlive the host. A host that does not answer costs the snapshot, not the turn.
   */
  async function snapshotTurn(): Promise<void> {
    const where = placed();
    if (!onHosts || !touched || !ownsSandbox || !where || state.sandboxes.length === 0) return;
    touched = false;
    try {
      const r = await onHostHousekeeping(where.task_queue).snapshotSandbox(refOn(where));
      if (r.changed) state.snapshot = { snapshot_id: r.snapshot_id, at: new Date().toISOString() };
    } catch (err) {
      if (sessionCancelled(err)) throw err;
      if (!(err instanceof ActivityFailure)) throw err;
    }
  }

  /**
   * A replay's tool call answered from the recorded session (hermetic mode, while every call has matched): true when
   * it was. The first call that does not match switches the replay to live calls, in a sandbox restored from the
   * recorded session's snapshot before that call.
   */
  async function fromRecording(use: ToolUse, kind: 'tool' | 'mcp' | 'custom'): Promise<boolean> {
    const r = state.replay;
    if (!r) return false;
    const index = r.tool_index++;
    if (r.mode !== 'hermetic' || r.diverged_at !== null) return false;
    const recorded = await interruptible(() =>
      housekeeping.recordedCall({
        session_id: r.session_id,
        index,
        tool_use_id: use.id,
        name: use.name,
        input: use.input,
        kind,
        ...(input.fork ? { after_seq: input.fork.seq, start_snapshot: input.fork.snapshot_id ?? null } : {}),
      }),
    ).catch((err: unknown) => {
      if (stepFailure(err)) return undefined;
      throw err;
    });
    if (recorded?.match) return true;
    r.diverged_at = index;
    if (ownsSandbox && state.sandboxes.length === 0)
      state.snapshot = recorded && !recorded.match && recorded.snapshot_id ? { snapshot_id: recorded.snapshot_id, at: 'replay' } : null;
    return false;
  }

  /**
   * The call of a turn after which its snapshot is taken, in that call's `execute`: the last built-in call that runs
   * at once, when nothing of the turn runs after the calls (a delegation, or a call that waits for the user).
   */
  function snapshotCall(uses: ToolUse[]): ToolUse | undefined {
    if (!snapshotWithCall || state.replay) return undefined;
    let last: ToolUse | undefined;
    for (const use of uses) {
      if (typeof use.input.tandem_error === 'string') continue;
      const mcp = mcpRoute(input.agent, info.workflowId, use);
      const tool = tools.get(use.name);
      if (mcp) {
        if (mcp.ask) return undefined;
      } else if (tool?.kind === 'builtin' && !tool.ask) last = use;
      else if (tool) return undefined;
    }
    return last;
  }

  /** Routes a model turn's tool calls: run, ask, or hand to the client. Returns when all have results. */
  async function runTools(uses: ToolUse[]): Promise<void> {
    const snapshotAfter = snapshotCall(uses);
    const waiting: PendingAction[] = [];
    const delegations: ToolUse[] = [];
    for (const use of uses) {
      const tool = tools.get(use.name);
      const mcp = mcpRoute(input.agent, info.workflowId, use);
      const refused = use.input.tandem_error; // set by callModel when the input was too large to keep
      if (typeof refused === 'string') {
        record(toolErrorEvent(use, refused));
      } else if (state.replay && tool?.kind !== 'delegate' && (mcp || tool)) {
        // A replay: recorded results while the calls match, then live; nobody is there to confirm or answer.
        if (await fromRecording(use, mcp ? 'mcp' : tool!.kind === 'custom' ? 'custom' : 'tool')) continue;
        if (tool?.kind === 'custom' || tool?.ask || mcp?.ask)
          record(toolErrorEvent({ id: use.id, mcp: use.mcp }, `${use.name} needs the user (an answer or a confirmation), and a replay has none.`));
        else await runTool(use);
        if (interrupted) return;
      } else if (mcp && !mcp.ask) {
        await runTool(use);
        if (interrupted) return;
      } else if (mcp) {
        waiting.push({ tool_use_id: use.id, name: use.name, kind: 'confirmation', input: use.input, mcp: use.mcp });
      } else if (!tool) {
        record({
          type: 'agent.tool_result',
          tool_use_id: use.id,
          is_error: true,
          content: [{ type: 'text', text: `Unknown tool "${use.name}". Available: ${[...tools.keys()].join(', ')}` }],
        });
      } else if (tool.kind === 'custom') {
        waiting.push({ tool_use_id: use.id, name: use.name, kind: 'custom_tool', input: use.input });
      } else if (tool.kind === 'delegate') {
        delegations.push(use);
      } else if (tool.ask) {
        waiting.push({ tool_use_id: use.id, name: use.name, kind: 'confirmation', input: use.input });
      } else {
        await runTool(use, use === snapshotAfter);
        if (interrupted) return;
      }
    }
    await runDelegations(delegations);
    if (interrupted || waiting.length === 0) return;
    state.pending = waiting;
    setStatus('idle', { type: 'requires_action', event_ids: waiting.map((w) => w.tool_use_id) });
    await tellParent(waiting);
    await condition(() => interrupted || waiting.every((w) => answers.has(w.tool_use_id)));
    state.pending = [];
    await tellParent([]);
    if (interrupted) return;
    setStatus('running');
    for (const w of waiting) {
      const a = answers.get(w.tool_use_id);
      answers.delete(w.tool_use_id);
      if (!a || !('result' in a)) continue; // custom tool results are in the log as the signal itself
      if (a.result === 'allow') {
        await runTool({ type: 'tool_use', id: w.tool_use_id, name: w.name, input: w.input, ...(w.mcp ? { mcp: w.mcp } : {}) });
        if (interrupted) return;
      } else {
        record(toolErrorEvent({ id: w.tool_use_id, mcp: w.mcp }, a.deny_message || 'The user denied this tool call.'));
      }
    }
  }

  /** A delegated session tells its parent what of it waits for the user, so the parent shows and forwards it. */
  async function tellParent(pending: PendingAction[]): Promise<void> {
    const parent = input.delegation?.parent_session_id;
    if (!parent) return;
    await getExternalWorkflowHandle(parent)
      .signal(childPendingSignal, { session_id: info.workflowId, pending })
      .catch(() => undefined); // a parent that has ended has nobody to show it to
  }

  /** A tool error the model sees, recorded in the log. */
  function toolError(use: ToolUse, text: string): void {
    record({ type: 'agent.tool_result', tool_use_id: use.id, name: use.name, is_error: true, content: [{ type: 'text', text }] });
  }

  /**
   * Runs a turn's delegations as child sessions: those with a fresh sandbox all at once, those sharing this
   * session's sandbox one after another (unless the agent allows concurrent use). The parent's own tool calls of
   * the turn have finished by then, so two sessions never run tools in one sandbox at the same time.
   */
  async function runDelegations(uses: ToolUse[]): Promise<void> {
    if (uses.length === 0) return;
    // A turn may ask for a bounded number of delegations, and they run a bounded number at a time: a coordinator
    // talked into asking for hundreds of sandboxes gets tool errors, not hundreds of containers (nor N² below it).
    const bounded = patched(BOUNDED_DELEGATIONS);
    const maxPerTurn = input.agent.multiagent?.max_delegations_per_turn ?? DEFAULT_MAX_DELEGATIONS;
    if (bounded && uses.length > maxPerTurn) {
      for (const u of uses.slice(maxPerTurn))
        toolError(u, `Delegation refused: one turn may delegate at most ${maxPerTurn} tasks. Wait for these results, then delegate the rest.`);
      uses = uses.slice(0, maxPerTurn);
    }
    const shared = uses.filter((u) => u.input.sandbox === 'share');
    const fresh = uses.filter((u) => !shared.includes(u));
    if (shared.length > 0) {
      try {
        await ensureSandbox();
      } catch (err) {
        const failure = stepFailure(err);
        if (!failure) return;
        for (const u of shared) toolError(u, provisionFailed(failure));
        shared.length = 0; // the fresh delegations still run
      }
    }
    const together = input.agent.multiagent?.concurrent_sandbox === true;
    const maxConcurrent = bounded ? (input.agent.multiagent?.max_concurrent ?? DEFAULT_MAX_CONCURRENT) : Infinity;
    await interruptible(async () => {
      const inTurn = async () => {
        for (const u of shared) await delegate(u);
      };
      const parallel = together ? [...fresh, ...shared] : fresh;
      const lanes = Array.from({ length: Math.min(maxConcurrent, parallel.length) }, async () => {
        for (let u = parallel.shift(); u; u = parallel.shift()) await delegate(u);
      });
      await Promise.all([...lanes, ...(together ? [] : [inTurn()])]);
    }).catch((err: unknown) => {
      if (!(interrupted && isCancellation(err))) throw err;
    });
  }

  /** One delegation: a child session whose final answer the log decoder turns into this call's tool result. */
  async function delegate(use: ToolUse): Promise<void> {
    const { agent: name, task, sandbox } = use.input;
    const sub = typeof name === 'string' ? subAgents.get(name) : undefined;
    if (!sub) return toolError(use, `Unknown sub-agent ${JSON.stringify(name)}. Available: ${[...subAgents.keys()].join(', ')}`);
    if (typeof task !== 'string' || task.trim() === '') return toolError(use, '"task" must be a non-empty string.');
    if (sandbox !== undefined && sandbox !== 'share' && sandbox !== 'fresh')
      return toolError(use, '"sandbox" must be "share" or "fresh".');
    if (depth >= maxDepth) {
      return toolError(
        use,
        `Delegation refused: sessions may nest at most ${maxDepth} deep and this one is at depth ${depth}. Do the task yourself.`,
      );
    }
    const childId = `${info.workflowId}.${use.id}`;
    const childInput: SessionInput = {
      agent: sub,
      title: `${sub.name}: ${task.slice(0, 80)}`,
      initial_events: [{ content: [{ type: 'text', text: task }] }],
      delegation: {
        parent_session_id: info.workflowId,
        tool_use_id: use.id,
        depth: depth + 1,
        max_depth: maxDepth,
        ...(sandbox === 'share' ? { sandbox: placed() ? refOn(placed()!) : sandboxRef } : {}),
      },
    };
    children.add(childId);
    state.children = [...children];
    try {
      await executeChild(agentSession, {
        workflowId: childId,
        args: [childInput],
        cancellationType: ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED,
        parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
      });
    } catch (err) {
      // The log decoder reports a child that failed, or could not start, as this call's tool error.
      if (!(err instanceof ChildWorkflowFailure || isCancellation(err) || (err as Error).name === 'WorkflowExecutionAlreadyStartedError'))
        throw err;
    } finally {
      children.delete(childId);
      state.children = [...children];
      if (childPending.delete(childId)) state.pending = [...childPending.values()].flat();
    }
  }

  function addUsage(result: CallModelResult): void {
    for (const k of Object.keys(state.usage) as Array<keyof typeof state.usage>) state.usage[k] += result.usage[k];
  }

  /**
   * Continues as new when the server suggests it, at a safe point: no activity in flight, no pending tool call,
   * every handler done. The log stays in the earlier runs; the next run carries only the decision state.
   */
  async function continueAsNewIfSuggested(inTurn: CarriedState['in_turn']): Promise<void> {
    if (!workflowInfo().continueAsNewSuggested) return;
    await condition(allHandlersFinished);
    const { initial_events: _firstMessages, carry: _previous, ...rest } = input;
    const next: CarriedState = {
      state,
      seen_ids: [...seenIds].slice(-1000),
      new_input: newInput,
      wake_requested: wakeRequested,
      in_turn: inTurn,
      ...(lastText !== null ? { last_text: lastText } : {}),
    };
    await continueAsNew<typeof agentSession>({ ...rest, carry: next });
  }

  /** One user turn: model calls and tool calls until the model ends its turn, then the stop reason. */
  async function runTurn(firstCall = 0): Promise<StopReason> {
    setStatus('running');
    for (let calls = firstCall; ; calls++) {
      if (interrupted) return { type: 'end_turn' };
      const overBudget = limits.max_output_tokens !== undefined && state.usage.output_tokens >= limits.max_output_tokens;
      if (calls >= maxTurns || overBudget) return { type: 'budget_reached' };
      if (calls > firstCall) await continueAsNewIfSuggested({ calls });
      newInput = false;
      let result: CallModelResult;
      try {
        const cursor = workflowInfo().historyLength;
        details.step(`model call ${state.turn + 1}`);
        result = await interruptible(() =>
          model.callModel({ session_id: info.workflowId, run_id: info.runId, cursor }),
        );
      } catch (err) {
        const failure = stepFailure(err);
        if (!failure) return { type: 'end_turn' };
        const cause = failure.cause;
        const type = cause instanceof ApplicationFailure && cause.type ? cause.type : 'Model.Unknown';
        reportError({
          type,
          message: cause?.message ?? failure.message,
          retryable: !(cause instanceof ApplicationFailure && cause.nonRetryable),
        });
        return { type: 'retries_exhausted' };
      }
      state.turn++;
      state.last_error = null;
      addUsage(result);
      const text = result.content.map((b) => (b.type === 'text' ? b.text : '')).join('');
      lastText = text.trim() !== '' ? text : null; // a delegated session answers with its last reply's text
      const uses = result.content.filter((b): b is ToolUse => b.type === 'tool_use');
      if (uses.length === 0 || result.stop_reason !== 'tool_use') {
        if (newInput && !interrupted) continue; // steering arrived while the model answered
        return { type: 'end_turn' };
      }
      replyUses = new Set(uses.map((u) => u.id));
      await runTools(uses);
      replyUses = new Set();
      await snapshotTurn();
    }
  }

  /**
   * Grades the work against the active outcome (a `gradeOutcome` activity with its own context) and records the
   * verdict. Returns true when the agent should revise: the feedback is in the log, where its next call reads it.
   */
  async function evaluateOutcome(): Promise<boolean> {
    const outcome = state.outcome!;
    const { outcome_id, iteration } = outcome;
    outcome.result = 'evaluating';
    record({ type: 'span.outcome_evaluation_start', outcome_id, iteration });
    let verdict: OutcomeVerdict;
    let explanation: string;
    let usage: Usage | undefined;
    try {
      const graded = await interruptible(() =>
        model.gradeOutcome({
          session_id: info.workflowId,
          run_id: info.runId,
          cursor: workflowInfo().historyLength,
          outcome,
          ...(state.sandboxes.length > 0 ? { sandbox: placed() ? refOn(placed()!) : sandboxRef } : {}),
        }),
      );
      ({ result: verdict, explanation, usage } = graded);
      for (const k of Object.keys(state.usage) as Array<keyof Usage>) state.usage[k] += graded.usage[k];
    } catch (err) {
      if (sessionCancelled(err)) throw err;
      if (interrupted && isCancellation(err)) {
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
    record({ type: 'span.outcome_evaluation_end', outcome_id, iteration, result: verdict, explanation, ...(usage ? { usage } : {}) });
    if (verdict !== 'needs_revision') return false;
    outcome.iteration++;
    outcome.result = 'running';
    return true;
  }

  /** A turn, then, while an outcome is active, evaluations and revision turns until a terminal verdict. */
  async function runTurnToOutcome(firstCall = 0): Promise<StopReason> {
    let stop = await runTurn(firstCall);
    while (stop.type === 'end_turn' && !interrupted && state.outcome?.result === 'running') {
      if (!(await evaluateOutcome())) break;
      stop = await runTurn();
    }
    return stop;
  }

  if (!carry) {
    upsertSearchAttributes([
      { key: agentKey, value: input.agent.name },
      { key: statusKey, value: 'idle' },
    ]);
  }

  /** A delegated session ends with its turn (unless it waits for `wake` after an error) and answers its parent. */
  const delegationDone = (stop: StopReason) => input.delegation !== undefined && stop.type !== 'retries_exhausted';
  async function finishDelegation(stop: DelegationResult['stop_reason']): Promise<DelegationResult> {
    await CancellationScope.nonCancellable(async () => {
      setStatus('terminated');
      if (ownsSandbox && state.sandboxes.length > 0) await removeSandbox();
    });
    return { final_message: lastText, stop_reason: stop, turns: state.turn, usage: state.usage };
  }

  /** The recorded user turns a replay sends again (read from the recorded session, in each run). */
  let replayTurns: TextBlock[][] = [];
  try {
    if (input.replay) {
      state.replay ??= { session_id: input.replay.session_id, mode: input.replay.mode, turns: null, next_turn: 0, tool_index: 0, diverged_at: null };
      replayTurns = (
        await housekeeping.replayPlan({ session_id: input.replay.session_id, ...(input.fork ? { after_seq: input.fork.seq } : {}) })
      ).turns;
      state.replay.turns = replayTurns.length;
    }
    if (carry?.in_turn) {
      const stop = await runTurnToOutcome(carry.in_turn.calls);
      setStatus('idle', stop);
      if (delegationDone(stop)) return await finishDelegation(interrupted ? { type: 'interrupted' } : stop);
    }
    for (;;) {
      const sandboxRunning = () => state.sandboxes.some((s) => s.state === 'running');
      const hasWork = () => newInput || (wakeRequested && state.stop_reason?.type === 'retries_exhausted');
      await continueAsNewIfSuggested(null);
      // A replay sends the next recorded user turn once the last one ended (not when it stopped on an error).
      const r = state.replay;
      if (r && !hasWork() && r.next_turn < replayTurns.length && (state.stop_reason === null || state.stop_reason.type === 'end_turn')) {
        record({ type: 'user.message', content: replayTurns[r.next_turn]!, replayed: true });
        r.next_turn++;
        newInput = true;
      }
      if (!hasWork()) {
        setStatus('idle', state.stop_reason ?? { type: 'end_turn' });
        const stopsIdle = sandboxRunning() && ownsSandbox;
        const woke = stopsIdle ? await condition(hasWork, idleTimeoutMs) : (await condition(hasWork), true);
        if (!woke) {
          await stopSandbox();
          state.sandboxes = state.sandboxes.map((s) => ({ ...s, state: 'stopped' as const }));
          await condition(hasWork);
        }
      }
      wakeRequested = false;
      interrupted = false;
      const stop = await runTurnToOutcome();
      setStatus('idle', stop);
      if (delegationDone(stop)) return await finishDelegation(interrupted ? { type: 'interrupted' } : stop);
    }
  } catch (err) {
    if (!isCancellation(err)) throw err;
    // Cancelling the workflow ends the session: remove its hands (not borrowed ones), keep the log.
    state.pending = [];
    if (input.delegation) return await finishDelegation({ type: 'interrupted' });
    await CancellationScope.nonCancellable(async () => {
      setStatus('terminated');
      if (state.sandboxes.length > 0) await removeSandbox();
    });
  }
}
