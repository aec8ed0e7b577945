/**
 * Sessions and their events through the API. A session is Tandem's `agentSession` workflow, started through
 * `TandemClient` with the agent definition inlined at the pinned version; its API attributes (agent and environment
 * ids, title, metadata, archived_at) live in the workflow memo, and listing goes through visibility.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { compareEventIds, MAX_SIGNAL_BYTES, newSessionId, type TandemClient } from '../client/index.js';
import { decodeJsonPayload } from '../log/read.js';
import { decodeHistoryInPlace } from '../codec/index.js';
import { checkSignal, contentBlocks, EVENT_TYPES } from '../log/events.js';
import {
  GET_SESSION_QUERY,
  MEMO_SESSION,
  SA_AGENT_ID,
  SA_ARCHIVED,
  SA_STATUS,
  SESSION_BUDGET_UPDATE,
  SESSION_FILES_UPDATE,
  SESSION_UPDATE_SIGNAL,
  SESSION_WORKFLOW,
  Signals,
} from '../shared/names.js';
import { unpricedModels } from '../shared/pricing.js';
import { filesChangeProblem, mountPathProblem, UPLOADS_DIR } from '../shared/files.js';
import { FileStoreError, type FileStore } from '../files/store.js';
import type { SkillStore } from '../files/skills.js';
import { mcpUrlRefusal, privateHostAllowed } from '../activities/mcp-address.js';
import { resourceSchema } from '../config/agent.js';
import { repositoryPath } from '../shared/repositories.js';
import type { ResourceRecord } from '../shared/resources.js';
import type {
  AgentDefinition,
  FileResource,
  PinnedSkill,
  RepositoryResource,
  OutcomeState,
  SessionInput,
  SessionState,
  UserDefineOutcome,
  UserContentBlock,
  UserMessage,
} from '../shared/types.js';
import { amount, apiEventId, budgetObject, EventMapper, mapEvents, MICROS_PER_CENT, type ApiEvent, type ToolCall } from './events.js';
import {
  ApiError,
  decodeCursor,
  encodeCursor,
  invalid,
  metadataField,
  notFound,
  objectBody,
  pageLimit,
  pageOf,
  queryBool,
  type ApiRequest,
  type Router,
} from './http.js';
import {
  agentUpdateFields,
  checkMcpUrls,
  markPublicOnly,
  mcpCredentials,
  resolveAgentDefinition,
  sandboxOf,
  withMcpCredentials,
  type Stores,
} from './resources.js';

/** What the API keeps in a session's memo. */
interface SessionMemo {
  title: string | null;
  metadata: Record<string, string>;
  agent_id?: string;
  agent_version?: number;
  environment_id?: string;
  vault_ids?: string[];
  archived_at: string | null;
  updated_at?: string;
}

type ExecutionInfo = temporal.api.workflow.v1.IWorkflowExecutionInfo;

/** A new id of an event sent through the API (also its de-duplication id in the session). */
function newEventId(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  return `sevt_${[...randomBytes(24)].map((b) => alphabet[b % 32]).join('')}`;
}

function timeOf(t: { seconds?: unknown; nanos?: number | null } | null | undefined): string | null {
  if (!t) return null;
  const s = typeof t.seconds === 'object' && t.seconds && 'toNumber' in t.seconds ? (t.seconds as { toNumber(): number }).toNumber() : Number(t.seconds ?? 0);
  return new Date(s * 1000 + Math.floor((t.nanos ?? 0) / 1e6)).toISOString();
}

/** The agent snapshot of a session, in the API's shape. */
/** A session's `budget` (`{type: limit, max_list_cost: {amount, currency: USD}}`) in micro-dollars. */
function budgetMicros(v: unknown): number {
  const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  if (!isObj(v)) throw invalid('budget', 'must be {type: "limit", max_list_cost: {amount, currency: "USD"}}');
  for (const k of Object.keys(v)) if (k !== 'type' && k !== 'max_list_cost') throw invalid(`budget.${k}`, 'is not a field of a budget');
  if (v.type !== 'limit') throw invalid('budget.type', 'must be "limit"');
  const cost = v.max_list_cost;
  if (!isObj(cost)) throw invalid('budget.max_list_cost', 'must be {amount, currency: "USD"}');
  for (const k of Object.keys(cost))
    if (k !== 'amount' && k !== 'currency') throw invalid(`budget.max_list_cost.${k}`, 'is not a field of an amount');
  if (cost.currency !== 'USD') throw invalid('budget.max_list_cost.currency', 'must be "USD", the only currency priced');
  if (typeof cost.amount !== 'string' || !/^[1-9][0-9]{0,9}$/.test(cost.amount))
    throw invalid('budget.max_list_cost.amount', 'must be a whole number of cents above 0, as a string ("2500" is $25.00)');
  return Number(cost.amount) * MICROS_PER_CENT;
}

/** A 400 with the API's reason when a session with a budget could run a model Tandem cannot price. */
function checkBudgetable(def: AgentDefinition): void {
  const unpriced = unpricedModels(def);
  if (unpriced.length > 0)
    throw invalid('budget', `model_not_budgetable: Tandem has no list price for ${unpriced.join(', ')}, so it cannot meter a budget`);
}

/** The vault secret that holds the `authorization_token` of a session's repository resource `id`. */
function repositorySecret(id: string): string {
  return `session-repositories/${id}`;
}

/** Bytes all of one session's files may hold together. */
const MAX_SESSION_FILE_BYTES = 2_000_000_000;

/** A session's repository as the API shows a resource (never its token: the session holds only its secret's name). */
function repositoryObject(r: RepositoryResource, created: string): Record<string, unknown> {
  return {
    id: r.id,
    type: 'github_repository',
    url: r.url,
    mount_path: repositoryPath(r),
    checkout: r.checkout ?? null,
    created_at: r.created_at ?? created,
    updated_at: r.created_at ?? created,
  };
}

/** A session's file as the API shows a resource. */
function resourceObject(f: FileResource): Record<string, unknown> {
  return { id: f.id, type: 'file', file_id: f.file_id, mount_path: f.mount_path, created_at: f.created_at, updated_at: f.created_at };
}

function agentSnapshot(def: AgentDefinition, memo: Partial<SessionMemo>, skills: PinnedSkill[] = []): Record<string, unknown> {
  return {
    id: memo.agent_id ?? 'agent_inline',
    type: 'agent',
    version: memo.agent_version ?? 0,
    name: def.name,
    description: def.description ?? null,
    system: def.system ?? null,
    model: typeof def.model === 'string' ? { id: def.model } : def.model,
    tools: def.tools ?? [],
    mcp_servers: (def.mcp_servers ?? []).map((s) => {
      if (s.type !== 'url' || s.public_only === undefined) return s;
      const { public_only: _marked, ...server } = s; // Tandem's own mark, not a field of the API
      return server;
    }),
    skills: skills.map((s) => ({ type: 'custom', skill_id: s.skill_id, version: s.version })),
    multiagent: def.multiagent ?? null,
    execution_identity: { type: 'service_account' },
  };
}

