/**
 * MCP servers on the worker: the harness, not the sandbox, talks to them (DESIGN rule 9). Secrets named in a server's
 * headers or environment are read from the worker's vault here and nowhere else; no value ever enters an activity
 * result, a failure message or the sandbox. Connections are kept per worker process and reused (a stdio server
 * stays one running process), and closed when idle; tool listings are cached for a while.
 */
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, McpError, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import type { ToolDefinition } from '../harness/context.js';
import { Failure } from '../shared/failures.js';
import { mcpToolPolicy, SECRET_TEMPLATE } from '../shared/mcp.js';
import type {
  AgentDefinition,
  CallMcpToolInput,
  CallMcpToolResult,
  McpServerConfig,
  McpToolRef,
  ModelBlock,
  SecretValue,
} from '../shared/types.js';
import { unknownSecretsMessage } from '../vault/index.js';
import { internalAddressError, publicOnlyFetch } from './mcp-address.js';

/** Where secret values come from (the worker's `Vault`). */
export interface SecretSource {
  get(name: string): string | undefined;
}

/** Settings of the MCP client side of a worker. */
export interface McpSettings {
  /** How long a server's tool listing is reused. Default 5 minutes. */
  listTtlMs?: number;
  /** A connection (a stdio server's process) unused this long is closed. Default 5 minutes. */
  idleMs?: number;
  /** Time limit of one tool call. Default 5 minutes. */
  callTimeoutMs?: number;
  /** Time limit of connecting and of listing tools. Default 15 s. */
  connectTimeoutMs?: number;
  /** Characters of one tool result before head/tail truncation. Default 30000. */
  outputCap?: number;
}

/** One tool as a server lists it. */
export interface McpListedTool {
  name: string;
  description: string;
  input_schema: Record<string, unknown>;
}

/** The MCP tools of one model call: definitions, how each offered name routes, and servers that could not list. */
export interface McpOffer {
  definitions: ToolDefinition[];
  routes: Map<string, McpToolRef>;
  unavailable: Array<{ server: string; message: string }>;
}

/** A server's configuration with its secrets read: what is actually used to connect. */
interface ResolvedServer {
  config: McpServerConfig;
  values: Record<string, string>;
  /** [value, name] of every secret used, to scrub text that might echo one. */
  secrets: Array<[string, string]>;
  key: string;
}

interface Connection {
  client: Client;
  stderr: () => string;
  active: number;
  timer?: NodeJS.Timeout;
  closed: boolean;
}

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

/** Replaces every secret value in `text` with `[secret NAME]`. */
export function scrub(text: string, secrets: ReadonlyArray<readonly [string, string]>): string {
  let out = text;
  for (const [value, name] of secrets) if (value.length > 0) out = out.split(value).join(`[secret ${name}]`);
  return out;
}

/** {@link scrub} applied to every string inside a JSON value (a tool's description and input schema). */
export function scrubDeep<T>(value: T, secrets: ReadonlyArray<readonly [string, string]>): T {
  if (typeof value === 'string') return scrub(value, secrets) as T;
  if (Array.isArray(value)) return value.map((v) => scrubDeep(v, secrets)) as T;
  if (value && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [scrub(k, secrets), scrubDeep(v, secrets)])) as T;
  return value;
}

/** Keeps the head and tail of `text` within `cap` characters, saying how much was left out. */
export function boundText(text: string, cap: number): { text: string; truncated: boolean } {
  if (text.length <= cap) return { text, truncated: false };
  const half = Math.floor(cap / 2);
  const omitted = text.length - 2 * half;
  return { text: `${text.slice(0, half)}\n[... ${omitted} characters omitted by Tandem ...]\n${text.slice(-half)}`, truncated: true };
}

