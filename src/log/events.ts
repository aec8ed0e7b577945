/**
 * Session events: what `getEvents` yields, in the Managed Agents shape. Also the validation of user-event signal
 * payloads, shared by the workflow (which acts on them) and the log decoder (which shows them), so both agree on
 * what was accepted.
 */
import { Signals } from '../shared/names.js';
import type {
  EgressDenial,
  FileResource,
  ModelBlock,
  OutcomeVerdict,
  SandboxInfo,
  SessionErrorInfo,
  SnapshotResult,
  StopReason,
  TextBlock,
  Usage,
  UserCustomToolResult,
  UserDefineOutcome,
  DocumentBlock,
  ImageBlock,
  UserContentBlock,
  UserMessage,
  UserToolConfirmation,
  WakeSignal,
} from '../shared/types.js';

/** Every event type Tandem writes. */
export const EVENT_TYPES = [
  'user.message',
  'user.interrupt',
  'user.tool_confirmation',
  'user.custom_tool_result',
  'user.define_outcome',
  'agent.message',
  'agent.thinking',
  'agent.tool_use',
  'agent.tool_result',
  'agent.mcp_tool_use',
  'agent.mcp_tool_result',
  'agent.custom_tool_use',
  'agent.thread_context_compacted',
  'agent.thread_message_sent',
  'agent.thread_message_received',
  'session.status_running',
  'session.status_idle',
  'session.status_rescheduled',
  'session.status_terminated',
  'session.error',
  'session.thread_created',
  'session.thread_status_running',
  'session.thread_status_idle',
  'session.thread_status_terminated',
  'session.updated',
  'session.resource_added',
  'session.resource_removed',
  'session.forked',
  'span.model_request_start',
  'span.model_request_end',
  'span.outcome_evaluation_start',
  'span.outcome_evaluation_end',
  'sandbox.provisioned',
  'sandbox.lost',
  'sandbox.egress_denied',
  'sandbox.snapshot',
  'sandbox.restored',
  'session.wake',
] as const;

/** One session event type. */
export type SessionEventType = (typeof EVENT_TYPES)[number];

/** Why a step failed, as the log shows it: the failure's type (`Sandbox.Lost`, `Timeout`, …) and message. */
export interface FailureInfo {
  type: string;
  message: string;
}

/** A signal's own id, shown as `client_id` (the event's `id` is its position in the log). */
interface FromClient {
  client_id?: string;
}

/** Set on a replay's tool result that came from the recorded session. */
interface Recorded {
  recorded?: boolean;
  recorded_tool_use_id?: string;
}

/** A call a sub-agent made, cross-posted to its parent's log (`session_thread_id` names the child session). */
interface OnThread {
  session_thread_id?: string;
}

/** A block of a model reply (`model_request_id`: the `span.model_request_start` event of its call). */
interface FromModel {
  model_request_id?: string;
}

/**
 * The fields of each event type, beside `id`, `seq`, `type` and `processed_at`. Field names follow the official
 * SDK's beta session event types (`BetaManagedAgents…Event`) where they exist (`test/unit/events.test.ts` checks the
 * shared ones against them); Tandem's own types (`sandbox.*`, `session.forked`, `session.wake`) and fields
 * (durations, `recorded`, `error`) are documented in docs/contract.md.
 */