/** Sessions, events and the SSE stream. */
export class SessionApi {
  constructor(
    private readonly tandem: TandemClient,
    private readonly stores: Stores,
    /** The file store: a session's file resources must name files in it. */
    private readonly files: FileStore,
    /** The skills a session's agent names are pinned from it. */
    private readonly skills: SkillStore,
  ) {}

  /** Sessions this server deleted, whose workflows Temporal may still show for a while. */
  private readonly deleted = new Set<string>();

  private get temporal() {
    return this.tandem.temporal;
  }

  /** The session's input (from the first event of its latest run). */
  private async input(id: string, runId: string): Promise<SessionInput> {
    const res = await this.temporal.workflowService.getWorkflowExecutionHistory({
      namespace: this.temporal.options.namespace,
      execution: { workflowId: id, runId },
      maximumPageSize: 1,
    });
    // Encrypted history: decode with the client's codecs first.
    const events = await decodeHistoryInPlace(res.history?.events ?? [], this.temporal.options.loadedDataConverter.payloadCodecs);
    const payload = events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    if (!payload) throw new ApiError(500, `session "${id}" has no readable input`);
    return decodeJsonPayload(payload) as SessionInput;
  }

  private memoOf(memo: Record<string, unknown> | undefined, input: SessionInput): SessionMemo {
    const m = (memo?.[MEMO_SESSION] ?? {}) as Partial<SessionMemo>;
    return {
      ...m,
      title: m.title !== undefined ? m.title : (input.title ?? null),
      metadata: m.metadata ?? input.metadata ?? {},
      archived_at: m.archived_at ?? null,
    };
  }

  /**
   * `POST /v1/sessions/{id}/fork` `{event_id}`: a new session whose log is this one's up to and with that event
   * (an API event id, `sevt_…`), whose workspace is this one's snapshot at that point, with this one's agent,
   * environment and vaults. At a user message, the fork answers it at once.
   */
  private async fork(req: ApiRequest): Promise<Record<string, unknown>> {
    const origin = await this.load(req.params.id!);
    const body = objectBody(req.body);
    const eventId = body.event_id;
    if (typeof eventId !== 'string' || !eventId.startsWith('sevt_')) throw invalid('event_id', 'must be an event id (sevt_...)');
    const event = (await this.tandem.getEvents(origin.handle.workflowId)).find((e) => apiEventId(e) === eventId);
    if (!event) throw invalid('event_id', `session "${req.params.id}" has no event ${eventId}`);
    const memo: SessionMemo = { ...origin.memo, title: origin.memo.title ? `${origin.memo.title} (fork)` : null, archived_at: null };
    const forkId = await this.tandem.fork(origin.handle.workflowId, {
      at: event.id,
      id: newSessionId(),
      memo: { [MEMO_SESSION]: memo },
      searchAttributes: { ...(memo.agent_id ? { [SA_AGENT_ID]: [memo.agent_id] } : {}), [SA_ARCHIVED]: ['false'] },
    });
    const s = await this.load(forkId);
    return s.object;
  }

  private sessionObject(
    id: string,
    input: SessionInput,
    memo: SessionMemo,
    times: { created: string; closed: string | null },
    status: string,
    state: SessionState | undefined,
  ): Record<string, unknown> {
    const end = times.closed ? Date.parse(times.closed) : Date.now();
    const u = state?.usage;
    return {
      id,
      type: 'session',
      agent: agentSnapshot(input.agent, memo, input.skills),
      archived_at: memo.archived_at,
      // The workflow's budget (changed by updates) when it answered; else the one the session started with.
      budget: budgetObject(state ? state.budget_micros : input.limits?.max_cost_usd === undefined ? null : Math.round(input.limits.max_cost_usd * 1e6)),
      created_at: times.created,
      updated_at: memo.updated_at ?? times.created,
      environment_id: memo.environment_id ?? 'env_inline',
      metadata: memo.metadata,
      outcome_evaluations: state?.outcome ? [outcomeEvaluation(state.outcome)] : [],
      resources: [
        ...(input.resources ?? []).filter((r) => r.id !== undefined).map((r) => repositoryObject(r, times.created)),
        ...(state?.files ?? input.files ?? []).map(resourceObject),
      ],
      stats: { duration_seconds: Math.max(0, (end - Date.parse(times.created)) / 1000) },
      status,
      title: memo.title,
      usage: u
        ? {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            cache_creation: { ephemeral_5m_input_tokens: u.cache_creation_input_tokens },
            list_cost: amount(state?.spend_micros ?? 0),
          }
        : {},
      vault_ids: memo.vault_ids ?? input.vault_ids ?? [],
    };
  }

  /** Describe + input + the `getSession` query (open sessions only); 404 for anything but a session. */
  private async load(id: string) {
    if (this.deleted.has(id)) throw notFound('session', id);
    const handle = this.temporal.workflow.getHandle(id);
    const d = await handle.describe().catch((err: unknown) => {
      const code = (err as { code?: number })?.code ?? (err as { cause?: { code?: number } })?.cause?.code;
      if (code === 5 || (err as Error)?.name === 'WorkflowNotFoundError') throw notFound('session', id);
      throw err;
    });
    if (d.type !== SESSION_WORKFLOW) throw notFound('session', id);
    const input = await this.input(id, d.runId);
    const memo = this.memoOf(d.memo, input);
    const open = d.status.name === 'RUNNING';
    // A closed session answers the query too (a worker replays it), for its final usage; without one, no usage.
    const state = open
      ? await handle.query<SessionState>(GET_SESSION_QUERY)
      : await handle.query<SessionState>(GET_SESSION_QUERY).catch(() => undefined);
    const status = open ? state!.status : 'terminated';
    const times = { created: d.startTime.toISOString(), closed: d.closeTime?.toISOString() ?? null };
    return { handle, input, memo, open, state, status, times, object: this.sessionObject(id, input, memo, times, status, state) };
  }

  /**
   * The content of a `user.message` at `at` (`events[0]`): text, images and documents, checked as the session's
   * signal checks them; a file source must name a file of the store. Errors name the block (`events[0].content[1]`).
   */
  private async messageContent(v: unknown, at: string): Promise<UserContentBlock[]> {
    const checked = contentBlocks(v);
    if ('problem' in checked) throw new ApiError(400, `${at}.${checked.problem}`);
    for (const [i, b] of checked.blocks.entries()) {
      if (b.type === 'text' || b.source.type !== 'file') continue;
      if (!(await this.files.get(b.source.file_id)))
        throw invalid(`${at}.content[${i}].source.file_id`, `file "${b.source.file_id}" was not found`);
    }
    // The message is an event of the session's history: inline bytes beyond a signal's bound go by file id instead.
    const bytes = Buffer.byteLength(JSON.stringify(checked.blocks));
    if (bytes > MAX_SIGNAL_BYTES)
      throw invalid(`${at}.content`, `is ${bytes} bytes; at most ${MAX_SIGNAL_BYTES} fit in one event: upload large images and documents with the Files API and name them by file_id`);
    return checked.blocks;
  }

