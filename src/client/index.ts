/**
 * Typed client library: start sessions, send user events, read and follow the log. Everything here is also
 * possible with a plain Temporal client (signals by name, the `getSession` query, workflow history); this adds
 * types, validation and decoding.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Client, Connection, WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import proto from '@temporalio/proto';
import { LogDecoder } from '../log/decode.js';
import { checkSignal, contentText, eventsOf, isEvent, type SessionEvent, type SessionEventType } from '../log/events.js';
import { agentSecretNames } from '../shared/mcp.js';
import { unknownSecretsMessage, VaultError, type Vault } from '../vault/index.js';
import { DEFAULT_TASK_QUEUE, GET_SESSION_QUERY, MEMO_FORK, MEMO_REPLAY, SA_AGENT, SA_STATUS, SESSION_FILES_UPDATE, SESSION_WORKFLOW, Signals } from '../shared/names.js';
import { mountPathProblem, UPLOADS_DIR, type FilesChange } from '../shared/files.js';
import type {
  AgentDefinition,
  ForkOrigin,
  OutcomeVerdict,
  SessionInput,
  SessionResource,
  FileResource,
  PinnedSkill,
  SessionState,
  SessionStatus,
  TextBlock,
  Usage,
  UserMessage,
} from '../shared/types.js';
import { temporalSettings } from '../config/temporal.js';
import { codecFromEnv, decodeHistoryInPlace, tandemDataConverter } from '../codec/index.js';
import { isLocalPath, resourceSchema } from '../config/agent.js';
import { secretNames, sessionResources } from '../shared/repositories.js';
import { decodeJsonPayload, readRunChain, readSessionLog } from '../log/read.js';
import { TandemError } from '../shared/errors.js';

/** What {@link TandemClient.replayReport} compares. */
export interface ReplayReport {
  session_id: string;
  replay_id: string;
  mode: 'hermetic' | 'live';
  /** Every recorded turn was sent again and the replay is idle. */
  done: boolean;
  /** The index of the first tool call that did not match the recorded one (hermetic mode), or null. */
  diverged_at: number | null;
  /** Sandboxes the replay made (none while it only answers from the recording). */
  sandboxes: number;
  turns: Array<{
    user: string;
    recorded: { tools: string[]; final: string } | null;
    replay: { tools: string[]; final: string } | null;
  }>;
  usage: { recorded: Usage; replay: Usage };
  models: { recorded: string | null; replay: string | null };
  outcomes: { recorded: OutcomeVerdict[]; replay: OutcomeVerdict[] };
}

/** A session's set-up as a fork or a replay of it runs with `agent`: the same sandbox, limits, resources and vaults. */
function sessionSetUp(origin: SessionInput, agent: AgentDefinition): SessionInput {
  return {
    agent,
    ...(origin.sandbox ? { sandbox: origin.sandbox } : {}),
    ...(origin.limits ? { limits: origin.limits } : {}),
    ...(origin.resources?.length ? { resources: origin.resources } : {}),
    ...(origin.vault_ids?.length ? { vault_ids: origin.vault_ids } : {}),
  };
}

/** A log's turns: each user message, the tool calls after it (name and a short input), and the last reply's text. */
function turnsOf(events: SessionEvent[]): Array<{ user: string; tools: string[]; final: string }> {
  const turns: Array<{ user: string; tools: string[]; final: string }> = [];
  for (const e of events) {
    if (e.type === 'user.message') turns.push({ user: contentText(e.content), tools: [], final: '' });
    const t = turns.at(-1);
    if (!t || e.session_thread_id !== undefined) continue;
    if (isEvent(e, 'agent.tool_use', 'agent.mcp_tool_use', 'agent.custom_tool_use'))
      t.tools.push(`${e.name} ${JSON.stringify(e.input).slice(0, 80)}`);
    if (e.type === 'agent.message') t.final = contentText(e.content);
  }
  return turns;
}

function sumUsage(events: SessionEvent[]): Usage {
  const u: Usage = { input_tokens: 0, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 };
  for (const e of eventsOf(events, 'span.model_request_end'))
    if (e.model_usage) for (const k of Object.keys(u) as Array<keyof Usage>) u[k] += e.model_usage[k] ?? 0;
  return u;
}

function modelOf(events: SessionEvent[]): string | null {
  return eventsOf(events, 'span.model_request_end').filter((e) => e.model !== undefined).at(-1)?.model ?? null;
}

