/** Shared plumbing of integration tests: a client, a worker on a unique task queue, waiting helpers. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, Runtime, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type Docker from 'dockerode';
import { afterAll, afterEach, beforeAll, inject } from 'vitest';
import { freePort, startDevServer, type DevServer } from '../../src/cli/dev-server.js';
import { TandemClient } from '../../src/client/index.js';
import {
  startMessagesServer,
  type MessagesServer,
  type MessagesServerOptions,
  type RecordedRequest,
} from '../fakes/messages-server.js';
import { loadRuntimeConfig } from '../../src/config/env.js';
import { GET_SESSION_QUERY, SESSION_WORKFLOW, Signals } from '../../src/shared/names.js';
import type { AgentDefinition, SessionInput, SessionState } from '../../src/shared/types.js';
import { createWorker, workflowsPath, type TandemWorker } from '../../src/worker.js';
import { readSessionLog } from '../../src/log/read.js';
import type { SessionEvent } from '../../src/log/events.js';
import { runTandemHere, type CliRun } from './cli.js';
import type { Vault } from '../../src/vault/index.js';
import { sandboxNames } from '../../src/activities/sandbox/docker.js';

Runtime.install({ logger: new DefaultLogger('WARN') });

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** The workflow bundle, built once per test file. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath, logger: { log: () => {}, info: () => {}, warn: () => {}, error: console.error, debug: () => {}, trace: () => {} } as never });
  return bundle;
}

/** A client of the test run's dev server, or of the one at `address`. */
export async function testClient(address = inject('temporalAddress')): Promise<Client> {
  const connection = await Connection.connect({ address });
  return new Client({ connection });
}

/** Environment for a worker of this test run (process or in-process); `address` defaults to the run's server. */
export function workerEnv(taskQueue: string, messagesUrl: string, address = inject('temporalAddress')): Record<string, string> {
  return {
    TEMPORAL_ADDRESS: address,
    TANDEM_TASK_QUEUE: taskQueue,
    ANTHROPIC_BASE_URL: messagesUrl,
    ANTHROPIC_API_KEY: 'test-key',
    TANDEM_REAP_INTERVAL_S: '0',
    // Warm containers are tested where they are the subject (hands.test.ts); elsewhere they would only add load.
    TANDEM_WARM_CONTAINERS: '0',
  };
}

/**
 * Starts an in-process worker on `taskQueue` whose model is the scripted server at `messagesUrl`, on the run's
 * Temporal server or on the one at `address`.
 */
export async function startWorker(
  taskQueue: string,
  messagesUrl: string,
  address?: string,
  extra: { env?: Record<string, string>; vault?: Vault; docker?: Docker } = {},
): Promise<TandemWorker & { done: Promise<void> }> {
  const config = loadRuntimeConfig({ ...process.env, ...workerEnv(taskQueue, messagesUrl, address), ...extra.env });
  const w = await createWorker({
    config,
    workflowBundle: await workflowBundle(),
    anthropic: { baseURL: messagesUrl, apiKey: 'test-key' },
    ...(extra.vault ? { vault: extra.vault } : {}),
    ...(extra.docker ? { docker: extra.docker } : {}),
  });
  const done = w.run();
  return { ...w, done };
}

/** The name of a session's sandbox container, for sessions of the run's Temporal server (or the one at `address`). */
export function sandboxName(sessionId: string, address = inject('temporalAddress')): string {
  return sandboxNames(sessionId, `default@${address}`).container;
}

/** A unique task queue for one test. */
export function uniqueQueue(prefix = 'test'): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** A small agent with all built-in tools enabled. */
export function testAgent(overrides: Partial<AgentDefinition> = {}): AgentDefinition {
  return {
    name: 'test-agent',
    model: 'claude-sonnet-5-5',
    system: 'You are a test agent.',
    tools: [{ type: 'agent_toolset_20260401' }],
    sandbox: { memory_mb: 256, idle_timeout_s: 600 },
    ...overrides,
  };
}