  /**
   * The `resources` of a create request: `file`s of the file store, mounted at their `mount_path` (default
   * /mnt/session/uploads/<file_id>), and `github_repository`s, cloned at provision through the credential proxy.
   * Memory stores are refused, naming them.
   */
  private async sessionResources(v: unknown): Promise<{ files: FileResource[]; repos: Array<{ repo: RepositoryResource; token?: string }> }> {
    const out = { files: [] as FileResource[], repos: [] as Array<{ repo: RepositoryResource; token?: string }> };
    let fileBytes = 0;
    if (v === undefined || v === null) return out;
    if (!Array.isArray(v)) throw invalid('resources', 'must be a list of resources');
    for (const [i, r] of v.entries()) {
      const prefix = `resources[${i}].`;
      if ((r as { type?: unknown })?.type === 'github_repository') {
        const repo = await this.repositoryResource(r as Record<string, unknown>, prefix);
        const token = (r as { authorization_token?: string }).authorization_token;
        out.repos.push({ repo, ...(token ? { token } : {}) });
      } else {
        const { file, bytes } = await this.fileResource(r, out.files, fileBytes, prefix);
        out.files.push(file);
        fileBytes += bytes;
      }
    }
    return out;
  }

  /**
   * A `github_repository` resource: an https URL of a git server on a public address (or a host the operator
   * allows in `TANDEM_MCP_PRIVATE_HOSTS`), reached on public addresses only at every connection; its
   * `authorization_token` goes to the worker-side vault under a name of the resource's, and the session holds only
   * that name.
   */
  private async repositoryResource(r: Record<string, unknown>, prefix: string): Promise<RepositoryResource> {
    for (const k of Object.keys(r))
      if (!['type', 'url', 'authorization_token', 'checkout', 'mount_path'].includes(k)) throw invalid(`${prefix}${k}`, 'is not a field of a repository resource');
    if (typeof r.url !== 'string' || !URL.canParse(r.url)) throw invalid(`${prefix}url`, 'must be the https URL of a git repository');
    const allowed = this.stores.mcpPrivateHosts ?? [];
    const privateOk = privateHostAllowed(r.url, allowed);
    if (new URL(r.url).protocol !== 'https:' && !privateOk) throw invalid(`${prefix}url`, 'must be an https URL');
    const why = await mcpUrlRefusal(r.url, { allowed });
    if (why) throw invalid(`${prefix}url`, why);
    if (r.authorization_token !== undefined && (typeof r.authorization_token !== 'string' || !r.authorization_token || r.authorization_token.length > 4096))
      throw invalid(`${prefix}authorization_token`, 'must be a token string');
    const id = `sesrsc_${randomBytes(12).toString('hex')}`;
    const repo: RepositoryResource = {
      type: 'github_repository',
      url: r.url,
      id,
      created_at: new Date().toISOString(),
      ...(r.checkout != null ? { checkout: r.checkout as RepositoryResource['checkout'] } : {}),
      ...(r.mount_path != null ? { mount_path: r.mount_path as string } : {}),
      ...(typeof r.authorization_token === 'string' ? { credential: repositorySecret(id) } : {}),
      ...(privateOk ? {} : { public_only: true }),
    };
    const { id: _id, public_only: _public, created_at: _created, ...fields } = repo;
    const check = resourceSchema.safeParse(fields);
    if (!check.success) {
      const issue = check.error.issues[0]!;
      throw invalid(`${prefix}${issue.path.join('.')}`, issue.message);
    }
    return repo;
  }

  /**
   * One `file` resource to add to a session that has `files` (of `bytesBefore` bytes together), checked; errors name
   * fields under `prefix`. Returns it with its size.
   */
  private async fileResource(v: unknown, files: readonly FileResource[], bytesBefore: number, prefix = ''): Promise<{ file: FileResource; bytes: number }> {
    const r = (typeof v === 'object' && v !== null && !Array.isArray(v) ? v : {}) as Record<string, unknown>;
    if (r.type === 'github_repository')
      throw invalid(`${prefix}type`, 'a repository is cloned when the sandbox is made: name it in the resources of sessions.create');
    if (r.type === 'memory_store') throw invalid(`${prefix}type`, 'Tandem has no memory stores yet');
    if (r.type !== 'file') throw invalid(`${prefix}type`, 'must be "file"');
    for (const k of Object.keys(r)) if (!['type', 'file_id', 'mount_path'].includes(k)) throw invalid(`${prefix}${k}`, 'is not a field of a file resource');
    if (typeof r.file_id !== 'string' || !r.file_id) throw invalid(`${prefix}file_id`, 'must be a file id (file_...)');
    const meta = await this.files.get(r.file_id);
    if (!meta) throw invalid(`${prefix}file_id`, `file "${r.file_id}" was not found`);
    const total = bytesBefore + meta.size_bytes;
    if (total > MAX_SESSION_FILE_BYTES)
      throw invalid(`${prefix}file_id`, `the session's files would hold ${total} bytes; at most ${MAX_SESSION_FILE_BYTES} fit in one session`);
    const mount = r.mount_path ?? `${UPLOADS_DIR}/${r.file_id}`;
    const problem = mountPathProblem(mount);
    if (problem) throw invalid(`${prefix}mount_path`, problem);
    const file: FileResource = {
      type: 'file',
      id: `sesrsc_${randomBytes(12).toString('hex')}`,
      file_id: r.file_id,
      mount_path: mount as string,
      created_at: new Date().toISOString(),
    };
    const clash = filesChangeProblem(files, { add: file });
    if (clash) throw invalid(`${prefix}mount_path`, clash.replace(/^mount_path: /, ''));
    return { file, bytes: meta.size_bytes };
  }

