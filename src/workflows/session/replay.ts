/**
 * A replay of a recorded session against an agent (`tandem replay`): it sends the recorded user turns again, one
 * after another, and in hermetic mode answers tool calls from the recording while every call has matched. The first
 * call that does not match switches the replay to live calls, in a sandbox restored from the recorded session's
 * snapshot before that call.
 */
import type { UserContentBlock } from '../../shared/types.js';
import type { SessionCore, ToolUse } from './core.js';

export class Replay {
  /** The recorded user turns (read from the recorded session, in each run). */
  private turns: UserContentBlock[][] = [];

  constructor(private readonly s: SessionCore) {}

  /** Reads the recorded session's user turns (a session that is not a replay has none). */
  async load(): Promise<void> {
    const { input, state } = this.s;
    if (!input.replay) return;
    state.replay ??= { session_id: input.replay.session_id, mode: input.replay.mode, turns: null, next_turn: 0, tool_index: 0, diverged_at: null };
    this.turns = (
      await this.s.housekeeping.replayPlan({ session_id: input.replay.session_id, ...(input.fork ? { after_seq: input.fork.seq } : {}) })
    ).turns;
    state.replay.turns = this.turns.length;
  }

  /** Sends the next recorded user turn once the last one ended (not when it stopped on an error). */
  sendNextTurn(): void {
    const s = this.s;
    const r = s.state.replay;
    if (!r || r.next_turn >= this.turns.length) return;
    if (s.state.stop_reason !== null && s.state.stop_reason.type !== 'end_turn') return;
    s.record({ type: 'user.message', content: this.turns[r.next_turn]!, replayed: true });
    r.next_turn++;
    s.newInput = true;
  }

  /**
   * A replay's tool call answered from the recorded session (hermetic mode, while every call has matched): true when
   * it was.
   */
  async fromRecording(use: ToolUse, kind: 'tool' | 'mcp' | 'custom'): Promise<boolean> {
    const s = this.s;
    const r = s.state.replay;
    if (!r) return false;
    const index = r.tool_index++;
    if (r.mode !== 'hermetic' || r.diverged_at !== null) return false;
    const recorded = await s
      .interruptible(() =>
        s.housekeeping.recordedCall({
          session_id: r.session_id,
          index,
          tool_use_id: use.id,
          name: use.name,
          input: use.input,
          kind,
          ...(s.input.fork ? { after_seq: s.input.fork.seq, start_snapshot: s.input.fork.snapshot_id ?? null } : {}),
        }),
      )
      .catch((err: unknown) => {
        if (s.stepFailure(err)) return undefined;
        throw err;
      });
    if (recorded?.match) return true;
    r.diverged_at = index;
    if (s.ownsSandbox && s.state.sandboxes.length === 0)
      s.state.snapshot = recorded && !recorded.match && recorded.snapshot_id ? { snapshot_id: recorded.snapshot_id, at: 'replay' } : null;
    return false;
  }
}
