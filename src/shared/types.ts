/**
 * Plain JSON types shared by workflow code, activities and clients. Nothing here may import a runtime
 * module: this file is bundled into Temporal's workflow sandbox.
 */

/** Names of the built-in tools of `agent_toolset_20260401`. */
export const BUILTIN_TOOLS = ['bash', 'read', 'write', 'edit', 'glob', 'grep'] as const;
/** One built-in tool name. */
export type BuiltinToolName = (typeof BUILTIN_TOOLS)[number];

/** Permission policy of a tool, as in Managed Agents. `auto` behaves as `always_allow` in Tandem. */
export interface PermissionPolicy {
  type: 'always_allow' | 'always_ask' | 'auto';
}

/** Per-tool override inside an `agent_toolset_20260401` entry. */
export interface ToolConfig {
  name: BuiltinToolName;
  enabled?: boolean | null;
  permission_policy?: PermissionPolicy | null;
}

/** The built-in toolset entry of an agent's `tools`. */
export interface AgentToolset {
  type: 'agent_toolset_20260401';
  default_config?: { enabled?: boolean | null; permission_policy?: PermissionPolicy | null } | null;
  configs?: ToolConfig[];
}

/** A tool answered by the client with `user.custom_tool_result`. */
export interface CustomTool {
  type: 'custom';
  name: string;
  description: string;
  input_schema: Record<string, unknown>;
}

/** Per-tool override inside an `mcp_toolset` entry; `name` is the tool's name on the MCP server. */
export interface McpToolConfig {
  name: string;
  enabled?: boolean | null;
  permission_policy?: PermissionPolicy | null;
}

/**
 * The tools of one MCP server (`mcp_servers[].name`), as in Managed Agents. Tools are enabled by default and their
 * permission policy defaults to `always_ask`, so a tool newly added to a server never runs unapproved.
 */
export interface McpToolset {
  type: 'mcp_toolset';
  mcp_server_name: string;
  default_config?: { enabled?: boolean | null; permission_policy?: PermissionPolicy | null } | null;
  configs?: McpToolConfig[];
}

/** Any entry of an agent's `tools`. */
export type AgentTool = AgentToolset | CustomTool | McpToolset;

/**
 * A value that may come from the worker's vault: a literal string, in which `${secret:NAME}` is replaced by the
 * secret's value, or `{secret: NAME}`, the whole value. Only names are stored; values are read on the worker.
 */
export type SecretValue = string | { secret: string };

/** A streamable HTTP MCP server (the Managed Agents `url` server, plus request headers that may name secrets). */
export interface McpUrlServer {
  type: 'url';
  name: string;
  url: string;
  headers?: Record<string, SecretValue>;
  /**
   * Set by the API server on the servers an API client named: the worker connects only to public addresses, checked
   * on each connection it opens (a name that resolves to a loopback, private or link-local address is refused).
   */
  public_only?: boolean;
}

/**
 * An MCP server the worker starts as a process and speaks to over stdio (Tandem's own). Its environment holds only
 * a minimal set of the worker's variables (PATH, HOME, ...) plus `env`.
 */
export interface McpStdioServer {
  type: 'stdio';
  name: string;
  command: string;
  args?: string[];
  env?: Record<string, SecretValue>;
  cwd?: string;
}

/** An entry of an agent's `mcp_servers`. */
export type McpServerConfig = McpUrlServer | McpStdioServer;

/** Model identifier, or the Managed Agents model config object. */
export type ModelConfig = string | { id: string; max_tokens?: number; effort?: string | null };

/** The network policy of a sandbox (see `SandboxConfig.network`). */
export interface SandboxNetwork {
  policy: 'none' | 'limited' | 'unrestricted';
  allowed_hosts?: string[];
  allow_package_managers?: boolean;
  allow_mcp_servers?: boolean;
}