const started: WorkflowHandle[] = [];

/**
 * With `TANDEM_RECORD_HISTORIES=1`, saves the history of every session this file started under
 * test/fixtures/histories (the replay test's inputs). Run after a change of the workflow code that is meant to be
 * compatible, to add histories of the new code beside the old ones.
 */
export async function saveHistories(prefix: string): Promise<void> {
  if (process.env.TANDEM_RECORD_HISTORIES !== '1') return;
  const dir = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'histories');
  mkdirSync(dir, { recursive: true });
  for (const [i, h] of started.entries()) {
    await h.result().catch(() => undefined);
    const json = execFileSync(inject('temporalCli'), ['workflow', 'show', '-w', h.workflowId, '--address', inject('temporalAddress'), '-o', 'json']);
    const history = { workflowId: h.workflowId, ...(JSON.parse(json.toString()) as object) };
    writeFileSync(join(dir, `${prefix}-${String(i + 1).padStart(2, '0')}.json`), JSON.stringify(history, null, 2) + '\n');
  }
}

/** Starts a session with a first user message. */
export async function startSession(
  client: Client,
  taskQueue: string,
  input: Partial<SessionInput> & { agent?: AgentDefinition },
  firstMessage?: string,
): Promise<WorkflowHandle> {
  const sessionInput: SessionInput = {
    agent: input.agent ?? testAgent(),
    ...input,
    ...(firstMessage ? { initial_events: [{ content: [{ type: 'text', text: firstMessage }] }] } : {}),
  };
  const handle = await client.workflow.start(SESSION_WORKFLOW, {
    taskQueue,
    workflowId: `sesn_${randomUUID().replace(/-/g, '').slice(0, 16)}`,
    args: [sessionInput],
  });
  started.push(handle);
  return handle;
}

/** Adds a session started some other way (the client library, the CLI) to those `saveHistories` saves. */
export function recordSession(handle: WorkflowHandle): void {
  started.push(handle);
}

/** Sends a user message. */
export async function sendMessage(handle: WorkflowHandle, text: string, id?: string): Promise<void> {
  await handle.signal(Signals.message, { ...(id ? { id } : {}), content: [{ type: 'text', text }] });
}

/** Polls until `pred` holds, or throws with the last value seen. */
export async function waitFor<T>(fn: () => Promise<T>, pred: (v: T) => boolean, timeoutMs = 60_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  for (;;) {
    try {
      last = await fn();
      if (pred(last)) return last;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)?.slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The session state by query. */
export function sessionState(handle: WorkflowHandle): Promise<SessionState> {
  return handle.query<SessionState>(GET_SESSION_QUERY);
}

/** Waits until the session is idle with the given stop reason and has completed `minTurns` model calls. */
export async function waitIdle(handle: WorkflowHandle, stop = 'end_turn', minTurns = 1, timeoutMs = 90_000): Promise<SessionState> {
  return waitFor(
    () => sessionState(handle),
    (s) => s.status === 'idle' && s.stop_reason?.type === stop && s.turn >= minTurns,
    timeoutMs,
    `idle/${stop} after ${minTurns} turns`,
  );
}

/** The decoded session log. */
export async function sessionEvents(client: Client, handle: WorkflowHandle): Promise<SessionEvent[]> {
  return (await readSessionLog(client, handle.workflowId)).events;
}

/** The tool results a recorded model request carried, by tool_use id. */
export function toolResults(req: RecordedRequest): Map<string, { content: string; is_error?: boolean }> {
  const out = new Map<string, { content: string; is_error?: boolean }>();
  for (const m of req.body.messages ?? []) {
    if (m.role !== 'user' || !Array.isArray(m.content)) continue;
    for (const b of m.content as Array<{ type: string; tool_use_id?: string; content?: string; is_error?: boolean }>)
      if (b.type === 'tool_result') out.set(b.tool_use_id!, { content: b.content ?? '', is_error: b.is_error });
  }
  return out;
}

/**
 * Starts a worker as a process of its own (added to `into`) and waits until it polls: `src/worker.ts`, or the
 * `tandem` command's verb given as `args` (for example `['hands']`).
 */
export async function spawnWorkerProcess(
  taskQueue: string,
  messagesUrl: string,
  into: ChildProcess[],
  env: Record<string, string> = {},
  args: string[] = [],
): Promise<ChildProcess> {
  const child = spawn(process.execPath, args.length > 0 ? ['bin/tandem', ...args] : ['--import', 'tsx', 'src/worker.ts'], {
    env: { ...process.env, ...workerEnv(taskQueue, messagesUrl), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  into.push(child);
  let output = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer) => {
      output += c.toString(); // keep draining: a full pipe would block the worker
      if (output.includes('polling task queue')) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`worker exited early (${code}): ${output.slice(-2000)}`)));
  });
  return child;
}

