/**
 * Warm starts: a hands host keeps a few hardened containers started ahead, each on a slot of its own with an empty
 * workspace, so a session's first tool call does not wait for create + start + the toolbox. A session takes a warm
 * container on by renaming: its slot directory becomes the session's (the workspace's mount and the toolbox's line
 * move with it), and the container gets the session's name. Nothing of the container's spec changes, so every
 * hardening setting is the one a cold start would have had.
 *
 * Pools are kept per container shape (image, memory, cpu, processes, disk): the host's default shape from the start,
 * and each shape a session asked for lately. A sandbox that needs the gateway (repositories, limited egress) or a
 * Docker volume for its workspace starts cold: its container's environment or mounts differ.
 */
import type { SandboxConfig } from '../../shared/types.js';

/** A warm container, ready to be taken on. */
export interface WarmEntry {
  /** The slot's own session id (`warm-<random>`). */
  id: string;
  /** Its slot directory. */
  dir: string;
  containerId: string;
  /** The container's hostname: its toolbox's line is known by it. */
  hostname: string;
  image: string;
}

/** The fields of a sandbox config that shape its container (a warm one must match them all). */
export function warmShape(config: SandboxConfig, defaultImage: string): string {
  const { image = defaultImage, memory_mb = 1024, cpu = 1, pids_limit = 256, disk_mb } = config;
  return JSON.stringify([image, memory_mb, cpu, pids_limit, disk_mb ?? null]);
}

interface Pool {
  config: SandboxConfig;
  ready: WarmEntry[];
  filling: boolean;
  lastWanted: number;
}

/** The warm containers of one host. */
export class WarmPool {
  private readonly pools = new Map<string, Pool>();
  private closed = false;

  constructor(
    private readonly opts: {
      /** Containers kept per shape (0: none). */
      target: number;
      /** A pool unused this long is emptied. */
      idleMs: number;
      defaultImage: string;
      create: (config: SandboxConfig) => Promise<WarmEntry>;
      destroy: (entry: WarmEntry) => Promise<void>;
      log: (message: string) => void;
    },
  ) {}

  /** Whether a sandbox of this config can start warm here at all. */
  get enabled(): boolean {
    return this.opts.target > 0 && !this.closed;
  }

  /** Keeps `target` containers of this config's shape warm from now on (until unused for `idleMs`). */
  want(config: SandboxConfig): void {
    if (!this.enabled) return;
    const key = warmShape(config, this.opts.defaultImage);
    let pool = this.pools.get(key);
    if (!pool) {
      pool = { config: shapeOf(config), ready: [], filling: false, lastWanted: Date.now() };
      this.pools.set(key, pool);
    }
    pool.lastWanted = Date.now();
    void this.fill(pool);
  }

  /** A warm container of this config's shape, taken out of the pool (which then makes another), or undefined. */
  take(config: SandboxConfig): WarmEntry | undefined {
    if (!this.enabled) return undefined;
    const pool = this.pools.get(warmShape(config, this.opts.defaultImage));
    const entry = pool?.ready.shift();
    this.want(config);
    return entry;
  }

  /** Ready containers of this config's shape. */
  readyFor(config: SandboxConfig): number {
    return this.pools.get(warmShape(config, this.opts.defaultImage))?.ready.length ?? 0;
  }

  /** Ready containers by image (what the host announces). */
  counts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const p of this.pools.values()) for (const e of p.ready) out[e.image] = (out[e.image] ?? 0) + 1;
    return out;
  }

  /** Empties the pools that nobody wanted for `idleMs`. */
  async prune(now = Date.now()): Promise<void> {
    for (const [key, pool] of this.pools)
      if (now - pool.lastWanted > this.opts.idleMs && !pool.filling) {
        this.pools.delete(key);
        await Promise.all(pool.ready.splice(0).map((e) => this.opts.destroy(e).catch(() => undefined)));
      }
  }

  /** Removes every warm container (the host is shutting down). */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.pools.values()].flatMap((p) => p.ready.splice(0));
    this.pools.clear();
    await Promise.all(all.map((e) => this.opts.destroy(e).catch(() => undefined)));
  }

  /** Makes containers one at a time until the pool holds `target` (a failure waits for the next `want`). */
  private async fill(pool: Pool): Promise<void> {
    if (pool.filling) return;
    pool.filling = true;
    try {
      while (!this.closed && pool.ready.length < this.opts.target) {
        const entry = await this.opts.create(pool.config);
        if (this.closed) return void (await this.opts.destroy(entry).catch(() => undefined));
        pool.ready.push(entry);
      }
    } catch (err) {
      this.opts.log(`could not start a warm container: ${(err as Error).message}`);
    } finally {
      pool.filling = false;
    }
  }
}

/** Only the fields that shape a container: what a warm one is made from. */
function shapeOf(c: SandboxConfig): SandboxConfig {
  const { image, memory_mb, cpu, pids_limit, disk_mb } = c;
  return {
    ...(image ? { image } : {}),
    ...(memory_mb ? { memory_mb } : {}),
    ...(cpu ? { cpu } : {}),
    ...(pids_limit ? { pids_limit } : {}),
    ...(disk_mb ? { disk_mb } : {}),
  };
}