/** Tandem's own sandbox block of an agent definition. */
export interface SandboxConfig {
  /** Docker image of the hands; default `tandem-sandbox:latest` (built by `scripts/setup`). */
  image?: string;
  /** CPUs (fractional allowed). Default 1. */
  cpu?: number;
  /** Memory limit in MiB (swap is not allowed beyond it). Default 1024. */
  memory_mb?: number;
  /** Process limit inside the container. Default 256. */
  pids_limit?: number;
  /**
   * `none` (default): no network at all. `limited`: the hosts of `allowed_hosts` (with `allow_package_managers`, the
   * package registries; with `allow_mcp_servers`, the agent's MCP servers: both folded into `allowed_hosts` when the
   * agent is read), through the worker's egress proxy. `unrestricted`: every host on the internet through that proxy.
   * Either way the container itself has no network; the proxy never leads to the worker host or a private network.
   */
  network?: SandboxNetwork;
  /**
   * Size limit of the workspace in MiB (writes past it fail with "No space left on device"). Default: the hands
   * host's `TANDEM_WORKSPACE_MB` (4096). A host that cannot limit workspaces refuses a sandbox that sets it.
   */
  disk_mb?: number;
  /** `persistent` (default) keeps the workspace when a container is replaced; `ephemeral` does not. */
  workspace?: 'persistent' | 'ephemeral';
  /** Stop an idle session's container after this many seconds; it comes back on the next tool call. Default 600. */
  idle_timeout_s?: number;
}

/** Limits of a session. */
export interface Limits {
  /** Model calls per user turn before the session goes idle with `budget_reached`. Default 200. */
  max_turns?: number;
  /** Total output tokens for the session before `budget_reached`. Unlimited by default. */
  max_output_tokens?: number;
  /**
   * List cost in USD the session may spend on model calls (its own, its grader's and its sub-agents'), priced by
   * the table in `shared/pricing.ts`; at it the session goes idle with `budget_reached`. Unlimited by default. The
   * agent's model and its sub-agents' models must have a price.
   */
  max_cost_usd?: number;
  /** Paid model attempts per call (Temporal retry budget). Default 5. */
  model_attempts?: number;
  /** Attempts of one tool call, including fresh containers after `Sandbox.Lost`. Default 3. */
  tool_attempts?: number;
  /**
   * Context budget of one model call, in estimated tokens (4 characters a token). Over it, old tool results are
   * trimmed, then older turns are compacted into a summary. Default 160000.
   */
  context_tokens?: number;
}

/** Branch or commit a repository resource checks out (the Managed Agents shape). */
export type RepositoryCheckout = { type: 'branch'; name: string } | { type: 'commit'; sha: string };

/**
 * A git repository cloned into the workspace at provision time (the Managed Agents `github_repository` resource,
 * plus `git_repository` for any git HTTP(S) server or a repository on the worker host). Its remote points at the
 * worker's credential proxy; the sandbox never holds `credential`'s value, only a session-scoped phantom token.
 */
export interface RepositoryResource {
  type: 'github_repository' | 'git_repository';
  /**
   * HTTP(S) URL of the repository, or the `file://` URL of a git repository on the worker host (`git_repository`
   * only; read-only unless `push_branches` is set).
   */
  url: string;
  /** Branch or commit to check out; default: the repository's default branch. */
  checkout?: RepositoryCheckout | null;
  /** Where the clone goes in the sandbox; default `/workspace/<repo-name>`. */
  mount_path?: string | null;
  /** Name of the vault secret holding the token (never the token itself); none for a public repository. */
  credential?: string | null;
  /**
   * Branches a push may update; any branch when unset (none for a local repository). Tags and other refs are
   * refused when set.
   */
  push_branches?: string[] | null;
  /** The resource's id in the session (`sesrsc_…`) and when it was added: repositories added through the API have them. */
  id?: string;
  created_at?: string;
  /**
   * Set by the API for a repository its client named: the worker reaches it on public addresses only (a host the
   * operator lists in `TANDEM_MCP_PRIVATE_HOSTS` excepted), checked on every connection.
   */
  public_only?: boolean;
}

