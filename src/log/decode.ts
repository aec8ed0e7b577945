/**
 * Decodes a session workflow's Temporal history into session events. The history is the log: signals are user
 * events, `callModel`/`provision`/`execute`/`callMcpTool` results are agent, span and sandbox events, and memo changes carry the
 * session-level events the workflow records. Used by `callModel` (to build the context) and by clients (getEvents).
 */
import proto from '@temporalio/proto';
import { checkSignal, type EventPayloads, type FailureInfo, type RecordedEvent, type SessionEvent, type SessionEventType } from './events.js';
import { ActivityNames, MEMO_EVENT, Signals } from '../shared/names.js';
import { DELEGATE_TOOL, resolveTools } from '../shared/tools.js';
import type {
  CallMcpToolInput,
  CallMcpToolResult,
  CallModelResult,
  DelegationResult,
  ExecuteInput,
  ExecuteResult,
  PendingAction,
  ProvisionResult,
  SessionInput,
  RecordedCallInput,
  RecordedCallResult,
  SnapshotResult,
  TextBlock,
  UserMessage,
} from '../shared/types.js';

type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;
type Payload = proto.temporal.api.common.v1.IPayload;
type FailureProto = proto.temporal.api.failure.v1.IFailure;

/** Turns a payload into its JSON value (the data converter's job; injected so a codec can sit in front). */
export type PayloadDecoder = (payload: Payload) => unknown;

const T = proto.temporal.api.enums.v1.EventType;
const EventType = {
  WorkflowExecutionStarted: T.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
  ActivityTaskScheduled: T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
  ActivityTaskStarted: T.EVENT_TYPE_ACTIVITY_TASK_STARTED,
  ActivityTaskCompleted: T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
  ActivityTaskFailed: T.EVENT_TYPE_ACTIVITY_TASK_FAILED,
  ActivityTaskTimedOut: T.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT,
  ActivityTaskCanceled: T.EVENT_TYPE_ACTIVITY_TASK_CANCELED,
  WorkflowExecutionSignaled: T.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
  WorkflowPropertiesModified: T.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
  StartChildInitiated: T.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
  StartChildFailed: T.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED,
  ChildStarted: T.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED,
  ChildCompleted: T.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED,
  ChildFailed: T.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED,
  ChildCanceled: T.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED,
  ChildTimedOut: T.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT,
  ChildTerminated: T.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED,
} as const;

/** Emits one session event of `type` with its fields. */
type Emit = <K extends SessionEventType>(type: K, fields: EventPayloads[K]) => void;

const SIGNAL_EVENT: Record<string, SessionEventType> = {
  [Signals.message]: 'user.message',
  [Signals.interrupt]: 'user.interrupt',
  [Signals.toolConfirmation]: 'user.tool_confirmation',
  [Signals.customToolResult]: 'user.custom_tool_result',
  [Signals.defineOutcome]: 'user.define_outcome',
  [Signals.wake]: 'session.wake',
};

/** A delegation: the child session a `delegate` tool call started. */
interface ChildSession {
  session_id: string;
  tool_use_id: string;
  agent_name: string;
  /** The task the delegation sent. */
  task: TextBlock[];
}

interface Scheduled {
  type: string;
  input: unknown;
  seq: number;
  attempt: number;
  lastFailure: FailureProto | null;
}

function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v && typeof v === 'object' && 'toNumber' in v) return (v as { toNumber(): number }).toNumber();
  return Number(v ?? 0);
}

function timeOf(e: HistoryEvent): string {
  const t = e.eventTime;
  if (!t) return new Date(0).toISOString();
  return new Date(toNumber(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6)).toISOString();
}

function failureInfo(f: FailureProto | null | undefined): FailureInfo {
  let cur = f;
  let message = f?.message ?? 'unknown failure';
  while (cur) {
    const type = cur.applicationFailureInfo?.type;
    if (type) return { type, message: cur.message ?? message };
    if (cur.timeoutFailureInfo) return { type: 'Timeout', message: cur.message ?? 'timed out' };
    message = cur.message ?? message;
    cur = cur.cause;
  }
  return { type: 'Unknown', message };
}

