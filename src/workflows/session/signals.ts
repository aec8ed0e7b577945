/**
 * The session's signal and query handlers. They are set in one place and in a fixed order: signals that arrived
 * before a handler existed are delivered as it is set, so the order is part of what a replay reproduces.
 */
import { getExternalWorkflowHandle, setDefaultSignalHandler, setHandler, upsertMemo, upsertSearchAttributes } from '@temporalio/workflow';
import { MEMO_EVENT, MEMO_SESSION, Signals } from '../../shared/names.js';
import {
  childPendingSignal,
  customToolResultSignal,
  defineOutcomeSignal,
  getSessionQuery,
  sessionUpdateSignal,
  toolConfirmationSignal,
  userInterruptSignal,
  userMessageSignal,
  wakeSignal,
} from '../messages.js';
import type { Answers } from './answers.js';
import { archivedKey, type SessionCore } from './core.js';
import type { Delegation } from './delegation.js';
import type { Outcomes } from './outcome.js';

export function setHandlers(s: SessionCore, answers: Answers, delegation: Delegation, outcomes: Outcomes): void {
  setHandler(getSessionQuery, () => s.state);
  setHandler(userMessageSignal, (payload) => {
    if (s.accept(Signals.message, payload)) s.newInput = true;
  });
  setHandler(userInterruptSignal, (payload) => {
    if (s.accept(Signals.interrupt, payload) === undefined) return;
    if (s.state.status !== 'running' && s.state.pending.length === 0) return;
    s.interrupt();
  });
  setHandler(wakeSignal, (payload) => {
    if (!s.accept(Signals.wake, payload)) return;
    // Only a session waiting on an error is retried; a wake during a turn must not retry a later failure unasked.
    if (s.state.status === 'idle') s.wakeRequested = true;
    // A child waiting on an error is woken with its parent.
    for (const id of delegation.children) getExternalWorkflowHandle(id).signal(wakeSignal, {}).catch(() => undefined);
  });
  setHandler(childPendingSignal, (p) => answers.onChildPending(p));
  setHandler(defineOutcomeSignal, (payload) => outcomes.define(payload));
  setHandler(sessionUpdateSignal, (payload) => {
    const p = payload as { memo?: unknown; changed?: unknown } | null;
    const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (!isObj(p) || !isObj(p.memo) || !isObj(p.changed)) {
      s.reportError({ type: 'Signal.Invalid', message: 'tandem.session_update: expected {memo: {...}, changed: {...}}', retryable: false });
      return;
    }
    upsertMemo({ [MEMO_SESSION]: p.memo, [MEMO_EVENT]: { ...p.changed, type: 'session.updated' } });
    if (typeof p.memo.archived_at === 'string') upsertSearchAttributes([{ key: archivedKey, value: 'true' }]);
  });
  s.budget.setHandler();
  s.files.setHandler();
  setHandler(toolConfirmationSignal, answers.handler(Signals.toolConfirmation, 'confirmation'));
  setHandler(customToolResultSignal, answers.handler(Signals.customToolResult, 'custom_tool'));
  // Last: signals that arrived before the handlers existed are delivered as each handler is set, and only the
  // ones no handler takes should reach this one.
  setDefaultSignalHandler((name) => {
    s.reportError({ type: 'Signal.Invalid', message: `unknown signal "${name}"`, retryable: false });
  });
}