/** A resource of a session or agent. */
export type SessionResource = RepositoryResource;

/**
 * A file of the Files API mounted in a session (the Managed Agents `file` resource): read-only at `mount_path`,
 * under `/mnt/session/uploads/`. Only its id is in the session's history, never its bytes.
 */
export interface FileResource {
  type: 'file';
  /** The resource's id in the session (`sesrsc_…`). */
  id: string;
  file_id: string;
  mount_path: string;
  created_at: string;
}

/** An agent definition, pinned into the session at start (Managed Agents fields plus `sandbox` and `limits`). */
export interface AgentDefinition {
  name: string;
  model: ModelConfig;
  system?: string | null;
  description?: string | null;
  tools?: AgentTool[];
  mcp_servers?: McpServerConfig[];
  metadata?: Record<string, string>;
  multiagent?: Multiagent | null;
  sandbox?: SandboxConfig;
  limits?: Limits;
  /** Repositories every session of this agent gets (a session's own `resources` come after them). */
  resources?: SessionResource[];
}

/**
 * One sub-agent an agent may delegate to: `self`, or an agent definition. In an agent file an entry is the path of
 * another agent file (relative to the file), which the loader replaces by `{type: 'agent', definition}`.
 */
export type RosterEntry = string | { type: 'self' } | { type: 'agent'; definition: AgentDefinition };

/** The agents an agent may delegate to (the Managed Agents `coordinator` topology), plus Tandem's limits. */
export interface Multiagent {
  type: 'coordinator';
  agents: RosterEntry[];
  /** How deep delegations may nest below the session that started them. Default 2. */
  max_depth?: number;
  /** Whether sessions sharing one sandbox may run tools in it at the same time. Default false: one at a time. */
  concurrent_sandbox?: boolean;
  /** Child sessions of one session that run at once; the others wait for a lane. Default 4. */
  max_concurrent?: number;
  /** Delegations one model turn may ask for; the calls past it get a tool error. Default 16. */
  max_delegations_per_turn?: number;
}

/** Set in the input of a child session started by a delegation. */
export interface Delegation {
  parent_session_id: string;
  tool_use_id: string;
  /** 1 for a child of a top-level session. */
  depth: number;
  max_depth: number;
  /** The parent's sandbox, when handed over: the child runs its tools there and leaves it to the parent. */
  sandbox?: SandboxRef;
}

/** What a delegated session returns to its parent when its turn ends. */
export interface DelegationResult {
  /** The child's last text answer, or null. */
  final_message: string | null;
  stop_reason: StopReason | { type: 'interrupted' };
  turns: number;
  usage: Usage;
  /** List cost of the child's model calls, in micro-dollars (sessions with a cost budget). */
  spend_micros?: number;
}

/** An outcome the user defined (`user.define_outcome`), and where its evaluation stands. */
export interface OutcomeState {
  outcome_id: string;
  description: string;
  rubric: string;
  max_iterations: number;
  /** 0-based evaluation cycle. */
  iteration: number;
  /** `running` while the agent works, `evaluating`, then a terminal verdict. */
  result: 'running' | 'evaluating' | OutcomeVerdict;
  explanation: string | null;
}

/** Verdicts of an outcome evaluation; every one but `needs_revision` ends the outcome. */
export type OutcomeVerdict = 'needs_revision' | 'satisfied' | 'max_iterations_reached' | 'failed' | 'interrupted';

/** Payload of `user.define_outcome`. */
export interface UserDefineOutcome {
  id?: string;
  /** Chosen by the client (`outc_...`) so it can follow the outcome; made up by the session if absent. */
  outcome_id?: string;
  description: string;
  rubric: { type: 'text'; content: string };
  max_iterations?: number | null;
}