/**
 * Stateful decoder: feed it history events in order (one run, or every run of a continue-as-new chain with
 * `offset` set to the number of events before that run) and collect the session events.
 */
export class LogDecoder {
  /** The session input, once the first event has been read. */
  input: SessionInput | undefined;
  private readonly scheduled = new Map<number, Scheduled>();
  private readonly childSessions = new Map<number, ChildSession>();
  /** Child sessions started and not yet ended, by session ID, with the ids of their calls shown as waiting. */
  private readonly openChildren = new Map<string, { child: ChildSession; waiting: Set<string> }>();
  private readonly seenIds = new Set<string>();
  private customTools = new Set<string>();
  private evaluationStart: string | undefined;

  constructor(private readonly decodePayload: PayloadDecoder) {}

  private payload(p: { payloads?: Payload[] | null } | null | undefined): unknown {
    const first = p?.payloads?.[0];
    return first ? this.decodePayload(first) : undefined;
  }

  /** Decodes one history event into zero or more session events. `offset` shifts positions for later runs. */
  decode(e: HistoryEvent, offset = 0): SessionEvent[] {
    const seq = toNumber(e.eventId) + offset;
    const processed_at = timeOf(e);
    const out: SessionEvent[] = [];
    const emit: Emit = (type, fields) => {
      out.push({ id: `${seq}.${out.length}`, seq, type, processed_at, ...fields } as SessionEvent);
    };
    switch (e.eventType) {
      case EventType.WorkflowExecutionStarted: {
        this.input = this.payload(e.workflowExecutionStartedEventAttributes?.input) as SessionInput;
        const tools = resolveTools(this.input.agent);
        this.customTools = new Set([...tools.values()].filter((t) => t.kind === 'custom').map((t) => t.name));
        if (this.input.carry) {
          // A continued run: its first events are in the runs before it. It knows the signal ids its carry names,
          // and only those, so a later duplicate is dropped (or taken again) here exactly as the workflow does.
          this.seenIds.clear();
          for (const id of this.input.carry.seen_ids ?? []) this.seenIds.add(id);
          break;
        }
        if (this.input.fork) {
          // A fork: the events before this one are its origin's, up to the fork point. Its own signal ids start afresh.
          this.seenIds.clear();
          const f = this.input.fork;
          emit('session.forked', { origin_session_id: f.session_id, origin_event_id: f.event_id, snapshot_id: f.snapshot_id ?? null });
          break;
        }
        for (const m of this.input.initial_events ?? []) {
          const check = checkSignal(Signals.message, m);
          if (check.ok) emit('user.message', { content: (check.value as UserMessage).content });
        }
        break;
      }
      case EventType.WorkflowExecutionSignaled: {
        const a = e.workflowExecutionSignaledEventAttributes;
        const name = a?.signalName ?? '';
        if (name === Signals.childPending) {
          this.childPending(this.payload(a?.input), emit);
          break;
        }
        const type = SIGNAL_EVENT[name];
        const check = checkSignal(name, this.payload(a?.input));
        if (!type || !check.ok) break; // the workflow records a session.error for it
        const { id, ...fields } = check.value as { id?: string };
        if (id !== undefined) {
          if (this.seenIds.has(id)) break;
          this.seenIds.add(id);
        }
        emit(type, id === undefined ? fields : { client_id: id, ...fields });
        break;
      }
      case EventType.ActivityTaskScheduled: {
        const a = e.activityTaskScheduledEventAttributes;
        const type = a?.activityType?.name ?? '';
        this.scheduled.set(seq, { type, input: this.payload(a?.input), seq, attempt: 1, lastFailure: null });
        if (type === ActivityNames.callModel) emit('span.model_request_start', {});
        break;
      }
      case EventType.ActivityTaskStarted: {
        const a = e.activityTaskStartedEventAttributes;
        const s = this.scheduled.get(toNumber(a?.scheduledEventId) + offset);
        if (s) {
          s.attempt = a?.attempt ?? 1;
          s.lastFailure = a?.lastFailure ?? null;
        }
        break;
      }
      case EventType.ActivityTaskCompleted: {
        const a = e.activityTaskCompletedEventAttributes;
        const s = this.scheduled.get(toNumber(a?.scheduledEventId) + offset);
        if (s) this.completed(s, this.payload(a?.result), emit);
        break;
      }
      case EventType.ActivityTaskFailed:
      case EventType.ActivityTaskTimedOut:
      case EventType.ActivityTaskCanceled: {
        const a =
          e.activityTaskFailedEventAttributes ??
          e.activityTaskTimedOutEventAttributes ??
          e.activityTaskCanceledEventAttributes;
        const s = this.scheduled.get(toNumber(a?.scheduledEventId) + offset);
        const failure =
          e.activityTaskFailedEventAttributes?.failure ?? e.activityTaskTimedOutEventAttributes?.failure ?? null;
        if (s) this.failed(s, e.eventType === EventType.ActivityTaskCanceled, failure, emit);
        break;
      }
      case EventType.StartChildInitiated: {
        const a = e.startChildWorkflowExecutionInitiatedEventAttributes;
        const child = this.payload(a?.input) as SessionInput | undefined;
        if (!child?.delegation) break;
        const c = {
          session_id: a?.workflowId ?? '',
          tool_use_id: child.delegation.tool_use_id,
          agent_name: child.agent.name,
          task: child.initial_events?.[0]?.content.filter((b): b is TextBlock => b.type === 'text') ?? [],
        };
        this.childSessions.set(seq, c);
        this.openChildren.set(c.session_id, { child: c, waiting: new Set() });
        break;
      }
      case EventType.ChildStarted: {
        const c = this.childSessions.get(toNumber(e.childWorkflowExecutionStartedEventAttributes?.initiatedEventId) + offset);
        if (!c) break;
        const thread = { session_thread_id: c.session_id, agent_name: c.agent_name };
        emit('session.thread_created', { ...thread, tool_use_id: c.tool_use_id });
        emit('session.thread_status_running', thread);
        emit('agent.thread_message_sent', { to_session_thread_id: c.session_id, to_agent_name: c.agent_name, content: c.task });
        break;
      }
      case EventType.ChildCompleted: {
        const a = e.childWorkflowExecutionCompletedEventAttributes;
        const c = this.childSessions.get(toNumber(a?.initiatedEventId) + offset);
        if (c) this.openChildren.delete(c.session_id);
        if (c) this.childAnswered(c, this.payload(a?.result) as DelegationResult | undefined, emit);
        break;
      }
      case EventType.StartChildFailed:
      case EventType.ChildFailed:
      case EventType.ChildCanceled:
      case EventType.ChildTimedOut:
      case EventType.ChildTerminated: {
        const a =
          e.startChildWorkflowExecutionFailedEventAttributes ??
          e.childWorkflowExecutionFailedEventAttributes ??
          e.childWorkflowExecutionCanceledEventAttributes ??
          e.childWorkflowExecutionTimedOutEventAttributes ??
          e.childWorkflowExecutionTerminatedEventAttributes;
        const c = this.childSessions.get(toNumber(a?.initiatedEventId) + offset);
        if (!c) break;
        this.openChildren.delete(c.session_id);
        const why =
          e.eventType === EventType.StartChildFailed
            ? 'could not start (a session with its id exists already)'
            : e.eventType === EventType.ChildFailed
              ? `failed: ${failureInfo(e.childWorkflowExecutionFailedEventAttributes?.failure).message}`
              : e.eventType === EventType.ChildCanceled
                ? 'was cancelled'
                : e.eventType === EventType.ChildTimedOut
                  ? 'timed out'
                  : 'was terminated';
        emit('agent.tool_result', {
          tool_use_id: c.tool_use_id,
          name: DELEGATE_TOOL,
          content: [{ type: 'text', text: `The sub-agent ${c.agent_name} (session ${c.session_id}) ${why}.` }],
          is_error: true,
          session_thread_id: c.session_id,
        });
        emit('session.thread_status_terminated', { session_thread_id: c.session_id, agent_name: c.agent_name });
        break;
      }
      case EventType.WorkflowPropertiesModified: {
        const field = e.workflowPropertiesModifiedEventAttributes?.upsertedMemo?.fields?.[MEMO_EVENT];
        if (!field) break;
        const { type, ...fields } = this.decodePayload(field) as RecordedEvent;
        // An evaluation's end names its start by position, which only the log knows.
        if (type === 'span.outcome_evaluation_start') this.evaluationStart = `${seq}.${out.length}`;
        if (type === 'span.outcome_evaluation_end') emit(type, { ...(fields as EventPayloads[typeof type]), outcome_evaluation_start_id: this.evaluationStart });
        else emit(type, fields);
        break;
      }
      default:
        break;
    }
    return out;
  }