function verdicts(events: SessionEvent[]): OutcomeVerdict[] {
  return eventsOf(events, 'span.outcome_evaluation_end').map((e) => e.result);
}

/** Options of {@link TandemClient.connect}. */
export interface ConnectOptions {
  address?: string;
  namespace?: string;
  taskQueue?: string;
  /** Where the settings not given above are read from (default the process's environment). */
  env?: NodeJS.ProcessEnv;
}

/** What to start a session with. */
export interface StartOptions {
  agent: AgentDefinition;
  /** First user message, if any. */
  message?: string;
  sessionId?: string;
  title?: string;
  metadata?: Record<string, string>;
  limits?: SessionInput['limits'];
  sandbox?: SessionInput['sandbox'];
  /**
   * Repositories cloned into the workspace (after the agent's own); credentials are vault secret names. A local
   * repository (on the worker host) is named by its `file://` URL.
   */
  resources?: SessionResource[];
  /** Files of the file store mounted from the start (read-only, under /mnt/session/uploads). */
  files?: FileResource[];
  /** Skills pinned for the session: their files under /mnt/skills/<name>, and the model told of each. */
  skills?: PinnedSkill[];
  /**
   * Checked before starting: every secret the session names (the MCP servers of the agent and of its sub-agents,
   * repository credentials) must be in this vault (the worker's, when client and worker share a
   * machine). Unset: the worker fails the first model call (MCP) or the provision (repositories).
   */
  vault?: Pick<Vault, 'missing'>;
  /** First user messages (in place of `message`), in the Managed Agents shape. */
  initialEvents?: UserMessage[];
  /** Vault references (ids or names, never values). */
  vaultIds?: string[];
  /** Extra memo and search attributes of the session workflow (the HTTP API records its ids there). */
  memo?: Record<string, unknown>;
  searchAttributes?: Record<string, string[]>;
  /** A signal delivered with the start (signal-with-start), so the first step of the session sees it. */
  startSignal?: { name: string; payload: object };
}

/** Slicing options of {@link TandemClient.getEvents}. */
export interface EventQuery {
  /** Only events after this id (or history position). */
  after?: string | number;
  limit?: number;
  types?: SessionEventType[];
}

/** The largest user event the client sends: Temporal refuses payloads over 2 MB, and history should stay lean. */
export const MAX_SIGNAL_BYTES = 1024 * 1024;

/** A new session ID: `sesn_` and 20 random base32 characters. */
export function newSessionId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  return `sesn_${[...randomBytes(20)].map((b) => alphabet[b % 32]).join('')}`;
}

/** Compares positional event ids (`"<seq>.<index>"`). */
export function compareEventIds(a: string, b: string): number {
  const [as, ai] = a.split('.').map(Number);
  const [bs, bi] = b.split('.').map(Number);
  return (as ?? 0) - (bs ?? 0) || (ai ?? 0) - (bi ?? 0);
}

/** A session ID unknown to the server (workflow not found). */
export class SessionNotFoundError extends TandemError {}

/** One row of {@link TandemClient.listSessions}. */
export interface SessionSummary {
  id: string;
  /** `TandemStatus`; for a closed workflow the Temporal status in lower case when the session did not record one. */
  status: string;
  agent: string;
  /** Temporal's execution status (`RUNNING`, `TERMINATED`, …). */
  workflow_status: string;
  task_queue: string;
  started_at: string;
  closed_at: string | null;
}

/** Filters of {@link TandemClient.listSessions}. */
export interface SessionFilter {
  status?: SessionStatus | string;
  agent?: string;
  limit?: number;
}

/** What {@link TandemClient.describeSession} returns: the query's state when a worker answered, plus describe. */
export interface SessionDescription {
  id: string;
  run_id: string;
  workflow_status: string;
  task_queue: string;
  started_at: string;
  closed_at: string | null;
  history_length: number;
  agent: string | null;
  model: string | null;
  title: string | null;
  /** `getSession`; null when no worker answered the query in time (the session is then shown from visibility). */
  state: SessionState | null;
  /** `TandemStatus` from visibility, for when `state` is null. */
  status: string | null;
}

const quote = (v: string) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

/** Turns "not found" errors of any Temporal call into one clear sentence about the session. */
function explainNotFound(sessionId: string, address: string) {
  return (err: unknown): never => {
    const code = (err as { code?: number })?.code ?? (err as { cause?: { code?: number } })?.cause?.code;
    if (err instanceof WorkflowNotFoundError || code === 5)
      throw new SessionNotFoundError(`no session "${sessionId}" on ${address}`);
    throw err;
  };
}

