/** `tandem dev`, `tandem worker` and `tandem demo`: the embedded default on one machine. */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Docker from 'dockerode';
import { loadAgentFile } from '../config/agent.js';
import { loadRuntimeConfig, type RuntimeConfig } from '../config/env.js';
import { TandemClient } from '../client/index.js';
import type { RepositoryResource } from '../shared/types.js';
import { createWorker, type CreateWorkerOptions } from '../worker.js';
import { connectWithRetry, findTemporalCli, projectRoot, registerSearchAttributes, startDevServer, type DevServer } from './dev-server.js';
import { explainIdle, printUntilIdle } from './follow.js';
import { processIo } from './io.js';
import { startServe } from './serve.js';
import { logLine } from '../telemetry.js';

const log = (line: string) => logLine(line);

/** Reuses a Temporal server on `TEMPORAL_ADDRESS`, or starts the dev server with a SQLite file. */
export async function ensureTemporal(
  config: RuntimeConfig,
  opts: { dbFile?: string; uiPort?: number } = {},
): Promise<{ server?: DevServer; uiUrl: string }> {
  const existing = await connectWithRetry(config.TEMPORAL_ADDRESS, 1000).catch(() => undefined);
  if (existing) {
    await registerSearchAttributes(existing, config.TEMPORAL_NAMESPACE);
    await existing.close();
    log(`using the Temporal server at ${config.TEMPORAL_ADDRESS}`);
    return { uiUrl: `http://127.0.0.1:${opts.uiPort ?? 8233}` };
  }
  const cli = findTemporalCli();
  if (!cli) throw new Error('no temporal CLI found and no server at TEMPORAL_ADDRESS; run scripts/setup first');
  const [host, port] = config.TEMPORAL_ADDRESS.split(':');
  if (host !== '127.0.0.1' && host !== 'localhost')
    throw new Error(`no Temporal server answers at ${config.TEMPORAL_ADDRESS}; the dev server only starts on 127.0.0.1`);
  const dataDir = config.TANDEM_DATA_DIR ?? join(projectRoot, '.tandem', 'data');
  const dbFile = opts.dbFile ?? join(dataDir, 'temporal.db');
  log(`starting the Temporal dev server (${dbFile})`);
  const server = await startDevServer({ cli, port: Number(port ?? 7233), uiPort: opts.uiPort ?? 8233, dbFile });
  return { server, uiUrl: server.uiUrl ?? '' };
}

/** Warns when the Docker engine or the sandbox image is missing: tool calls would fail. */
async function checkHands(config: RuntimeConfig): Promise<void> {
  const docker = new Docker();
  try {
    await docker.ping();
  } catch {
    log('warning: no Docker engine answers; tool calls will fail until one runs (scripts/setup starts one)');
    return;
  }
  const image = await docker.getImage(config.TANDEM_SANDBOX_IMAGE).inspect().catch(() => undefined);
  if (!image) log(`warning: sandbox image ${config.TANDEM_SANDBOX_IMAGE} is missing; build it with scripts/setup`);
}

/** Runs a worker until SIGINT/SIGTERM: the brain and the hands, or one of them (`role`, else TANDEM_WORKER_ROLE). */
export async function runWorker(opts: CreateWorkerOptions = {}): Promise<void> {
  const config = opts.config ?? loadRuntimeConfig();
  const role = opts.role ?? config.TANDEM_WORKER_ROLE;
  if (role !== 'brain') await checkHands(config);
  const w = await createWorker({ ...opts, config, role });
  const stop = () => void w.shutdown();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const metrics = process.env.TANDEM_METRICS_ADDRESS;
  const queues = w.workers.map((x) => `"${x.options.taskQueue}"`).join(', ');
  log(
    `${role === 'hands' ? `hands host ${w.host!.id}` : role === 'brain' ? 'brain worker' : 'worker'} polling task queue(s) ` +
      `${queues} on ${config.TEMPORAL_ADDRESS}${metrics ? `; metrics on http://${metrics}/metrics` : ''}`,
  );
  await w.run();
}

/** `tandem dev`: the dev server (or the one already running) plus a worker, and with `serve` the HTTP API. */
export async function runDev(opts: { dbFile?: string; uiPort?: number; serve?: boolean | string } = {}): Promise<void> {
  const config = loadRuntimeConfig();
  const { server, uiUrl } = await ensureTemporal(config, opts);
  log(`Temporal UI: ${uiUrl}  (sessions are workflows of type agentSession)`);
  const api = opts.serve ? await startServe(config, typeof opts.serve === 'string' ? opts.serve : undefined) : undefined;
  try {
    await runWorker({ config });
  } finally {
    await api?.close();
    await server?.stop();
  }
}