  /**
   * A running child session's calls that wait for the user (`tandem.child_pending`, sent again whenever that list
   * changes): each call not shown yet is cross-posted here, as the Managed Agents API shows a sub-agent's blocking
   * events on the primary thread, with the child's ID as `session_thread_id`. The parent names these calls in its
   * `requires_action` stop reason and forwards their answers to the child. Cross-posts are not the parent's own
   * calls: its context leaves them out, and their results are in the child's log.
   */
  private childPending(payload: unknown, emit: Emit): void {
    const p = payload as { session_id?: unknown; pending?: unknown } | undefined;
    const open = typeof p?.session_id === 'string' ? this.openChildren.get(p.session_id) : undefined;
    if (!open || !Array.isArray(p!.pending)) return; // the workflow ignores signals of sessions that are not its children
    const waiting = new Set<string>();
    for (const a of p!.pending as PendingAction[]) {
      if (typeof a?.tool_use_id !== 'string' || typeof a.name !== 'string') continue;
      waiting.add(a.tool_use_id);
      if (open.waiting.has(a.tool_use_id)) continue;
      const common = { tool_use_id: a.tool_use_id, input: a.input ?? {}, session_thread_id: open.child.session_id };
      if (a.kind === 'custom_tool') emit('agent.custom_tool_use', { ...common, name: a.name });
      else if (a.mcp)
        emit('agent.mcp_tool_use', {
          ...common,
          mcp_server_name: a.mcp.server,
          name: a.mcp.tool,
          ...(a.name !== a.mcp.tool ? { called_as: a.name } : {}),
        });
      else emit('agent.tool_use', { ...common, name: a.name });
    }
    // The thread stops to wait for the user, or goes on once it has its answers (after the cross-posts, which keep
    // their places in the log).
    const thread = { session_thread_id: open.child.session_id, agent_name: open.child.agent_name };
    if (waiting.size > 0 && open.waiting.size === 0)
      emit('session.thread_status_idle', { ...thread, stop_reason: { type: 'requires_action', event_ids: [...waiting] } });
    else if (waiting.size === 0 && open.waiting.size > 0) emit('session.thread_status_running', thread);
    open.waiting = waiting;
  }