function isAfter(e: SessionEvent, after: string | number | undefined): boolean {
  if (after === undefined) return true;
  const id = typeof after === 'number' ? `${after}.999999` : after.includes('.') ? after : `${after}.999999`;
  return compareEventIds(e.id, id) > 0;
}

/** The session's static details in the Temporal UI (markdown): the agent it runs. */
export function staticDetails(agent: AgentDefinition): string {
  const model = typeof agent.model === 'string' ? agent.model : agent.model.id;
  const tools = (agent.tools ?? []).map((t) => (t.type === 'custom' ? `${t.name} (custom)` : t.type));
  return [
    `**agent** ${agent.name} · **model** ${model}`,
    ...(agent.description ? [agent.description] : []),
    `**tools** ${tools.length ? tools.join(', ') : 'none'}`,
  ].join('\n\n');
}

/** The Tandem client. */
export class TandemClient {
  /** The Temporal frontend this client talks to (named in errors). */
  readonly address: string;

  constructor(
    readonly temporal: Client,
    readonly taskQueue: string = process.env.TANDEM_TASK_QUEUE ?? DEFAULT_TASK_QUEUE,
  ) {
    this.address = (temporal.connection as Connection).options?.address ?? 'the Temporal server';
  }

  /**
   * Connects with the SDK's environment configuration (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`,
   * `TEMPORAL_TLS_*`, profiles) and `TANDEM_TASK_QUEUE`.
   * With `TANDEM_PAYLOAD_KEY` set, payloads are encrypted and decrypted with it.
   */
  static async connect(opts: ConnectOptions = {}): Promise<TandemClient> {
    const env = opts.env ?? process.env;
    const settings = temporalSettings({ address: opts.address, namespace: opts.namespace }, env);
    const { address } = settings;
    const connection = await Connection.connect({ ...settings.connection, connectTimeout: 5000 }).catch((err: unknown) => {
      const why = (err as Error).message.split('\n')[0];
      throw new Error(`cannot reach Temporal at ${address} (${why}); start a dev server with "tandem dev" or set TEMPORAL_ADDRESS`);
    });
    const dataConverter = tandemDataConverter(codecFromEnv(env));
    const client = new Client({ connection, namespace: settings.namespace, ...(dataConverter ? { dataConverter } : {}) });
    return new TandemClient(client, opts.taskQueue ?? env.TANDEM_TASK_QUEUE ?? DEFAULT_TASK_QUEUE);
  }

  private notFound(sessionId: string) {
    return explainNotFound(sessionId, this.address);
  }

  /** The ids of the sessions a Temporal visibility query finds (within `WorkflowType = 'agentSession'`), at most `limit`. */
  async findSessions(query: string, limit = 1000): Promise<string[]> {
    const ids: string[] = [];
    for await (const w of this.temporal.workflow.list({ query: `WorkflowType = ${quote(SESSION_WORKFLOW)} AND (${query})` })) {
      ids.push(w.workflowId);
      if (ids.length >= limit) break;
    }
    return ids;
  }

  /**
   * Lists sessions newest first through Temporal visibility (`TandemStatus`, `TandemAgent`). Visibility is
   * eventually consistent: a session started a moment ago may show up a moment later.
   */
  async listSessions(filter: SessionFilter = {}): Promise<SessionSummary[]> {
    const clauses = [`WorkflowType = ${quote(SESSION_WORKFLOW)}`];
    if (filter.status) clauses.push(`${SA_STATUS} = ${quote(filter.status)}`);
    if (filter.agent) clauses.push(`${SA_AGENT} = ${quote(filter.agent)}`);
    const limit = filter.limit ?? 20;
    const out: SessionSummary[] = [];
    if (limit <= 0) return out;
    for await (const w of this.temporal.workflow.list({ query: clauses.join(' AND '), pageSize: Math.min(limit, 1000) })) {
      const sa = w.searchAttributes as Record<string, unknown[] | undefined>;
      const recorded = sa[SA_STATUS]?.[0] as string | undefined;
      const open = w.status.name === 'RUNNING';
      out.push({
        id: w.workflowId,
        status: open || recorded === 'terminated' ? (recorded ?? 'unknown') : w.status.name.toLowerCase(),
        agent: (sa[SA_AGENT]?.[0] as string | undefined) ?? '',
        workflow_status: w.status.name,
        task_queue: w.taskQueue,
        started_at: w.startTime.toISOString(),
        closed_at: w.closeTime?.toISOString() ?? null,
      });
      if (out.length >= limit) break;
    }
    return out;
  }