/** SIGKILLs a process and waits until it is gone. */
export async function killProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

/**
 * The usual fixture of a test file: a scripted Messages API server (with `responder` if given), an in-process
 * worker on a unique task queue, and a client; started before the file's tests and stopped after them.
 */
export function useHarness(
  prefix: string,
  opts: {
    responder?: MessagesServerOptions['responder'];
    /** After each test, fail on a leftover or unexpected step of the scripted server. */
    assertDone?: boolean;
    /** Save the file's session histories under this name (with TANDEM_RECORD_HISTORIES=1). */
    record?: string;
    /** Worker environment on top of the test defaults, its vault and Docker engine (read when the worker starts). */
    worker?: () => { env?: Record<string, string>; vault?: Vault; docker?: Docker };
    /**
     * Run against a dev server of the file's own that suggests continue-as-new after this many history events
     * (instead of thousands), so that a short session spans several runs.
     */
    continueAsNewAfter?: number;
  } = {},
) {
  const queue = uniqueQueue(prefix);
  const h = {
    queue,
    client: undefined as unknown as Client,
    tandem: undefined as unknown as TandemClient,
    model: undefined as unknown as MessagesServer,
    worker: undefined as unknown as Awaited<ReturnType<typeof startWorker>>,
  };
  let server: DevServer | undefined;
  beforeAll(async () => {
    if (opts.continueAsNewAfter !== undefined) {
      server = await startDevServer({
        cli: inject('temporalCli'),
        port: await freePort(),
        headless: true,
        dynamicConfig: [`limit.historyCount.suggestContinueAsNew=${opts.continueAsNewAfter}`],
      });
    }
    h.client = await testClient(server?.address);
    h.tandem = new TandemClient(h.client, queue);
    h.model = await startMessagesServer(opts.responder ? { responder: opts.responder } : {});
    h.worker = await startWorker(queue, h.model.url, server?.address, opts.worker?.());
  });
  if (opts.assertDone) afterEach(() => h.model.assertDone());
  afterAll(async () => {
    if (opts.record) await saveHistories(opts.record);
    await h.worker?.shutdown();
    await h.worker?.done;
    await h.model?.close();
    await server?.stop();
  });
  return h;
}

/** Runs `tandem <args>` (in this process) against this worker's task queue and scripted model, to completion. */
export function runCli(args: string[], queue: string, messagesUrl: string, env: Record<string, string> = {}): Promise<CliRun> {
  return runTandemHere(args, { ...workerEnv(queue, messagesUrl), ...env });
}

/** Every string of raw history events, with payload bytes read as UTF-8: what a leak check searches. */
export function historyText(events: unknown[]): string {
  const parts: string[] = [];
  const walk = (v: unknown): void => {
    if (v instanceof Uint8Array) parts.push(Buffer.from(v).toString('utf8'));
    else if (typeof v === 'string') parts.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(events);
  return parts.join('\n');
}