  private childAnswered(
    c: ChildSession,
    r: DelegationResult | undefined,
    emit: Emit,
  ): void {
    const stop = r?.stop_reason.type ?? 'unknown';
    const ok = stop === 'end_turn' && r?.final_message != null;
    const text = ok
      ? r!.final_message!
      : `The sub-agent ${c.agent_name} (session ${c.session_id}) ended (${stop}) ` +
        (r?.final_message ? `with this last answer:\n${r.final_message}` : 'without an answer.');
    emit('agent.tool_result', {
      tool_use_id: c.tool_use_id,
      name: DELEGATE_TOOL,
      content: [{ type: 'text', text }],
      is_error: !ok,
      session_thread_id: c.session_id,
      ...(r ? { usage: r.usage, turns: r.turns } : {}),
    });
    // After the call's result (which keeps its place in the log), the thread's side: its answer, its stop, its end.
    const thread = { session_thread_id: c.session_id, agent_name: c.agent_name };
    if (r?.final_message != null)
      emit('agent.thread_message_received', {
        from_session_thread_id: c.session_id,
        from_agent_name: c.agent_name,
        content: [{ type: 'text', text: r.final_message }],
      });
    if (r) emit('session.thread_status_idle', { ...thread, stop_reason: r.stop_reason });
    emit('session.thread_status_terminated', thread);
  }

