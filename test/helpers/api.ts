/**
 * The fixture of API tests: the usual harness (worker on a unique task queue, scripted Messages API server,
 * client) plus `tandem serve`'s API server on a free port with a test key and a vault file of its own.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { startApiServer, type ApiServer } from '../../src/server/index.js';
import { Vault } from '../../src/vault/index.js';
import { DirStore } from '../../src/activities/sandbox/blob-store.js';
import { useHarness } from './env.js';

export { reply, text, toolUse, hang } from '../fakes/messages-server.js';
export { waitFor } from './env.js';

/** The largest file the test server takes: small, so a test can send one past it. */
export const TEST_MAX_FILE_BYTES = 1024 * 1024;

/** The API key the test server accepts. */
export const TEST_API_KEY = 'sk-tandem-test-key';

/**
 * Harness plus a running API server (`url`) whose vault file is `vaultFile`; `mcpPrivateHosts` are the internal
 * hosts its API clients may name as MCP servers (`TANDEM_MCP_PRIVATE_HOSTS`).
 */
export function useApiHarness(
  prefix: string,
  { mcpPrivateHosts, ...opts }: NonNullable<Parameters<typeof useHarness>[1]> & { mcpPrivateHosts?: string[] } = {},
) {
  const h = useHarness(prefix, opts);
  const dir = mkdtempSync(join(tmpdir(), 'tandem-api-'));
  // The worker of the harness (createWorker's default vault) reads the same vault file as the API server, as a
  // single-host deployment does.
  process.env.TANDEM_VAULT_FILE = join(dir, 'vault.json');
  const api = {
    queue: h.queue,
    get client() {
      return h.client;
    },
    get tandem() {
      return h.tandem;
    },
    get model() {
      return h.model;
    },
    url: '',
    apiKey: TEST_API_KEY,
    vaultFile: join(dir, 'vault.json'),
    /** Where the Files API keeps its files (a directory store). */
    filesDir: join(dir, 'files'),
    server: undefined as ApiServer | undefined,
  };
  beforeAll(async () => {
    api.server = await startApiServer({
      files: new DirStore(api.filesDir),
      maxFileBytes: TEST_MAX_FILE_BYTES,
      tandem: h.tandem,
      keys: [TEST_API_KEY],
      vault: new Vault(api.vaultFile, {}),
      port: 0,
      ...(mcpPrivateHosts ? { mcpPrivateHosts } : {}),
    });
    api.url = api.server.url;
  });
  afterAll(async () => {
    await api.server?.close();
  });
  return api;
}

/** An API event as the SDK's stream yields it. */
export type ApiStreamEvent = { id: string; type: string; [k: string]: unknown };

const iterators = new WeakMap<object, AsyncIterator<unknown>>();

/** Reads a stream until an event matches `stop`, returning every event read; the stream stays open. */
export async function readUntil(
  stream: AsyncIterable<unknown>,
  stop: (e: ApiStreamEvent) => boolean,
  seen: ApiStreamEvent[] = [],
): Promise<ApiStreamEvent[]> {
  const it = iterators.get(stream) ?? stream[Symbol.asyncIterator]();
  iterators.set(stream, it);
  for (;;) {
    const next = await it.next();
    if (next.done) throw new Error(`the stream ended before the awaited event; read: ${seen.map((e) => e.type).join(', ')}`);
    const e = next.value as ApiStreamEvent;
    seen.push(e);
    if (stop(e)) return seen;
  }
}