  /**
   * Describes a session: Temporal's description, the agent it runs (from the first event of its current run), and
   * the `getSession` query when a worker answers within `queryTimeoutMs`.
   */
  async describeSession(sessionId: string, queryTimeoutMs = 5000): Promise<SessionDescription> {
    const handle = this.temporal.workflow.getHandle(sessionId);
    const d = await handle.describe().catch(this.notFound(sessionId));
    const first = await this.temporal.workflowService
      .getWorkflowExecutionHistory({
        namespace: this.temporal.options.namespace,
        execution: { workflowId: sessionId, runId: d.runId },
        maximumPageSize: 1,
      })
      .catch(() => undefined);
    const events = await decodeHistoryInPlace(first?.history?.events ?? [], this.temporal.options.loadedDataConverter.payloadCodecs);
    const payload = events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    const input = payload ? (decodeJsonPayload(payload) as Partial<SessionInput> | undefined) : undefined;
    const model = input?.agent?.model;
    const state = await this.temporal
      .withDeadline(Date.now() + queryTimeoutMs, () => handle.query<SessionState>(GET_SESSION_QUERY))
      .catch(() => null);
    const sa = d.searchAttributes as Record<string, unknown[] | undefined>;
    return {
      id: sessionId,
      run_id: d.runId,
      workflow_status: d.status.name,
      task_queue: d.taskQueue,
      started_at: d.startTime.toISOString(),
      closed_at: d.closeTime?.toISOString() ?? null,
      history_length: d.historyLength,
      agent: input?.agent?.name ?? null,
      model: typeof model === 'string' ? model : (model?.id ?? null),
      title: input?.title ?? (await d.staticSummary().catch(() => undefined)) ?? null,
      state,
      status: (sa[SA_STATUS]?.[0] as string | undefined) ?? null,
    };
  }

  /** Starts a session and returns its ID. */
  async start(opts: StartOptions): Promise<string> {
    const sessionId = opts.sessionId ?? newSessionId();
    const input: SessionInput = {
      agent: opts.agent,
      ...(opts.title ? { title: opts.title } : {}),
      ...(opts.metadata ? { metadata: opts.metadata } : {}),
      ...(opts.limits ? { limits: opts.limits } : {}),
      ...(opts.sandbox ? { sandbox: opts.sandbox } : {}),
      ...(opts.resources?.length ? { resources: opts.resources } : {}),
      ...(opts.files?.length ? { files: opts.files } : {}),
      ...(opts.skills?.length ? { skills: opts.skills } : {}),
      ...(opts.message ? { initial_events: [{ content: [{ type: 'text', text: opts.message }] }] } : {}),
      ...(opts.initialEvents?.length ? { initial_events: opts.initialEvents } : {}),
      ...(opts.vaultIds?.length ? { vault_ids: opts.vaultIds } : {}),
    };
    for (const [i, r] of (opts.resources ?? []).entries()) {
      // The API's marks (the resource's id, public addresses only) are not part of an agent file's resource.
      const { id: _id, public_only: _public, created_at: _created, ...fields } = r;
      const check = resourceSchema.safeParse(fields);
      if (!check.success) {
        const issue = check.error.issues[0]!;
        throw new Error(`resources[${i}].${issue.path.join('.')}: ${issue.message}`);
      }
    }
    // Paths are resolved by the agent-file loader; here nothing says what a relative one is relative to.
    const path = sessionResources(input).find((r) => isLocalPath(r.url));
    if (path)
      throw new Error(`repository ${path.url}: name a local repository by its file:// URL (paths are for agent files)`);
    const names = [...new Set([...agentSecretNames(opts.agent), ...secretNames(input)])];
    const missing = names.length > 0 ? (opts.vault?.missing(names) ?? []) : []; // no vault read for agents without secrets
    if (missing.length > 0) throw new VaultError(`cannot start the session: ${unknownSecretsMessage(missing)}`);
    const options = {
      taskQueue: this.taskQueue,
      workflowId: sessionId,
      args: [input] as [SessionInput],
      staticSummary: opts.title ?? `${opts.agent.name}${opts.message ? `: ${opts.message.replace(/\s+/g, ' ').slice(0, 80)}` : ''}`,
      staticDetails: staticDetails(opts.agent),
      ...(opts.memo ? { memo: opts.memo } : {}),
      ...(opts.searchAttributes ? { searchAttributes: opts.searchAttributes } : {}),
    };
    if (opts.startSignal) {
      const check = checkSignal(opts.startSignal.name, opts.startSignal.payload);
      if (!check.ok) throw new Error(check.error);
      await this.temporal.workflow.signalWithStart(SESSION_WORKFLOW, {
        ...options,
        signal: opts.startSignal.name,
        signalArgs: [check.value],
      });
    } else await this.temporal.workflow.start(SESSION_WORKFLOW, options);
    return sessionId;
  }

