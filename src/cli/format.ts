/**
 * One readable line per session event, for `tandem run` and `tandem events`. Event text comes from the model, the
 * sandbox and API clients, so every line is made safe for a terminal ({@link forTerminal}) before the colours.
 */
import { contentText, type SessionEvent } from '../log/events.js';
import type { UserContentBlock } from '../shared/types.js';
import { forTerminal } from './terminal.js';

const COLORS: Record<string, string> = {
  user: '\x1b[36m', // cyan
  agent: '\x1b[32m', // green
  session: '\x1b[33m', // yellow
  span: '\x1b[90m', // grey
  sandbox: '\x1b[35m', // magenta
};
const RED = '\x1b[31m';
const RESET = '\x1b[0m';

/** Collapses whitespace, makes control characters visible ({@link forTerminal}) and cuts `s` to `max` characters. */
export function shorten(s: string, max = 120): string {
  const flat = forTerminal(s.replace(/\s+/g, ' ').trim());
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function texts(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return contentText(content as UserContentBlock[]).replaceAll('\n', ' ');
}

/** For a sub-agent's call shown in its parent's log: which child session it waits in. */
function thread(e: SessionEvent): string {
  return typeof e.session_thread_id === 'string' ? ` (waits in ${e.session_thread_id})` : '';
}

/** The detail part of an event's line, safe to print on a terminal. */
export function eventDetail(e: SessionEvent): string {
  return forTerminal(rawDetail(e));
}

function rawDetail(e: SessionEvent): string {
  switch (e.type) {
    case 'user.message':
    case 'agent.message':
      return shorten(texts(e.content), 160);
    case 'agent.thinking':
      return shorten(e.block?.type === 'thinking' ? e.block.thinking : '(redacted)', 100);
    case 'agent.tool_use':
    case 'agent.custom_tool_use':
      return `${e.name} ${shorten(JSON.stringify(e.input), 120)}${thread(e)}`;
    case 'agent.mcp_tool_use':
      return `${e.mcp_server_name}/${e.name} ${shorten(JSON.stringify(e.input), 110)}${thread(e)}`;
    case 'agent.tool_result':
    case 'agent.mcp_tool_result':
      return `${e.is_error ? 'error' : 'ok'} ${shorten(texts(e.content), 120)}`;
    case 'user.custom_tool_result':
      return `${e.custom_tool_use_id} ${shorten(texts(e.content), 100)}`;
    case 'user.tool_confirmation':
      return `${e.tool_use_id} ${e.result}${e.deny_message ? `: ${e.deny_message}` : ''}`;
    case 'session.status_idle': {
      const r = e.stop_reason;
      return r ? `${r.type}${r.type === 'requires_action' ? ` ${r.event_ids.join(', ')}` : ''}` : '';
    }
    case 'session.error': {
      return `${e.error.type}: ${shorten(e.error.message, 140)}`;
    }
    case 'span.model_request_end': {
      if (e.is_error) return `error ${e.error?.type ?? ''}`;
      const u = e.model_usage;
      return `${u?.input_tokens ?? '?'} in / ${u?.output_tokens ?? '?'} out, ttft ${e.ttft_ms ?? '-'} ms, ${e.duration_ms} ms`;
    }
    case 'sandbox.provisioned': {
      const s = e.sandbox;
      return `${s.name} ${s.container_id.slice(0, 12)}${s.host ? ` on ${s.host}` : ''}${e.warm ? ' (warm)' : ''}`;
    }
    case 'session.forked':
      return `${e.origin_session_id} at ${e.origin_event_id}${e.snapshot_id ? `, files of snapshot ${e.snapshot_id.slice(0, 12)}` : ''}`;
    case 'sandbox.snapshot':
      return `${e.snapshot_id.slice(0, 12)}: ${e.files} files, ${e.bytes} bytes, ${e.written_bytes} written, ${e.duration_ms} ms`;
    case 'sandbox.restored':
      return e.snapshot_id === null
        ? `emptied (rewound to before the first snapshot)${e.host ? ` on ${e.host}` : ''}`
        : `${e.snapshot_id.slice(0, 12)}: ${e.files} files, ${e.bytes} bytes in ${e.duration_ms} ms${e.host ? ` on ${e.host}` : ''}${e.rewind ? ' (rewind)' : ''}`;
    case 'sandbox.lost':
      return shorten(e.error.message, 140);
    case 'session.thread_created':
      return `${e.agent_name} ${e.session_thread_id} (tandem events ${e.session_thread_id})`;
    case 'session.thread_status_running':
    case 'session.thread_status_terminated':
      return `${e.agent_name} ${e.session_thread_id}`;
    case 'session.thread_status_idle':
      return `${e.agent_name} ${e.session_thread_id} ${e.stop_reason.type}`;
    case 'agent.thread_message_sent':
      return `to ${e.to_agent_name}: ${shorten(texts(e.content), 120)}`;
    case 'agent.thread_message_received':
      return `from ${e.from_agent_name}: ${shorten(texts(e.content), 120)}`;
    case 'span.outcome_evaluation_start':
      return `${e.outcome_id} iteration ${e.iteration}`;
    case 'span.outcome_evaluation_end':
      return `${e.result} (iteration ${e.iteration}): ${shorten(e.explanation ?? '', 120)}`;
    case 'user.define_outcome':
      return shorten(e.description ?? '', 140);
    default:
      return '';
  }
}

/** Formats one event; colours only when `color`. */
export function formatEvent(e: SessionEvent, color = false): string {
  const family = e.type.split('.')[0] ?? '';
  const isError =
    e.type === 'session.error' || ((e.type === 'agent.tool_result' || e.type === 'agent.mcp_tool_result') && e.is_error === true);
  const paint = color ? (isError ? RED : COLORS[family] ?? '') : '';
  const type = forTerminal(e.type).padEnd(26);
  const detail = eventDetail(e);
  return `${forTerminal(String(e.id)).padStart(7)}  ${paint}${type}${color ? RESET : ''}${detail ? ` ${detail}` : ''}`.trimEnd();
}
