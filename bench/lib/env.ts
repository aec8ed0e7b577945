/**
 * The bench's world: its own Temporal dev server (in memory), the scripted Messages API server with configurable
 * latency, Tandem workers as separate processes (`node --import tsx src/worker.ts`, as `tandem worker` runs), the
 * Docker engine and the sandbox activities. Everything it starts is stopped by `close()`, and every container and
 * volume of a bench session (`sesn_bench_…`) is removed, also when a measurement fails.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import Docker from 'dockerode';
import { PassThrough } from 'node:stream';
import { createHands, LABEL_MANAGED, LABEL_SESSION, sandboxNames } from '../../src/activities/sandbox/docker.js';
import { findTemporalCli, freePort, projectRoot, startDevServer, type DevServer } from '../../src/cli/dev-server.js';
import { TandemClient } from '../../src/client/index.js';
import { decodeJsonPayload, readRunChain } from '../../src/client/log.js';
import type { AgentDefinition, CallModelResult, SandboxRef } from '../../src/shared/types.js';
import {
  reply,
  startMessagesServer,
  type MessagesServer,
  type PlainStep,
  type RecordedRequest,
} from '../../test/fakes/messages-server.js';

/** Options of one bench run. */
export interface BenchOptions {
  /** Scaled-down counts, for development. */
  quick: boolean;
  /** Scripted model: delay before response headers. */
  latencyMs: number;
  /** Scripted model: delay from headers to the first content delta. */
  ttftMs: number;
}

/** A worker process on one task queue. */
export interface WorkerProcess {
  child: ChildProcess;
  pid: number;
  queue: string;
  /** Temporal's default worker identity of that process (`pid@host`). */
  identity: string;
  /** Resident memory now and at its peak, in KiB (from /proc/<pid>/status). */
  memory(): { rssKb: number; hwmKb: number };
  /** CPU time (user + system) the process has used so far, in ms. */
  cpuMs(): number;
  /** Sends `signal` and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

/** Every session id of the bench starts with this; cleanup removes the sandboxes of exactly these. */
export const SESSION_PREFIX = 'sesn_bench_';
const SESSION_RE = /sesn_bench_[a-z0-9_]+/;

type Handler = (req: RecordedRequest) => PlainStep;

/** CPU time (user + system) a process has used so far, in ms (from /proc/<pid>/stat; clock ticks of 10 ms). */
export function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}