  /** `sessions.resources.*`: a session's files, added and removed while it lives through the workflow's update. */
  private async resources(req: ApiRequest, op: 'add' | 'list' | 'retrieve' | 'update' | 'delete'): Promise<unknown> {
    const s = await this.load(req.params.id!);
    const files = s.state?.files ?? s.input.files ?? [];
    // Repositories named through the API (those with an id): cloned at provision, there for the session's life.
    const repos = (s.input.resources ?? []).filter((r) => r.id !== undefined);
    const repoObject = (r: RepositoryResource) => repositoryObject(r, s.times.created);
    if (op === 'list') return pageOf([...repos.map(repoObject), ...files.map(resourceObject)], req.query);
    if (op === 'add') {
      if (!s.open) throw new ApiError(400, `session "${req.params.id}" has ended; its resources cannot change`);
      const mounted = await Promise.all(files.map((f) => this.files.get(f.file_id)));
      const { file } = await this.fileResource(objectBody(req.body), files, mounted.reduce((n, m) => n + (m?.size_bytes ?? 0), 0));
      await s.handle.executeUpdate(SESSION_FILES_UPDATE, { args: [{ add: file }] });
      return resourceObject(file);
    }
    const rid = req.params.resource!;
    const repo = repos.find((r) => r.id === rid);
    if (repo) {
      if (op === 'retrieve') return repoObject(repo);
      if (op === 'delete')
        throw new ApiError(400, `resource "${rid}" is a repository, cloned into the workspace when the sandbox was made; it stays for the session's life`);
      // A new token: the vault is read on every use, so the next fetch or push through the proxy sends it.
      const token = objectBody(req.body).authorization_token;
      if (typeof token !== 'string' || !token || token.length > 4096) throw invalid('authorization_token', 'must be a token string');
      if (!repo.credential)
        throw invalid('authorization_token', `repository "${rid}" was added without a token, so the session names no secret for it; a public repository takes none`);
      if (!s.open) throw new ApiError(400, `session "${req.params.id}" has ended; its resources cannot change`);
      this.stores.vault.set(repo.credential, token);
      return repoObject(repo);
    }
    const file = files.find((f) => f.id === rid);
    if (!file) throw new ApiError(404, `session "${req.params.id}" has no resource "${rid}"`);
    if (op === 'retrieve') return resourceObject(file);
    if (op === 'update')
      throw invalid('authorization_token', 'only github_repository resources take a token, and this one is a file; remove it and add the file again instead');
    if (!s.open) throw new ApiError(400, `session "${req.params.id}" has ended; its resources cannot change`);
    await s.handle.executeUpdate(SESSION_FILES_UPDATE, { args: [{ remove: rid }] });
    return { id: rid, type: 'session_resource_deleted' };
  }

  private async create(req: ApiRequest): Promise<unknown> {
    const body = objectBody(req.body);
    const known = ['agent', 'environment_id', 'initial_events', 'metadata', 'resources', 'title', 'vault_ids', 'budget'];
    for (const k of Object.keys(body)) if (!known.includes(k)) throw invalid(k, 'is not a field of a session');
    const budget = body.budget == null ? undefined : budgetMicros(body.budget);
    const { files, repos } = await this.sessionResources(body.resources);

    // The agent, at the pinned version, with overrides.
    const a = body.agent;
    let agentId: string;
    let version: number | undefined;
    let overrides: Record<string, unknown> = {};
    if (typeof a === 'string' && a) agentId = a;
    else if (a && typeof a === 'object' && typeof (a as { id?: unknown }).id === 'string') {
      const { id, type, version: v, ...rest } = a as Record<string, unknown>;
      if (type !== 'agent' && type !== 'agent_with_overrides') throw invalid('agent.type', 'must be agent or agent_with_overrides');
      if (v !== undefined && (!Number.isInteger(v) || (v as number) < 1)) throw invalid('agent.version', 'must be an integer of at least 1');
      agentId = id as string;
      version = v as number | undefined;
      if (type === 'agent_with_overrides') overrides = rest;
      else if (Object.keys(rest).length) throw invalid(`agent.${Object.keys(rest)[0]}`, 'is an override: use type agent_with_overrides');
    } else throw invalid('agent', 'must be an agent id or {type: "agent", id, version}');
    const agentState = await this.stores.agents.state(agentId);
    const latest = agentState.versions[agentState.versions.length - 1]!;
    if (latest.archived_at) throw invalid('agent', `agent "${agentId}" is archived; it cannot start sessions`);
    const pinned = version === undefined ? latest : agentState.versions.find((r) => r.version === version);
    if (!pinned) throw invalid('agent.version', `agent "${agentId}" has no version ${version}`);
    for (const k of Object.keys(overrides))
      if (!['model', 'system', 'tools', 'mcp_servers', 'skills'].includes(k)) throw invalid(`agent.${k}`, 'cannot be overridden');
    const overridden = agentUpdateFields(overrides);
    await checkMcpUrls(overridden, this.stores.mcpPrivateHosts, 'agent.');
    const agent: ResourceRecord = { ...pinned, ...overridden };

    if (typeof body.environment_id !== 'string' || !body.environment_id) throw invalid('environment_id', 'must be an environment id');
    const env = await this.stores.environments.get(body.environment_id).catch((err: unknown) => {
      if (err instanceof ApiError && err.status === 404) throw invalid('environment_id', `environment "${String(body.environment_id)}" was not found`);
      throw err;
    });
    if (env.archived_at) throw invalid('environment_id', `environment "${env.id}" is archived`);

    const vaultIds = body.vault_ids ?? [];
    if (!Array.isArray(vaultIds) || vaultIds.some((v) => typeof v !== 'string')) throw invalid('vault_ids', 'must be a list of vault ids');
    for (const v of vaultIds as string[]) {
      const vault = await this.stores.vaults.get(v).catch((err: unknown) => {
        if (err instanceof ApiError && err.status === 404) throw invalid('vault_ids', `vault "${v}" was not found`);
        throw err;
      });
      if (vault.archived_at) throw invalid('vault_ids', `vault "${v}" is archived`);
    }

    const initial = body.initial_events ?? [];
    if (!Array.isArray(initial) || initial.length > 50) throw invalid('initial_events', 'must be a list of at most 50 events');
    const initialEvents: UserMessage[] = [];
    const initialOutcomes: Array<Record<string, unknown>> = [];
    if (initial.filter((e) => (e as { type?: unknown })?.type === 'user.define_outcome').length > 1)
      throw invalid('initial_events', 'at most one user.define_outcome (a session works towards one outcome at a time)');
    for (const [i, e] of initial.entries()) {
      const ev = e as { type?: unknown; content?: unknown };
      if (ev?.type === 'user.define_outcome') {
        initialOutcomes.push(outcomeEvent(ev as Record<string, unknown>, newEventId(), `initial_events[${i}]`).payload);
        continue;
      }
      if (ev?.type !== 'user.message') throw invalid(`initial_events[${i}].type`, 'must be user.message or user.define_outcome');
      initialEvents.push({ content: await this.messageContent(ev.content, `initial_events[${i}]`) });
    }
    if (body.title !== undefined && body.title !== null && typeof body.title !== 'string') throw invalid('title', 'must be a string or null');
    const title = (body.title as string | null | undefined) ?? null;
    const metadata = metadataField(body.metadata) as Record<string, string>;

    // URL MCP servers named through the API: the worker connects to them only on public addresses (checked on each
    // connection, whatever DNS answers by then), unless the operator allowed their host.
    const def = markPublicOnly(
      withMcpCredentials(
        await resolveAgentDefinition(agent, this.stores.agents),
        await mcpCredentials(this.stores.vaults, vaultIds as string[]),
      ),
      this.stores.mcpPrivateHosts,
    );
    if (budget !== undefined) checkBudgetable(def);
    const skills = await this.skills.pin((agent.skills as Array<{ skill_id: string; version?: string }> | undefined) ?? []).catch((err: unknown) => {
      if (err instanceof FileStoreError) throw invalid('agent.skills', err.message);
      throw err;
    });
    const limits = budget === undefined ? undefined : { max_cost_usd: budget / 1_000_000 };
    const sessionId = newSessionId();
    const memo: SessionMemo = {
      title,
      metadata,
      agent_id: agent.id,
      agent_version: agent.version as number,
      environment_id: env.id,
      vault_ids: vaultIds as string[],
      archived_at: null,
    };
    // Tokens go to the vault first (the start checks that every secret the session names is there); a start that
    // fails takes them out again.
    const resources = repos.map((r) => r.repo);
    for (const { repo, token } of repos) if (token && repo.credential) this.stores.vault.set(repo.credential, token);
    const dropTokens = () => {
      for (const { repo } of repos) if (repo.credential) this.stores.vault.remove(repo.credential);
    };
    await this.tandem.start({
      agent: def,
      sessionId,
      vault: this.stores.vault,
      ...(resources.length ? { resources } : {}),
      ...(title ? { title } : {}),
      ...(Object.keys(metadata).length ? { metadata } : {}),
      sandbox: sandboxOf(env, def),
      ...(limits ? { limits } : {}),
      ...(files.length ? { files } : {}),
      ...(skills.length ? { skills } : {}),
      initialEvents,
      vaultIds: vaultIds as string[],
      memo: { [MEMO_SESSION]: memo },
      searchAttributes: { [SA_AGENT_ID]: [agent.id], [SA_ARCHIVED]: ['false'] },
      // An outcome among the initial events comes with the start, so the first turn already works towards it.
      ...(initialOutcomes[0] ? { startSignal: { name: Signals.defineOutcome, payload: initialOutcomes[0] } } : {}),
    }).catch((err: unknown) => {
      dropTokens();
      throw err;
    });
    const input: SessionInput = {
      agent: def,
      vault_ids: vaultIds as string[],
      ...(limits ? { limits } : {}),
      ...(files.length ? { files } : {}),
      ...(skills.length ? { skills } : {}),
      ...(resources.length ? { resources } : {}),
    };
    const now = new Date().toISOString();
    return this.sessionObject(sessionId, input, memo, { created: now, closed: null }, initialEvents.length ? 'running' : 'idle', undefined);
  }

