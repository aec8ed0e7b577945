/**
 * `tandem serve`: the Managed Agents HTTP API (what the official SDK's `client.beta` calls) on Tandem. Agents,
 * environments and vaults are entity workflows, sessions are `agentSession` workflows, events are their logs; the
 * server keeps no state of its own, so any number of them can run against one Temporal namespace.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TandemClient } from '../client/index.js';
import { Vault } from '../vault/index.js';
import { ApiError, checkApiKey, readJson, Router, sendJson, toApiError, type ApiRequest } from './http.js';
import { DirStore, defaultStoreDir, type BlobStore } from '../activities/sandbox/blob-store.js';
import { FileStore, MAX_FILE_BYTES } from '../files/store.js';
import { addFileRoutes } from './files.js';
import { addSkillRoutes } from './skills.js';
import { SkillStore } from '../files/skills.js';
import { addResourceRoutes } from './resources.js';
import { SessionApi } from './sessions.js';
import { ResourceStore } from './store.js';

/** Name of the API key in the worker-side vault when `TANDEM_API_KEYS` is not set. */
export const API_KEY_SECRET = 'tandem.api_key';

/** Options of {@link startApiServer}. */
export interface ApiServerOptions {
  tandem: TandemClient;
  /** Accepted API keys. */
  keys: string[];
  vault?: Vault;
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /**
   * Hosts of MCP servers that API clients may name although they are loopback, private or link-local addresses
   * (`TANDEM_MCP_PRIVATE_HOSTS`); any other such URL is refused with a 400.
   */
  mcpPrivateHosts?: readonly string[];
  /**
   * Where the Files API keeps files (under `files/`): the hands hosts' snapshot store (`TANDEM_SNAPSHOT_STORE`), so a
   * file is where the sandboxes' hosts can reach it. Default: the default snapshot directory of this machine.
   */
  files?: BlobStore;
  /** The largest file the Files API takes, in bytes (default the hosted API's 500 MB). */
  maxFileBytes?: number;
}

/** A running API server. */
export interface ApiServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

/**
 * The keys the server accepts: `TANDEM_API_KEYS` (comma-separated) when set; otherwise one key kept in the vault,
 * created on first start (`created` says so, so the caller can print it once).
 */
export function resolveApiKeys(env: NodeJS.ProcessEnv, vault: Vault): { keys: string[]; created?: string } {
  const configured = (env.TANDEM_API_KEYS ?? '')
    .split(',')
    .map((k) => k.trim())
    .filter(Boolean);
  if (configured.length) return { keys: configured };
  const stored = vault.get(API_KEY_SECRET);
  if (stored) return { keys: [stored] };
  const key = `sk-tandem-${randomBytes(24).toString('base64url')}`;
  vault.set(API_KEY_SECRET, key);
  return { keys: [key], created: key };
}

/** Starts the API server. */
export async function startApiServer(opts: ApiServerOptions): Promise<ApiServer> {
  if (opts.keys.length === 0) throw new Error('the API server needs at least one API key (TANDEM_API_KEYS)');
  const temporal = opts.tandem.temporal;
  const queue = opts.tandem.taskQueue;
  const stores = {
    agents: new ResourceStore(temporal, queue, 'agent'),
    environments: new ResourceStore(temporal, queue, 'environment'),
    vaults: new ResourceStore(temporal, queue, 'vault'),
    vault: opts.vault ?? new Vault(),
    mcpPrivateHosts: opts.mcpPrivateHosts ?? [],
  };
  const router = new Router();
  addResourceRoutes(router, stores);
  const maxFileBytes = opts.maxFileBytes ?? MAX_FILE_BYTES;
  const blobs = opts.files ?? new DirStore(defaultStoreDir());
  const files = new FileStore(blobs, maxFileBytes);
  const skills = new SkillStore(blobs);
  addFileRoutes(router, files, maxFileBytes);
  addSkillRoutes(router, skills);
  new SessionApi(opts.tandem, stores, files, skills).routes(router);

  const server = createServer((raw, res) => {
    void (async () => {
      try {
        const url = new URL(raw.url ?? '/', 'http://localhost');
        checkApiKey(raw.headers, opts.keys);
        const { handler, params } = router.match(raw.method ?? 'GET', url.pathname);
        // A multipart body (a file upload) is read by its route, up to the file limit; every other body is JSON.
        const multipart = /^multipart\//i.test(raw.headers['content-type'] ?? '');
        const body = raw.method === 'GET' || raw.method === 'DELETE' || multipart ? undefined : await readJson(raw);
        const req: ApiRequest = {
          method: raw.method ?? 'GET',
          path: url.pathname,
          params,
          query: url.searchParams,
          headers: raw.headers,
          body,
          raw,
          res,
        };
        const out = await handler(req);
        if (out !== undefined && !res.headersSent) sendJson(res, 200, out);
      } catch (err) {
        const apiErr = toApiError(err);
        if (apiErr.status === 500 && !(err instanceof ApiError)) console.error('tandem serve:', err);
        if (!res.headersSent) sendJson(res, apiErr.status, apiErr.body());
        else res.end();
      }
    })();
  });
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 8787;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new Error(
          `cannot listen on ${host}:${port} (${err.code === 'EADDRINUSE' ? 'the address is in use' : err.message}); choose another with --listen or TANDEM_API_ADDRESS`,
        ),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  return {
    server,
    url: `http://${bound.address.includes(':') ? `[${bound.address}]` : bound.address}:${bound.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