/** The demo's task; the offline script `examples/offline/coding-agent.script.json` answers it. */
export const DEMO_TASK =
  'The test suite of the repository in /workspace/bugfix-repo fails (python3 -m unittest). ' +
  'Find the bug, fix it with the smallest change, and show the suite passing.';

/** The demo's repository: `examples/bugfix-repo` committed into a git repository of its own, for one session. */
export interface DemoRepository {
  /** The repository on this host. */
  path: string;
  /** The session resource naming it (a local, read-only repository, cloned at `/workspace/bugfix-repo`). */
  resource: RepositoryResource;
  /** Deletes the repository. */
  remove(): void;
}

/**
 * Makes the demo's repository: a copy of `examples/bugfix-repo` (shipped as plain files, since this project's own
 * git repository cannot hold another) committed on `main` in a temporary directory, with the user's git
 * configuration left out so that no signing or hook of theirs runs. The worker serves it to the sandbox as a
 * local repository, through the same gateway as any other.
 */
export function createDemoRepository(): DemoRepository {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-demo-'));
  const path = join(dir, 'bugfix-repo');
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    cpSync(join(projectRoot, 'examples', 'bugfix-repo'), path, { recursive: true });
    const env = {
      ...process.env,
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_AUTHOR_NAME: 'Tandem demo',
      GIT_AUTHOR_EMAIL: 'demo@tandem.invalid',
      GIT_COMMITTER_NAME: 'Tandem demo',
      GIT_COMMITTER_EMAIL: 'demo@tandem.invalid',
    };
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', path, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    git('init', '--quiet', '--initial-branch=main');
    git('add', '--all');
    git('commit', '--quiet', '--message', 'pager: split lists into numbered pages');
  } catch (err) {
    remove();
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new Error(
      missing
        ? 'the demo needs git on this host (the worker serves the demo repository with it)'
        : `could not make the demo repository: ${(err as Error).message}`,
    );
  }
  return { path, resource: { type: 'git_repository', url: pathToFileURL(path).href }, remove };
}

/** `tandem demo`: the example coding agent on a real task, offline when there is no API key. Returns an exit code. */
export async function runDemo(): Promise<number> {
  const config = loadRuntimeConfig();
  const { server, uiUrl } = await ensureTemporal(config);
  await checkHands(config);
  let scripted: { url: string; close(): Promise<void>; assertDone(): void } | undefined;
  if (!process.env.ANTHROPIC_API_KEY) {
    const { startMessagesServer, loadScriptFile } = await import('../offline/messages-server.js');
    const scriptFile = join(projectRoot, 'examples', 'offline', 'coding-agent.script.json');
    if (!existsSync(scriptFile)) throw new Error(`offline script missing: ${scriptFile}`);
    scripted = await startMessagesServer({ script: await loadScriptFile(scriptFile), ttftMs: 150, latencyMs: 100 });
    log('ANTHROPIC_API_KEY is not set: playing the shipped offline script through a local Messages API server');
  }
  const worker = await createWorker({
    config,
    ...(scripted ? { anthropic: { baseURL: scripted.url, apiKey: 'offline-demo' } } : {}),
  });
  const running = worker.run();
  let repo: DemoRepository | undefined;
  try {
    repo = createDemoRepository();
    const client = new TandemClient(worker.client, config.TANDEM_TASK_QUEUE);
    const agent = await loadAgentFile(join(projectRoot, 'examples', 'coding-agent.yaml'));
    const sessionId = await client.start({
      agent,
      message: DEMO_TASK,
      title: 'demo: fix the bug in bugfix-repo',
      resources: [repo.resource],
    });
    log(`session ${sessionId} started; its events follow`);
    const idle = await printUntilIdle(processIo, client, sessionId);
    const state = await client.getSession(sessionId);
    log(
      `session ${sessionId} is ${state.status}: ${state.turn} model calls, ` +
        `${state.usage.input_tokens} input / ${state.usage.output_tokens} output tokens, ` +
        `${state.sandboxes.length} sandbox(es)`,
    );
    log(`inspect it: tandem events ${sessionId}   or the Temporal UI at ${uiUrl} while "tandem dev" runs`);
    const code = explainIdle(processIo, sessionId, idle);
    await worker.client.workflow.getHandle(sessionId).cancel(); // the demo ends the session: its container goes
    await waitClosed(worker.client, sessionId);
    return code;
  } finally {
    await worker.shutdown();
    await running;
    await scripted?.close();
    await server?.stop();
    repo?.remove();
  }
}

async function waitClosed(client: TandemClient['temporal'], sessionId: string): Promise<void> {
  await client.workflow.getHandle(sessionId).result().catch(() => undefined);
}