  private async list(req: ApiRequest): Promise<unknown> {
    const q = req.query;
    const limit = pageLimit(q);
    const cursor = decodeCursor<{ token: string }>(q);
    if (q.get('order') === 'asc') throw invalid('order', 'Tandem lists sessions newest first only (order=desc)');
    for (const k of ['deployment_id', 'memory_store_id']) if (q.get(k)) throw invalid(k, 'Tandem has no such resources');
    const clauses = [`WorkflowType = '${SESSION_WORKFLOW}'`];
    const agentId = q.get('agent_id');
    if (agentId) clauses.push(`${SA_AGENT_ID} = '${agentId.replace(/'/g, '')}'`);
    const statuses = [...q.getAll('statuses[]'), ...q.getAll('statuses')];
    for (const s of statuses)
      if (!['idle', 'running', 'rescheduling', 'terminated'].includes(s)) throw invalid('statuses', 'must be idle, running, rescheduling or terminated');
    const times: Array<[string, string]> = [['created_at[gt]', '>'], ['created_at[gte]', '>='], ['created_at[lt]', '<'], ['created_at[lte]', '<=']];
    for (const [k, op] of times) {
      const v = q.get(k);
      if (v === null) continue;
      if (Number.isNaN(Date.parse(v))) throw invalid(k, 'must be an RFC 3339 timestamp');
      clauses.push(`StartTime ${op} '${new Date(v).toISOString()}'`);
    }
    const agentVersion = q.get('agent_version');
    const includeArchived = queryBool(q, 'include_archived');
    const res = await this.temporal.workflowService.listWorkflowExecutions({
      namespace: this.temporal.options.namespace,
      query: clauses.join(' AND '),
      pageSize: limit,
      nextPageToken: cursor ? Buffer.from(cursor.token, 'base64') : undefined,
    });
    const data: unknown[] = [];
    for (const e of res.executions ?? []) {
      if (this.deleted.has(e.execution?.workflowId ?? '')) continue;
      const obj = await this.fromListing(e).catch(() => undefined);
      if (!obj) continue;
      if (!includeArchived && obj.archived_at) continue;
      if (statuses.length && !statuses.includes(obj.status as string)) continue;
      if (agentVersion && String((obj.agent as { version: number }).version) !== agentVersion) continue;
      data.push(obj);
    }
    const token = res.nextPageToken?.length ? Buffer.from(res.nextPageToken).toString('base64') : null;
    return { data, next_page: token ? encodeCursor({ token }) : null, prev_page: null };
  }

  /** A session object from a visibility row (status from `TandemStatus`, no usage: that needs a query). */
  private async fromListing(e: ExecutionInfo): Promise<Record<string, unknown> | undefined> {
    const id = e.execution?.workflowId ?? '';
    await decodeHistoryInPlace([e.memo], this.temporal.options.loadedDataConverter.payloadCodecs); // encrypted memo
    const input = await this.input(id, e.execution?.runId ?? '');
    if (input.delegation) return undefined; // a sub-agent's child session is a thread of its parent, not a session
    const memoPayload = e.memo?.fields?.[MEMO_SESSION];
    const memo = this.memoOf(memoPayload ? { [MEMO_SESSION]: decodeJsonPayload(memoPayload) } : undefined, input);
    const statusPayload = e.searchAttributes?.indexedFields?.[SA_STATUS];
    const sa = statusPayload ? (decodeJsonPayload(statusPayload) as string | string[]) : undefined;
    const open = e.status === 1; // WORKFLOW_EXECUTION_STATUS_RUNNING
    const status = open ? ((Array.isArray(sa) ? sa[0] : sa) ?? 'idle') : 'terminated';
    const created = timeOf(e.startTime) ?? new Date(0).toISOString();
    return this.sessionObject(id, input, memo, { created, closed: timeOf(e.closeTime) }, status, undefined);
  }