/** Input of the `gradeOutcome` activity. */
export interface GradeOutcomeInput {
  session_id: string;
  run_id: string;
  cursor: number;
  outcome: OutcomeState;
  /** The sandbox the grader may look at with read-only tools, if the session has one. */
  sandbox?: SandboxRef;
}

/** The grader's verdict for one evaluation cycle. */
export interface GradeOutcomeResult {
  result: 'needs_revision' | 'satisfied' | 'failed';
  explanation: string;
  usage: Usage;
  model: string;
  /** List cost of the evaluation's model calls in micro-dollars; absent when the model has no price. */
  list_cost_micros?: number;
}

/** A text content block. */
export interface TextBlock {
  type: 'text';
  text: string;
}

/**
 * Where an image's or a document's bytes are: inline (`base64`, or `text` for a plain-text document), at a URL the
 * model API fetches, or a file of Tandem's file store (`file`), which `callModel` inlines into each request (only
 * its id is in the session's history).
 */
export type MediaSource =
  | { type: 'base64'; media_type: string; data: string }
  | { type: 'text'; media_type: 'text/plain'; data: string }
  | { type: 'url'; url: string }
  | { type: 'file'; file_id: string };

/** An image block of a user message (the Messages API's). */
export interface ImageBlock {
  type: 'image';
  source: Exclude<MediaSource, { type: 'text' }>;
}

/** A document block of a user message (the Messages API's): a PDF or plain text. */
export interface DocumentBlock {
  type: 'document';
  source: MediaSource;
  title?: string;
  context?: string;
}

/** A block of a user message: text, an image or a document. */
export type UserContentBlock = TextBlock | ImageBlock | DocumentBlock;

/** A skill version a session runs with: its files are under /mnt/skills/<name>/, and the model is told of it. */
export interface PinnedSkill {
  skill_id: string;
  version: string;
  name: string;
  description: string;
}

/** Payload of the `user.message` signal. */
export interface UserMessage {
  id?: string;
  type?: 'user.message';
  content: UserContentBlock[];
}

/** Payload of the `user.interrupt` signal. */
export interface UserInterrupt {
  id?: string;
  type?: 'user.interrupt';
}

/** Payload of the `user.tool_confirmation` signal. */
export interface UserToolConfirmation {
  id?: string;
  type?: 'user.tool_confirmation';
  tool_use_id: string;
  result: 'allow' | 'deny';
  deny_message?: string | null;
}

/** Payload of the `user.custom_tool_result` signal. */
export interface UserCustomToolResult {
  id?: string;
  type?: 'user.custom_tool_result';
  custom_tool_use_id: string;
  /** Text, or blocks: text, images and documents (as in a user message). */
  content: string | UserContentBlock[];
  is_error?: boolean;
}

/** Payload of the `wake` signal. */
export interface WakeSignal {
  id?: string;
  reason?: string;
}

/** Workflow input of `agentSession` (plain JSON; the agent definition is inlined and pinned). */
export interface SessionInput {
  agent: AgentDefinition;
  title?: string;
  metadata?: Record<string, string>;
  initial_events?: UserMessage[];
  /** Overrides of the agent's sandbox block for this session. */
  sandbox?: SandboxConfig;
  limits?: Limits;
  /** Vault references (names only, never values). */
  vault_ids?: string[];
  /** Set when a parent session started this one to delegate a task. */
  delegation?: Delegation;
  /** Repositories cloned into the workspace at provision, after the agent's own. */
  resources?: SessionResource[];
  /** Files mounted in the sandbox from the start (more can be added and removed while the session lives). */
  files?: FileResource[];
  /** The skills of the session's agent, pinned at the start (the API's agent `skills`). */
  skills?: PinnedSkill[];
  /** Set by the session itself when it continues as new: what the next run carries over. */
  carry?: CarriedState;
  /** Set when this session is a fork of another one: its log begins with the origin's, up to the fork point. */
  fork?: ForkOrigin;
  /** Set when this session replays a recorded one against its own agent (a regression eval). */
  replay?: ReplayOf;
}

