/**
 * Agents, environments, vaults and credentials of the Managed Agents API, stored in `tandemResource` entity
 * workflows. Request bodies are validated here (400 naming the field); secret values of credentials go to the
 * worker-side vault under names derived from the vault and credential ids, and nowhere else.
 */
import { agentDefinitionSchema } from '../config/agent.js';
import { mcpUrlRefusal, privateHostAllowed } from '../activities/mcp-address.js';
import type { ResourceRecord } from '../shared/resources.js';
import type { AgentDefinition, Multiagent, RosterEntry, SandboxConfig } from '../shared/types.js';
import { foldNetwork } from '../shared/network.js';
import type { Vault } from '../vault/index.js';
import {
  ApiError,
  invalid,
  metadataField,
  notFound,
  nullableString,
  objectBody,
  pageOf,
  queryBool,
  stringField,
  type Router,
} from './http.js';
import { newId, type ResourceStore } from './store.js';

/** The stores the handlers use. */
export interface Stores {
  agents: ResourceStore;
  environments: ResourceStore;
  vaults: ResourceStore;
  vault: Vault;
  /** Hosts of MCP servers API clients may name although they are internal (`TANDEM_MCP_PRIVATE_HOSTS`). */
  mcpPrivateHosts?: readonly string[];
}

// ---------------------------------------------------------------------------------------------------------------
// Agents
// ---------------------------------------------------------------------------------------------------------------

function modelConfig(v: unknown): Record<string, unknown> {
  if (typeof v === 'string' && v.length > 0) return { id: v };
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid('model', 'must be a model id or {id, ...}');
  const m = v as Record<string, unknown>;
  if (typeof m.id !== 'string' || m.id.length === 0) throw invalid('model.id', 'must be a non-empty string');
  const out: Record<string, unknown> = { id: m.id };
  if (m.effort !== undefined && m.effort !== null) {
    const effort = typeof m.effort === 'object' ? (m.effort as { type?: unknown }).type : m.effort;
    if (typeof effort !== 'string') throw invalid('model.effort', 'must be low, medium, high, xhigh or max');
    out.effort = effort;
  }
  if (m.speed !== undefined && m.speed !== null && m.speed !== 'standard')
    throw invalid('model.speed', 'Tandem runs every model at standard speed; omit speed');
  return out;
}

/** Checks the agent fields present in `fields` with the agent-file schema; a problem is a 400 naming the field. */
function checkAgentFields(fields: Record<string, unknown>): void {
  const candidate: Record<string, unknown> = {
    name: 'placeholder',
    model: 'placeholder',
    ...Object.fromEntries(
      Object.entries(fields).filter(([k, v]) => v !== null && !['skills', 'execution_identity', 'multiagent'].includes(k)),
    ),
  };
  if (typeof candidate.model === 'object') candidate.model = { id: (candidate.model as { id: string }).id };
  const parsed = agentDefinitionSchema.safeParse(candidate);
  if (parsed.success) return;
  const issue = parsed.error.issues[0]!;
  throw invalid(issue.path.join('.'), issue.message);
}

/**
 * An agent's `skills`: custom skills by id (a version, or the latest when a session starts). Anthropic's pre-built
 * skills are not shipped with Tandem: naming one is a 400 that says so.
 */
function skillRefs(refs: unknown[]): Array<{ type: 'custom'; skill_id: string; version?: string }> {
  if (refs.length > 20) throw invalid('skills', 'an agent has at most 20 skills');
  return refs.map((s, i) => {
    const r = (typeof s === 'object' && s !== null ? s : {}) as Record<string, unknown>;
    if (r.type === 'anthropic')
      throw invalid(`skills[${i}]`, `Tandem does not ship Anthropic's pre-built skills ("${String(r.skill_id)}"); upload it as a custom skill with skills.create`);
    if (r.type !== 'custom' || typeof r.skill_id !== 'string' || !r.skill_id) throw invalid(`skills[${i}]`, 'must be {type: "custom", skill_id, version?}');
    for (const k of Object.keys(r)) if (!['type', 'skill_id', 'version'].includes(k)) throw invalid(`skills[${i}].${k}`, 'is not a field of a skill');
    if (r.version != null && (typeof r.version !== 'string' || !r.version)) throw invalid(`skills[${i}].version`, 'must be a version id');
    return { type: 'custom', skill_id: r.skill_id, ...(typeof r.version === 'string' ? { version: r.version } : {}) };
  });
}

