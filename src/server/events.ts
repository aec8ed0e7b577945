/**
 * Session events in the API's shape. Tandem's events carry positional ids (`"10.1"`) and the model's tool-use ids;
 * the API names every event by an `id` and refers to tool calls by the id of their `agent.tool_use` event. The
 * mapper is stateful (like the log decoder): feed it the log in order.
 *
 * A session's log is its primary thread. A sub-agent's call that waits for the user is cross-posted there by the
 * log decoder (an `agent.tool_use`, `agent.mcp_tool_use` or `agent.custom_tool_use` carrying the child session's ID
 * as `session_thread_id`), at the parent's own log position: so its id is one of the parent's positional ids and
 * cannot collide with another event of the stream, and it reads the same on every read.
 */
import type { SessionEvent } from '../log/events.js';

/** An event as the API returns it. */
export type ApiEvent = Record<string, unknown> & { id: string; type: string; processed_at: string };

/** The API id of a Tandem event: the client-chosen id of a user event sent through the API, else `sevt_<seq>_<i>`. */
export function apiEventId(e: SessionEvent): string {
  if (typeof e.client_id === 'string' && e.client_id.startsWith('sevt_')) return e.client_id;
  return positionalId(e.id);
}

/** `"10.1"` → `sevt_10_1`. */
export function positionalId(id: string): string {
  return `sevt_${id.replace('.', '_')}`;
}

const ERROR_TYPES: Record<string, string> = {
  'Model.RateLimit': 'model_rate_limited_error',
  'Model.Overloaded': 'model_overloaded_error',
};

/** A tool call as the API names it, by the id of its event. */
export interface ToolCall {
  /** The model's tool-use id, by which the workflow knows the call. */
  tool_use_id: string;
  /** `agent.tool_use`, `agent.mcp_tool_use` or `agent.custom_tool_use`. */
  type: string;
  /** Set for a sub-agent's call: the thread (child session) it waits in. */
  session_thread_id?: string;
}

/** Maps Tandem events onto API events, in log order. */
export class EventMapper {
  /** Tandem tool-use id → id of its `agent.tool_use` / `agent.custom_tool_use` event. */
  readonly toolEvents = new Map<string, string>();
  /** Event id → the tool call it is. */
  readonly calls = new Map<string, ToolCall>();
  /** The session's sub-agent threads (child session IDs), as their `session.thread_created` events name them. */
  readonly threads = new Set<string>();

  /** The API id of a tool call: the id of its event, by its Tandem tool-use id. */
  private tool(id: string): string {
    return this.toolEvents.get(id) ?? id;
  }

  /** The thread a call waits in, by its Tandem tool-use id (undefined for the session's own calls). */
  private threadOf(id: string): string | undefined {
    const event = this.toolEvents.get(id);
    return event ? this.calls.get(event)?.session_thread_id : undefined;
  }

  map(e: SessionEvent): ApiEvent {
    const { id: _id, seq: _seq, client_id: _client, ...fields } = e;
    const out: ApiEvent = { ...fields, id: apiEventId(e), type: e.type, processed_at: e.processed_at };
    for (const k of ['model_request_id', 'model_request_start_id', 'outcome_evaluation_start_id'] as const) {
      const ref = out[k];
      if (typeof ref === 'string') out[k] = positionalId(ref);
    }
    switch (e.type) {
      case 'agent.tool_use':
      case 'agent.custom_tool_use':
      case 'agent.mcp_tool_use':
      {
        this.toolEvents.set(e.tool_use_id, out.id);
        const thread = e.session_thread_id !== undefined ? { session_thread_id: e.session_thread_id } : {};
        this.calls.set(out.id, { tool_use_id: e.tool_use_id, type: e.type, ...thread });
        break;
      }
      case 'agent.tool_result':
        out.tool_use_id = this.tool(e.tool_use_id);
        break;
      case 'user.tool_confirmation': {
        // The API sets the thread an answer was routed to (none: the primary thread).
        const thread = this.threadOf(e.tool_use_id);
        out.tool_use_id = this.tool(e.tool_use_id);
        if (thread) out.session_thread_id = thread;
        break;
      }
      case 'user.custom_tool_result': {
        const thread = this.threadOf(e.custom_tool_use_id);
        out.custom_tool_use_id = this.tool(e.custom_tool_use_id);
        if (typeof out.content === 'string') out.content = [{ type: 'text', text: out.content }];
        if (thread) out.session_thread_id = thread;
        break;
      }
      case 'session.thread_created':
        this.threads.add(e.session_thread_id);
        out.tool_use_id = this.tool(e.tool_use_id); // the delegate call that started the thread
        out.workflow_run_id = null;
        break;
      case 'session.status_idle': {
        const stop = e.stop_reason;
        out.stop_reason =
          stop?.type === 'requires_action' ? { ...stop, event_ids: stop.event_ids.map((i) => this.tool(i)) } : (stop ?? { type: 'end_turn' });
        out.stop_details = null;
        break;
      }
      case 'session.error': {
        const { type, message, retryable } = e.error;
        out.error = {
          type: ERROR_TYPES[type] ?? (type.startsWith('Model.') ? 'model_request_failed_error' : 'unknown_error'),
          message,
          retry_status: { type: retryable ? 'exhausted' : 'terminal' },
          tandem_type: type,
        };
        break;
      }
      case 'session.thread_status_idle': {
        // A thread its parent cancelled stopped like an interrupted turn: the API's end_turn. A thread that waits
        // names the events it waits on by their ids in the session's stream, as session.status_idle does.
        const stop = e.stop_reason;
        if (stop.type === 'interrupted') out.stop_reason = { type: 'end_turn' };
        else if (stop.type === 'requires_action') out.stop_reason = { ...stop, event_ids: stop.event_ids.map((i) => this.tool(i)) };
        out.stop_details = null;
        break;
      }
      case 'session.updated':
        // A budget change is logged in micro-dollars (`budget_micros`), and shown in the API's shape.
        if ('budget_micros' in e) {
          delete out.budget_micros;
          out.budget = budgetObject(e.budget_micros as number | null);
        }
        break;
      default:
        break;
    }
    return out;
  }
}

/** Micro-dollars a cent (the API's amounts are in cents, a session's spend in micro-dollars). */
export const MICROS_PER_CENT = 10_000;

/** Micro-dollars as the API's amount in cents, rounded up (what was spent is never shown as less). */
export function amount(micros: number): { amount: string; currency: 'USD' } {
  return { amount: String(Math.ceil(micros / MICROS_PER_CENT)), currency: 'USD' };
}

/** The API's `budget` object of a budget in micro-dollars. */
export function budgetObject(micros: number | null | undefined): Record<string, unknown> | null {
  return micros == null ? null : { type: 'limit', max_list_cost: amount(micros) };
}

/** Maps a whole log. */
export function mapEvents(events: SessionEvent[]): { events: ApiEvent[]; mapper: EventMapper } {
  const mapper = new EventMapper();
  return { events: events.map((e) => mapper.map(e)), mapper };
}