export interface EventPayloads {
  'user.message': FromClient & { content: UserContentBlock[]; replayed?: boolean };
  'user.interrupt': FromClient;
  'user.tool_confirmation': FromClient & UserToolConfirmation;
  'user.custom_tool_result': FromClient & Recorded & UserCustomToolResult;
  'user.define_outcome': FromClient & Omit<UserDefineOutcome, 'id'>;
  'agent.message': FromModel & { content: TextBlock[] };
  'agent.thinking': FromModel & { block: ModelBlock };
  'agent.tool_use': FromModel & OnThread & { tool_use_id: string; name: string; input: Record<string, unknown> };
  'agent.tool_result': OnThread &
    Recorded & {
      tool_use_id: string;
      name?: string;
      content: TextBlock[];
      is_error: boolean;
      truncated?: boolean;
      output_path?: string;
      container_id?: string;
      duration_ms?: number;
      error?: FailureInfo;
      /** A delegation's result: the child session's usage and turns. */
      usage?: Usage;
      turns?: number;
    };
  'agent.mcp_tool_use': FromModel &
    OnThread & { tool_use_id: string; mcp_server_name: string; name: string; input: Record<string, unknown>; called_as?: string };
  'agent.mcp_tool_result': Recorded & {
    mcp_tool_use_id: string;
    mcp_server_name?: string;
    name?: string;
    content: TextBlock[];
    is_error: boolean;
    truncated?: boolean;
    duration_ms?: number;
    error?: FailureInfo;
  };
  'agent.custom_tool_use': FromModel & OnThread & { tool_use_id: string; name: string; input: Record<string, unknown> };
  'agent.thread_context_compacted': FromModel & { summary: string; first_kept_id: string; tokens_before: number; tokens_after: number };
  'session.status_running': object;
  'session.status_idle': { stop_reason: StopReason | null };
  'session.status_rescheduled': object;
  'session.status_terminated': object;
  'session.error': { error: SessionErrorInfo };
  'session.thread_created': { session_thread_id: string; agent_name: string; tool_use_id: string };
  /** A file was mounted in the session (`sessions.resources.add`, `tandem files put --session`). */
  'session.resource_added': { resource: FileResource };
  /** A file was unmounted from the session. */
  'session.resource_removed': { resource_id: string };
  /** A sub-agent's session (a thread) started working on its task. */
  'session.thread_status_running': { session_thread_id: string; agent_name: string };
  /** A sub-agent's session ended its turn, with the reason (`interrupted` when its parent cancelled it). */
  'session.thread_status_idle': { session_thread_id: string; agent_name: string; stop_reason: StopReason | { type: 'interrupted' } };
  /** A sub-agent's session ended (a delegated session ends with its turn, or failed, or was cancelled). */
  'session.thread_status_terminated': { session_thread_id: string; agent_name: string };
  /** The task a delegation sent to a sub-agent's thread. */
  'agent.thread_message_sent': { to_session_thread_id: string; to_agent_name: string; content: TextBlock[] };
  /** The final answer a sub-agent's thread sent back. */
  'agent.thread_message_received': { from_session_thread_id: string; from_agent_name: string; content: TextBlock[] };
  /** The changed attributes: `title`, `metadata`, `archived_at`. */
  'session.updated': { [field: string]: unknown };
  'session.forked': { origin_session_id: string; origin_event_id: string; snapshot_id: string | null };
  'span.model_request_start': object;
  'span.model_request_end': {
    model_request_start_id: string;
    is_error: boolean;
    model?: string;
    stop_reason?: string | null;
    model_usage?: Usage;
    ttft_ms?: number | null;
    duration_ms?: number;
    error?: FailureInfo;
  };
  'span.outcome_evaluation_start': { outcome_id: string; iteration: number };
  'span.outcome_evaluation_end': {
    outcome_id: string;
    iteration: number;
    result: OutcomeVerdict;
    explanation: string;
    usage?: Usage;
    outcome_evaluation_start_id?: string;
  };
  'sandbox.provisioned': { sandbox: SandboxInfo; duration_ms?: number; warm?: boolean; attempt?: number };
  'sandbox.lost': { error: FailureInfo; attempt?: number; host?: string };
  'sandbox.egress_denied': EgressDenial & { tool_use_id: string };
  'sandbox.snapshot': SnapshotResult;
  'sandbox.restored': { snapshot_id: string | null; files: number; bytes: number; duration_ms: number; host: string | null; rewind?: boolean };
  'session.wake': FromClient;
}

/** An event of the given type (of one of them, for a union of types). */
export type SessionEventOf<K extends SessionEventType> = K extends SessionEventType
  ? { id: string; seq: number; type: K; processed_at: string } & EventPayloads[K]
  : never;

/**
 * A session event: a union discriminated by `type`, so checking `type` gives the fields of that event. `id` is
 * positional (`"<history position>.<index>"`) and sorts in log order; `seq` is the history position alone. Other
 * fields read as `unknown`: a log written by an older version may carry fields this one no longer writes.
 */
export type SessionEvent = { [K in SessionEventType]: SessionEventOf<K> & { [field: string]: unknown } }[SessionEventType];

/** The session-level events the workflow records in history itself (as memo changes), by type. */
export type RecordedEvent = { [K in SessionEventType]: { type: K } & EventPayloads[K] }[SessionEventType];