/** The text of an MCP tool result: text blocks as they are, other blocks described, structured content as JSON. */
export function resultText(result: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const b of (Array.isArray(result.content) ? result.content : []) as Array<Record<string, unknown>>) {
    if (b.type === 'text') parts.push(String(b.text ?? ''));
    else if (b.type === 'image' || b.type === 'audio')
      parts.push(`[${b.type} ${String(b.mimeType ?? '')}, ${String(b.data ?? '').length} characters of base64 not shown]`);
    else if (b.type === 'resource_link') parts.push(`[resource link ${String(b.name ?? '')} ${String(b.uri ?? '')}]`);
    else if (b.type === 'resource') {
      const r = (b.resource ?? {}) as Record<string, unknown>;
      parts.push(typeof r.text === 'string' ? `[resource ${String(r.uri ?? '')}]\n${r.text}` : `[resource ${String(r.uri ?? '')}, binary not shown]`);
    } else parts.push(JSON.stringify(b));
  }
  if (parts.length === 0 && result.structuredContent !== undefined) parts.push(JSON.stringify(result.structuredContent));
  if (parts.length === 0 && result.toolResult !== undefined) parts.push(JSON.stringify(result.toolResult)); // old servers
  return parts.join('\n');
}

/**
 * Names the model sees for MCP tools: the tool's own name when it is a valid tool name that nothing else uses,
 * otherwise `<server>__<tool>` (cleaned up, at most 64 characters, numbered if still taken).
 */
export function offerNames(listings: Array<{ server: string; tools: string[] }>, taken: Iterable<string>): Map<string, McpToolRef> {
  const used = new Set(taken);
  const out = new Map<string, McpToolRef>();
  const counts = new Map<string, number>();
  for (const { tools } of listings) for (const t of tools) counts.set(t, (counts.get(t) ?? 0) + 1);
  const clean = (s: string) => s.replace(/[^a-zA-Z0-9_-]/g, '_');
  for (const { server, tools } of listings) {
    for (const tool of tools) {
      let name = tool;
      if (!TOOL_NAME.test(tool) || used.has(tool) || (counts.get(tool) ?? 0) > 1) {
        const base = `${clean(server)}__${clean(tool)}`.slice(0, 64);
        name = base;
        for (let i = 2; used.has(name); i++) name = `${base.slice(0, 64 - String(i).length - 1)}_${i}`;
      }
      used.add(name);
      out.set(name, { server, tool });
    }
  }
  return out;
}

/** Marks the model's tool calls that name an offered MCP tool, so the workflow routes them to `callMcpTool`. */
export function annotateMcpUses(blocks: ModelBlock[], routes: ReadonlyMap<string, McpToolRef>): ModelBlock[] {
  return blocks.map((b) => {
    if (b.type !== 'tool_use') return b;
    const ref = routes.get(b.name);
    return ref ? { ...b, mcp: ref } : b;
  });
}

function httpStatus(err: unknown): number | undefined {
  if (err instanceof StreamableHTTPError) return err.code;
  return undefined;
}

/**
 * The MCP client side of one worker process: resolves secrets, keeps connections, caches listings, calls tools.
 * Errors leave as `ApplicationFailure`s with a `Mcp.*` or `Vault.*` type and a message with no secret in it.
 */
export class McpHub {
  private readonly connections = new Map<string, Promise<Connection>>();
  private readonly listings = new Map<string, { at: number; ttl: number; tools?: McpListedTool[]; error?: ApplicationFailure }>();
  private readonly settings: Required<McpSettings>;

  constructor(
    private readonly vault: SecretSource,
    settings: McpSettings = {},
  ) {
    this.settings = {
      listTtlMs: settings.listTtlMs ?? 300_000,
      idleMs: settings.idleMs ?? 300_000,
      callTimeoutMs: settings.callTimeoutMs ?? 300_000,
      connectTimeoutMs: settings.connectTimeoutMs ?? 15_000,
      outputCap: settings.outputCap ?? 30_000,
    };
  }

