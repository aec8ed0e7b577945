/**
 * Tool calls that wait for the user (a confirmation under `always_ask`, a custom tool's result), and their answers:
 * this session's own, and those of its running sub-agents, which show as this session's and whose answers go down
 * to the child that waits on them. A delegated session tells its parent what of it waits, in turn.
 */
import { condition, getExternalWorkflowHandle, patched } from '@temporalio/workflow';
import type { PendingAction, UserCustomToolResult, UserToolConfirmation } from '../../shared/types.js';
import { childPendingSignal } from '../messages.js';
import type { SessionCore } from './core.js';

/** Patch: a delegated session passes its own sub-agents' waiting calls on to its parent. */
const RELAY_CHILD_PENDING = 'relay-child-pending';

export type Answer = UserToolConfirmation | UserCustomToolResult;

const answerId = (v: Answer) => ('tool_use_id' in v ? v.tool_use_id : v.custom_tool_use_id);

export class Answers {
  private readonly answers = new Map<string, Answer>();
  /** Calls of running sub-agents that wait for the user, by child session: shown as this session's. */
  private readonly childPending = new Map<string, PendingAction[]>();
  /** Tool calls of the latest model reply while they are being handled. */
  replyUses = new Set<string>();

  /** `isChild`: whether a session is a sub-agent of this one running now (only theirs are taken). */
  constructor(
    private readonly s: SessionCore,
    private readonly isChild: (sessionId: string) => boolean,
  ) {}

  /** The handler of an answer signal (`user.tool_confirmation`, `user.custom_tool_result`). */
  handler(name: string, kind: PendingAction['kind']): (payload: unknown) => void {
    return (payload) => {
      const state = this.s.state;
      // A call of the latest reply may be answered as soon as it is in the log, before the session lists it as pending.
      const v = this.s.accept<Answer>(name, payload, (a) =>
        state.pending.some((p) => p.tool_use_id === answerId(a) && p.kind === kind) || this.replyUses.has(answerId(a))
          ? undefined
          : `${name}: no pending tool call ${answerId(a)}`,
      );
      if (!v) return;
      // A sub-agent's call is answered in the child session that waits on it.
      const child = state.pending.find((p) => p.tool_use_id === answerId(v) && p.session_id)?.session_id;
      if (child) getExternalWorkflowHandle(child).signal(name, v).catch(() => undefined);
      else this.answers.set(answerId(v), v);
    };
  }

  /** `tandem.child_pending`: a running sub-agent's calls that wait for the user (none: it runs on). */
  onChildPending({ session_id, pending }: { session_id: string; pending: PendingAction[] }): void {
    if (!this.isChild(session_id)) return;
    const s = this.s;
    if (pending.length > 0) this.childPending.set(session_id, pending.map((p) => ({ ...p, session_id })));
    else this.childPending.delete(session_id);
    s.state.pending = [...this.childPending.values()].flat();
    if (s.state.pending.length > 0) s.setStatus('idle', { type: 'requires_action', event_ids: s.state.pending.map((p) => p.tool_use_id) });
    else s.setStatus('running');
    // A sub-agent's sub-agent waits for the user too: its calls go up to the session at the top, and answers come
    // down one session at a time (each forwards to the child its pending entry names).
    if (s.input.delegation && patched(RELAY_CHILD_PENDING)) void this.tellParent(s.state.pending);
  }

  /** A child session ended: what of it waited is no longer pending. */
  childEnded(childId: string): void {
    if (this.childPending.delete(childId)) this.s.state.pending = [...this.childPending.values()].flat();
  }

  /**
   * Lists `waiting` as the session's pending calls (idle, `requires_action`) until each has an answer or the user
   * interrupts; then the session runs again. False when interrupted.
   */
  async waitFor(waiting: PendingAction[]): Promise<boolean> {
    const s = this.s;
    s.state.pending = waiting;
    s.setStatus('idle', { type: 'requires_action', event_ids: waiting.map((w) => w.tool_use_id) });
    await this.tellParent(waiting);
    await condition(() => s.interrupted || waiting.every((w) => this.answers.has(w.tool_use_id)));
    s.state.pending = [];
    await this.tellParent([]);
    if (s.interrupted) return false;
    s.setStatus('running');
    return true;
  }

  /** Takes the answer to a call (once). */
  take(toolUseId: string): Answer | undefined {
    const a = this.answers.get(toolUseId);
    this.answers.delete(toolUseId);
    return a;
  }

  /** A delegated session tells its parent what of it waits for the user, so the parent shows and forwards it. */
  async tellParent(pending: PendingAction[]): Promise<void> {
    const parent = this.s.input.delegation?.parent_session_id;
    if (!parent) return;
    await getExternalWorkflowHandle(parent)
      .signal(childPendingSignal, { session_id: this.s.info.workflowId, pending })
      .catch(() => undefined); // a parent that has ended has nobody to show it to
  }
}
