/**
 * Session events in the API's shape. Tandem's events carry positional ids (`"10.1"`) and the model's tool-use ids;
 * the API names every event by an `id` and refers to tool calls by the id of their `agent.tool_use` event. The
 * mapper is stateful (like the log decoder): feed it the log in order.
 */
import type { SessionEvent } from '../shared/events.js';

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

/** Maps Tandem events onto API events, in log order. */
export class EventMapper {
  /** Tandem tool-use id → id of its `agent.tool_use` / `agent.custom_tool_use` event. */
  readonly toolEvents = new Map<string, string>();
  /** And back. */
  readonly toolUses = new Map<string, string>();

  private tool(id: unknown): unknown {
    return typeof id === 'string' ? (this.toolEvents.get(id) ?? id) : id;
  }

  map(e: SessionEvent): ApiEvent {
    const { id: _id, seq: _seq, client_id: _client, ...fields } = e;
    const out: ApiEvent = { ...fields, id: apiEventId(e), type: e.type, processed_at: e.processed_at };
    for (const k of ['model_request_id', 'model_request_start_id', 'outcome_evaluation_start_id'] as const)
      if (typeof out[k] === 'string') out[k] = positionalId(out[k] as string);
    switch (e.type) {
      case 'agent.tool_use':
      case 'agent.custom_tool_use':
      case 'agent.mcp_tool_use':
        if (typeof e.tool_use_id === 'string') {
          this.toolEvents.set(e.tool_use_id, out.id);
          this.toolUses.set(out.id, e.tool_use_id);
        }
        break;
      case 'agent.tool_result':
      case 'user.tool_confirmation':
        out.tool_use_id = this.tool(e.tool_use_id);
        break;
      case 'user.custom_tool_result':
        out.custom_tool_use_id = this.tool(e.custom_tool_use_id);
        if (typeof out.content === 'string') out.content = [{ type: 'text', text: out.content }];
        break;
      case 'session.status_idle': {
        const stop = e.stop_reason as { type: string; event_ids?: string[] } | null;
        out.stop_reason = stop?.event_ids ? { ...stop, event_ids: stop.event_ids.map((i) => this.tool(i)) } : (stop ?? { type: 'end_turn' });
        out.stop_details = null;
        break;
      }
      case 'session.error': {
        const err = e.error as { type?: string; message?: string; retryable?: boolean } | undefined;
        const type = err?.type ?? 'Unknown';
        out.error = {
          type: ERROR_TYPES[type] ?? (type.startsWith('Model.') ? 'model_request_failed_error' : 'unknown_error'),
          message: err?.message ?? 'unknown error',
          retry_status: { type: err?.retryable ? 'exhausted' : 'terminal' },
          tandem_type: type,
        };
        break;
      }
      default:
        break;
    }
    return out;
  }
}

/** Maps a whole log. */
export function mapEvents(events: SessionEvent[]): { events: ApiEvent[]; mapper: EventMapper } {
  const mapper = new EventMapper();
  return { events: events.map((e) => mapper.map(e)), mapper };
}
