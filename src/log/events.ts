/**
 * Session events: what `getEvents` yields, in the Managed Agents shape. Also the validation of user-event signal
 * payloads, shared by the workflow (which acts on them) and the log decoder (which shows them), so both agree on
 * what was accepted.
 */
import { Signals } from '../shared/names.js';
import type {
  TextBlock,
  UserCustomToolResult,
  UserDefineOutcome,
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
  'session.status_running',
  'session.status_idle',
  'session.status_rescheduled',
  'session.status_terminated',
  'session.error',
  'session.thread_created',
  'session.updated',
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

/**
 * A session event. `id` is positional (`"<history position>.<index>"`) and sorts in log order; `seq` is the
 * history position alone. The payload fields follow the Managed Agents event of the same type.
 */
export interface SessionEvent {
  id: string;
  seq: number;
  type: SessionEventType;
  processed_at: string;
  [field: string]: unknown;
}

/** A session-level event the workflow records in history as a memo change. */
export interface RecordedEvent {
  type: SessionEventType;
  [field: string]: unknown;
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

function textBlocks(v: unknown): TextBlock[] | null {
  if (typeof v === 'string') return [{ type: 'text', text: v }];
  if (!Array.isArray(v) || v.length === 0) return null;
  const out: TextBlock[] = [];
  for (const b of v) {
    if (!isObject(b) || b.type !== 'text' || typeof b.text !== 'string') return null;
    out.push({ type: 'text', text: b.text });
  }
  return out;
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
      const content = textBlocks(p.content);
      if (!content) return { ok: false, error: `${name}: "content" must be a non-empty list of {type: "text", text}` };
      return { ok: true, value: withId({ content }) };
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
      const content = typeof p.content === 'string' ? p.content : textBlocks(p.content);
      if (content === null) return { ok: false, error: `${name}: "content" must be a string or text blocks` };
      const v: UserCustomToolResult = { custom_tool_use_id: p.custom_tool_use_id, content };
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
export function contentText(content: string | TextBlock[]): string {
  return typeof content === 'string' ? content : content.map((b) => b.text).join('\n');
}