  private async update(req: ApiRequest, archive: boolean): Promise<unknown> {
    const body = archive ? {} : objectBody(req.body);
    for (const k of Object.keys(body)) {
      if (k === 'title' || k === 'metadata' || k === 'budget') continue;
      if (['agent', 'vault_ids'].includes(k)) throw invalid(k, 'cannot be changed in a Tandem session; start a new session');
      throw invalid(k, 'is not a field of a session');
    }
    const s = await this.load(req.params.id!);
    if (!s.open) throw new ApiError(400, `session "${req.params.id}" has ended; it cannot be changed`);
    const memo: SessionMemo = { ...s.memo, updated_at: new Date().toISOString() };
    const changed: Record<string, unknown> = {};
    if (body.title !== undefined) {
      if (body.title !== null && typeof body.title !== 'string') throw invalid('title', 'must be a string or null');
      memo.title = body.title as string | null;
      changed.title = memo.title;
    }
    if (body.metadata !== undefined) {
      const patch = body.metadata === null ? null : metadataField(body.metadata, 'metadata', true);
      const next = { ...memo.metadata };
      if (patch === null) for (const k of Object.keys(next)) delete next[k];
      else for (const [k, v] of Object.entries(patch)) v === null ? delete next[k] : (next[k] = v);
      memo.metadata = next;
      changed.metadata = next;
    }
    if (body.budget !== undefined) {
      const micros = body.budget === null ? null : budgetMicros(body.budget);
      if (micros !== null) checkBudgetable(s.input.agent);
      // The workflow's validator refuses a change it cannot take (with the API's reason) before it is logged.
      await s.handle.executeUpdate(SESSION_BUDGET_UPDATE, { args: [{ budget_micros: micros }] }).catch((err: unknown) => {
        if (err instanceof WorkflowUpdateFailedError) throw invalid('budget', err.cause?.message ?? err.message);
        throw err;
      });
      if (s.state) s.state.budget_micros = micros;
      // Only the budget changed: the workflow logged that itself.
      if (Object.keys(body).length === 1) return this.sessionObject(req.params.id!, s.input, s.memo, s.times, s.status, s.state);
    }
    if (archive) {
      if (s.memo.archived_at) return s.object;
      memo.archived_at = memo.updated_at!;
      changed.archived_at = memo.archived_at;
    }
    await s.handle.signal(SESSION_UPDATE_SIGNAL, { memo, changed });
    // Read-your-writes: wait (briefly) until the workflow has recorded the change in its memo.
    for (let i = 0; i < 50; i++) {
      const d = await s.handle.describe();
      if ((d.memo?.[MEMO_SESSION] as Partial<SessionMemo> | undefined)?.updated_at === memo.updated_at) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    return this.sessionObject(req.params.id!, s.input, memo, s.times, s.status, s.state);
  }

  private async remove(req: ApiRequest): Promise<unknown> {
    const id = req.params.id!;
    const s = await this.load(id);
    if (s.status === 'running' || s.status === 'rescheduling')
      throw new ApiError(400, `session "${id}" is ${s.status}; interrupt it and wait until it is idle, then delete it`);
    if (s.open) {
      await s.handle.cancel();
      await s.handle.result().catch(() => undefined);
    }
    // The tokens of its repositories go with it.
    for (const r of s.input.resources ?? []) if (r.id !== undefined && r.credential) this.stores.vault.remove(r.credential);
    await this.temporal.workflowService.deleteWorkflowExecution({
      namespace: this.temporal.options.namespace,
      workflowExecution: { workflowId: id },
    });
    // Temporal deletes asynchronously (on the dev server the workflow stays readable for about half a minute):
    // this server answers 404 for it at once.
    this.deleted.add(id);
    if (this.deleted.size > 10_000) this.deleted.delete(this.deleted.values().next().value!);
    return { id, type: 'session_deleted' };
  }

  // -------------------------------------------------------------------------------------------------------------
  // Events
  // -------------------------------------------------------------------------------------------------------------

  /** The log of a session (or thread) read through the mapper: its tool calls and threads by event id. */
  private async logOf(sessionId: string): Promise<EventMapper> {
    return mapEvents(await this.tandem.getEvents(sessionId)).mapper;
  }

  /**
   * Whether `thread` is a sub-agent thread of the session whose log `log` is: one its `session.thread_created`
   * events name, or one of theirs (a child's ID starts with its parent's and a dot).
   */
  private async isThread(log: EventMapper, thread: string): Promise<boolean> {
    if (log.threads.has(thread)) return true;
    for (const t of log.threads) if (thread.startsWith(`${t}.`)) return this.isThread(await this.logOf(t), thread);
    return false;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Threads: a session's sub-agent sessions, at any depth
  // -------------------------------------------------------------------------------------------------------------

  /** Each sub-agent thread of a session, at any depth, with the thread that started it (the session's id first). */
  private async threadsOf(sessionId: string): Promise<Array<{ id: string; parent: string }>> {
    const found: Array<{ id: string; parent: string }> = [];
    const walk = async (parent: string) => {
      for (const id of (await this.logOf(parent)).threads) {
        found.push({ id, parent });
        await walk(id);
      }
    };
    await walk(sessionId);
    return found;
  }

  /** A sub-agent session as the API's `session_thread`. */
  private async threadObject(sessionId: string, thread: { id: string; parent: string }): Promise<Record<string, unknown>> {
    const t = await this.load(thread.id);
    return {
      type: 'session_thread',
      id: thread.id,
      session_id: sessionId,
      // The session's own (primary) thread is named by the session's id.
      parent_thread_id: thread.parent,
      agent: t.object.agent,
      status: t.status,
      usage: t.object.usage,
      stats: t.object.stats,
      created_at: t.times.created,
      updated_at: t.times.closed ?? t.object.updated_at,
      archived_at: null,
      workflow_run_id: null,
    };
  }

  /** The thread a request names, checked to be one of its session's (404 naming both otherwise). */
  private async thread(req: ApiRequest): Promise<{ id: string; parent: string }> {
    const sessionId = req.params.id!;
    await this.load(sessionId);
    const thread = (await this.threadsOf(sessionId)).find((t) => t.id === req.params.thread);
    if (!thread) throw new ApiError(404, `session "${sessionId}" has no thread "${req.params.thread}"`);
    return thread;
  }

  private async listThreads(req: ApiRequest): Promise<unknown> {
    const sessionId = req.params.id!;
    await this.load(sessionId);
    const statuses = [...req.query.getAll('statuses[]'), ...req.query.getAll('statuses')];
    for (const s of statuses)
      if (!['running', 'idle', 'rescheduling', 'terminated'].includes(s)) throw invalid('statuses', `unknown thread status "${s}"`);
    const threads = await Promise.all((await this.threadsOf(sessionId)).map((t) => this.threadObject(sessionId, t)));
    return pageOf(
      threads.filter((t) => statuses.length === 0 || statuses.includes(t.status as string)),
      req.query,
    );
  }

  private async send(req: ApiRequest): Promise<unknown> {
    const id = req.params.id!;
    const body = objectBody(req.body);
    if (!Array.isArray(body.events) || body.events.length === 0) throw invalid('events', 'must be a non-empty list of events');
    const s = await this.load(id);
    if (!s.open) throw new ApiError(400, `session "${id}" has ended; it takes no more events`);
    if (s.memo.archived_at) throw new ApiError(400, `session "${id}" is archived; it takes no more events`);
    const pending = s.state?.pending ?? [];
    let primary: EventMapper | undefined;
    const log = async () => (primary ??= await this.logOf(id));
    /** A `session_thread_id` of the request: absent, or a sub-agent thread of this session (else a 400). */
    const threadField = async (v: unknown, field: string): Promise<string | undefined> => {
      if (v === undefined || v === null) return undefined;
      if (typeof v !== 'string' || !v) throw invalid(field, 'must be the id of a thread of this session');
      if (await this.isThread(await log(), v)) return v;
      throw invalid(
        field,
        `no thread "${v}" in session "${id}": its threads are the sub-agent sessions that its session.thread_created events name`,
      );
    };
    /**
     * The tool call an answer names. The API names a call by the id of its tool-use event: in this session's log
     * (a sub-agent's waiting call is cross-posted there with its thread), or, with `session_thread_id`, in that
     * thread's own log. The workflow knows calls by tool-use id, which is also taken as it is. The session forwards
     * the answer to a sub-agent's call to the child that waits on it.
     */
    const toolCall = async (v: unknown, thread: string | undefined, at: string, field: string, types: string[]): Promise<ToolCall> => {
      const what = types.join(' or ');
      if (typeof v !== 'string' || !v) throw invalid(`${at}.${field}`, `must be the id of an ${what} event`);
      let call: ToolCall | undefined;
      if (!v.startsWith('sevt_')) {
        const waiting = pending.find((p) => p.tool_use_id === v);
        if (thread && !waiting) throw invalid(`${at}.${field}`, `no tool call "${v}" waits in thread "${thread}"`);
        call = { tool_use_id: v, type: '', ...(waiting?.session_id ? { session_thread_id: waiting.session_id } : {}) };
      } else {
        call = (await log()).calls.get(v);
        if (thread && call?.session_thread_id !== thread) {
          const own = (await this.logOf(thread)).calls.get(v);
          if (own) call = { ...own, session_thread_id: thread };
        }
        const where = `session "${id}"${thread ? ` or its thread "${thread}"` : ''}`;
        if (!call) throw invalid(`${at}.${field}`, `no tool call event "${v}" in ${where}`);
        if (!types.includes(call.type)) throw invalid(`${at}.${field}`, `"${v}" is an ${call.type} event, not an ${what} event`);
      }
      if (thread && call.session_thread_id !== thread) {
        throw invalid(
          `${at}.session_thread_id`,
          call.session_thread_id
            ? `the tool call "${v}" waits in thread "${call.session_thread_id}", not "${thread}"`
            : `the tool call "${v}" is the session's own (its primary thread's); omit session_thread_id`,
        );
      }
      const t = call.session_thread_id;
      if (t && !pending.some((p) => p.tool_use_id === call.tool_use_id && p.session_id === t))
        throw invalid(
          `${at}.${field}`,
          `the tool call "${v}" of thread "${t}" is not one that session "${id}" waits on (answered already, or the thread has ended)`,
        );
      return call;
    };
    const signals: Array<{ target: string; name: string; payload: Record<string, unknown>; event: Record<string, unknown> }> = [];
    for (const [i, raw] of (body.events as unknown[]).entries()) {
      const e = raw as Record<string, unknown>;
      const eventId = newEventId();
      const at = `events[${i}]`;
      switch (e?.type) {
        case 'user.message': {
          const content = await this.messageContent(e.content, at);
          const event = { id: eventId, type: e.type, content };
          signals.push({ target: id, name: Signals.message, payload: { id: eventId, content }, event });
          break;
        }
        case 'user.interrupt': {
          // Without a thread the session stops, and with it every sub-agent it runs; with one, only that thread.
          const thread = await threadField(e.session_thread_id, `${at}.session_thread_id`);
          if (thread) {
            const d = await this.temporal.workflow.getHandle(thread).describe();
            if (d.status.name !== 'RUNNING')
              throw invalid(`${at}.session_thread_id`, `thread "${thread}" has ended; there is nothing to interrupt`);
          }
          signals.push({
            target: thread ?? id,
            name: Signals.interrupt,
            payload: { id: eventId },
            event: { id: eventId, type: e.type, ...(thread ? { session_thread_id: thread } : {}) },
          });
          break;
        }
        case 'user.tool_confirmation': {
          if (e.result !== 'allow' && e.result !== 'deny') throw invalid(`${at}.result`, 'must be allow or deny');
          const thread = await threadField(e.session_thread_id, `${at}.session_thread_id`);
          const call = await toolCall(e.tool_use_id, thread, at, 'tool_use_id', ['agent.tool_use', 'agent.mcp_tool_use']);
          const payload: Record<string, unknown> = { id: eventId, tool_use_id: call.tool_use_id, result: e.result };
          if (typeof e.deny_message === 'string') payload.deny_message = e.deny_message;
          signals.push({
            target: id,
            name: Signals.toolConfirmation,
            payload,
            event: {
              id: eventId,
              type: e.type,
              tool_use_id: e.tool_use_id,
              result: e.result,
              deny_message: e.deny_message ?? null,
              ...(call.session_thread_id ? { session_thread_id: call.session_thread_id } : {}),
            },
          });
          break;
        }
        case 'user.custom_tool_result': {
          const thread = await threadField(e.session_thread_id, `${at}.session_thread_id`);
          const call = await toolCall(e.custom_tool_use_id, thread, at, 'custom_tool_use_id', ['agent.custom_tool_use']);
          // Text, images and documents, as a user message takes them.
          const content =
            e.content === undefined ? [{ type: 'text', text: '' }] : typeof e.content === 'string' ? [{ type: 'text', text: e.content }] : await this.messageContent(e.content, at);
          const payload: Record<string, unknown> = { id: eventId, custom_tool_use_id: call.tool_use_id, content };
          if (e.is_error === true) payload.is_error = true;
          signals.push({
            target: id,
            name: Signals.customToolResult,
            payload,
            event: {
              id: eventId,
              type: e.type,
              custom_tool_use_id: e.custom_tool_use_id,
              content,
              is_error: e.is_error ?? null,
              ...(call.session_thread_id ? { session_thread_id: call.session_thread_id } : {}),
            },
          });
          break;
        }
        case 'user.define_outcome': {
          const { payload, event } = outcomeEvent(e, eventId, at);
          signals.push({ target: id, name: Signals.defineOutcome, payload, event });
          break;
        }
        case 'user.tool_result':
          throw invalid(`${at}.type`, 'Tandem runs built-in tools in its own sandboxes; user.tool_result is for self-hosted tool runners');
        default:
          throw invalid(
            `${at}.type`,
            'must be user.message, user.interrupt, user.tool_confirmation, user.custom_tool_result or user.define_outcome',
          );
      }
    }
    const now = new Date().toISOString();
    for (const sig of signals) await this.temporal.workflow.getHandle(sig.target).signal(sig.name, sig.payload);
    return { data: signals.map((sig) => ({ ...sig.event, processed_at: now })) };
  }

  private async listEvents(req: ApiRequest, id = req.params.id!): Promise<unknown> {
    await this.load(id);
    const q = req.query;
    const limit = pageLimit(q, 100);
    const types = [...q.getAll('types[]'), ...q.getAll('types')];
    for (const t of types) if (!(EVENT_TYPES as readonly string[]).includes(t)) throw invalid('types', `unknown event type "${t}"`);
    const order = q.get('order') ?? 'asc';
    if (order !== 'asc' && order !== 'desc') throw invalid('order', 'must be asc or desc');
    const bounds: Array<[string, (a: number, b: number) => boolean]> = [
      ['created_at[gt]', (a, b) => a > b],
      ['created_at[gte]', (a, b) => a >= b],
      ['created_at[lt]', (a, b) => a < b],
      ['created_at[lte]', (a, b) => a <= b],
    ];
    const checks: Array<(t: number) => boolean> = [];
    for (const [k, cmp] of bounds) {
      const v = q.get(k);
      if (v === null) continue;
      const at = Date.parse(v);
      if (Number.isNaN(at)) throw invalid(k, 'must be an RFC 3339 timestamp');
      checks.push((t) => cmp(t, at));
    }
    const all = await this.tandem.getEvents(id);
    const mapped = mapEvents(all).events;
    let rows = all
      .map((e, i) => ({ pos: e.id, event: mapped[i]! }))
      .filter((r) => (!types.length || types.includes(r.event.type)) && checks.every((c) => c(Date.parse(r.event.processed_at))));
    if (order === 'desc') rows = rows.reverse();
    const cursor = decodeCursor<{ after: string }>(q);
    if (cursor) {
      const cmp = (a: string) => compareEventIds(a, cursor.after);
      rows = rows.filter((r) => (order === 'asc' ? cmp(r.pos) > 0 : cmp(r.pos) < 0));
    }
    const page = rows.slice(0, limit);
    return {
      data: page.map((r) => r.event),
      next_page: rows.length > limit ? encodeCursor({ after: page[page.length - 1]!.pos }) : null,
    };
  }

  /**
   * `GET /v1/sessions/{id}/events/stream`: server-sent events, each `event: <type>`, `id: <event id>` and the
   * event as JSON. Without `Last-Event-ID` it starts at the end of the log, as the hosted API does (list the
   * events to read the past); with it, it first sends every event after that one. Ends when the session ends.
   */
  private async stream(req: ApiRequest, id = req.params.id!): Promise<undefined> {
    await this.load(id);
    const lastEventId = typeof req.headers['last-event-id'] === 'string' ? req.headers['last-event-id'] : undefined;
    const res = req.res;
    const abort = new AbortController();
    res.on('close', () => abort.abort());
    const mapper = new EventMapper();
    // Where to start: after the event named by Last-Event-ID, or after the last event written so far.
    const past = await this.tandem.getEvents(id);
    let after: string | undefined;
    if (lastEventId) {
      const found = past.find((e) => apiEventId(e) === lastEventId || e.id === lastEventId);
      if (!found) throw invalid('Last-Event-ID', `no event "${lastEventId}" in session "${id}"`);
      after = found.id;
    } else after = past.at(-1)?.id;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.flushHeaders();
    const ping = setInterval(() => res.write('event: ping\ndata: {}\n\n'), 15_000);
    try {
      for await (const e of this.tandem.followEvents(id, { signal: abort.signal })) {
        const ev = mapper.map(e); // every event goes through the mapper, so tool ids resolve
        if (after !== undefined && compareEventIds(e.id, after) <= 0) continue;
        writeEvent(res, ev);
      }
    } catch (err) {
      if (!abort.signal.aborted) {
        const body = new ApiError(500, `the event stream failed: ${(err as Error).message}`).body();
        res.write(`event: error\ndata: ${JSON.stringify(body)}\n\n`);
      }
    } finally {
      clearInterval(ping);
      res.end();
    }
    return undefined;
  }

  /** Registers the session and event endpoints. */
  routes(router: Router): void {
    router.add('POST', '/v1/sessions', (r) => this.create(r));
    router.add('GET', '/v1/sessions', (r) => this.list(r));
    router.add('GET', '/v1/sessions/:id', async (r) => (await this.load(r.params.id!)).object);
    router.add('POST', '/v1/sessions/:id', (r) => this.update(r, false));
    router.add('POST', '/v1/sessions/:id/archive', (r) => this.update(r, true));
    router.add('DELETE', '/v1/sessions/:id', (r) => this.remove(r));
    router.add('POST', '/v1/sessions/:id/events', (r) => this.send(r));
    router.add('GET', '/v1/sessions/:id/events', (r) => this.listEvents(r));
    router.add('GET', '/v1/sessions/:id/events/stream', (r) => this.stream(r));
    // Tandem's own (the hosted API has no fork): a new session from this one's log at an event, its files as then.
    router.add('POST', '/v1/sessions/:id/fork', (r) => this.fork(r));
    router.add('POST', '/v1/sessions/:id/resources', (r) => this.resources(r, 'add'));
    router.add('GET', '/v1/sessions/:id/resources', (r) => this.resources(r, 'list'));
    router.add('GET', '/v1/sessions/:id/resources/:resource', (r) => this.resources(r, 'retrieve'));
    router.add('POST', '/v1/sessions/:id/resources/:resource', (r) => this.resources(r, 'update'));
    router.add('DELETE', '/v1/sessions/:id/resources/:resource', (r) => this.resources(r, 'delete'));
    router.add('GET', '/v1/sessions/:id/threads', (r) => this.listThreads(r));
    router.add('GET', '/v1/sessions/:id/threads/:thread', async (r) => this.threadObject(r.params.id!, await this.thread(r)));
    router.add('GET', '/v1/sessions/:id/threads/:thread/events', async (r) => this.listEvents(r, (await this.thread(r)).id));
    router.add('GET', '/v1/sessions/:id/threads/:thread/stream', async (r) => this.stream(r, (await this.thread(r)).id));
    router.add('POST', '/v1/sessions/:id/threads/:thread/archive', async (r) => {
      await this.thread(r);
      throw invalid('thread', 'a thread is archived with its session in Tandem (sessions.archive); it keeps its log either way');
    });
  }
}

/** Checks a `user.define_outcome` event of a request (400 naming the field) and gives its signal and API event. */
function outcomeEvent(
  e: Record<string, unknown>,
  eventId: string,
  at: string,
): { payload: Record<string, unknown>; event: Record<string, unknown> } {
  const outcomeId = `outc_${randomBytes(12).toString('hex')}`;
  const check = checkSignal(Signals.defineOutcome, { ...e, id: eventId, outcome_id: outcomeId });
  if (!check.ok) throw invalid(at, check.error.replace(/^user\.define_outcome: /, ''));
  const v = check.value as UserDefineOutcome;
  return {
    payload: v as unknown as Record<string, unknown>,
    event: {
      id: eventId,
      type: 'user.define_outcome',
      outcome_id: outcomeId,
      description: v.description,
      rubric: v.rubric,
      max_iterations: v.max_iterations ?? null,
    },
  };
}

/** An outcome's state in the API's `outcome_evaluation` shape. */
function outcomeEvaluation(o: OutcomeState): Record<string, unknown> {
  return {
    type: 'outcome_evaluation',
    outcome_id: o.outcome_id,
    description: o.description,
    iteration: o.iteration,
    result: o.result,
    explanation: o.explanation,
    completed_at: null, // Tandem does not keep when a verdict came; the span.outcome_evaluation_end event has it
  };
}

function writeEvent(res: ServerResponse, ev: ApiEvent): void {
  res.write(`id: ${ev.id}\nevent: ${ev.type}\ndata: ${JSON.stringify(ev)}\n\n`);
}