  /** Reads the server's secrets; a missing one is a non-retryable `Vault.SecretMissing` naming it. */
  resolve(config: McpServerConfig): ResolvedServer {
    const entries = Object.entries((config.type === 'url' ? config.headers : config.env) ?? {});
    const missing: string[] = [];
    const secrets: Array<[string, string]> = [];
    const read = (name: string): string => {
      const value = this.vault.get(name);
      if (value === undefined) {
        missing.push(name);
        return '';
      }
      secrets.push([value, name]);
      return value;
    };
    const values: Record<string, string> = {};
    for (const [k, v] of entries as Array<[string, SecretValue]>) {
      values[k] = typeof v === 'string' ? v.replace(SECRET_TEMPLATE, (_m, name: string) => read(name)) : read(v.secret);
    }
    if (missing.length > 0) {
      const names = [...new Set(missing)];
      throw ApplicationFailure.create({
        type: Failure.VaultSecretMissing,
        message: `MCP server "${config.name}": ${unknownSecretsMessage(names)}`,
        nonRetryable: true,
      });
    }
    const key = createHash('sha256').update(JSON.stringify([config, values])).digest('hex');
    return { config, values, secrets, key };
  }

  /** Turns any error of a server into a typed failure whose message holds no secret. */
  private translate(server: ResolvedServer, err: unknown, conn?: Connection): ApplicationFailure {
    if (err instanceof ApplicationFailure) return err;
    const name = server.config.name;
    const refused = internalAddressError(err);
    if (refused) {
      return ApplicationFailure.create({
        type: Failure.McpAddressRefused,
        message:
          `MCP server "${name}" was not contacted: ${refused.message}; such a server may only be on a public address ` +
          '(the API server\'s TANDEM_MCP_PRIVATE_HOSTS lets API clients name an internal host)',
        nonRetryable: true,
      });
    }
    const raw = err instanceof Error ? err.message : String(err);
    const stderr = conn?.stderr().trim();
    const detail = scrub(stderr ? `${raw} (server output: ${stderr.slice(-500)})` : raw, server.secrets);
    const status = httpStatus(err);
    if (status === 401 || status === 403 || (err as Error)?.name === 'UnauthorizedError') {
      return ApplicationFailure.create({
        type: Failure.McpAuthenticationFailed,
        message: `MCP server "${name}" refused the credentials (HTTP ${status ?? 401}); check the secret its headers name: ${detail}`,
        nonRetryable: true,
      });
    }
    if (err instanceof McpError && err.code === ErrorCode.RequestTimeout) {
      return ApplicationFailure.create({ type: Failure.McpTimeout, message: `MCP server "${name}" did not answer in time: ${detail}` });
    }
    return ApplicationFailure.create({ type: Failure.McpConnectionFailed, message: `MCP server "${name}" is unavailable: ${detail}` });
  }

  private transport(server: ResolvedServer): { transport: Transport; stderr: () => string } {
    const c = server.config;
    if (c.type === 'url') {
      const transport = new StreamableHTTPClientTransport(new URL(c.url), {
        requestInit: { headers: server.values },
        // A server an API client named: every connection is checked to go to a public address.
        ...(c.public_only ? { fetch: publicOnlyFetch } : {}),
      });
      return { transport, stderr: () => '' };
    }
    const transport = new StdioClientTransport({
      command: c.command,
      args: c.args ?? [],
      // Only a minimal environment (PATH, HOME, ...) plus the server's own: never the worker's secrets or keys.
      env: { ...getDefaultEnvironment(), ...server.values },
      ...(c.cwd ? { cwd: c.cwd } : {}),
      stderr: 'pipe',
    });
    let tail = '';
    transport.stderr?.on('data', (chunk: Buffer) => {
      tail = (tail + chunk.toString()).slice(-2000); // drained always: a full pipe would stall the server
    });
    return { transport, stderr: () => tail };
  }

