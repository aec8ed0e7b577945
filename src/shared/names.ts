/** Public names of the session workflow: renaming any of these breaks running sessions and outside clients. */

/** Workflow type of a session. */
export const SESSION_WORKFLOW = 'agentSession';
/** Default task queue (env `TANDEM_TASK_QUEUE`). */
export const DEFAULT_TASK_QUEUE = 'tandem';
/** Signal names: the user events of Managed Agents, plus `wake`. */
export const Signals = {
  message: 'user.message',
  interrupt: 'user.interrupt',
  toolConfirmation: 'user.tool_confirmation',
  customToolResult: 'user.custom_tool_result',
  defineOutcome: 'user.define_outcome',
  wake: 'wake',
} as const;
/** Query returning `SessionState`. */
export const GET_SESSION_QUERY = 'getSession';
/** Search attribute with the session status (Keyword). */
export const SA_STATUS = 'TandemStatus';
/** Search attribute with the agent name (Keyword). */
export const SA_AGENT = 'TandemAgent';
/** Memo key under which each session-level event (status change, error) is recorded in history. */
export const MEMO_EVENT = 'tandem_event';