/** Whether `e` is of one of `types` (narrows it to them). */
export function isEvent<K extends SessionEventType>(e: SessionEvent, ...types: K[]): e is Extract<SessionEvent, { type: K }> {
  return (types as SessionEventType[]).includes(e.type);
}

/** The events of a log that are of the given types, typed as such. */
export function eventsOf<K extends SessionEventType>(events: readonly SessionEvent[], ...types: K[]): Array<Extract<SessionEvent, { type: K }>> {
  return events.filter((e): e is Extract<SessionEvent, { type: K }> => isEvent(e, ...types));
}

/** Signals whose payload failed validation are reported with this reason. */
export type SignalCheck<T> = { ok: true; value: T } | { ok: false; error: string };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optionalId(v: Record<string, unknown>): string | undefined | null {
  if (v.id === undefined || v.id === null) return undefined;
  return typeof v.id === 'string' && v.id.length > 0 && v.id.length <= 200 ? v.id : null;
}

/** Image types the Messages API takes. */
export const IMAGE_TYPES = ['image/jpeg', 'image/png', 'image/gif', 'image/webp'];

/**
 * The blocks of a user message, normalised, or the problem of the first bad one (naming it `content[i]...`): text,
 * images (base64 of an image type, a URL, or a file id) and documents (base64 PDF, plain text, a URL, or a file id).
 */
export function contentBlocks(v: unknown): { blocks: UserContentBlock[] } | { problem: string } {
  if (typeof v === 'string') return { blocks: [{ type: 'text', text: v }] };
  if (!Array.isArray(v) || v.length === 0) return { problem: 'content: must be a non-empty list of content blocks' };
  const blocks: UserContentBlock[] = [];
  for (const [i, b] of v.entries()) {
    const at = `content[${i}]`;
    if (!isObject(b)) return { problem: `${at}: must be a content block` };
    if (b.type === 'text') {
      if (typeof b.text !== 'string') return { problem: `${at}.text: must be a string` };
      blocks.push({ type: 'text', text: b.text });
      continue;
    }
    if (b.type !== 'image' && b.type !== 'document') return { problem: `${at}.type: must be text, image or document` };
    const s = b.source;
    if (!isObject(s)) return { problem: `${at}.source: must be {type: base64 | url | file, ...}` };
    let source: DocumentBlock['source'];
    if (s.type === 'base64') {
      const types = b.type === 'image' ? IMAGE_TYPES : ['application/pdf'];
      if (typeof s.media_type !== 'string' || !types.includes(s.media_type))
        return { problem: `${at}.source.media_type: must be one of ${types.join(', ')}` };
      if (typeof s.data !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s.data) || s.data.length === 0)
        return { problem: `${at}.source.data: must be base64` };
      source = { type: 'base64', media_type: s.media_type, data: s.data };
    } else if (s.type === 'text' && b.type === 'document') {
      if (typeof s.data !== 'string') return { problem: `${at}.source.data: must be a string` };
      source = { type: 'text', media_type: 'text/plain', data: s.data };
    } else if (s.type === 'url') {
      if (typeof s.url !== 'string' || !/^https:\/\/[^\s]+$/.test(s.url)) return { problem: `${at}.source.url: must be an https URL` };
      source = { type: 'url', url: s.url };
    } else if (s.type === 'file') {
      if (typeof s.file_id !== 'string' || !/^file_[0-9a-f]{24}$/.test(s.file_id)) return { problem: `${at}.source.file_id: must be a file id` };
      source = { type: 'file', file_id: s.file_id };
    } else {
      return { problem: `${at}.source.type: must be base64, ${b.type === 'document' ? 'text, ' : ''}url or file` };
    }
    if (b.type === 'image') blocks.push({ type: 'image', source: source as ImageBlock['source'] });
    else {
      const doc: DocumentBlock = { type: 'document', source };
      if (typeof b.title === 'string') doc.title = b.title;
      if (typeof b.context === 'string') doc.context = b.context;
      blocks.push(doc);
    }
  }
  return { blocks };
}

/**
 * Checks a signal payload against the shape DESIGN.md section 2 gives it and returns it normalised (plain JSON,
 * unknown fields dropped). A wrong shape is reported, never thrown: a bad signal must not stall the session.
 */