/**
 * A replay: it sends the recorded session's user turns again (those after the fork point, with `fork`). In
 * `hermetic` mode a tool call that matches the recorded one (same tool, same input, same order) gets the recorded
 * result, with no sandbox; the first that does not switches the replay to live calls in a sandbox restored from the
 * recorded session's snapshot at that point. In `live` mode every call runs, in a sandbox restored from the starting
 * snapshot.
 */
export interface ReplayOf {
  session_id: string;
  mode: 'hermetic' | 'live';
}

/** Where a replay stands (in `getSession`). */
export interface ReplayState {
  session_id: string;
  mode: 'hermetic' | 'live';
  /** The recorded user turns (null until they were read), and how many of them were sent. */
  turns: number | null;
  next_turn: number;
  /** Tool calls made so far (matched against the recorded ones in order). */
  tool_index: number;
  /** The index of the first call that did not match (hermetic mode), or null. */
  diverged_at: number | null;
}

/** Input of `replayPlan`. */
export interface ReplayPlanInput {
  session_id: string;
  after_seq?: number;
}

/** Result of `replayPlan`: the user turns to send again. */
export interface ReplayPlan {
  turns: UserContentBlock[][];
}

/** Input of `recordedCall`. */
export interface RecordedCallInput {
  session_id: string;
  index: number;
  tool_use_id: string;
  name: string;
  input: Record<string, unknown>;
  kind: 'tool' | 'mcp' | 'custom';
  after_seq?: number;
  /** The snapshot the replay started from (a divergence before any recorded snapshot starts there). */
  start_snapshot?: string | null;
}

/** Result of `recordedCall`. */
export type RecordedCallResult =
  | { match: true; content: string; is_error: boolean; recorded_tool_use_id: string }
  | { match: false; snapshot_id: string | null };

/**
 * Where a fork comes from. Its log is the origin's, read from the origin's history (never copied), up to and with
 * history position `seq` of run `run_id`; its workspace starts as the origin's latest snapshot at that point.
 */
export interface ForkOrigin {
  session_id: string;
  run_id: string;
  /** Position (in the origin's log) of the last history event the fork keeps. */
  seq: number;
  /** The event the fork was made at, as the user named it. */
  event_id: string;
  snapshot_id?: string | null;
  /** The fork point is a user message the origin answered next: the fork's first step is that model call. */
  pending_input?: boolean;
}

/** What a session carries into its next run (continue-as-new). The log itself stays in the earlier runs. */
export interface CarriedState {
  state: SessionState;
  /** Client-chosen signal ids seen so far (the most recent ones), so a retried send stays de-duplicated. */
  seen_ids: string[];
  /** A user message arrived that no model call has seen yet. */
  new_input: boolean;
  wake_requested: boolean;
  /** Set when the run ended in the middle of a turn (between a tool result and the next model call). */
  in_turn: { calls: number } | null;
  /** The last text the model answered (a delegated session returns it). */
  last_text?: string;
}

/** `stop_reason` of an idle session. */
export type StopReason =
  | { type: 'end_turn' }
  | { type: 'requires_action'; event_ids: string[] }
  | { type: 'retries_exhausted' }
  | { type: 'budget_reached' };

/** Session status values. */
export type SessionStatus = 'idle' | 'running' | 'rescheduling' | 'terminated';

/** Token usage totals. */
export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

/** A sandbox the session holds. */
export interface SandboxInfo {
  name: string;
  container_id: string;
  image: string;
  volume: string;
  state: 'running' | 'stopped';
  /** The hands host it runs on, and that host's task queue (every call for this sandbox goes there). */
  host?: string;
  task_queue?: string;
}

/** Where a sandbox is placed: a hands host and its task queue. */
export interface Placement {
  host_id: string;
  task_queue: string;
}