  private lostBefore(s: Scheduled, emit: Emit): void {
    if (s.attempt > 1 && s.lastFailure) {
      const f = failureInfo(s.lastFailure);
      if (f.type === 'Sandbox.Lost') emit('sandbox.lost', { error: f, attempt: s.attempt - 1 });
    }
  }

  private completed(
    s: Scheduled,
    result: unknown,
    emit: Emit,
  ): void {
    const start = `${s.seq}.0`;
    if (s.type === ActivityNames.callModel) {
      const r = result as CallModelResult;
      if (r.compaction) emit('agent.thread_context_compacted', { model_request_id: start, ...r.compaction });
      for (const b of r.content) {
        if (b.type === 'text') emit('agent.message', { model_request_id: start, content: [{ type: 'text', text: b.text }] });
        else if (b.type === 'thinking' || b.type === 'redacted_thinking') emit('agent.thinking', { model_request_id: start, block: b });
        else if (b.mcp)
          emit('agent.mcp_tool_use', {
            model_request_id: start,
            tool_use_id: b.id,
            mcp_server_name: b.mcp.server,
            name: b.mcp.tool,
            input: b.input,
            ...(b.name !== b.mcp.tool ? { called_as: b.name } : {}),
          });
        else
          emit(this.customTools.has(b.name) ? 'agent.custom_tool_use' : 'agent.tool_use', {
            model_request_id: start,
            tool_use_id: b.id,
            name: b.name,
            input: b.input,
          });
      }
      emit('span.model_request_end', {
        model_request_start_id: start,
        is_error: false,
        model: r.model,
        stop_reason: r.stop_reason,
        model_usage: r.usage,
        ttft_ms: r.ttft_ms,
        duration_ms: r.duration_ms,
      });
    } else if (s.type === ActivityNames.provision) {
      const r = result as ProvisionResult;
      emit('sandbox.provisioned', { sandbox: r.sandbox, duration_ms: r.duration_ms, ...(r.warm ? { warm: true } : {}) });
      if (r.restored || r.wiped) emit('sandbox.restored', restoredFields(r.restored, r.sandbox.host, r.wiped === true));
    } else if (s.type === ActivityNames.recordedCall) {
      // A replay's call answered from the recorded session: the recorded result is this call's.
      const r = result as RecordedCallResult;
      const input = s.input as RecordedCallInput;
      if (!r.match) return;
      const content = [{ type: 'text' as const, text: r.content }];
      const recorded = { recorded: true, recorded_tool_use_id: r.recorded_tool_use_id };
      if (input.kind === 'mcp') emit('agent.mcp_tool_result', { mcp_tool_use_id: input.tool_use_id, name: input.name, content, is_error: r.is_error, ...recorded });
      else if (input.kind === 'custom') emit('user.custom_tool_result', { custom_tool_use_id: input.tool_use_id, content, is_error: r.is_error, ...recorded });
      else emit('agent.tool_result', { tool_use_id: input.tool_use_id, name: input.name, content, is_error: r.is_error, ...recorded });
    } else if (s.type === ActivityNames.snapshotSandbox) {
      const r = result as SnapshotResult;
      if (r.changed) emit('sandbox.snapshot', { ...r });
    } else if (s.type === ActivityNames.execute) {
      const r = result as ExecuteResult;
      const input = s.input as ExecuteInput;
      this.lostBefore(s, emit);
      if (r.provisioned) emit('sandbox.provisioned', { sandbox: r.provisioned, attempt: s.attempt });
      if (r.wiped) emit('sandbox.restored', restoredFields(r.restored, r.provisioned?.host ?? input.sandbox.placement?.host_id, true));
      for (const d of r.egress_denied ?? []) emit('sandbox.egress_denied', { ...d, tool_use_id: input.tool_use_id });
      emit('agent.tool_result', {
        tool_use_id: input.tool_use_id,
        name: input.name,
        content: [{ type: 'text', text: r.content }],
        is_error: r.is_error,
        ...(r.truncated ? { truncated: true, output_path: r.output_path } : {}),
        container_id: r.container_id,
        duration_ms: r.duration_ms,
      });
      if (r.snapshot?.changed) emit('sandbox.snapshot', { ...r.snapshot });
    } else if (s.type === ActivityNames.callMcpTool) {
      const r = result as CallMcpToolResult;
      const input = s.input as CallMcpToolInput;
      emit('agent.mcp_tool_result', {
        mcp_tool_use_id: input.tool_use_id,
        mcp_server_name: input.server.name,
        name: input.tool,
        content: [{ type: 'text', text: r.content }],
        is_error: r.is_error,
        ...(r.truncated ? { truncated: true } : {}),
        duration_ms: r.duration_ms,
      });
    }
  }

