/** Public names of the session workflow: renaming any of these breaks running sessions and outside clients. */

/** Workflow type of a session. */
export const SESSION_WORKFLOW = 'agentSession';
/**
 * Activity type names that code outside the workflow matches on: the log decoder reads them from history and the
 * metrics wrap them (the workflow calls them through typed proxies). `src/activities/index.ts` checks at compile
 * time that each is an activity, so renaming one fails to compile instead of silently breaking decoding.
 */
export const ActivityNames = {
  callModel: 'callModel',
  gradeOutcome: 'gradeOutcome',
  provision: 'provision',
  execute: 'execute',
  snapshotSandbox: 'snapshotSandbox',
  callMcpTool: 'callMcpTool',
  recordedCall: 'recordedCall',
} as const;
export type ActivityName = (typeof ActivityNames)[keyof typeof ActivityNames];
/** Default task queue (env `TANDEM_TASK_QUEUE`). */
export const DEFAULT_TASK_QUEUE = 'tandem';
/** Signal names: the user events of Managed Agents, plus `wake`. */
export const Signals = {
  message: 'user.message',
  interrupt: 'user.interrupt',
  toolConfirmation: 'user.tool_confirmation',
  customToolResult: 'user.custom_tool_result',
  defineOutcome: 'user.define_outcome',
  /** Tandem's own: a delegated session tells its parent which of its calls wait for the user (none: resumed). */
  childPending: 'tandem.child_pending',
  wake: 'wake',
} as const;
/** Query returning `SessionState`. */
export const GET_SESSION_QUERY = 'getSession';
/** Search attribute with the session status (Keyword). */
export const SA_STATUS = 'TandemStatus';
/** Search attribute with the agent name (Keyword). */
export const SA_AGENT = 'TandemAgent';
/** Search attribute with the id of the stored agent a session was created from, through the HTTP API (Keyword). */
export const SA_AGENT_ID = 'TandemAgentId';
/** Search attribute with the kind of a stored API resource: agent, environment or vault (Keyword). */
export const SA_KIND = 'TandemKind';
/** Search attribute set to "true" when a session or stored resource is archived (Keyword). */
export const SA_ARCHIVED = 'TandemArchived';
/** Memo key of a session's API attributes (title, metadata, agent and environment ids, archived_at). */
export const MEMO_SESSION = 'tandem_session';
/** Signal that changes a session's title, metadata or archived state (the API's session update and archive). */
export const SESSION_UPDATE_SIGNAL = 'tandem.session_update';
/** Update that replaces or removes a session's cost budget (`{budget_micros: number | null}`); refused with a reason. */
export const SESSION_BUDGET_UPDATE = 'tandem.session_budget';
/** Update that adds a file to a session or removes one (`{add: FileResource}` or `{remove: id}`); returns the files. */
export const SESSION_FILES_UPDATE = 'tandem.session_files';
/** Memo key of a replay's recorded session: `{session_id, mode}`. */
export const MEMO_REPLAY = 'tandem_replay';
/** Memo key of a fork's origin: `{session_id, event_id}` (the Temporal UI shows it on the fork's page). */
export const MEMO_FORK = 'tandem_fork';
/** Memo key under which each session-level event (status change, error) is recorded in history. */
export const MEMO_EVENT = 'tandem_event';

/** The task queue of sandbox placement, which every hands host of a deployment (its task queue) polls. */
export function placementQueue(taskQueue: string): string {
  return `${taskQueue}-hands`;
}

/** A hands host's own task queue: every call for a sandbox placed there goes to it. */
export function hostQueue(taskQueue: string, hostId: string): string {
  return `${taskQueue}-hands-${hostId}`;
}