/** Input of `placeSandbox`. */
export interface PlaceSandboxInput {
  session_id: string;
  /** The sandbox's image (a host with a warm container of it is preferred). */
  image?: string;
  /** Hosts that stopped answering this session: not chosen again. */
  exclude?: string[];
}

/** Result of `snapshotSandbox` (logged as `sandbox.snapshot` when the workspace changed). */
export interface SnapshotResult {
  snapshot_id: string;
  changed: boolean;
  files: number;
  bytes: number;
  written_bytes: number;
  duration_ms: number;
}

/** A tool call waiting for the client: confirmation or custom tool result. */
export interface PendingAction {
  tool_use_id: string;
  name: string;
  kind: 'confirmation' | 'custom_tool';
  input: Record<string, unknown>;
  /** Set when the tool belongs to an MCP server. */
  mcp?: McpToolRef;
  /** Set when the call is a sub-agent's: the child session that waits on it (answers sent to the parent reach it). */
  session_id?: string;
}

/** A typed error as the session reports it. */
export interface SessionErrorInfo {
  type: string;
  message: string;
  retryable: boolean;
}

/** Result of the `getSession` query. */
export interface SessionState {
  id: string;
  status: SessionStatus;
  stop_reason: StopReason | null;
  turn: number;
  usage: Usage;
  sandboxes: SandboxInfo[];
  pending: PendingAction[];
  last_error: SessionErrorInfo | null;
  /** The latest outcome defined with `user.define_outcome`, if any. */
  outcome?: OutcomeState | null;
  /** Child sessions of delegations still running. */
  children?: string[];
  /** The workspace's latest snapshot (sessions on hands hosts): what a sandbox placed anew is restored from. */
  snapshot?: { snapshot_id: string; at: string } | null;
  /** Hands hosts that stopped answering this session: not placed on again. */
  lost_hosts?: string[];
  /** The run (a rewind's) whose workspace was set back to the snapshot as of the rewind point. */
  rewound_run?: string;
  /** Set for a replay of a recorded session. */
  replay?: ReplayState;
  /** List cost of the session's model calls so far, in micro-dollars (sessions with a cost budget). */
  spend_micros?: number;
  /** The session's cost budget in micro-dollars; null when it has none, or it was removed. */
  budget_micros?: number | null;
  /** The files mounted in the session now (sessions that have or had any). */
  files?: FileResource[];
}

/** A content block of the model's reply, as stored in history (plain JSON). */
export type ModelBlock =
  | { type: 'text'; text: string }
  | { type: 'thinking'; thinking: string; signature?: string }
  | { type: 'redacted_thinking'; data: string }
  | {
      type: 'tool_use';
      id: string;
      name: string;
      input: Record<string, unknown>;
      /** Set by `callModel` when the name is a tool of an MCP server it offered: which server, and its own name. */
      mcp?: McpToolRef;
    };

/** An MCP tool as the harness routes it: the server's name and the tool's name on that server. */
export interface McpToolRef {
  server: string;
  tool: string;
}

/** Input of the `callModel` activity: a reference to the log and a cursor, never the transcript. */
export interface CallModelInput {
  session_id: string;
  run_id: string;
  /**
   * History length the workflow had seen when it scheduled the call. The context is built from every event before
   * the call's own `ActivityTaskScheduled` event, which comes after the cursor.
   */
  cursor: number;
}

/** Result of `callModel`, stored once in history. */
export interface CallModelResult {
  message_id: string;
  model: string;
  content: ModelBlock[];
  stop_reason: string | null;
  usage: Usage;
  started_at: string;
  ttft_ms: number | null;
  duration_ms: number;
  /** List cost of the call (with its compaction, if any) in micro-dollars; absent when the model has no price. */
  list_cost_micros?: number;
  /** Set when this call first compacted older turns into a summary (its usage is included in `usage`). */
  compaction?: {
    summary: string;
    first_kept_id: string;
    tokens_before: number;
    tokens_after: number;
    trimmed_tool_results: number;
  };
}