function agentFields(body: Record<string, unknown>, update: boolean): Record<string, unknown> {
  const known = ['name', 'model', 'system', 'description', 'tools', 'mcp_servers', 'metadata', 'multiagent', 'skills', 'execution_identity', 'version'];
  for (const k of Object.keys(body)) if (!known.includes(k)) throw invalid(k, 'is not a field of an agent');
  const out: Record<string, unknown> = {};
  if (!update || body.name !== undefined) out.name = stringField(body, 'name');
  if (!update || body.model !== undefined) out.model = modelConfig(body.model);
  for (const k of ['system', 'description'] as const) {
    const v = nullableString(body, k);
    if (v !== undefined || !update) out[k] = v ? v : null;
  }
  for (const k of ['tools', 'mcp_servers', 'skills'] as const) {
    const v = body[k];
    if (v === undefined && update) continue;
    if (v !== undefined && v !== null && !Array.isArray(v)) throw invalid(k, 'must be a list');
    out[k] = (v as unknown[] | null | undefined) ?? [];
  }
  // MCP servers as the API defines them: URL servers by name. Commands (stdio) and headers with secret references are
  // agent-file features only: through the API they would run programs on a worker or send any vault secret anywhere.
  (out.mcp_servers as unknown[] | undefined)?.forEach((m, i) => {
    const server = m as Record<string, unknown>;
    if (server?.type !== 'url') throw invalid(`mcp_servers[${i}].type`, 'must be url (stdio servers are for agent files only)');
    for (const k of Object.keys(server))
      if (!['type', 'name', 'url'].includes(k))
        throw invalid(`mcp_servers[${i}].${k}`, 'is not a field of an MCP server; credentials come from the session\'s vaults');
  });
  // Tool configs may repeat their name as `type` (the SDK's params allow it); agent files do not.
  out.tools = (out.tools as Array<Record<string, unknown>> | undefined)?.map((t) =>
    Array.isArray(t?.configs)
      ? {
          ...t,
          configs: (t.configs as Array<Record<string, unknown>>).map(({ type, ...c }) =>
            type === undefined || type === c.name ? c : { type, ...c },
          ),
        }
      : t,
  );
  if (out.tools === undefined) delete out.tools;
  if (out.skills !== undefined) out.skills = skillRefs(out.skills as unknown[]);
  if (body.multiagent !== undefined || !update) out.multiagent = multiagentField(body.multiagent);
  if (body.execution_identity !== undefined || !update) {
    const ei = body.execution_identity as { type?: string } | null | undefined;
    if (ei && ei.type !== 'service_account')
      throw invalid('execution_identity', 'Tandem runs agents under its own worker identity; only service_account is accepted');
    out.execution_identity = { type: 'service_account' };
  }
  checkAgentFields(out);
  return out;
}

/**
 * Refuses (400 naming the field, `<prefix>mcp_servers[i].url`) an MCP server URL at a loopback, private or link-local
 * address, or at a name that resolves to one: the worker would request it from its own network (a cloud metadata
 * endpoint, the worker host's own services). Hosts in `allowed` pass.
 */
export async function checkMcpUrls(fields: Record<string, unknown>, allowed: readonly string[] = [], prefix = ''): Promise<void> {
  const servers = (fields.mcp_servers ?? []) as Array<{ url?: unknown }>;
  for (const [i, server] of servers.entries()) {
    if (typeof server?.url !== 'string') continue;
    const why = await mcpUrlRefusal(server.url, { allowed });
    if (why) throw invalid(`${prefix}mcp_servers[${i}].url`, why);
  }
}

/**
 * Marks each URL MCP server of the agent (and of the agents it may delegate to) whose host is not in `allowed` as
 * `public_only`: the worker then connects to it only on public addresses, checked on every connection it opens.
 */
export function markPublicOnly(def: AgentDefinition, allowed: readonly string[] = []): AgentDefinition {
  const servers = def.mcp_servers?.map((s) => (s.type === 'url' && !privateHostAllowed(s.url, allowed) ? { ...s, public_only: true } : s));
  const roster = def.multiagent?.agents.map((e) =>
    typeof e === 'object' && e.type === 'agent' ? { ...e, definition: markPublicOnly(e.definition, allowed) } : e,
  );
  return {
    ...def,
    ...(servers ? { mcp_servers: servers } : {}),
    ...(def.multiagent && roster ? { multiagent: { ...def.multiagent, agents: roster } } : {}),
  };
}

/** Checks and normalises the agent fields present in `body` (an update or a session's overrides). */
export function agentUpdateFields(body: Record<string, unknown>): Record<string, unknown> {
  return agentFields(body, true);
}