  private async signal(sessionId: string, name: string, payload: object): Promise<void> {
    const check = checkSignal(name, payload);
    if (!check.ok) throw new Error(check.error);
    const bytes = Buffer.byteLength(JSON.stringify(check.value));
    if (bytes > MAX_SIGNAL_BYTES)
      throw new Error(`${name} is ${bytes} bytes; at most ${MAX_SIGNAL_BYTES} fit in one event: put large inputs in files`);
    await this.temporal.workflow.getHandle(sessionId).signal(name, check.value).catch(this.notFound(sessionId));
  }

  /**
   * Mounts a file of the file store in a running session, read-only at `mountPath` (default
   * /mnt/session/uploads/<file id>); it is there from the session's next tool call. Returns the new resource. A bad
   * mount path, one that overlaps another file's, or a session that has ended is an error that says so.
   */
  async addFile(sessionId: string, fileId: string, mountPath = `${UPLOADS_DIR}/${fileId}`): Promise<FileResource> {
    const problem = mountPathProblem(mountPath);
    if (problem) throw new Error(`mount path ${mountPath}: ${problem}`);
    const file: FileResource = {
      type: 'file',
      id: `sesrsc_${randomBytes(12).toString('hex')}`,
      file_id: fileId,
      mount_path: mountPath,
      created_at: new Date().toISOString(),
    };
    await this.changeFiles(sessionId, { add: file });
    return file;
  }

  /** Removes a file resource from a running session; it is gone from the sandbox at the next tool call. */
  async removeFile(sessionId: string, resourceId: string): Promise<void> {
    await this.changeFiles(sessionId, { remove: resourceId });
  }

  private async changeFiles(sessionId: string, change: FilesChange): Promise<FileResource[]> {
    return this.temporal.workflow
      .getHandle(sessionId)
      .executeUpdate<FileResource[], [FilesChange]>(SESSION_FILES_UPDATE, { args: [change] })
      .catch((err: unknown) => {
        if (err instanceof WorkflowUpdateFailedError) throw new Error(`session ${sessionId}: ${err.cause?.message ?? err.message}`);
        return this.notFound(sessionId)(err);
      });
  }

  /** Sends a user message (a new turn, or steering while the agent works). `id` de-duplicates retries. */
  sendMessage(sessionId: string, text: string, id?: string): Promise<void> {
    return this.signal(sessionId, Signals.message, { ...(id ? { id } : {}), content: [{ type: 'text', text }] });
  }

  /** Interrupts the session: the in-flight step is cancelled and the session goes idle. */
  interrupt(sessionId: string): Promise<void> {
    return this.signal(sessionId, Signals.interrupt, {});
  }

  /**
   * Defines the outcome the session works towards (`user.define_outcome`): when the agent ends its turn, a grader
   * checks the work against the rubric and asks for revisions until it is satisfied or `max_iterations` is used up.
   * Returns the outcome's id.
   */
  async defineOutcome(
    sessionId: string,
    outcome: { description: string; rubric: string; max_iterations?: number },
  ): Promise<string> {
    const outcomeId = `outc_${randomBytes(12).toString('hex')}`;
    await this.signal(sessionId, Signals.defineOutcome, {
      outcome_id: outcomeId,
      description: outcome.description,
      rubric: { type: 'text', content: outcome.rubric },
      ...(outcome.max_iterations !== undefined ? { max_iterations: outcome.max_iterations } : {}),
    });
    return outcomeId;
  }

  /** Wakes the session: retries after `retries_exhausted`. */
  wake(sessionId: string, reason?: string): Promise<void> {
    return this.signal(sessionId, Signals.wake, reason ? { reason } : {});
  }