  private failed(
    s: Scheduled,
    canceled: boolean,
    failure: FailureProto | null,
    emit: Emit,
  ): void {
    const f = canceled ? { type: 'Canceled', message: 'interrupted by the user' } : failureInfo(failure);
    if (s.type === ActivityNames.callModel) {
      emit('span.model_request_end', { model_request_start_id: `${s.seq}.0`, is_error: true, error: f });
    } else if (s.type === ActivityNames.execute && f.type === 'Timeout' && (s.input as ExecuteInput).sandbox.placement) {
      // The sandbox's hands host stopped answering: the session places the sandbox again and runs the call there
      // (or records the call's error itself), so this is not the call's result.
      const host = (s.input as ExecuteInput).sandbox.placement!.host_id;
      emit('sandbox.lost', { error: { type: 'Sandbox.HostLost', message: `hands host ${host} stopped answering (${f.message})` }, host });
    } else if (s.type === ActivityNames.execute) {
      const input = s.input as ExecuteInput;
      const text = canceled
        ? 'The tool call was interrupted by the user.'
        : `The tool call failed after ${s.attempt} attempt(s): ${f.message} (${f.type})`;
      emit('agent.tool_result', {
        tool_use_id: input.tool_use_id,
        name: input.name,
        content: [{ type: 'text', text }],
        is_error: true,
        error: f,
      });
    } else if (s.type === ActivityNames.callMcpTool) {
      const input = s.input as CallMcpToolInput;
      const text = canceled
        ? 'The tool call was interrupted by the user.'
        : `The MCP tool call failed after ${s.attempt} attempt(s): ${f.message} (${f.type})`;
      emit('agent.mcp_tool_result', {
        mcp_tool_use_id: input.tool_use_id,
        mcp_server_name: input.server.name,
        name: input.tool,
        content: [{ type: 'text', text }],
        is_error: true,
        error: f,
      });
    }
  }
}

/**
 * The fields of `sandbox.restored`: the snapshot a workspace was restored from on `host` (after a host was lost, or
 * for a rewind), or, for a rewind to before the first snapshot, none (the workspace was emptied).
 */
function restoredFields(restored: ProvisionResult['restored'], host: string | undefined, rewind: boolean): EventPayloads['sandbox.restored'] {
  return { ...(restored ?? { snapshot_id: null, files: 0, bytes: 0, duration_ms: 0 }), host: host ?? null, ...(rewind ? { rewind } : {}) };
}

/** Decodes a whole history in one go. */
export function decodeHistory(events: HistoryEvent[], decodePayload: PayloadDecoder): SessionEvent[] {
  const d = new LogDecoder(decodePayload);
  return events.flatMap((e) => d.decode(e));
}