/**
 * `multiagent_20261001` as the coordinator it means in Tandem: sub-agents enabled with a roster of predefined agents
 * (`subagents.predefined_agents`). What Tandem does not run is refused naming the member, including the members
 * that default to enabled (inline agents, workflow runs): a configuration that asks for them must say `disabled`.
 */
function fromMultiagent20261001(m: Record<string, unknown>): Record<string, unknown> {
  const state = (k: string) => (m[k] === undefined || m[k] === null ? undefined : (m[k] as { type?: unknown }).type);
  for (const k of Object.keys(m))
    if (!['type', 'advisor', 'subagents', 'workflows'].includes(k)) throw invalid(`multiagent.${k}`, 'is not a member of multiagent_20261001');
  if (state('advisor') !== undefined && state('advisor') !== 'disabled')
    throw invalid('multiagent.advisor', 'Tandem has no advisor model; omit it or send {type: "disabled"}');
  if (state('workflows') !== 'disabled')
    throw invalid('multiagent.workflows', 'Tandem runs no workflow runs, which are enabled by default; send {type: "disabled"}');
  const sub = (m.subagents ?? {}) as Record<string, unknown>;
  if (sub.type !== 'enabled')
    throw invalid('multiagent.subagents', 'must be {type: "enabled", predefined_agents: [...]} (an agent without sub-agents omits multiagent)');
  for (const k of Object.keys(sub))
    if (!['type', 'inline_agents', 'predefined_agents'].includes(k)) throw invalid(`multiagent.subagents.${k}`, 'is not a member of subagents');
  if ((sub.inline_agents as { type?: unknown } | null | undefined)?.type !== 'disabled')
    throw invalid('multiagent.subagents.inline_agents', 'Tandem runs predefined sub-agents only, and inline agents are enabled by default; send {type: "disabled"}');
  const roster = sub.predefined_agents;
  if (!Array.isArray(roster) || roster.length === 0 || roster.length > 20)
    throw invalid('multiagent.subagents.predefined_agents', 'must list 1 to 20 agents');
  return { type: 'coordinator', agents: roster };
}

/**
 * `multiagent` of an agent: the `coordinator` topology whose roster names stored agents (`"agent_…"` or
 * `{type: 'agent', id, version?}`) or `{type: 'self'}`. Stored with agent references; a session inlines them.
 */
function multiagentField(v: unknown): Record<string, unknown> | null {
  if (v === undefined || v === null) return null;
  const m = (v as Record<string, unknown>)?.type === 'multiagent_20261001' ? fromMultiagent20261001(v as Record<string, unknown>) : (v as Record<string, unknown>);
  if (typeof m !== 'object' || m.type !== 'coordinator')
    throw invalid('multiagent.type', 'Tandem runs sub-agents as a coordinator (type: coordinator, or multiagent_20261001 with predefined sub-agents)');
  if (!Array.isArray(m.agents) || m.agents.length === 0 || m.agents.length > 20)
    throw invalid('multiagent.agents', 'must list 1 to 20 agents');
  const agents = m.agents.map((e: unknown, i: number) => {
    if (typeof e === 'string' && e) return { type: 'agent', id: e };
    const entry = e as Record<string, unknown>;
    if (entry?.type === 'self') return { type: 'self' };
    if (entry?.type === 'agent' && typeof entry.id === 'string') {
      if (entry.version !== undefined && (!Number.isInteger(entry.version) || (entry.version as number) < 1))
        throw invalid(`multiagent.agents[${i}].version`, 'must be an integer of at least 1');
      return { type: 'agent', id: entry.id, ...(entry.version !== undefined ? { version: entry.version } : {}) };
    }
    throw invalid(`multiagent.agents[${i}]`, 'must be an agent id, {type: "agent", id, version} or {type: "self"}');
  });
  const out: Record<string, unknown> = { type: 'coordinator', agents };
  if (m.concurrent_sandbox !== undefined) {
    if (typeof m.concurrent_sandbox !== 'boolean') throw invalid('multiagent.concurrent_sandbox', 'must be a boolean');
    out.concurrent_sandbox = m.concurrent_sandbox;
  }
  for (const [k, max] of [['max_depth', 5], ['max_concurrent', 32], ['max_delegations_per_turn', 64]] as const) {
    const n = m[k];
    if (n === undefined) continue;
    if (!Number.isInteger(n) || (n as number) < 1 || (n as number) > max)
      throw invalid(`multiagent.${k}`, `must be an integer from 1 to ${max}`);
    out[k] = n;
  }
  return out;
}

