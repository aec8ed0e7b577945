/**
 * Two hands hosts and a brain, as processes, for the measurements of losing a host: host A on this machine's Docker
 * engine, host B on a second `dockerd` of the bench's own (test/helpers/engine.ts: its own data root, exec root and
 * socket, no bridge network), and one brain worker (`TANDEM_WORKER_ROLE=brain`, no Docker). Each host has a hands
 * directory of its own (two machines) and both share one snapshot store (a directory: the default store, as a shared
 * mount would be). Host B can die for real: its process and its engine are SIGKILLed, and so are the processes of its
 * containers (a dead machine takes them with it; a killed engine alone leaves them running, reparented), and it can
 * be started again on the same engine data.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type Docker from 'dockerode';
import { DirStore } from '../../src/activities/sandbox/blob-store.js';
import { HostRegistry, LIVE_MS, type HostAnnouncement } from '../../src/activities/sandbox/hosts.js';
import { isMountPoint, listSlots, removeSlotDir } from '../../src/activities/sandbox/slot.js';
import { projectRoot } from '../../src/cli/dev-server.js';
import { killContainerProcesses, startEngine, type Engine } from '../../test/helpers/engine.js';
import { log, type BenchEnv, type WorkerProcess } from './env.js';
import { sleep } from './stats.js';

/** The host on this machine's engine, and the one on the bench's second engine. */
export const HOST_A = 'bench-hands-a';
export const HOST_B = 'bench-hands-b';
/** Warm containers each host keeps (the default of `TANDEM_WARM_CONTAINERS`, set explicitly). */
export const WARM = 2;
/** The second engine's name (its data under .tandem/engines/, kept between runs so the image is loaded once). */
const ENGINE = 'bench-hands-b';

/** One hands host. */
interface Host {
  id: string;
  dir: string;
  worker?: WorkerProcess;
}

/** The brain and the two hands hosts of one measurement. */
export class HandsHosts {
  readonly queue: string;
  private readonly root: string;
  private readonly storeDir: string;
  private readonly hosts: Record<'a' | 'b', Host>;
  private readonly registry: HostRegistry;
  private brain?: WorkerProcess;
  private engine?: Engine;
  private engineDead = false;
  private releaseEngine?: () => Promise<void>;
  /** Container processes of host B killed with it (they outlive a killed engine). */
  orphansKilled = 0;

  private constructor(private readonly env: BenchEnv, kind: string) {
    this.queue = env.queue(kind);
    this.root = join(env.dir, kind);
    this.storeDir = join(this.root, 'snapshots');
    this.hosts = { a: { id: HOST_A, dir: join(this.root, 'hands-a') }, b: { id: HOST_B, dir: join(this.root, 'hands-b') } };
    for (const h of Object.values(this.hosts)) mkdirSync(h.dir, { recursive: true, mode: 0o711 });
    this.registry = new HostRegistry(new DirStore(this.storeDir), this.queue, 'bench-observer', async () => ({ running: 0, warm: {} }));
  }

  /** Starts the second engine and the brain; the hosts start with {@link startHost}. */
  static async start(env: BenchEnv, kind: string): Promise<HandsHosts> {
    const h = new HandsHosts(env, kind);
    try {
      await h.startEngine();
      h.brain = await env.spawnWorker(h.queue, 'src/worker.ts', { TANDEM_WORKER_ROLE: 'brain' });
      return h;
    } catch (err) {
      await h.close();
      throw err;
    }
  }

  /** The second engine's Docker client. */
  get dockerB(): Docker {
    if (!this.engine || this.engineDead) throw new Error('host B has no engine running');
    return this.engine.docker;
  }

  /** Whether a host's process runs. */
  running(host: 'a' | 'b'): boolean {
    return this.hosts[host].worker !== undefined;
  }

  /** The Temporal worker identity of a host's process (what pending activities name). */
  identity(host: 'a' | 'b'): string {
    const w = this.hosts[host].worker;
    if (!w) throw new Error(`hands host ${this.hosts[host].id} does not run`);
    return w.identity;
  }