  /** Allows or denies a tool call that waits under `always_ask`. */
  confirmTool(sessionId: string, toolUseId: string, allow: boolean, denyMessage?: string): Promise<void> {
    return this.signal(sessionId, Signals.toolConfirmation, {
      tool_use_id: toolUseId,
      result: allow ? 'allow' : 'deny',
      ...(denyMessage ? { deny_message: denyMessage } : {}),
    });
  }

  /** Answers a custom tool call. */
  customToolResult(sessionId: string, toolUseId: string, content: string, isError = false): Promise<void> {
    return this.signal(sessionId, Signals.customToolResult, {
      custom_tool_use_id: toolUseId,
      content,
      ...(isError ? { is_error: true } : {}),
    });
  }

  /** Status, usage, turns and sandboxes: the `getSession` query, or the closed workflow's status. */
  async getSession(sessionId: string): Promise<SessionState & { workflow_status: string }> {
    const handle = this.temporal.workflow.getHandle(sessionId);
    const description = await handle.describe().catch(this.notFound(sessionId));
    const state = await handle.query<SessionState>(GET_SESSION_QUERY);
    return { ...state, workflow_status: description.status.name };
  }

  /**
   * Rewinds the session to just before the event `to` (an event id or history position): a Temporal reset to the
   * last workflow task that started before it, without re-applying later signals. The session goes on from there;
   * the old branch stays readable under its run id.
   */
  async rewind(sessionId: string, to: string | number, reason = 'tandem rewind'): Promise<{ runId: string; previousRunId: string }> {
    const runs = await readRunChain(this.temporal, sessionId).catch(this.notFound(sessionId));
    const seq = typeof to === 'number' ? to : Number(String(to).split('.')[0]);
    const run = runs.find((r) => seq > r.offset && seq <= r.offset + r.events.length);
    if (!Number.isInteger(seq) || !run) throw new Error(`event ${to} is not in the log of session "${sessionId}"`);
    if (run.workflowId)
      throw new Error(
        `event ${to} is in the log of session "${run.workflowId}", which "${sessionId}" was forked from: rewind that session, or fork again`,
      );
    const eventId = seq - run.offset;
    let started: number | undefined;
    for (const e of run.events) {
      if (Number(e.eventId) >= eventId) break;
      if (e.workflowTaskStartedEventAttributes) started = Number(e.eventId);
    }
    const finish = run.events.find(
      (e) => started !== undefined && Number(e.workflowTaskCompletedEventAttributes?.startedEventId) === started,
    );
    if (!finish) throw new Error(`cannot rewind session "${sessionId}" to before its first step (event ${to})`);
    const res = await this.temporal.workflowService.resetWorkflowExecution({
      namespace: this.temporal.options.namespace,
      workflowExecution: { workflowId: sessionId, runId: run.runId },
      reason,
      workflowTaskFinishEventId: finish.eventId,
      requestId: randomUUID(),
      resetReapplyType: proto.temporal.api.enums.v1.ResetReapplyType.RESET_REAPPLY_TYPE_NONE,
    });
    return { runId: res.runId ?? '', previousRunId: run.runId };
  }

  /**
   * Starts a new session from another one's log up to and with event `at`: its context is that log (read from the
   * origin, never copied), its workspace the origin's latest snapshot at that point, its agent the origin's unless
   * `agent` replaces it. When `at` is a user message, the fork answers it at once (the call the origin made next).
   * The origin goes on untouched; the two never share a sandbox. Returns the fork's session id.
   */
  async fork(
    sessionId: string,
    opts: {
      at: string | number;
      id?: string;
      agent?: AgentDefinition;
      title?: string;
      memo?: Record<string, unknown>;
      searchAttributes?: StartOptions['searchAttributes'];
    },
  ): Promise<string> {
    const { origin, fork, event } = await this.forkPoint(sessionId, opts.at);
    const forkId = opts.id ?? newSessionId();
    const agent = opts.agent ?? origin.agent;
    const input: SessionInput = { ...sessionSetUp(origin, agent), title: opts.title ?? `fork of ${sessionId} at ${event.id}`, fork };
    await this.temporal.workflow.start(SESSION_WORKFLOW, {
      taskQueue: this.taskQueue,
      workflowId: forkId,
      args: [input],
      staticSummary: input.title!,
      staticDetails: `${staticDetails(agent)}\n\nforked from ${sessionId} at event ${event.id}`,
      // The Temporal UI shows where a fork comes from.
      memo: { ...opts.memo, [MEMO_FORK]: { session_id: sessionId, event_id: event.id } },
      ...(opts.searchAttributes ? { searchAttributes: opts.searchAttributes } : {}),
    });
    return forkId;
  }