/**
 * The agent definition a session pins, from a stored agent version, with the agents of its `multiagent` roster
 * inlined at their pinned (or, when unpinned, current) versions.
 */
export async function resolveAgentDefinition(
  agent: ResourceRecord,
  agents: ResourceStore,
  chain: string[] = [],
): Promise<AgentDefinition> {
  const def = agentDefinition(agent);
  const m = agent.multiagent as { agents: Array<{ type: string; id?: string; version?: number }> } | null;
  if (!m) return def;
  if (chain.includes(agent.id) || chain.length >= 5)
    throw invalid('agent', `the multiagent rosters from agent "${chain[0] ?? agent.id}" loop or nest deeper than 5; use {type: "self"} for recursion`);
  const roster: RosterEntry[] = [];
  for (const e of m.agents) {
    if (e.type === 'self') roster.push({ type: 'self' });
    else {
      const child = await agents.get(e.id!, e.version).catch((err: unknown) => {
        if (err instanceof ApiError && err.status === 404) throw invalid('agent', `multiagent roster names agent "${e.id}", which was not found`);
        throw err;
      });
      roster.push({ type: 'agent', definition: await resolveAgentDefinition(child, agents, [...chain, agent.id]) });
    }
  }
  def.multiagent = { ...(m as unknown as Multiagent), agents: roster };
  return def;
}

/** A vault credential an MCP server can use: the server URL and the name of its token in the worker-side vault. */
export interface McpCredential {
  url: string;
  secret: string;
}

/** The MCP credentials of the given vaults, in order (archived credentials are skipped). */
export async function mcpCredentials(vaults: ResourceStore, vaultIds: string[]): Promise<McpCredential[]> {
  const out: McpCredential[] = [];
  for (const id of vaultIds) {
    const state = await vaults.state(id);
    for (const c of Object.values(state.credentials)) {
      const auth = c.auth as { type: string; mcp_server_url?: string };
      if (c.archived_at || !auth.mcp_server_url) continue;
      const field = auth.type === 'static_bearer' ? 'token' : auth.type === 'mcp_oauth' ? 'access_token' : undefined;
      if (field) out.push({ url: auth.mcp_server_url, secret: secretName(id, c.id, field) });
    }
  }
  return out;
}

/**
 * Gives each URL MCP server of the agent (and of the agents it may delegate to) the bearer token of the first
 * credential for its URL: an `Authorization` header that names the secret, never its value.
 */
export function withMcpCredentials(def: AgentDefinition, creds: McpCredential[]): AgentDefinition {
  const norm = (u: string) => u.replace(/\/+$/, '');
  const servers = def.mcp_servers?.map((s) => {
    if (s.type !== 'url' || s.headers?.Authorization || s.headers?.authorization) return s;
    const cred = creds.find((c) => norm(c.url) === norm(s.url));
    return cred ? { ...s, headers: { ...s.headers, Authorization: `Bearer \${secret:${cred.secret}}` } } : s;
  });
  const roster = def.multiagent?.agents.map((e) =>
    typeof e === 'object' && e.type === 'agent' ? { ...e, definition: withMcpCredentials(e.definition, creds) } : e,
  );
  return {
    ...def,
    ...(servers ? { mcp_servers: servers } : {}),
    ...(def.multiagent && roster ? { multiagent: { ...def.multiagent, agents: roster } } : {}),
  };
}

/** The agent definition of a stored agent version, without its roster. */
export function agentDefinition(agent: ResourceRecord): AgentDefinition {
  const model = agent.model as { id: string; effort?: string };
  const def: AgentDefinition = { name: agent.name as string, model: model.effort ? model : model.id };
  if (agent.system) def.system = agent.system as string;
  if (agent.description) def.description = agent.description as string;
  if ((agent.tools as unknown[]).length) def.tools = agent.tools as AgentDefinition['tools'];
  if ((agent.mcp_servers as unknown[]).length) def.mcp_servers = agent.mcp_servers as AgentDefinition['mcp_servers'];
  if (Object.keys(agent.metadata).length) def.metadata = agent.metadata;
  return def;
}

function versionParam(query: URLSearchParams, name = 'version'): number | undefined {
  const raw = query.get(name);
  if (raw === null) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw invalid(name, 'must be an integer of at least 1');
  return n;
}

function createdFilter(query: URLSearchParams): (r: ResourceRecord) => boolean {
  const gte = query.get('created_at[gte]');
  const lte = query.get('created_at[lte]');
  for (const [k, v] of [['created_at[gte]', gte], ['created_at[lte]', lte]] as const)
    if (v !== null && Number.isNaN(Date.parse(v))) throw invalid(k, 'must be an RFC 3339 timestamp');
  return (r) =>
    (gte === null || Date.parse(r.created_at) >= Date.parse(gte)) &&
    (lte === null || Date.parse(r.created_at) <= Date.parse(lte));
}

