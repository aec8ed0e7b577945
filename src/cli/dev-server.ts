/**
 * The embedded default: the `temporal` CLI's dev server with a SQLite file, plus the search attributes Tandem
 * needs. Used by `tandem dev` and by the test suite.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import { SA_AGENT, SA_AGENT_ID, SA_ARCHIVED, SA_KIND, SA_STATUS } from '../shared/names.js';

/** The repository root (where `.tandem/` lives). */
export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Finds the `temporal` CLI: `TEMPORAL_CLI`, the project-local bin, then PATH. */
export function findTemporalCli(): string | undefined {
  const candidates = [
    process.env.TEMPORAL_CLI,
    join(projectRoot, '.tandem', 'bin', 'temporal'),
    existsSync(join(projectRoot, '.tandem', 'temporal-path'))
      ? readFileSync(join(projectRoot, '.tandem', 'temporal-path'), 'utf8').trim()
      : undefined,
    ...(process.env.PATH ?? '').split(':').map((d) => join(d, 'temporal')),
  ];
  return candidates.find((c): c is string => !!c && existsSync(c));
}

/** A free TCP port on loopback (for a dev server or a test's own servers). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Tandem's search attributes (all Keyword): session status and agent, API agent id, resource kind, archived. */
export const TANDEM_SEARCH_ATTRIBUTES = [SA_STATUS, SA_AGENT, SA_AGENT_ID, SA_KIND, SA_ARCHIVED];

/** Registers Tandem's search attributes (Keyword); existing ones are left alone. */
export async function registerSearchAttributes(connection: Connection, namespace: string): Promise<void> {
  const keyword = proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const missing = TANDEM_SEARCH_ATTRIBUTES.filter((n) => !existing.customAttributes?.[n]);
  if (missing.length === 0) return;
  await connection.operatorService.addSearchAttributes({
    namespace,
    searchAttributes: Object.fromEntries(missing.map((n) => [n, keyword])),
  });
}

/** Connects to a Temporal frontend, retrying until `timeoutMs`. */
export async function connectWithRetry(address: string, timeoutMs: number): Promise<Connection> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1000 });
      await connection.workflowService.getSystemInfo({});
      return connection;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`Temporal at ${address} did not answer: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** Options of {@link startDevServer}. */
export interface DevServerOptions {
  cli: string;
  port: number;
  uiPort?: number;
  /** SQLite file; in-memory when unset. */
  dbFile?: string;
  /** Extra `--dynamic-config-value` settings (`KEY=JSON`). */
  dynamicConfig?: string[];
  headless?: boolean;
}

/** A dev server started by Tandem. */
export interface DevServer {
  address: string;
  uiUrl?: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Starts `temporal server start-dev` and waits until it answers. */
export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(opts.port), '--log-level', 'error'];
  for (const sa of TANDEM_SEARCH_ATTRIBUTES) args.push('--search-attribute', `${sa}=Keyword`);
  if (opts.dbFile) {
    mkdirSync(dirname(opts.dbFile), { recursive: true });
    args.push('--db-filename', opts.dbFile);
  }
  if (opts.headless || opts.uiPort === undefined) args.push('--headless');
  else args.push('--ui-port', String(opts.uiPort));
  for (const kv of opts.dynamicConfig ?? []) args.push('--dynamic-config-value', kv);
  const child = spawn(opts.cli, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const address = `127.0.0.1:${opts.port}`;
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`temporal dev server exited (code ${code}): ${stderr.trim()}`))),
  );
  const connection = await Promise.race([connectWithRetry(address, 60_000), exited]);
  await connection.close();
  return {
    address,
    ...(opts.uiPort !== undefined && !opts.headless ? { uiUrl: `http://127.0.0.1:${opts.uiPort}` } : {}),
    process: child,
    async stop() {
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(timer);
    },
  };
}