  /**
   * Replays a recorded session against `agent` (a regression eval): a new, ordinary session that sends the recorded
   * user turns again (from `from`, as a fork there, or from the start). `hermetic` (the default) answers tool calls
   * that match the recorded ones from the log, with no sandbox, and runs live from the first that does not, in a
   * sandbox restored from the recorded snapshot at that point; `live` runs every call. Compare with
   * {@link replayReport}. Returns the replay's session id.
   */
  async replay(
    sessionId: string,
    opts: { agent: AgentDefinition; from?: string | number; mode?: 'hermetic' | 'live'; id?: string },
  ): Promise<string> {
    const mode = opts.mode ?? 'hermetic';
    const point = opts.from !== undefined ? await this.forkPoint(sessionId, opts.from) : undefined;
    const origin = point?.origin ?? (await readSessionLog(this.temporal, sessionId).catch(this.notFound(sessionId))).decoder.input;
    if (!origin) throw new Error(`session "${sessionId}" has no input to replay`);
    const replayId = opts.id ?? newSessionId();
    const title = `replay of ${sessionId} with ${opts.agent.name} (${mode})`;
    const input: SessionInput = {
      ...sessionSetUp(origin, opts.agent),
      title,
      replay: { session_id: sessionId, mode },
      ...(point ? { fork: point.fork } : {}),
    };
    await this.temporal.workflow.start(SESSION_WORKFLOW, {
      taskQueue: this.taskQueue,
      workflowId: replayId,
      args: [input],
      staticSummary: title,
      staticDetails: `${staticDetails(opts.agent)}\n\nreplays ${sessionId} (${mode})`,
      memo: { [MEMO_REPLAY]: { session_id: sessionId, mode } },
    });
    return replayId;
  }

  /**
   * Compares a replay with the session it replays, turn by turn: the tool calls, the final messages, tokens, where
   * it diverged, how many sandboxes it made, and the outcome verdicts when there were any. `done` once every
   * recorded turn was sent and the replay is idle.
   */
  async replayReport(replayId: string): Promise<ReplayReport> {
    let state = await this.getSession(replayId);
    // A replay that has not run its first step yet has no replay state: it is not done.
    for (let i = 0; !state.replay && i < 50; i++) {
      await new Promise((r) => setTimeout(r, 100));
      state = await this.getSession(replayId);
    }
    const r = state.replay;
    if (!r) throw new Error(`session "${replayId}" is not a replay`);
    const [replayed, recorded] = await Promise.all([this.getEvents(replayId), this.getEvents(r.session_id)]);
    const fork = replayed.find((e) => e.type === 'session.forked');
    const own = fork ? replayed.slice(replayed.indexOf(fork) + 1) : replayed;
    const after = fork ? recorded.filter((e) => e.seq > Number(String(fork.origin_event_id).split('.')[0])) : recorded;
    const a = turnsOf(after);
    const b = turnsOf(own);
    return {
      session_id: r.session_id,
      replay_id: replayId,
      mode: r.mode,
      done: r.turns !== null && r.next_turn >= r.turns && state.status === 'idle' && state.stop_reason?.type !== 'requires_action',
      diverged_at: r.diverged_at,
      sandboxes: own.filter((e) => e.type === 'sandbox.provisioned').length,
      turns: Array.from({ length: Math.max(a.length, b.length) }, (_, i) => ({
        user: a[i]?.user ?? b[i]?.user ?? '',
        recorded: a[i] ? { tools: a[i]!.tools, final: a[i]!.final } : null,
        replay: b[i] ? { tools: b[i]!.tools, final: b[i]!.final } : null,
      })),
      usage: { recorded: sumUsage(after), replay: sumUsage(own) },
      models: { recorded: modelOf(after), replay: modelOf(own) },
      outcomes: { recorded: verdicts(after), replay: verdicts(own) },
    };
  }

