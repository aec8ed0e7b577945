/**
 * The bench's world: its own Temporal dev server (in memory), the scripted Messages API server with configurable
 * latency, Tandem workers as separate processes (`node --import tsx src/worker.ts`, as `tandem worker` runs), the
 * Docker engine and the sandbox activities. The hands of the bench (its workers' and its own) keep their slots and
 * snapshots in a temporary directory of the run, and make workspaces the way a worker on this host would (an ext4
 * image with a size limit as root with loop devices, else a Docker volume). Everything it starts is stopped by
 * `close()`, and every container, volume and slot of a bench session (`sesn_bench_…`) is removed, and so are the
 * warm containers of the bench's workers and the temporary directory, also when a measurement fails.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import Docker from 'dockerode';
import { PassThrough } from 'node:stream';
import {
  createHands,
  LABEL_MANAGED,
  LABEL_SCOPE,
  LABEL_SESSION,
  LABEL_WARM,
  sandboxNames,
  type SandboxSettings,
} from '../../src/activities/sandbox/docker.js';
import { isMountPoint, listSlots, quotaSupported, removeSlotDir } from '../../src/activities/sandbox/slot.js';
import { findTemporalCli, freePort, projectRoot, startDevServer, type DevServer } from '../../src/cli/dev-server.js';
import { TandemClient } from '../../src/client/index.js';
import { decodeJsonPayload, readRunChain } from '../../src/log/read.js';
import type { AgentDefinition, CallModelResult, SandboxConfig, SandboxRef } from '../../src/shared/types.js';
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

  /**
   * The run's temporary directory: `hands/` (the slots of the bench's workers and its own hands; 0711 on the way,
   * so an engine that remaps user ids can reach the mounts), `snapshots/` (their snapshot store), and whatever a
   * measurement makes for itself. Removed by `close()`.
   */
  readonly dir = (() => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-'));
    chmodSync(dir, 0o711);
    return dir;
  })();
  readonly handsDir = join(this.dir, 'hands');
  readonly snapshotDir = join(this.dir, 'snapshots');
  /**
   * Sandbox provider settings, as a worker on this host has them by default: workspaces with a size limit when this
   * process can make them (root, loop devices: `TANDEM_WORKSPACE_QUOTA=auto`), no warm containers (a measurement
   * that wants them makes hands of its own).
   */
  readonly sandboxSettings: SandboxSettings & { scope: string } = {
    image: process.env.TANDEM_SANDBOX_IMAGE ?? 'tandem-sandbox:latest',
    outputCap: 30_000,
    scope: 'bench',
    handsDir: this.handsDir,
    workspaceMode: quotaSupported() ? 'quota' : 'volume',
  };
  readonly docker = new Docker();
  /** Tandem's own hands (sandbox activities and slots), called directly (outside any workflow). */
  readonly hands = createHands({ docker: this.docker, settings: this.sandboxSettings });
  readonly sandbox = this.hands.activities;
  /** Hands a measurement made for itself; shut down by `close()` if it could not do so itself. */
  private readonly extraHands = new Set<{ shutdown(): Promise<void> }>();
  /** Engines, servers and such a measurement started; stopped by `close()` if it could not do so itself. */
  private readonly owned = new Set<{ what: string; stop: () => Promise<void>; kill?: () => void }>();

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

  /**
   * The bench agent: all built-in tools, a small sandbox (or `sandbox`), the session id in the system prompt for
   * routing.
   */
  agent(sessionId: string, sandbox: SandboxConfig = BENCH_SANDBOX): AgentDefinition {
    return {
      name: 'bench-agent',
      model: 'claude-sonnet-5-5',
      system: `You are a benchmark agent (session ${sessionId}).`,
      tools: [{ type: 'agent_toolset_20260401' }],
      sandbox,
    };
  }

  /** The sandbox reference Tandem derives for a session of {@link agent} (with the same `sandbox`). */
  sandboxRef(sessionId: string, sandbox: SandboxConfig = BENCH_SANDBOX): SandboxRef {
    return { session_id: sessionId, config: sandbox };
  }

  /**
   * Hands of a measurement's own (other settings, another engine), on the run's hands directory unless told
   * otherwise. `close()` shuts them down if the measurement did not (`release`).
   */
  ownHands(settings: Partial<SandboxSettings> = {}, docker: Docker = this.docker): ReturnType<typeof createHands> {
    const hands = createHands({ docker, settings: { ...this.sandboxSettings, ...settings } });
    this.extraHands.add(hands);
    return hands;
  }

  /** Shuts down hands made by {@link ownHands} (their warm containers go, their lines close). */
  async release(hands: { shutdown(): Promise<void> }): Promise<void> {
    this.extraHands.delete(hands);
    await hands.shutdown();
  }

  /**
   * Registers what a measurement started outside the bench's own processes (an engine, a MinIO): `close()` runs
   * `stop` if the measurement has not run the returned function by then, and `kill` (synchronous) runs if the bench
   * exits abruptly. The returned function stops it once.
   */
  own(what: string, stop: () => Promise<void>, kill?: () => void): () => Promise<void> {
    const entry = { what, stop, kill };
    this.owned.add(entry);
    return async () => {
      if (!this.owned.delete(entry)) return;
      await stop();
    };
  }

  /** A Tandem client on `queue`. */
  tandem(queue: string): TandemClient {
    return new TandemClient(this.temporal, queue);
  }

  /** A unique task queue. */
  queue(kind: string): string {
    return `bench-${kind}-${randomBytes(4).toString('hex')}`;
  }

  /**
   * Starts `src/worker.ts` (or another worker script) as its own process on `queue` and waits until it polls. It
   * keeps its slots and snapshots in the run's directory and no warm containers; `env` adds or overrides variables
   * (a role, a hands id, a Docker engine, another hands directory, warm containers).
   */
  async spawnWorker(queue: string, script = 'src/worker.ts', env: Record<string, string> = {}): Promise<WorkerProcess> {
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
        TANDEM_HANDS_DIR: this.handsDir,
        TANDEM_SNAPSHOT_STORE: this.snapshotDir,
        // Warm containers only where a measurement is about them: elsewhere they would be made in the background
        // while something else is timed.
        TANDEM_WARM_CONTAINERS: '0',
        ...env,
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
  async exec(
    container: string,
    cmd: string[],
    stdin?: Buffer,
    docker: Docker = this.docker,
  ): Promise<{ stdout: string; stderr: string; exitCode: number | null }> {
    const exec = await docker
      .getContainer(container)
      .exec({ Cmd: cmd, User: '1000:1000', AttachStdin: stdin !== undefined, AttachStdout: true, AttachStderr: true });
    const stream = await exec.start({ hijack: true, stdin: stdin !== undefined });
    const out = new PassThrough();
    const err = new PassThrough();
    const chunks: Buffer[] = [];
    const errChunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    err.on('data', (c: Buffer) => errChunks.push(c));
    docker.modem.demuxStream(stream, out, err);
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

  /** The deployment scope (label `tandem.scope`) of the sandboxes the bench's worker processes make. */
  get workerScope(): string {
    return `default@${this.server.address}`;
  }

  /**
   * Removes every container, volume and slot of a bench session, and the warm containers (and their slots) of the
   * bench's hands whose process is gone; with `everything`, the warm containers of live ones too (at the end).
   */
  async removeBenchSandboxes(everything = false): Promise<number> {
    const ours = (labels: Record<string, string> | undefined) => labels?.[LABEL_SESSION]?.startsWith(SESSION_PREFIX) ?? false;
    const scopes = [this.sandboxSettings.scope, this.workerScope];
    const orphanWarm = (labels: Record<string, string>) =>
      labels[LABEL_WARM] !== undefined && scopes.includes(labels[LABEL_SCOPE] ?? '') && (everything || !alive(Number(labels[LABEL_WARM])));
    const containers = await this.docker.listContainers({ all: true, filters: { label: [`${LABEL_MANAGED}=true`] } });
    const mine = containers.filter((c) => ours(c.Labels) || orphanWarm(c.Labels));
    await Promise.all(mine.map((c) => this.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
    const { Volumes } = await this.docker.listVolumes({ filters: { label: [`${LABEL_MANAGED}=true`] } });
    const vols = (Volumes ?? []).filter((v) => ours(v.Labels ?? undefined));
    for (const v of vols) await this.docker.getVolume(v.Name).remove().catch(() => undefined);
    for (const slot of listSlots(this.handsDir) as Array<ReturnType<typeof listSlots>[number] & { warm_owner?: number }>) {
      const warmGone = slot.warm_owner !== undefined && (everything || !alive(slot.warm_owner));
      if (slot.session_id.startsWith(SESSION_PREFIX) || warmGone) await removeSlotDir(slot.dir).catch(() => undefined);
    }
    return mine.length;
  }

  /**
   * Stops the workers, what measurements left running (hands, engines, servers), the scripted model and the dev
   * server, and removes the bench's sandboxes and its directory.
   */
  async close(): Promise<void> {
    await Promise.all([...this.workers].map((w) => w.kill('SIGTERM').catch(() => undefined)));
    for (const h of [...this.extraHands]) await this.release(h).catch(() => undefined);
    await this.hands.shutdown().catch(() => undefined);
    for (const o of [...this.owned]) {
      this.owned.delete(o);
      await o.stop().catch((err: unknown) => log(`cleanup: could not stop ${o.what}: ${(err as Error).message}`));
    }
    // The engine may be restarting (another suite on this machine restarts dockerd): retry for a minute.
    let removed = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        removed = await this.removeBenchSandboxes(true);
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
    // Every slot left (of any hands of the run, also those of measurements' own hands directories), then the rest.
    for (const dir of findSlotRoots(this.dir)) for (const slot of listSlots(dir)) await removeSlotDir(slot.dir).catch(() => undefined);
    removeDirSync(this.dir);
    await this.model.close().catch(() => undefined);
    await this.temporal.connection.close().catch(() => undefined);
    await this.server.stop().catch(() => undefined);
  }

  /**
   * Kills the worker processes and what measurements started at once, and removes the run's directory (on an abrupt
   * exit of the bench; containers are left to the next run's cleanup or to `docker rm`).
   */
  killAllSync(): void {
    for (const w of this.workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
    for (const o of this.owned) o.kill?.();
    if (this.server.process.exitCode === null) this.server.process.kill('SIGKILL');
    removeDirSync(this.dir);
  }
}

/** The sandbox of the bench agent. */
const BENCH_SANDBOX: SandboxConfig = { memory_mb: 256, idle_timeout_s: 600 };

/** Whether process `pid` runs. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The hands directories under `root` (any directory holding slots), at most two levels down. */
function findSlotRoots(root: string): string[] {
  const out: string[] = [];
  const visit = (dir: string, depth: number) => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    if (listSlots(dir).length > 0) out.push(dir);
    if (depth > 0) for (const n of names) visit(join(dir, n), depth - 1);
  };
  visit(root, 2);
  return out;
}

/**
 * Removes a directory of the bench's own: every mount under it (a workspace whose slot could not be removed) is
 * detached first, so the removal never deletes through a mount.
 */
function removeDirSync(dir: string): void {
  if (!existsSync(dir)) return;
  let table = '';
  try {
    table = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    // no mount table: nothing can be mounted that we could see
  }
  const mounts = table
    .split('\n')
    .map((l) => l.split(' ')[4]?.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((m): m is string => m !== undefined && m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) spawnSync('umount', ['-l', m]);
  if (mounts.some((m) => isMountPoint(m))) {
    log(`cleanup: ${dir} still has mounts under it; left in place`);
    return;
  }
  rmSync(dir, { recursive: true, force: true });
}