function addAgentRoutes(router: Router, s: Stores): void {
  router.add('POST', '/v1/agents', async (req) => {
    const body = objectBody(req.body);
    if (body.version !== undefined) throw invalid('version', 'is set by the server on create');
    const fields = agentFields(body, false);
    await checkMcpUrls(fields, s.mcpPrivateHosts);
    return s.agents.create({ type: 'agent', ...fields, metadata: metadataField(body.metadata) });
  });
  router.add('GET', '/v1/agents', async (req) =>
    s.agents.list(req.query, queryBool(req.query, 'include_archived'), createdFilter(req.query)),
  );
  router.add('GET', '/v1/agents/:id', async (req) => s.agents.get(req.params.id!, versionParam(req.query)));
  router.add('POST', '/v1/agents/:id', async (req) => {
    const body = objectBody(req.body);
    const { version, metadata, ...rest } = body;
    if (version !== undefined && (!Number.isInteger(version) || (version as number) < 1))
      throw invalid('version', 'must be an integer of at least 1');
    const set = agentFields(rest, true);
    await checkMcpUrls(set, s.mcpPrivateHosts);
    return s.agents.apply(req.params.id!, {
      op: 'update',
      set,
      ...(metadata !== undefined ? { metadata: metadata === null ? null : metadataField(metadata, 'metadata', true) } : {}),
      ...(version !== undefined ? { expected_version: version as number } : {}),
    });
  });
  router.add('POST', '/v1/agents/:id/archive', async (req) => s.agents.apply(req.params.id!, { op: 'archive' }));
  router.add('GET', '/v1/agents/:id/versions', async (req) => {
    const state = await s.agents.state(req.params.id!);
    return pageOf([...state.versions].reverse(), req.query);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Environments
// ---------------------------------------------------------------------------------------------------------------

const PACKAGE_MANAGERS = ['apt', 'cargo', 'gem', 'go', 'npm', 'pip'] as const;

function networking(v: unknown): Record<string, unknown> {
  const n = v as Record<string, unknown>;
  if (typeof n !== 'object' || n === null) throw invalid('config.networking', 'must be {type: unrestricted | limited}');
  if (n.type === 'unrestricted') return { type: 'unrestricted' };
  if (n.type !== 'limited') throw invalid('config.networking.type', 'must be unrestricted or limited');
  const hosts = n.allowed_hosts ?? [];
  if (!Array.isArray(hosts) || hosts.some((h) => typeof h !== 'string' || h.length === 0))
    throw invalid('config.networking.allowed_hosts', 'must be a list of host names');
  return {
    type: 'limited',
    allowed_hosts: hosts,
    allow_mcp_servers: n.allow_mcp_servers === true,
    allow_package_managers: n.allow_package_managers === true,
  };
}

function packages(v: unknown): Record<string, unknown> {
  const p = (v ?? {}) as Record<string, unknown>;
  if (typeof p !== 'object') throw invalid('config.packages', 'must be an object of package lists');
  const out: Record<string, unknown> = { type: 'packages' };
  for (const m of PACKAGE_MANAGERS) {
    const list = p[m] ?? [];
    if (!Array.isArray(list) || list.some((x) => typeof x !== 'string'))
      throw invalid(`config.packages.${m}`, 'must be a list of package names');
    // Refused rather than stored and not installed: a session would find them missing only when it used them.
    if (list.length > 0)
      throw invalid(
        `config.packages.${m}`,
        `Tandem does not install packages into sandboxes yet, so ${list.slice(0, 5).map((p) => JSON.stringify(p.slice(0, 100))).join(', ')} would be missing; ` +
          'bake them into the sandbox image (TANDEM_SANDBOX_IMAGE) and leave the lists empty',
      );
    out[m] = list;
  }
  return out;
}

const DEFAULT_NETWORKING = { type: 'limited', allowed_hosts: [], allow_mcp_servers: false, allow_package_managers: false };

/** A full environment config from request params, over `current` (update: omitted fields are kept). */
function environmentConfig(v: unknown, current?: Record<string, unknown>): Record<string, unknown> {
  if (v === undefined || v === null) return current ?? { type: 'cloud', networking: DEFAULT_NETWORKING, packages: packages({}) };
  const c = v as Record<string, unknown>;
  if (typeof c !== 'object') throw invalid('config', 'must be {type: cloud | self_hosted, ...}');
  if (c.type !== 'cloud' && c.type !== 'self_hosted') throw invalid('config.type', 'must be cloud or self_hosted');
  if (current && current.type !== c.type) throw invalid('config.type', `cannot change after creation (it is ${String(current.type)})`);
  if (c.type === 'self_hosted') return { type: 'self_hosted' };
  return {
    type: 'cloud',
    networking: c.networking != null ? networking(c.networking) : (current?.networking ?? DEFAULT_NETWORKING),
    packages: c.packages != null ? packages(c.packages) : (current?.packages ?? packages({})),
  };
}

/**
 * The sandbox settings an environment gives a session of `agent`: `unrestricted` networking is Tandem's
 * `unrestricted` policy (every public host through the egress proxy), `limited` its `limited` policy with the same
 * hosts, the package registries (`allow_package_managers`) and the agent's MCP servers (`allow_mcp_servers`). A
 * `self_hosted` environment's sandbox has no network.
 */
export function sandboxOf(env: ResourceRecord, agent: Pick<AgentDefinition, 'mcp_servers'>): SandboxConfig {
  const config = env.config as { type: string; networking?: { type: string; allowed_hosts?: string[]; allow_mcp_servers?: boolean; allow_package_managers?: boolean } };
  const n = config.networking;
  if (!n) return { network: { policy: 'none' } };
  const network = n.type === 'unrestricted' ? { policy: 'unrestricted' as const } : { ...n, policy: 'limited' as const };
  return { network: foldNetwork(network, agent.mcp_servers ?? []) };
}

function addEnvironmentRoutes(router: Router, s: Stores): void {
  const known = ['name', 'description', 'config', 'metadata', 'scope'];
  const check = (body: Record<string, unknown>) => {
    for (const k of Object.keys(body)) if (!known.includes(k)) throw invalid(k, 'is not a field of an environment');
    if (body.scope != null && body.scope !== 'organization')
      throw invalid('scope', 'Tandem has one scope, organization');
  };
  router.add('POST', '/v1/environments', async (req) => {
    const body = objectBody(req.body);
    check(body);
    return s.environments.create({
      type: 'environment',
      name: stringField(body, 'name'),
      description: nullableString(body, 'description') ?? null,
      config: environmentConfig(body.config),
      metadata: metadataField(body.metadata),
      scope: 'organization',
    });
  });
  router.add('GET', '/v1/environments', async (req) => s.environments.list(req.query, queryBool(req.query, 'include_archived')));
  router.add('GET', '/v1/environments/:id', async (req) => s.environments.get(req.params.id!));
  router.add('POST', '/v1/environments/:id', async (req) => {
    const body = objectBody(req.body);
    check(body);
    const current = await s.environments.get(req.params.id!);
    const set: Record<string, unknown> = {};
    if (body.name != null) set.name = stringField(body, 'name');
    const description = nullableString(body, 'description');
    if (description !== undefined) set.description = description;
    if (body.config != null) set.config = environmentConfig(body.config, current.config as Record<string, unknown>);
    return s.environments.apply(req.params.id!, {
      op: 'update',
      set,
      ...(body.metadata !== undefined ? { metadata: metadataField(body.metadata, 'metadata', true) } : {}),
    });
  });
  router.add('POST', '/v1/environments/:id/archive', async (req) => s.environments.apply(req.params.id!, { op: 'archive' }));
  router.add('DELETE', '/v1/environments/:id', async (req) => {
    await s.environments.remove(req.params.id!);
    return { id: req.params.id, type: 'environment_deleted' };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Vaults and credentials
// ---------------------------------------------------------------------------------------------------------------

/** Name of a credential's secret in the worker-side vault. */
export function secretName(vaultId: string, credentialId: string, field: string): string {
  return `${vaultId}/${credentialId}/${field}`;
}

interface SplitAuth {
  /** The auth object as the API returns it: no secret values. */
  auth: Record<string, unknown>;
  /** Secret values by field name, for the worker-side vault. */
  secrets: Record<string, string>;
}

function secretString(v: unknown, field: string, required: boolean): string | undefined {
  if (v === undefined || v === null) {
    if (required) throw invalid(field, 'is required');
    return undefined;
  }
  if (typeof v !== 'string' || v.length === 0) throw invalid(field, 'must be a non-empty string');
  return v;
}

/** Splits credential auth params into the stored (public) part and the secret values; `current` for updates. */
export function splitAuth(v: unknown, current?: Record<string, unknown>): SplitAuth {
  const a = v as Record<string, unknown>;
  if (typeof a !== 'object' || a === null) throw invalid('auth', 'must be an object with a type');
  if (current && a.type !== current.type) throw invalid('auth.type', `cannot change (it is ${String(current.type)})`);
  const required = !current;
  const secrets: Record<string, string> = {};
  const put = (name: string, value: string | undefined) => {
    if (value !== undefined) secrets[name] = value;
  };
  switch (a.type) {
    case 'static_bearer': {
      const moved = a.mcp_server_url !== undefined && a.mcp_server_url !== current?.mcp_server_url;
      put('token', secretString(a.token, 'auth.token', required || moved));
      const url = a.mcp_server_url ?? current?.mcp_server_url;
      if (typeof url !== 'string' || !url) throw invalid('auth.mcp_server_url', 'must be a URL');
      return { auth: { type: 'static_bearer', mcp_server_url: url }, secrets };
    }
    case 'mcp_oauth': {
      const moved = a.mcp_server_url !== undefined && a.mcp_server_url !== current?.mcp_server_url;
      put('access_token', secretString(a.access_token, 'auth.access_token', required || moved));
      const url = a.mcp_server_url ?? current?.mcp_server_url;
      if (typeof url !== 'string' || !url) throw invalid('auth.mcp_server_url', 'must be a URL');
      let refresh = (current?.refresh as Record<string, unknown> | null | undefined) ?? null;
      const r = a.refresh as Record<string, unknown> | null | undefined;
      if (r === null) refresh = null;
      else if (r) {
        put('refresh_token', secretString(r.refresh_token, 'auth.refresh.refresh_token', required));
        const tea = (r.token_endpoint_auth ?? refresh?.token_endpoint_auth ?? { type: 'none' }) as Record<string, unknown>;
        if (tea.type !== 'none') put('client_secret', secretString(tea.client_secret, 'auth.refresh.token_endpoint_auth.client_secret', required));
        refresh = {
          client_id: r.client_id ?? refresh?.client_id,
          token_endpoint: r.token_endpoint ?? refresh?.token_endpoint,
          token_endpoint_auth: { type: tea.type },
          resource: r.resource ?? refresh?.resource ?? null,
          scope: r.scope ?? refresh?.scope ?? null,
        };
      }
      const expires = a.expires_at !== undefined ? a.expires_at : (current?.expires_at ?? null);
      return { auth: { type: 'mcp_oauth', mcp_server_url: url, expires_at: expires, refresh }, secrets };
    }
    case 'environment_variable': {
      put('secret_value', secretString(a.secret_value, 'auth.secret_value', required));
      const name = a.secret_name ?? current?.secret_name;
      if (typeof name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
        throw invalid('auth.secret_name', 'must be an environment variable name');
      const net = a.networking != null ? a.networking : current?.networking;
      if (!net) throw invalid('auth.networking', 'is required');
      const n = net as Record<string, unknown>;
      if (n.type !== 'unrestricted' && n.type !== 'limited') throw invalid('auth.networking.type', 'must be unrestricted or limited');
      const inj = { ...((current?.injection_location as object) ?? { body: false, header: true }), ...((a.injection_location as object) ?? {}) };
      return {
        auth: {
          type: 'environment_variable',
          secret_name: name,
          networking: n.type === 'limited' ? { type: 'limited', allowed_hosts: n.allowed_hosts ?? [] } : { type: 'unrestricted' },
          injection_location: inj,
        },
        secrets,
      };
    }
    default:
      throw invalid('auth.type', 'must be static_bearer, mcp_oauth or environment_variable');
  }
}

function addVaultRoutes(router: Router, s: Stores): void {
  router.add('POST', '/v1/vaults', async (req) => {
    const body = objectBody(req.body);
    for (const k of Object.keys(body)) if (!['display_name', 'metadata'].includes(k)) throw invalid(k, 'is not a field of a vault');
    return s.vaults.create({ type: 'vault', display_name: stringField(body, 'display_name'), metadata: metadataField(body.metadata) });
  });
  router.add('GET', '/v1/vaults', async (req) => s.vaults.list(req.query, queryBool(req.query, 'include_archived')));
  router.add('GET', '/v1/vaults/:id', async (req) => s.vaults.get(req.params.id!));
  router.add('POST', '/v1/vaults/:id', async (req) => {
    const body = objectBody(req.body);
    const set: Record<string, unknown> = {};
    if (body.display_name != null) set.display_name = stringField(body, 'display_name');
    return s.vaults.apply(req.params.id!, {
      op: 'update',
      set,
      ...(body.metadata !== undefined ? { metadata: body.metadata === null ? null : metadataField(body.metadata, 'metadata', true) } : {}),
    });
  });
  router.add('POST', '/v1/vaults/:id/archive', async (req) => s.vaults.apply(req.params.id!, { op: 'archive' }));
  router.add('DELETE', '/v1/vaults/:id', async (req) => {
    const state = await s.vaults.state(req.params.id!);
    await s.vaults.remove(req.params.id!);
    for (const c of Object.values(state.credentials)) removeSecrets(s.vault, req.params.id!, c.id);
    return { id: req.params.id, type: 'vault_deleted' };
  });

  const credentialOf = async (vaultId: string, id: string): Promise<ResourceRecord> => {
    const state = await s.vaults.state(vaultId);
    const c = state.credentials[id];
    if (!c) throw notFound('credential', id);
    return c;
  };
  router.add('POST', '/v1/vaults/:vault/credentials', async (req) => {
    const body = objectBody(req.body);
    for (const k of Object.keys(body)) if (!['auth', 'display_name', 'metadata'].includes(k)) throw invalid(k, 'is not a field of a credential');
    const vaultId = req.params.vault!;
    const vaultRecord = await s.vaults.get(vaultId);
    if (vaultRecord.archived_at) throw new ApiError(400, `vault "${vaultId}" is archived; credentials cannot be added`);
    const { auth, secrets } = splitAuth(body.auth);
    const id = newId('vcrd');
    const now = new Date().toISOString();
    const record = {
      id,
      type: 'vault_credential',
      vault_id: vaultId,
      display_name: nullableString(body, 'display_name') ?? null,
      auth,
      metadata: metadataField(body.metadata),
      created_at: now,
      updated_at: now,
      archived_at: null,
    } as ResourceRecord;
    for (const [field, value] of Object.entries(secrets)) s.vault.set(secretName(vaultId, id, field), value);
    try {
      return await s.vaults.apply(vaultId, { op: 'add_credential', record });
    } catch (err) {
      removeSecrets(s.vault, vaultId, id);
      throw err;
    }
  });
  router.add('GET', '/v1/vaults/:vault/credentials', async (req) => {
    const state = await s.vaults.state(req.params.vault!);
    const all = queryBool(req.query, 'include_archived');
    const list = Object.values(state.credentials)
      .filter((c) => all || !c.archived_at)
      .sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    return pageOf(list, req.query);
  });
  router.add('GET', '/v1/vaults/:vault/credentials/:id', async (req) => credentialOf(req.params.vault!, req.params.id!));
  router.add('POST', '/v1/vaults/:vault/credentials/:id', async (req) => {
    const body = objectBody(req.body);
    const vaultId = req.params.vault!;
    const current = await credentialOf(vaultId, req.params.id!);
    const set: Record<string, unknown> = {};
    let secrets: Record<string, string> = {};
    if (body.auth != null) {
      const split = splitAuth(body.auth, current.auth as Record<string, unknown>);
      set.auth = split.auth;
      secrets = split.secrets;
    }
    const displayName = nullableString(body, 'display_name');
    if (displayName !== undefined) set.display_name = displayName;
    const record = await s.vaults.apply(vaultId, {
      op: 'update',
      credential_id: current.id,
      set,
      ...(body.metadata !== undefined ? { metadata: body.metadata === null ? null : metadataField(body.metadata, 'metadata', true) } : {}),
    });
    for (const [field, value] of Object.entries(secrets)) s.vault.set(secretName(vaultId, current.id, field), value);
    return record;
  });
  router.add('POST', '/v1/vaults/:vault/credentials/:id/archive', async (req) =>
    s.vaults.apply(req.params.vault!, { op: 'archive', credential_id: req.params.id! }),
  );
  router.add('DELETE', '/v1/vaults/:vault/credentials/:id', async (req) => {
    await s.vaults.apply(req.params.vault!, { op: 'delete', credential_id: req.params.id! });
    removeSecrets(s.vault, req.params.vault!, req.params.id!);
    return { id: req.params.id, type: 'vault_credential_deleted' };
  });
}

function removeSecrets(vault: Vault, vaultId: string, credentialId: string): void {
  for (const field of ['token', 'access_token', 'refresh_token', 'client_secret', 'secret_value'])
    vault.remove(secretName(vaultId, credentialId, field));
}

/** Registers the agent, environment and vault endpoints. */
export function addResourceRoutes(router: Router, s: Stores): void {
  addAgentRoutes(router, s);
  addEnvironmentRoutes(router, s);
  addVaultRoutes(router, s);
}
