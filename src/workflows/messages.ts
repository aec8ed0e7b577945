/** Signal and query definitions of `agentSession`: the public contract of a running session. */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import { GET_SESSION_QUERY, SESSION_UPDATE_SIGNAL, Signals } from '../shared/names.js';
import type { PendingAction, SessionState } from '../shared/types.js';

/** `user.message`: a user turn or a steering message while the agent works. */
export const userMessageSignal = defineSignal<[unknown]>(Signals.message);
/** `user.interrupt`: cancel the in-flight step; the session goes idle. */
export const userInterruptSignal = defineSignal<[unknown]>(Signals.interrupt);
/** `user.tool_confirmation`: allow or deny a tool call under `always_ask`. */
export const toolConfirmationSignal = defineSignal<[unknown]>(Signals.toolConfirmation);
/** `user.custom_tool_result`: the client's answer to a custom tool call. */
export const customToolResultSignal = defineSignal<[unknown]>(Signals.customToolResult);
/** `user.define_outcome`: what the work should achieve, graded against a rubric when the agent ends its turn. */
export const defineOutcomeSignal = defineSignal<[unknown]>(Signals.defineOutcome);
/** `tandem.child_pending`: from a delegated session to its parent, `{session_id, pending}`. */
export const childPendingSignal = defineSignal<[{ session_id: string; pending: PendingAction[] }]>(Signals.childPending);
/** `wake`: retry after `retries_exhausted`, or simply re-activate an idle session. */
export const wakeSignal = defineSignal<[unknown]>(Signals.wake);
/** `getSession`: status, usage and sandboxes without reading the log. */
export const getSessionQuery = defineQuery<SessionState>(GET_SESSION_QUERY);
/** `tandem.session_update`: new title, metadata or archived state of the session (`{memo, changed}`). */
export const sessionUpdateSignal = defineSignal<[unknown]>(SESSION_UPDATE_SIGNAL);