/** Identifies a session's sandbox; deterministic from the session ID (cattle). */
export interface SandboxRef {
  session_id: string;
  config: SandboxConfig;
  /** The session's resources (agent's, then session's); absent when there are none. */
  resources?: SessionResource[];
  /** The hands host the sandbox is placed on (sessions of hands hosts; a shared sandbox's children follow it). */
  placement?: Placement;
  /**
   * The files the sandbox's uploads hold at the next call (written before it, the others removed); absent: left as
   * they are (a sub-agent working in its parent's sandbox, or a session that never had files).
   */
  files?: FileResource[];
  /** The skills whose files the sandbox holds under /mnt/skills (the session's own sandbox). */
  skills?: PinnedSkill[];
}

/** Input of `provision`: the sandbox, and the snapshot to restore into a workspace new to its host. */
export interface ProvisionInput extends SandboxRef {
  restore?: string;
  /** Replace the container and start from an empty workspace (then `restore`, if given): a rewind. */
  wipe?: boolean;
}

/** A request the egress proxy refused (reported with the next tool result). */
export interface EgressDenial {
  host: string;
  port: number;
  /** `CONNECT` for HTTPS tunnels, else the HTTP method of a plain request. */
  method: string;
  at: string;
  /**
   * On the last denial of a tool call only: how many more requests were refused after it and not recorded (a tool
   * call reports at most 100 denials, host names cut to 253 characters).
   */
  dropped?: number;
}

/** Result of `provision`. */
export interface ProvisionResult {
  sandbox: SandboxInfo;
  duration_ms: number;
  /** Set when the workspace was restored from a snapshot (logged as `sandbox.restored`). */
  restored?: { snapshot_id: string; files: number; bytes: number; duration_ms: number };
  /** Set when a pre-started (warm) container took the sandbox on. */
  warm?: boolean;
  /** Set when the workspace was emptied first (a rewind), then restored if `restored` says so. */
  wiped?: boolean;
}

/** Input of `execute`. */
export interface ExecuteInput {
  sandbox: SandboxRef;
  tool_use_id: string;
  name: string;
  input: Record<string, unknown>;
  /** A note the result begins with, for the model (its sandbox was replaced on another host). */
  notice?: string;
  /** Set the workspace back first (the first call after a rewind): emptied, then this snapshot restored if any. */
  rewind?: { snapshot_id: string | null };
  /** Snapshot the workspace after the call (the last call of its tool turn), with no activity of its own. */
  snapshot?: true;
}

/** Result of `execute`: the tool's string output plus where it ran. */
export interface ExecuteResult {
  content: string;
  is_error: boolean;
  truncated: boolean;
  output_path?: string;
  container_id: string;
  /** Set when this attempt had to create a fresh container (the previous one was lost or stopped). */
  provisioned?: SandboxInfo;
  duration_ms: number;
  /** Requests the egress proxy refused since the previous tool call (limited network only). */
  egress_denied?: EgressDenial[];
  /** Set when the call first set the workspace back for a rewind (`restored`: the snapshot it restored). */
  wiped?: boolean;
  restored?: ProvisionResult['restored'];
  /** The snapshot taken after the call when asked for (absent when it could not be taken: the turn takes its own). */
  snapshot?: SnapshotResult;
}

/** Input of `callMcpTool`: the server's configuration (secrets by name only) and the call. */
export interface CallMcpToolInput {
  session_id: string;
  tool_use_id: string;
  server: McpServerConfig;
  /** The tool's name on the server. */
  tool: string;
  input: Record<string, unknown>;
}

/** Result of `callMcpTool`: the tool's content as text (bounded), and whether the tool reported an error. */
export interface CallMcpToolResult {
  content: string;
  is_error: boolean;
  truncated: boolean;
  duration_ms: number;
}
