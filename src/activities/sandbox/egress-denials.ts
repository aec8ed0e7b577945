/**
 * The egress proxy's record of the requests it refused, between two tool calls of a session: bounded wherever it is
 * held, because a sandbox chooses how often it is refused and what host names it sends.
 *
 * A refusal costs the proxy no disk write of its own: it goes into a list in memory. `execute` takes the denials
 * with the tool result, in whichever worker on the host runs it; the proxy may run in another worker (the one that
 * started it), so the proxy's worker also hands its denials over in files of the session's `state/` directory
 * (never mounted in the container), written asynchronously and moved into place whole. A session holds at most
 * `MAX_DENIALS` denials, in memory and in files together; refusals past that are only counted, and the count is
 * reported (`EgressDenial.dropped`). The worker that serves the proxy drains its own memory as well as the files
 * (a batch being written when it drains is taken and its file dropped), so the denials of a tool call are reported
 * with that call; another worker sees them once their file is in place.
 */
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { EgressDenial } from '../../shared/types.js';

/** Most denials a session's record holds between two tool calls; more are counted, not kept. */
export const MAX_DENIALS = 100;
/** Longest host name kept in a denial: the longest DNS name. */
export const MAX_DENIAL_HOST = 253;
/** While the handoff is full, how often the worker serving the proxy looks whether another worker took it. */
const HANDOFF_RETRY_MS = 1000;
/** Largest handoff file read: far more than `MAX_DENIALS` bounded denials take. */
const MAX_HANDOFF_BYTES = 256 * 1024;
/** Most handoff files one drain reads: each holds at least one denial or a count, and a session holds at most `MAX_DENIALS`. */
const MAX_HANDOFF_FILES = 2 * MAX_DENIALS;

/** Control and formatting characters (C0, DEL, C1, bidi overrides, ...): never in a recorded name. */
const UNPRINTABLE = /[\p{Cc}\p{Cf}]/gu;

/** A denial with its strings bounded: the host name at most `MAX_DENIAL_HOST` characters, no control characters. */
export function boundDenial(d: EgressDenial): EgressDenial {
  const text = (s: unknown, max: number) => String(s).replace(UNPRINTABLE, '').slice(0, max);
  const port = Number(d.port);
  return {
    host: text(d.host, MAX_DENIAL_HOST),
    port: Number.isInteger(port) && port >= 0 && port <= 65535 ? port : 0,
    method: text(d.method, 16),
    at: text(d.at, 32),
  };
}

/** A batch of denials and the number of refusals after them that were counted but not kept. */
interface Batch {
  denials: EgressDenial[];
  dropped: number;
}

/**
 * Joins batches (oldest first) into what a tool result carries: at most `max` denials, the last of them with
 * `dropped` when refusals were counted but not kept.
 */
export function joinBatches(batches: Batch[], max = MAX_DENIALS): EgressDenial[] {
  const all = batches.flatMap((b) => b.denials);
  const kept = all.slice(0, max);
  const dropped = batches.reduce((n, b) => n + b.dropped, 0) + (all.length - kept.length);
  if (dropped > 0 && kept.length > 0) kept[kept.length - 1] = { ...kept[kept.length - 1]!, dropped };
  return kept;
}

/**
 * Takes the handoff files of a session (`dir`, in its `state/` directory), oldest first: each is claimed by a rename,
 * so two workers never both take one. Unreadable, oversized or malformed files are dropped.
 */
export function takeHandoff(dir: string): Batch[] {
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((n) => !n.startsWith('.'))
      .sort()
      .slice(0, MAX_HANDOFF_FILES);
  } catch {
    return [];
  }
  const batches: Batch[] = [];
  for (const name of names) {
    const claimed = join(dir, `.taken-${process.pid}-${name}`);
    try {
      renameSync(join(dir, name), claimed);
    } catch {
      continue; // another worker took it
    }
    try {
      if (statSync(claimed).size > MAX_HANDOFF_BYTES) continue;
      const data = JSON.parse(readFileSync(claimed, 'utf8')) as Partial<Batch>;
      const denials = Array.isArray(data.denials) ? data.denials.slice(0, MAX_DENIALS).map(boundDenial) : [];
      batches.push({ denials, dropped: Math.max(0, Math.floor(Number(data.dropped) || 0)) });
    } catch {
      // not a batch: dropped
    } finally {
      rmSync(claimed, { force: true });
    }
  }
  return batches;
}

/** Denials a handoff file holds, from its name (`<time>-<pid>-<serial>-<count>.json`); 1 for a count alone. */
function heldIn(name: string): number {
  return Math.max(1, Number(/-(\d+)\.json$/.exec(name)?.[1] ?? 1));
}