  /** Starts a host's process (host B on the second engine, started again first if it died). */
  async startHost(host: 'a' | 'b'): Promise<void> {
    const h = this.hosts[host];
    if (h.worker) return;
    if (host === 'b' && this.engineDead) await this.startEngine();
    h.worker = await this.env.spawnWorker(this.queue, 'src/worker.ts', {
      TANDEM_WORKER_ROLE: 'hands',
      TANDEM_HANDS_ID: h.id,
      TANDEM_HANDS_DIR: h.dir,
      TANDEM_SNAPSHOT_STORE: this.storeDir,
      TANDEM_WARM_CONTAINERS: String(WARM),
      ...(host === 'b' ? { DOCKER_HOST: this.engine!.host } : {}),
    });
  }

  /** Stops a host's process the ordinary way (SIGTERM: it withdraws its announcement and its warm containers). */
  async stopHost(host: 'a' | 'b'): Promise<void> {
    const h = this.hosts[host];
    const w = h.worker;
    h.worker = undefined;
    await w?.kill('SIGTERM');
  }

  /** The hosts' announcements as placement reads them (live ones only). */
  async announcements(): Promise<HostAnnouncement[]> {
    const now = Date.now();
    return (await this.registry.read()).filter((a) => now - Date.parse(a.at) < LIVE_MS);
  }

  /** Waits until `host` has announced itself with `warm` containers of `image` ready. */
  async waitReady(host: 'a' | 'b', image: string, warm = WARM, timeoutMs = 120_000): Promise<void> {
    const id = this.hosts[host].id;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const a = (await this.announcements().catch(() => [])).find((x) => x.host_id === id);
      if (a && (a.warm[image] ?? 0) >= warm) return;
      if (Date.now() > deadline) throw new Error(`hands host ${id} did not announce ${warm} warm container(s) within ${timeoutMs / 1000} s`);
      await sleep(200);
    }
  }

  /**
   * Host B dies: its process, its engine (with containerd and the shims) and its containers' processes, SIGKILLed.
   * Resolves when all are gone; the caller takes the time just before.
   */
  async killB(): Promise<void> {
    const w = this.hosts.b.worker;
    this.hosts.b.worker = undefined;
    const engine = this.engine!;
    this.engineDead = true;
    const [, killed] = await Promise.all([w?.kill('SIGKILL'), engine.kill()]);
    this.orphansKilled += killed;
  }

  /** Removes the slots (workspaces) a host left (its process is stopped). */
  async clearSlots(host: 'a' | 'b'): Promise<void> {
    for (const slot of listSlots(this.hosts[host].dir)) await removeSlotDir(slot.dir).catch(() => undefined);
  }

  /**
   * Stops everything: the brain, the hosts, the second engine (started again if it died, so that it removes what it
   * held), and removes the hosts' slots. The directories go with the bench's.
   */
  async close(): Promise<void> {
    await this.brain?.kill('SIGTERM').catch(() => undefined);
    for (const host of ['a', 'b'] as const) await this.stopHost(host).catch(() => undefined);
    // Sessions' containers on this machine's engine go before their slots.
    await this.env.removeBenchSandboxes().catch(() => undefined);
    if (this.engineDead && this.releaseEngine) {
      await this.startEngine().catch((err: unknown) => log(`hands hosts: could not restart engine ${ENGINE} to clean it: ${(err as Error).message}`));
    }
    await this.releaseEngine?.();
    // A dockerd that was SIGKILLed leaves its data root bound onto itself; the one stopped last would not undo it.
    const data = join(projectRoot, '.tandem', 'engines', ENGINE, 'data');
    if (this.releaseEngine && isMountPoint(data)) spawnSync('umount', [data]);
    for (const host of ['a', 'b'] as const) await this.clearSlots(host);
  }

  /**
   * Starts (or restarts) the second engine. After a kill, the containers it held are dead: their processes are
   * killed and the containers removed, and host B's slots with them, so host B starts again empty.
   */
  private async startEngine(): Promise<void> {
    const t = Date.now();
    const engine = await startEngine(ENGINE);
    this.engine = engine;
    this.engineDead = false;
    if (!this.releaseEngine)
      this.releaseEngine = this.env.own(
        `engine ${ENGINE}`,
        async () => {
          if (!this.engineDead) await this.engine?.stop();
          else await this.engine?.kill();
        },
        () => void this.engine?.kill(),
      );
    const left = await engine.docker.listContainers({ all: true });
    this.orphansKilled += killContainerProcesses(left.map((c) => c.Id));
    await Promise.all(left.map((c) => engine.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
    await this.clearSlots('b');
    log(`hands hosts: engine ${ENGINE} up in ${Date.now() - t} ms${left.length ? `, ${left.length} dead container(s) removed` : ''}`);
  }
}

