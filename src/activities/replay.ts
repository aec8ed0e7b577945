/**
 * Replays of a recorded session against another agent (a regression eval): the user turns to send again, and, in
 * hermetic mode, the recorded result of each tool call that matches the recorded one (same tool, same input, in the
 * same order), so a replay that does what the session did needs no sandbox, no MCP server and no client. Both read
 * the recorded session's log; nothing of it is copied into the replay's history but what the replay uses.
 */
import type { Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { readSessionLog } from '../log/read.js';
import { eventsOf, type SessionEvent } from '../log/events.js';
import type { RecordedCallInput, RecordedCallResult, ReplayPlan, ReplayPlanInput, TextBlock } from '../shared/types.js';

/** The user turns of a replay may take at most this much of its history. */
const MAX_PLAN_BYTES = 1024 * 1024;

/** JSON with object keys in order: two inputs match when their values do, whatever order their keys came in. */
export function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

function text(content: unknown): string {
  if (typeof content === 'string') return content;
  return ((content as TextBlock[] | undefined) ?? []).map((b) => b.text).join('');
}

/** Creates `replayPlan` and `recordedCall`. */
export function createReplayActivities({ temporal }: { temporal: Client }) {
  const log = async (sessionId: string, afterSeq?: number): Promise<SessionEvent[]> =>
    (await readSessionLog(temporal, sessionId)).events.filter((e) => afterSeq === undefined || e.seq > afterSeq);

  /** The user messages of the recorded session (after `after_seq`), in order: the turns the replay sends again. */
  async function replayPlan(input: ReplayPlanInput): Promise<ReplayPlan> {
    const turns = eventsOf(await log(input.session_id, input.after_seq), 'user.message').map((e) => e.content);
    if (JSON.stringify(turns).length > MAX_PLAN_BYTES)
      throw ApplicationFailure.nonRetryable(
        `the user messages of session ${input.session_id} take more than ${MAX_PLAN_BYTES} bytes; replay it from a later event`,
        'Replay.TooLarge',
      );
    return { turns };
  }

  /**
   * The recorded result of the replay's `index`-th tool call, when the recorded session's `index`-th call was the
   * same tool with the same input; else where the replay diverges: the recorded session's latest snapshot before
   * that call, which a live sandbox starts from.
   */
  async function recordedCall(input: RecordedCallInput): Promise<RecordedCallResult> {
    const events = await log(input.session_id, input.after_seq);
    const uses = eventsOf(events, 'agent.tool_use', 'agent.mcp_tool_use', 'agent.custom_tool_use').filter((e) => e.session_thread_id === undefined);
    const use = uses[input.index];
    const snapshotBefore = (seq: number) =>
      eventsOf(events, 'sandbox.snapshot').filter((e) => e.seq < seq).at(-1)?.snapshot_id ?? input.start_snapshot ?? null;
    const diverged: RecordedCallResult = { match: false, snapshot_id: snapshotBefore(use?.seq ?? Number.MAX_SAFE_INTEGER) };
    // An MCP call is matched by the name the model called it by.
    const calledAs = use?.type === 'agent.mcp_tool_use' ? (use.called_as ?? use.name) : use?.name;
    if (!use || calledAs !== input.name || canonical(use.input) !== canonical(input.input)) return diverged;
    const id = use.tool_use_id;
    const result = events.find(
      (e) =>
        ((e.type === 'agent.tool_result' && e.tool_use_id === id) ||
          (e.type === 'agent.mcp_tool_result' && e.mcp_tool_use_id === id) ||
          (e.type === 'user.custom_tool_result' && e.custom_tool_use_id === id)) &&
        e.session_thread_id === undefined,
    );
    if (!result) return diverged;
    return { match: true, content: text(result.content), is_error: result.is_error === true, recorded_tool_use_id: id };
  }

  return { replayPlan, recordedCall };
}