const started = Date.now();
/** Prints a progress line with the time since the bench started. */
export function log(line: string): void {
  process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${line}\n`);
}

/** The running bench environment. */
export class BenchEnv {
  private readonly handlers = new Map<string, Handler>();
  private readonly listeners = new Map<string, Array<(r: RecordedRequest) => void>>();
  private readonly workers = new Set<WorkerProcess>();
  private readonly host = (() => {
    try {
      return execFileSync('hostname', { encoding: 'utf8' }).trim();
    } catch {
      return 'localhost';
    }
  })();

  /** Sandbox provider settings, the same as a worker's defaults. */
  readonly sandboxSettings = { image: process.env.TANDEM_SANDBOX_IMAGE ?? 'tandem-sandbox:latest', outputCap: 30_000, scope: 'bench' };
  readonly docker = new Docker();
  /** Tandem's own hands (sandbox activities and slots), called directly (outside any workflow). */
  readonly hands = createHands({ docker: this.docker, settings: this.sandboxSettings });
  readonly sandbox = this.hands.activities;

  private constructor(
    readonly opts: BenchOptions,
    readonly server: DevServer,
    readonly temporal: Client,
    readonly model: MessagesServer,
  ) {}

  /** Starts the dev server and the scripted model. */
  static async start(opts: BenchOptions): Promise<BenchEnv> {
    const cli = findTemporalCli();
    if (!cli) throw new Error('no temporal CLI found: run scripts/setup first (npm run bench does)');
    const server = await startDevServer({ cli, port: await freePort(), headless: true });
    try {
      const connection = await Connection.connect({ address: server.address });
      const temporal = new Client({ connection });
      let env: BenchEnv | undefined;
      const model = await startMessagesServer({
        latencyMs: opts.latencyMs,
        ttftMs: opts.ttftMs,
        logUnexpected: true,
        // Every request is answered by the handler of its session (found by the id in the system prompt).
        responder: (req) => env!.respond(req),
      });
      env = new BenchEnv(opts, server, temporal, model);
      return env;
    } catch (err) {
      await server.stop();
      throw err;
    }
  }

  private respond(req: RecordedRequest): PlainStep {
    const id = SESSION_RE.exec(req.rawBody)?.[0];
    if (id) {
      for (const l of this.listeners.get(id)?.splice(0) ?? []) l(req);
    }
    const handler = id ? this.handlers.get(id) : undefined;
    return handler ? handler(req) : reply('ok');
  }

  /** Answers the model requests of `sessionId` with `handler` (default: a short text reply). */
  route(sessionId: string, handler: Handler): void {
    this.handlers.set(sessionId, handler);
  }

  /** Resolves with the next model request of `sessionId` (at its arrival). Register before it can arrive. */
  nextRequest(sessionId: string, timeoutMs = 120_000): Promise<RecordedRequest> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no model request from ${sessionId} in ${timeoutMs} ms`)), timeoutMs);
      const list = this.listeners.get(sessionId) ?? [];
      list.push((r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.listeners.set(sessionId, list);
    });
  }

  /** A fresh bench session id, `sesn_bench_<kind>_<random>`. */
  newSessionId(kind: string): string {
    const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
    return `${SESSION_PREFIX}${kind}_${[...randomBytes(12)].map((b) => alphabet[b % 32]).join('')}`;
  }

  /** The bench agent: all built-in tools, a small sandbox, the session id in the system prompt for routing. */
  agent(sessionId: string): AgentDefinition {
    return {
      name: 'bench-agent',
      model: 'claude-sonnet-5-5',
      system: `You are a benchmark agent (session ${sessionId}).`,
      tools: [{ type: 'agent_toolset_20260401' }],
      sandbox: { memory_mb: 256, idle_timeout_s: 600 },
    };
  }

  /** The sandbox reference Tandem derives for a session of {@link agent}. */
  sandboxRef(sessionId: string): SandboxRef {
    return { session_id: sessionId, config: { memory_mb: 256, idle_timeout_s: 600 } };
  }

  /** A Tandem client on `queue`. */
  tandem(queue: string): TandemClient {
    return new TandemClient(this.temporal, queue);
  }

  /** A unique task queue. */
  queue(kind: string): string {
    return `bench-${kind}-${randomBytes(4).toString('hex')}`;
  }

  /** Starts `src/worker.ts` (or another worker script) as its own process on `queue` and waits until it polls. */
  async spawnWorker(queue: string, script = 'src/worker.ts'): Promise<WorkerProcess> {
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: projectRoot,
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: this.server.address,
        TANDEM_TASK_QUEUE: queue,
        ANTHROPIC_BASE_URL: this.model.url,
        ANTHROPIC_API_KEY: 'bench-key',
        TANDEM_REAP_INTERVAL_S: '0',
        TANDEM_LOG_LEVEL: 'WARN',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    let expectedExit = false;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const onData = (c: Buffer) => (output = (output + c.toString()).slice(-4000));
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    await new Promise<void>((resolve, reject) => {
      // The worker logs to stderr (logLine); either stream may carry the line.
      const check = () => {
        if (output.includes('polling task queue')) {
          child.stdout!.off('data', check);
          child.stderr!.off('data', check);
          resolve();
        }
      };
      child.stdout!.on('data', check);
      child.stderr!.on('data', check);
      child.once('exit', (code) => reject(new Error(`worker exited early (${code}): ${output.slice(-2000)}`)));
    });
    child.once('exit', (code, signal) => {
      if (!expectedExit) log(`worker ${child.pid} exited unexpectedly (${code ?? signal}): ${output.slice(-1500)}`);
    });
    const w: WorkerProcess = {
      child,
      pid: child.pid!,
      queue,
      identity: `${child.pid}@${this.host}`,
      memory: () => {
        const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
        const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
        return { rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') };
      },
      cpuMs: () => processCpuMs(child.pid!),
      kill: async (signal: NodeJS.Signals = 'SIGTERM') => {
        expectedExit = true;
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill(signal);
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
        this.workers.delete(w);
      },
    };
    this.workers.add(w);
    return w;
  }

  /** The running worker processes on `queue`. */
  workersOn(queue: string): WorkerProcess[] {
    return [...this.workers].filter((w) => w.queue === queue);
  }

  /** The worker process whose identity is `identity`, if it is one of ours. */
  workerByIdentity(identity: string | null | undefined): WorkerProcess | undefined {
    return [...this.workers].find((w) => w.identity === identity);
  }

  /** The results of a session's completed activities of one type (`callModel`, `execute`, …), in order, across all runs. */
  async activityResults<T>(sessionId: string, type: string): Promise<T[]> {
    const out: T[] = [];
    for (const run of await readRunChain(this.temporal, sessionId)) {
      const types = new Map<string, string>();
      for (const e of run.events) {
        const s = e.activityTaskScheduledEventAttributes;
        if (s) types.set(String(e.eventId), s.activityType?.name ?? '');
        const c = e.activityTaskCompletedEventAttributes;
        if (c && types.get(String(c.scheduledEventId)) === type) {
          const p = c.result?.payloads?.[0];
          if (p) out.push(decodeJsonPayload(p) as T);
        }
      }
    }
    return out;
  }

  /** The results of a session's `callModel` activities, in order. */
  modelCalls(sessionId: string): Promise<CallModelResult[]> {
    return this.activityResults<CallModelResult>(sessionId, 'callModel');
  }

  /** The container name of a session that the bench's workers (processes) run. */
  containerName(sessionId: string): string {
    return sandboxNames(sessionId, `default@${this.server.address}`).container;
  }

  /** Runs a command in a container over the Docker API (a bare exec, the floor of exec-based designs). */
  async exec(container: string, cmd: string[], stdin?: Buffer): Promise<{ stdout: string; stderr: string; exitCode: number | null }> {
    const exec = await this.docker
      .getContainer(container)
      .exec({ Cmd: cmd, User: '1000:1000', AttachStdin: stdin !== undefined, AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({ hijack: true, stdin: stdin !== undefined });
    const out = new PassThrough();
    const err = new PassThrough();
    const chunks: Buffer[] = [];
    const errChunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    err.on('data', (c: Buffer) => errChunks.push(c));
    this.docker.modem.demuxStream(stream, out, err);
    const done = new Promise((resolve) => (stream.on('end', resolve), stream.on('close', resolve), stream.on('error', resolve)));
    if (stdin !== undefined) stream.end(stdin);
    await done;
    const inspected = await exec.inspect().catch(() => undefined);
    return {
      stdout: Buffer.concat(chunks).toString('utf8'),
      stderr: Buffer.concat(errChunks).toString('utf8'),
      exitCode: inspected?.ExitCode ?? null,
    };
  }

  /** Removes every container and volume of a bench session. */
  async removeBenchSandboxes(): Promise<number> {
    const ours = (labels: Record<string, string> | undefined) => labels?.[LABEL_SESSION]?.startsWith(SESSION_PREFIX) ?? false;
    const containers = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL_MANAGED}=true`] } });
    const mine = containers.filter((c) => ours(c.Labels));
    await Promise.all(mine.map((c) => this.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
    const { Volumes } = await this.docker.listVolumes({ filters: { label: [`${LABEL_MANAGED}=true`] } });
    const vols = (Volumes ?? []).filter((v) => ours(v.Labels ?? undefined));
    for (const v of vols) await this.docker.getVolume(v.Name).remove().catch(() => undefined);
    return mine.length;
  }

  /** Stops the workers, the scripted model and the dev server, and removes the bench's sandboxes. */
  async close(): Promise<void> {
    await Promise.all([...this.workers].map((w) => w.kill('SIGTERM').catch(() => undefined)));
    // The engine may be restarting (another suite on this machine restarts dockerd): retry for a minute.
    let removed = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        removed = await this.removeBenchSandboxes();
        break;
      } catch (err) {
        if (attempt >= 12) {
          log(`cleanup: could not list or remove containers: ${(err as Error).message}; remove containers labelled ${LABEL_SESSION}=${SESSION_PREFIX}* by hand`);
          break;
        }
        await new Promise((r) => setTimeout(r, 5000));
      }
    }
    if (removed) log(`cleanup: removed ${removed} bench container(s) and their volumes`);
    await this.model.close().catch(() => undefined);
    await this.temporal.connection.close().catch(() => undefined);
    await this.server.stop().catch(() => undefined);
  }

  /** Kills the worker processes at once (on an abrupt exit of the bench). */
  killAllSync(): void {
    for (const w of this.workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
    if (this.server.process.exitCode === null) this.server.process.kill('SIGKILL');
  }
}