export function checkSignal(
  name: string,
  payload: unknown,
): SignalCheck<UserMessage | UserToolConfirmation | UserCustomToolResult | UserDefineOutcome | WakeSignal | { id?: string }> {
  const p = payload === undefined || payload === null ? {} : payload;
  if (!isObject(p)) return { ok: false, error: `${name}: payload must be a JSON object` };
  const id = optionalId(p);
  if (id === null) return { ok: false, error: `${name}: "id" must be a non-empty string of at most 200 characters` };
  const withId = <T extends object>(v: T): T & { id?: string } => (id === undefined ? v : { id, ...v });
  switch (name) {
    case Signals.message: {
      const content = contentBlocks(p.content);
      if ('problem' in content) return { ok: false, error: `${name}: ${content.problem}` };
      return { ok: true, value: withId({ content: content.blocks }) };
    }
    case Signals.interrupt:
      return { ok: true, value: withId({}) };
    case Signals.toolConfirmation: {
      if (typeof p.tool_use_id !== 'string') return { ok: false, error: `${name}: "tool_use_id" must be a string` };
      if (p.result !== 'allow' && p.result !== 'deny')
        return { ok: false, error: `${name}: "result" must be "allow" or "deny"` };
      const v: UserToolConfirmation = { tool_use_id: p.tool_use_id, result: p.result };
      if (typeof p.deny_message === 'string') v.deny_message = p.deny_message;
      return { ok: true, value: withId(v) };
    }
    case Signals.customToolResult: {
      if (typeof p.custom_tool_use_id !== 'string')
        return { ok: false, error: `${name}: "custom_tool_use_id" must be a string` };
      const blocks = typeof p.content === 'string' ? { blocks: p.content } : contentBlocks(p.content);
      if ('problem' in blocks) return { ok: false, error: `${name}: ${blocks.problem} (a string, or text, image and document blocks)` };
      const v: UserCustomToolResult = { custom_tool_use_id: p.custom_tool_use_id, content: blocks.blocks };
      if (p.is_error === true) v.is_error = true;
      return { ok: true, value: withId(v) };
    }
    case Signals.defineOutcome: {
      if (typeof p.description !== 'string' || p.description.trim() === '' || p.description.length > 20_000)
        return { ok: false, error: `${name}: "description" must be a non-empty string of at most 20000 characters` };
      const r = p.rubric;
      const rubric = typeof r === 'string' ? r : isObject(r) && r.type === 'text' && typeof r.content === 'string' ? r.content : null;
      if (isObject(r) && r.type === 'file')
        return { ok: false, error: `${name}: file rubrics are not supported; send the rubric as {type: "text", content}` };
      if (rubric === null || rubric.trim() === '' || rubric.length > 100_000)
        return { ok: false, error: `${name}: "rubric" must be {type: "text", content} with at most 100000 characters` };
      const max = p.max_iterations;
      if (max !== undefined && max !== null && !(Number.isInteger(max) && (max as number) >= 1 && (max as number) <= 20))
        return { ok: false, error: `${name}: "max_iterations" must be a whole number from 1 to 20` };
      if (p.outcome_id !== undefined && (typeof p.outcome_id !== 'string' || !/^outc_[A-Za-z0-9_-]{1,64}$/.test(p.outcome_id)))
        return { ok: false, error: `${name}: "outcome_id" must look like outc_ followed by letters and digits` };
      const v: UserDefineOutcome = { description: p.description, rubric: { type: 'text', content: rubric } };
      if (typeof max === 'number') v.max_iterations = max;
      if (typeof p.outcome_id === 'string') v.outcome_id = p.outcome_id;
      return { ok: true, value: withId(v) };
    }
    case Signals.wake:
      return { ok: true, value: withId(typeof p.reason === 'string' ? { reason: p.reason } : {}) };
    default:
      return { ok: false, error: `unknown signal "${name}"` };
  }
}

/** Flattens tool result content (string or text blocks) into one string. */
export function contentText(content: string | UserContentBlock[]): string {
  if (typeof content === 'string') return content;
  // An image or a document shows as a short mark: its bytes are for the model, not for a transcript or a terminal.
  const mark = (b: UserContentBlock) =>
    b.type === 'text' ? b.text : b.type === 'image' ? '[image]' : `[document${b.title ? `: ${b.title}` : ''}]`;
  return content.map(mark).join('\n');
}
