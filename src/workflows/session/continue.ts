/**
 * Continue-as-new: when the server suggests it, the session goes on in a new run at a safe point. The log stays in
 * the earlier runs; the next run carries only the decision state.
 */
import { allHandlersFinished, condition, continueAsNew, workflowInfo } from '@temporalio/workflow';
import type { CarriedState } from '../../shared/types.js';
import type { AgentSessionWorkflow, SessionCore } from './core.js';

/** Continues as new when suggested, at a safe point: no activity in flight, no pending tool call, every handler done. */
export async function continueAsNewIfSuggested(s: SessionCore, inTurn: CarriedState['in_turn']): Promise<void> {
  if (!workflowInfo().continueAsNewSuggested) return;
  await condition(allHandlersFinished);
  const { initial_events: _firstMessages, carry: _previous, ...rest } = s.input;
  const next: CarriedState = {
    state: s.state,
    seen_ids: [...s.seenIds].slice(-1000),
    new_input: s.newInput,
    wake_requested: s.wakeRequested,
    in_turn: inTurn,
    ...(s.lastText !== null ? { last_text: s.lastText } : {}),
  };
  await continueAsNew<AgentSessionWorkflow>({ ...rest, carry: next });
}
