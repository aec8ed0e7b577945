/**
 * Hands hosts and where a sandbox goes. Each hands host (`tandem hands`, or a `tandem worker` that runs both roles)
 * serves the sandbox activities of the containers on its Docker engine on a task queue of its own,
 * `<queue>-hands-<host id>`, and the placement step on the queue all hosts share, `<queue>-hands`. Every few seconds
 * it announces itself in the shared store (what it runs, what it keeps warm); a session's first tool call is placed
 * by whichever host takes the placement task, which reads those announcements and picks a live host: one with a
 * warm container of the sandbox's image first, then the least loaded. Every later call for that sandbox goes to the
 * chosen host's queue alone (Temporal's worker-specific task queues). A host that stops answering is noticed by the
 * session as a timeout on its queue, and the session places its sandbox again elsewhere.
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { hostQueue } from '../../shared/names.js';
import type { Placement, PlaceSandboxInput } from '../../shared/types.js';
import type { BlobStore } from './blob-store.js';

/** How often a host announces itself, and how old an announcement may be for the host to count as live. */
export const ANNOUNCE_MS = 3000;
export const LIVE_MS = 12_000;

/** What a host announces. */
export interface HostAnnouncement {
  host_id: string;
  task_queue: string;
  /** Sandboxes running on the host. */
  running: number;
  /** Warm containers ready to take a sandbox on, by image. */
  warm: Record<string, number>;
  at: string;
}

/** This machine's default host id: its hostname, cleaned to what task queue names and keys take. */
export function defaultHostId(): string {
  return hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 60) || 'host';
}

/** Where announcements live: one prefix per deployment task queue (queue names may hold any character). */
function registryPrefix(taskQueue: string): string {
  return `hosts/q-${createHash('sha256').update(taskQueue).digest('hex').slice(0, 16)}/`;
}

/**
 * Picks a host among announcements: a live one not excluded, with a warm container of `image` first, then the least
 * loaded. An excluded host that announces itself again is taken only when no other is live (it may have recovered).
 */
export function choose(hosts: HostAnnouncement[], input: PlaceSandboxInput, now = Date.now()): HostAnnouncement | undefined {
  const excluded = (h: HostAnnouncement) => (input.exclude ?? []).includes(h.host_id);
  const warm = (h: HostAnnouncement) => (input.image ? (h.warm[input.image] ?? 0) : 0) > 0;
  return hosts
    .filter((h) => now - Date.parse(h.at) < LIVE_MS)
    .sort(
      (a, b) =>
        Number(excluded(a)) - Number(excluded(b)) ||
        Number(warm(b)) - Number(warm(a)) ||
        a.running - b.running ||
        a.host_id.localeCompare(b.host_id),
    )[0];
}

/** A hands host's place in the registry: it announces itself and places sandboxes. */
export class HostRegistry {
  private timer: NodeJS.Timeout | undefined;
  /** Sandboxes this host placed lately, by host: not yet in their announcements, so counted here. */
  private readonly recent: Array<{ host: string; at: number }> = [];

  constructor(
    private readonly store: BlobStore,
    /** The deployment's task queue. */
    private readonly taskQueue: string,
    readonly hostId: string,
    /** What this host runs and keeps warm right now. */
    private readonly load: () => Promise<{ running: number; warm: Record<string, number> }>,
  ) {}

  /** This host's own queue. */
  get queue(): string {
    return hostQueue(this.taskQueue, this.hostId);
  }

  /** Announces this host now, then every {@link ANNOUNCE_MS} until `stop`. */
  async start(): Promise<void> {
    await this.announce();
    this.timer = setInterval(() => void this.announce().catch(() => undefined), ANNOUNCE_MS);
  }

  /** Stops announcing and withdraws the announcement, so no new sandbox is placed here. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.store.delete(this.key()).catch(() => undefined);
  }

  /**
   * The `placeSandbox` activity: a live host for the sandbox. When the registry cannot be read or holds no live
   * host, this host takes it (it is alive: it runs this task).
   */
  async place(input: PlaceSandboxInput): Promise<Placement> {
    const now = Date.now();
    while (this.recent.length > 0 && now - this.recent[0]!.at > 2 * ANNOUNCE_MS) this.recent.shift();
    const hosts = (await this.read().catch(() => [] as HostAnnouncement[])).map((h) => ({
      ...h,
      running: h.running + this.recent.filter((r) => r.host === h.host_id && r.at > Date.parse(h.at)).length,
    }));
    const chosen = choose(hosts, input, now) ?? { host_id: this.hostId, task_queue: this.queue };
    this.recent.push({ host: chosen.host_id, at: now });
    return { host_id: chosen.host_id, task_queue: chosen.task_queue };
  }

  /** The announcements of this deployment's hosts. */
  async read(): Promise<HostAnnouncement[]> {
    const out: HostAnnouncement[] = [];
    for await (const { key } of this.store.list(registryPrefix(this.taskQueue))) {
      const data = await this.store.get(key, 64 * 1024).catch(() => undefined);
      try {
        if (data) out.push(JSON.parse(data.toString()) as HostAnnouncement);
      } catch {
        // a torn or foreign file: not a host
      }
    }
    return out;
  }

  private async announce(): Promise<void> {
    const load = await this.load();
    const a: HostAnnouncement = { host_id: this.hostId, task_queue: this.queue, ...load, at: new Date().toISOString() };
    await this.store.put(this.key(), Buffer.from(JSON.stringify(a)));
  }

  private key(): string {
    return `${registryPrefix(this.taskQueue)}${this.hostId}`;
  }
}