  /** The event `at` of a session's log, as a fork point: the origin's input and the fork's `ForkOrigin`. */
  private async forkPoint(sessionId: string, at: string | number) {
    const log = await readSessionLog(this.temporal, sessionId).catch(this.notFound(sessionId));
    const seq = typeof at === 'number' ? at : Number(String(at).split('.')[0]);
    const event = log.events.find((e) => (typeof at === 'number' ? e.seq === seq : e.id === String(at)));
    const run = log.runs.find((r) => seq > r.offset && seq <= r.offset + r.events.length);
    if (!event || !run) throw new Error(`event ${at} is not in the log of session "${sessionId}"`);
    const origin = log.decoder.input;
    if (!origin) throw new Error(`session "${sessionId}" has no input to fork from`);
    const snapshot = eventsOf(log.events, 'sandbox.snapshot').filter((e) => e.seq <= seq).at(-1)?.snapshot_id;
    const fork: ForkOrigin = {
      session_id: run.workflowId ?? sessionId,
      run_id: run.runId,
      seq,
      event_id: event.id,
      snapshot_id: snapshot ?? null,
      ...(event.type === 'user.message' ? { pending_input: true } : {}),
    };
    return { origin, fork, event };
  }

  /**
   * Runs one call under `signal` through a controller of its own: the Temporal client adds a listener to the signal
   * it is given for each call, which a long follow would pile up.
   */
  private async withSignal<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    const linked = new AbortController();
    const abort = () => linked.abort();
    signal.addEventListener('abort', abort, { once: true });
    try {
      return await this.temporal.withAbortSignal(linked.signal, fn);
    } finally {
      signal.removeEventListener('abort', abort);
    }
  }

  /** Reads the session log (every run of its chain, or the chain ending at `runId`), sliced. */
  async getEvents(sessionId: string, query: EventQuery & { runId?: string } = {}): Promise<SessionEvent[]> {
    const log = await readSessionLog(this.temporal, sessionId, query.runId).catch(this.notFound(sessionId));
    const events = log.events.filter((e) => isAfter(e, query.after) && (!query.types || query.types.includes(e.type)));
    return query.limit !== undefined ? events.slice(0, query.limit) : events;
  }

  /**
   * Yields the session's events as they are written, in order and each once, starting after `after`: it reads the
   * closed runs of the chain, then long-polls the open run's history, and moves on to the next run when the
   * session continues as new (or to the new branch after a rewind). Ends when the session closes or `signal`
   * aborts.
   */
  async *followEvents(
    sessionId: string,
    opts: { after?: string | number; signal?: AbortSignal } = {},
  ): AsyncGenerator<SessionEvent> {
    let last: string | number | undefined = opts.after;
    const fresh = (events: SessionEvent[]) => {
      const out = events.filter((e) => isAfter(e, last));
      if (out.length > 0) last = out[out.length - 1]!.id;
      return out;
    };
    for (;;) {
      const runs = await readRunChain(this.temporal, sessionId).catch(this.notFound(sessionId));
      const decoder = new LogDecoder(decodeJsonPayload);
      for (const run of runs.slice(0, -1)) for (const raw of run.events) yield* fresh(decoder.decode(raw, run.offset));
      let { runId, offset } = runs[runs.length - 1]!;
      let nextPageToken: Uint8Array | undefined;
      let count = 0;
      for (;;) {
        if (opts.signal?.aborted) return;
        const poll = () =>
          this.temporal.workflowService.getWorkflowExecutionHistory({
            namespace: this.temporal.options.namespace,
            execution: { workflowId: sessionId, runId },
            nextPageToken,
            waitNewEvent: true,
            maximumPageSize: 1000,
          });
        let res: Awaited<ReturnType<typeof poll>>;
        try {
          res = opts.signal ? await this.withSignal(opts.signal, poll) : await poll();
        } catch (err) {
          if (opts.signal?.aborted) return;
          return this.notFound(sessionId)(err);
        }
        const raws = await decodeHistoryInPlace(res.history?.events ?? [], this.temporal.options.loadedDataConverter.payloadCodecs);
        for (const raw of raws) yield* fresh(decoder.decode(raw, offset));
        count += raws.length;
        if (res.nextPageToken?.length) {
          nextPageToken = res.nextPageToken;
          continue;
        }
        // The run has closed: continue with the next run of the chain, or stop with the session.
        const continued = raws.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId;
        if (continued) {
          runId = continued;
          offset += count;
          count = 0;
          nextPageToken = undefined;
          continue;
        }
        const latest = (await this.temporal.workflow.getHandle(sessionId).describe()).runId;
        if (latest === runId) return;
        break; // a new branch (rewind): read its chain from the start, skipping what was already yielded
      }
    }
  }
}