  /** The open connection for this server configuration, connecting once (concurrent callers share it). */
  private connection(server: ResolvedServer): Promise<Connection> {
    const existing = this.connections.get(server.key);
    if (existing) return existing;
    const opening = (async () => {
      const { transport, stderr } = this.transport(server);
      const client = new Client({ name: 'tandem', version: '0.1.0' });
      const conn: Connection = { client, stderr, active: 0, closed: false };
      client.onclose = () => {
        conn.closed = true;
        clearTimeout(conn.timer);
        if (this.connections.get(server.key) === opening) this.connections.delete(server.key);
      };
      try {
        await client.connect(transport, { timeout: this.settings.connectTimeoutMs });
      } catch (err) {
        this.connections.delete(server.key);
        await client.close().catch(() => undefined);
        throw this.translate(server, err, conn);
      }
      client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
        this.listings.delete(server.key);
      });
      return conn;
    })();
    this.connections.set(server.key, opening);
    opening.catch(() => undefined);
    return opening;
  }

  /**
   * Runs `fn` on the server's connection, marked in use meanwhile. A connection that failed (closed, HTTP error,
   * transport error) is closed and forgotten, so the next attempt connects afresh; an idle one closes after
   * `idleMs`.
   */
  private async use<T>(server: ResolvedServer, fn: (c: Client) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const conn = await this.connection(server);
    conn.active++;
    clearTimeout(conn.timer);
    let broken = false;
    try {
      return await fn(conn.client);
    } catch (err) {
      const answered = err instanceof McpError && err.code !== ErrorCode.ConnectionClosed && err.code !== ErrorCode.RequestTimeout;
      broken = !answered && !signal?.aborted;
      throw err;
    } finally {
      conn.active--;
      if (broken || conn.closed) void this.drop(server.key, conn, true);
      else if (conn.active === 0) {
        conn.timer = setTimeout(() => void this.drop(server.key, conn, false), this.settings.idleMs);
        conn.timer.unref();
      }
    }
  }

  private async drop(key: string, conn: Connection, force: boolean): Promise<void> {
    if (!force && conn.active > 0) return;
    const current = this.connections.get(key);
    if (current && (await current.catch(() => undefined)) === conn) this.connections.delete(key);
    clearTimeout(conn.timer);
    conn.closed = true;
    await conn.client.close().catch(() => undefined);
  }

  /** The server's tools (every page), from the cache while fresh. Failures are cached briefly too. */
  async listTools(config: McpServerConfig): Promise<McpListedTool[]> {
    const server = this.resolve(config);
    const cached = this.listings.get(server.key);
    if (cached && Date.now() - cached.at < cached.ttl) {
      if (cached.error) throw cached.error;
      return cached.tools!;
    }
    try {
      const tools = await this.use(server, async (client) => {
        const out: McpListedTool[] = [];
        let cursor: string | undefined;
        do {
          const page = await client.listTools(cursor ? { cursor } : {}, { timeout: this.settings.connectTimeoutMs });
          for (const t of page.tools) {
            const { $schema: _schema, ...schema } = t.inputSchema as Record<string, unknown>;
            // A listing is model input like any result: a server that names a credential in it does not leak it.
            const description = scrub(t.description ?? t.title ?? t.name, server.secrets);
            out.push({ name: t.name, description, input_schema: { ...scrubDeep(schema, server.secrets), type: 'object' } });
          }
          cursor = page.nextCursor;
        } while (cursor);
        return out;
      });
      this.listings.set(server.key, { at: Date.now(), ttl: this.settings.listTtlMs, tools });
      return tools;
    } catch (err) {
      const failure = this.translate(server, err);
      this.listings.set(server.key, { at: Date.now(), ttl: Math.min(this.settings.listTtlMs, 10_000), error: failure });
      throw failure;
    }
  }

  /**
   * The MCP tools an agent offers the model: every enabled tool of every server its `mcp_toolset`s name, named so
   * that nothing in `taken` (built-in and custom tools) is shadowed. A server that cannot list its tools is left
   * out and reported; a missing secret fails the call (`Vault.SecretMissing`, not retryable).
   */
  async offer(agent: AgentDefinition, taken: Iterable<string>): Promise<McpOffer> {
    const servers = (agent.mcp_servers ?? []).filter((s) =>
      (agent.tools ?? []).some((t) => t.type === 'mcp_toolset' && t.mcp_server_name === s.name),
    );
    const unavailable: McpOffer['unavailable'] = [];
    const listed = await Promise.all(
      servers.map(async (s) => {
        try {
          const tools = (await this.listTools(s)).filter((t) => mcpToolPolicy(agent, s.name, t.name).enabled);
          return { server: s.name, tools };
        } catch (err) {
          if (err instanceof ApplicationFailure && err.type === Failure.VaultSecretMissing) throw err;
          unavailable.push({ server: s.name, message: (err as Error).message });
          return { server: s.name, tools: [] };
        }
      }),
    );
    const routes = offerNames(
      listed.map((l) => ({ server: l.server, tools: l.tools.map((t) => t.name) })),
      taken,
    );
    const definitions: ToolDefinition[] = [];
    for (const [name, ref] of routes) {
      const t = listed.find((l) => l.server === ref.server)?.tools.find((x) => x.name === ref.tool);
      if (t) definitions.push({ name, description: t.description, input_schema: t.input_schema });
    }
    return { definitions, routes, unavailable };
  }

  /**
   * Calls one tool. What the tool reports (including MCP errors about its input or an unknown tool) comes back as
   * a result with `is_error`; an unreachable server or refused credentials are failures for the activity.
   */
  async callTool(
    config: McpServerConfig,
    tool: string,
    args: Record<string, unknown>,
    signal?: AbortSignal,
    onProgress?: (progress: { progress: number; total?: number }) => void,
  ): Promise<{ content: string; is_error: boolean; truncated: boolean }> {
    const server = this.resolve(config);
    const finish = (text: string, isError: boolean) => {
      const bounded = boundText(scrub(text, server.secrets), this.settings.outputCap);
      return { content: bounded.text, is_error: isError, truncated: bounded.truncated };
    };
    try {
      const result = await this.use(server, (client) =>
        client.callTool({ name: tool, arguments: args }, undefined, {
          timeout: this.settings.callTimeoutMs,
          resetTimeoutOnProgress: true,
          ...(signal ? { signal } : {}),
          ...(onProgress ? { onprogress: onProgress } : {}),
        }),
        signal,
      );
      return finish(resultText(result), result.isError === true);
    } catch (err) {
      if (signal?.aborted) throw err;
      if (err instanceof McpError && err.code !== ErrorCode.ConnectionClosed && err.code !== ErrorCode.RequestTimeout) {
        return finish(err.message, true); // the server answered: bad input, unknown tool, the tool's own failure
      }
      throw this.translate(server, err);
    }
  }

  /** Closes every connection (stdio servers exit). */
  async close(): Promise<void> {
    const all = [...this.connections.values()];
    this.connections.clear();
    for (const p of all) {
      const conn = await p.catch(() => undefined);
      if (conn) {
        clearTimeout(conn.timer);
        conn.closed = true;
        await conn.client.close().catch(() => undefined);
      }
    }
  }
}

/** Creates `callMcpTool`: one MCP tool call from the worker, heartbeating, cancelled by `user.interrupt`. */
export function createMcpActivities(hub: McpHub) {
  /** Calls the tool; the result holds no secret value (scrubbed) and is bounded like any tool output. */
  async function callMcpTool(input: CallMcpToolInput): Promise<CallMcpToolResult> {
    const ctx = Context.current();
    const started = Date.now();
    ctx.heartbeat({ phase: 'mcp' });
    const beat = setInterval(() => ctx.heartbeat({ phase: 'mcp' }), 2000);
    try {
      const r = await hub.callTool(input.server, input.tool, input.input, ctx.cancellationSignal, (p) =>
        ctx.heartbeat({ phase: 'mcp', progress: p.progress, total: p.total }),
      );
      return { ...r, duration_ms: Date.now() - started };
    } catch (err) {
      if (ctx.cancellationSignal.aborted) throw new CancelledFailure('MCP tool call cancelled');
      throw err;
    } finally {
      clearInterval(beat);
    }
  }
  return { callMcpTool };
}