/**
 * One session's denials in the worker that serves its egress proxy: at most `max` held, in memory and in handoff
 * files together (a file holding only a count counts as one); refusals past that are only counted.
 */
export class DenialLog {
  private pending: EgressDenial[] = [];
  private dropped = 0;
  /** Denials in handoff files, as last seen (only this worker writes them; others only take them away). */
  private onDisk = 0;
  /** The batch being written to a handoff file, until its file is in place; `taken` when a drain took it first. */
  private writing: (Batch & { taken: boolean }) | undefined;
  private scheduled = false;
  /** The handover in progress, if any. */
  private handing: Promise<void> | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;
  private serial = 0;

  /** `dir`: the session's handoff directory; its parent (the session's `state/`) must exist. */
  constructor(
    private readonly dir: string,
    private readonly max = MAX_DENIALS,
  ) {}

  /** Records one refusal: kept (bounded) while fewer than `max` are held, else counted; handed over soon after. */
  record(denial: EgressDenial): void {
    if (this.closed) return;
    const held = this.pending.length + this.onDisk + (this.writing?.denials.length ?? 0);
    if (held < this.max) this.pending.push(boundDenial(denial));
    else this.dropped++;
    this.schedule();
  }

  /**
   * Takes every denial of the session: the handoff files (this worker's, and any a previous one left), then what
   * this worker holds (a batch being written included: its file will not appear). Oldest first.
   */
  drain(): Batch[] {
    const batches = takeHandoff(this.dir);
    this.onDisk = 0;
    const mine: Batch = { denials: [], dropped: 0 };
    if (this.writing && !this.writing.taken) {
      this.writing.taken = true;
      mine.denials.push(...this.writing.denials);
      mine.dropped += this.writing.dropped;
    }
    mine.denials.push(...this.pending);
    mine.dropped += this.dropped;
    this.pending = [];
    this.dropped = 0;
    return [...batches, mine];
  }

  /** Stops handing over (the session's proxy has stopped). */
  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
  }

  private schedule(): void {
    if (this.scheduled || this.writing || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const handing = this.handOver().finally(() => {
        if (this.handing === handing) this.handing = undefined;
      });
      this.handing = handing;
    });
  }

  /** Resolves once no handover is scheduled or in progress (what was recorded is in a file, in memory, or taken). */
  async settled(): Promise<void> {
    while (this.scheduled || this.handing) {
      await (this.handing ?? new Promise((r) => setImmediate(r)));
    }
  }

  /** Writes the waiting denials to a new handoff file, as far as the session's bound leaves room for them. */
  private async handOver(): Promise<void> {
    if (this.closed || this.writing || (this.pending.length === 0 && this.dropped === 0)) return;
    const batch = { denials: this.pending, dropped: this.dropped, taken: false };
    this.pending = [];
    this.dropped = 0;
    this.writing = batch;
    let wait = false;
    try {
      // Not recursive: when the session's directory is gone, the session has ended and nothing is handed over.
      await mkdir(this.dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
      const names = (await readdir(this.dir)).filter((n) => !n.startsWith('.'));
      if (batch.taken || this.closed) return;
      this.onDisk = names.reduce((n, name) => n + heldIn(name), 0);
      const room = Math.max(0, this.max - this.onDisk);
      batch.dropped += Math.max(0, batch.denials.length - room);
      batch.denials = batch.denials.slice(0, room);
      if (room === 0) {
        // No room there until another worker takes the files: the count waits here (a drain here takes it too).
        this.dropped += batch.dropped;
        wait = true;
        return;
      }
      const count = Math.max(1, batch.denials.length);
      const name = `${Date.now().toString().padStart(15, '0')}-${process.pid}-${this.serial++}-${count}.json`;
      const tmp = join(this.dir, `.${name}.tmp`);
      await writeFile(tmp, JSON.stringify({ denials: batch.denials, dropped: batch.dropped }), { mode: 0o600 });
      // Checked and moved in one turn of the event loop: a drain here either took the batch or will find its file.
      if (batch.taken || this.closed) await rm(tmp, { force: true });
      else {
        renameSync(tmp, join(this.dir, name));
        this.onDisk += count;
      }
    } catch {
      // the session's directory was removed: the session has ended
    } finally {
      if (this.writing === batch) this.writing = undefined;
      if (wait) {
        clearTimeout(this.retry);
        this.retry = setTimeout(() => this.schedule(), HANDOFF_RETRY_MS);
        this.retry.unref();
      } else if (this.pending.length > 0 || this.dropped > 0) this.schedule();
    }
  }
}
