/**
 * `agentSession`: one session. Its history is the session log; this code is the stateless half of the harness that
 * decides the next step. It keeps only what it needs to decide (status, pending tool calls, counters); the model's
 * context is built by `callModel` from the log itself, so no transcript lives here or in any activity input.
 *
 * This file holds the loop that decides the next step; each part keeps its own state in `session/`: the hands
 * (`hands.ts`), tool routing (`tools.ts`), calls that wait for the user (`answers.ts`), delegation
 * (`delegation.ts`), outcomes (`outcome.ts`), replays (`replay.ts`), continue-as-new (`continue.ts`) and the
 * signal handlers (`signals.ts`), over a shared core (`core.ts`).
 */
import { ApplicationFailure, CancellationScope, condition, isCancellation, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { SA_AGENT } from '../shared/names.js';
import type { CallModelResult, DelegationResult, SessionInput, StopReason } from '../shared/types.js';
import { Answers } from './session/answers.js';
import { continueAsNewIfSuggested } from './session/continue.js';
import { SessionCore, statusKey, type ToolUse } from './session/core.js';
import { Delegation } from './session/delegation.js';
import { Hands } from './session/hands.js';
import { Outcomes } from './session/outcome.js';
import { Replay } from './session/replay.js';
import { setHandlers } from './session/signals.js';
import { ToolRouter } from './session/tools.js';

const agentKey = defineSearchAttributeKey(SA_AGENT, SearchAttributeType.KEYWORD);

/** The parts of one session, over its shared core. */
interface Parts {
  s: SessionCore;
  hands: Hands;
  answers: Answers;
  router: ToolRouter;
  outcomes: Outcomes;
}

/**
 * Runs one session until it is cancelled. A session started by a delegation ends when its turn does, and returns
 * its final answer to the parent.
 */
export async function agentSession(input: SessionInput): Promise<DelegationResult | void> {
  const s = new SessionCore(input);
  const hands = new Hands(s);
  const answers: Answers = new Answers(s, (id) => delegation.children.has(id));
  const delegation: Delegation = new Delegation(s, hands, answers);
  const outcomes = new Outcomes(s, hands);
  const replay = new Replay(s);
  const parts: Parts = { s, hands, answers, outcomes, router: new ToolRouter(s, hands, answers, delegation, replay) };
  const { state } = s;
  const idleTimeoutMs = (hands.sandboxRef.config.idle_timeout_s ?? 600) * 1000;
  setHandlers(s, answers, delegation, outcomes);
  if (!input.carry) {
    upsertSearchAttributes([
      { key: agentKey, value: input.agent.name },
      { key: statusKey, value: 'idle' },
    ]);
  }

  /** A delegated session ends with its turn (unless it waits for `wake` after an error) and answers its parent. */
  const delegationDone = (stop: StopReason) => input.delegation !== undefined && stop.type !== 'retries_exhausted';
  const finish = (stop: StopReason) => finishDelegation(parts, s.interrupted ? { type: 'interrupted' } : stop);
  try {
    await replay.load();
    if (input.carry?.in_turn) {
      const stop = await runTurnToOutcome(parts, input.carry.in_turn.calls);
      s.setStatus('idle', stop);
      if (delegationDone(stop)) return await finish(stop);
    }
    for (;;) {
      const sandboxRunning = () => state.sandboxes.some((sb) => sb.state === 'running');
      const hasWork = () =>
        s.newInput || (s.wakeRequested && state.stop_reason?.type === 'retries_exhausted') || s.budget.raised;
      await continueAsNewIfSuggested(s, null);
      if (!hasWork()) replay.sendNextTurn();
      if (!hasWork()) {
        s.setStatus('idle', state.stop_reason ?? { type: 'end_turn' });
        const stopsIdle = sandboxRunning() && s.ownsSandbox;
        const woke = stopsIdle ? await condition(hasWork, idleTimeoutMs) : (await condition(hasWork), true);
        if (!woke) {
          await hands.stopSandbox();
          state.sandboxes = state.sandboxes.map((sb) => ({ ...sb, state: 'stopped' as const }));
          await condition(hasWork);
        }
      }
      s.wakeRequested = false;
      s.budget.raised = false;
      s.interrupted = false;
      const stop = await runTurnToOutcome(parts);
      s.setStatus('idle', stop);
      if (delegationDone(stop)) return await finish(stop);
    }
  } catch (err) {
    if (!isCancellation(err)) throw err;
    // Cancelling the workflow ends the session: remove its hands (not borrowed ones), keep the log.
    state.pending = [];
    if (input.delegation) return await finishDelegation(parts, { type: 'interrupted' });
    await CancellationScope.nonCancellable(async () => {
      s.setStatus('terminated');
      if (state.sandboxes.length > 0) await hands.removeSandbox();
    });
  }
}

/** A turn, then, while an outcome is active, evaluations and revision turns until a terminal verdict. */
async function runTurnToOutcome(parts: Parts, firstCall = 0): Promise<StopReason> {
  const { s, outcomes } = parts;
  let stop = await runTurn(parts, firstCall);
  while (stop.type === 'end_turn' && !s.interrupted && outcomes.active()) {
    if (!(await outcomes.evaluate())) break;
    stop = await runTurn(parts);
  }
  return stop;
}

/** One user turn: model calls and tool calls until the model ends its turn, then the stop reason. */
async function runTurn({ s, hands, answers, router }: Parts, firstCall = 0): Promise<StopReason> {
  const { state, info } = s;
  s.setStatus('running');
  for (let calls = firstCall; ; calls++) {
    if (s.interrupted) return { type: 'end_turn' };
    const ceiling = s.budget.check(calls);
    if (ceiling) return ceiling;
    if (calls > firstCall) await continueAsNewIfSuggested(s, { calls });
    s.newInput = false;
    let result: CallModelResult;
    try {
      const cursor = workflowInfo().historyLength;
      s.details.step(`model call ${state.turn + 1}`);
      result = await s.interruptible(() => s.model.callModel({ session_id: info.workflowId, run_id: info.runId, cursor }));
    } catch (err) {
      const failure = s.stepFailure(err);
      if (!failure) return { type: 'end_turn' };
      const cause = failure.cause;
      const type = cause instanceof ApplicationFailure && cause.type ? cause.type : 'Model.Unknown';
      s.reportError({
        type,
        message: cause?.message ?? failure.message,
        retryable: !(cause instanceof ApplicationFailure && cause.nonRetryable),
      });
      return { type: 'retries_exhausted' };
    }
    state.turn++;
    state.last_error = null;
    s.addUsage(result.usage);
    s.budget.add(result.list_cost_micros);
    const text = result.content.map((b) => (b.type === 'text' ? b.text : '')).join('');
    s.lastText = text.trim() !== '' ? text : null; // a delegated session answers with its last reply's text
    const uses = result.content.filter((b): b is ToolUse => b.type === 'tool_use');
    if (uses.length === 0 || result.stop_reason !== 'tool_use') {
      if (s.newInput && !s.interrupted) continue; // steering arrived while the model answered
      return { type: 'end_turn' };
    }
    answers.replyUses = new Set(uses.map((u) => u.id));
    await router.run(uses);
    answers.replyUses = new Set();
    await hands.snapshotTurn();
  }
}

/** Ends a delegated session: terminated, its own sandbox removed, and its final answer for the parent. */
async function finishDelegation({ s, hands }: Parts, stop: DelegationResult['stop_reason']): Promise<DelegationResult> {
  await CancellationScope.nonCancellable(async () => {
    s.setStatus('terminated');
    if (s.ownsSandbox && s.state.sandboxes.length > 0) await hands.removeSandbox();
  });
  const spent = s.state.spend_micros;
  return { final_message: s.lastText, stop_reason: stop, turns: s.state.turn, usage: s.state.usage, ...(spent ? { spend_micros: spent } : {}) };
}
