/**
 * A worker's cache of the session logs its activities read. `callModel` and `gradeOutcome` read the log of their
 * own run up to the point where they were scheduled; without a cache each call reads the open run's whole history
 * again, so a call's cost grows with the run. With it, a call of a run this worker has read before fetches only the
 * events written since: the server's `nextPageToken` from the end of a running workflow's history (asked for with
 * `waitNewEvent`) continues from there later, and a later call always finds at least its own
 * `ActivityTaskScheduled` event there. Each worker has its own cache; a miss is a full read, as without it.
 *
 * A run's history is append-only and a reset or continue-as-new makes a new run id, so an entry is keyed by session
 * and run and never goes stale: it only grows. Each call still sees exactly the events before its own scheduling
 * point, also when earlier calls read past it: the decoder is causal (what it makes of an event depends only on the
 * events before it), so the session events of a prefix of the history are a prefix of the session events of the
 * whole, and the cache keeps, for each history event, how many session events the prefix up to it made.
 */
import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { decodeHistoryInPlace } from '../codec/index.js';
import { LogDecoder } from './decode.js';
import type { SessionEvent } from './events.js';
import type { SessionInput } from '../shared/types.js';
import { decodeJsonPayload, forkPrefix, isClosing, readHistory, rememberClosedRun, runHistory } from './read.js';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
type HistoryRequest = temporal.api.workflowservice.v1.IGetWorkflowExecutionHistoryRequest;

/** Limits and timing of a {@link SessionLogCache}. */
export interface SessionLogCacheOptions {
  /** Open runs kept, least recently used first out. Default 32. */
  maxRuns?: number;
  /** Approximate bytes of history and decoded events kept over all runs. Default 128 MiB. */
  maxBytes?: number;
  /**
   * Deadline of a request with a token. Such a request returns at once when the run has new events (a call's own
   * scheduling event is always new). Were there none, the server would hold it until shortly (about 1 s) before its
   * deadline and answer with nothing; with 1 s or less it answers at once. Either answer, or the deadline passing,
   * makes the call read the run in full. Default 1 s.
   */
  pollTimeoutMs?: number;
  /** Events per history page. Default 1000. */
  pageSize?: number;
}

/** What the cache has done since it was made (for tests and metrics). */
export interface SessionLogCacheStats {
  /** Reads of an open run from its first event (a miss, or a fallback). */
  fullReads: number;
  /** Reads that went on from a cached token. */
  incrementalReads: number;
  /** Calls whose scheduling point was in the cache already: no request at all. */
  hits: number;
  /**
   * Reads with a cached token that failed (expired, invalid, not found, past the deadline) or brought nothing new,
   * and fell back to a full read.
   */
  fallbacks: number;
  /** GetWorkflowExecutionHistory requests made for the runs this cache reads (closed runs' own reads excluded). */
  requests: number;
  /** History events those requests returned. */
  eventsFetched: number;
  /** Entries dropped to stay within the limits. */
  evictions: number;
}

/** The session log before a call's scheduling point. Shared with the cache: read it, never change it. */
export interface LogBefore {
  events: readonly SessionEvent[];
  /** The session input (the open run's first event), as the decoder read it. */
  input: SessionInput | undefined;
}

/** One open run as read so far, with the closed runs of its chain decoded before it. */
interface OpenRun {
  workflowId: string;
  runId: string;
  /** Position of this run's first event in the chain (the number of events of the closed runs before it). */
  offset: number;
  /** This run's history events read so far, in order, payloads decoded by the client's codecs. */
  raw: HistoryEvent[];
  /** Continues after `raw`; unset when the run has closed (or the server gave none). */
  token: Uint8Array | undefined;
  /** Has decoded the closed runs and `raw[0 .. decodedTo)`. */
  decoder: LogDecoder;
  decodedTo: number;
  /** Session events of the closed runs and of `raw[0 .. decodedTo)`, frozen. */
  events: SessionEvent[];
  /** Session events made by the closed runs. */
  base: number;
  /** `ends[i]`: session events made by the chain up to and including `raw[i]`. */
  ends: number[];
  bytes: number;
}

const DEFAULTS = { maxRuns: 32, maxBytes: 128 * 1024 * 1024, pollTimeoutMs: 1000, pageSize: 1000 };

/** Rough heap size of a value: bytes of strings and binary data plus a little per object. */
function approxBytes(v: unknown): number {
  if (typeof v === 'string') return v.length * 2;
  if (v instanceof Uint8Array) return v.byteLength;
  if (!v || typeof v !== 'object') return 8;
  let n = 32;
  for (const child of Object.values(v)) n += approxBytes(child);
  return n;
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v) && !(v instanceof Uint8Array)) {
    Object.freeze(v);
    for (const child of Object.values(v)) deepFreeze(child);
  }
  return v;
}

/**
 * Session logs of open runs, as this worker's activities read them. Create one per worker (per client): it
 * reads with `client`, whose payload codecs decode encrypted history.
 */
export class SessionLogCache {
  /** Counters since creation. */
  readonly stats: SessionLogCacheStats = {
    fullReads: 0,
    incrementalReads: 0,
    hits: 0,
    fallbacks: 0,
    requests: 0,
    eventsFetched: 0,
    evictions: 0,
  };
  private readonly runs = new Map<string, OpenRun>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly opts: Required<SessionLogCacheOptions>;

  constructor(
    private readonly client: Client,
    opts: SessionLogCacheOptions = {},
  ) {
    this.opts = { ...DEFAULTS, ...opts };
  }

  /** Open runs held now, and their approximate size. */
  get size(): { runs: number; bytes: number } {
    return { runs: this.runs.size, bytes: this.bytes() };
  }

  /** Approximate bytes held over all runs. */
  private bytes(): number {
    let n = 0;
    for (const r of this.runs.values()) n += r.bytes;
    return n;
  }

  /**
   * The log of session `workflowId` as run `runId` had it just before the first of its history events that
   * `before` matches (the calling activity's scheduling event): the closed runs of its chain, then this run up
   * to there. Without a match, the whole run as read.
   */
  readBefore(workflowId: string, runId: string, before: (e: HistoryEvent) => boolean): Promise<LogBefore> {
    const key = `${workflowId}/${runId}`;
    return this.locked(key, async () => {
      let run = this.touch(key);
      let cut = run ? run.raw.findIndex(before) : -1;
      if (run && cut >= 0) this.stats.hits++;
      else if (run) {
        // Not read that far yet: fetch what was written since. Any failure with the cached token, or a request that
        // brought nothing new, means a full read; a run that closed without a match is complete, as it is.
        try {
          cut = await this.readOn(run, before);
        } catch {
          this.stats.fallbacks++;
          this.runs.delete(key);
          run = undefined;
        }
        if (run && cut < 0 && run.token) {
          this.stats.fallbacks++;
          this.runs.delete(key);
          run = undefined;
        }
      }
      if (!run) {
        run = await this.load(workflowId, runId, before);
        cut = run.raw.findIndex(before);
      }
      let result: LogBefore;
      try {
        result = this.slice(run, cut < 0 ? run.raw.length : cut);
      } catch (err) {
        this.runs.delete(key); // the decoder may have stopped half-way through an event: start afresh next time
        throw err;
      }
      if (!run.token && isClosing(run.raw.at(-1))) {
        // The run has closed: its history is complete and goes to the closed runs, this entry goes.
        rememberClosedRun(workflowId, runId, run.raw);
        this.runs.delete(key);
      } else this.account(run);
      return result;
    });
  }

  /** Runs `fn` after every earlier call for `key` has finished (two calls must not read on with one token). */
  private async locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.locks.set(key, settled);
    try {
      return await next;
    } finally {
      if (this.locks.get(key) === settled) this.locks.delete(key);
    }
  }

  /** The entry of `key`, now the most recently used. */
  private touch(key: string): OpenRun | undefined {
    const run = this.runs.get(key);
    if (run) {
      this.runs.delete(key);
      this.runs.set(key, run);
    }
    return run;
  }

  /** One history request; with a token, under the poll deadline so that it can never wait for long. */
  private async fetch(req: HistoryRequest): Promise<{ events: HistoryEvent[]; token: Uint8Array | undefined }> {
    const call = () =>
      this.client.workflowService.getWorkflowExecutionHistory({
        ...req,
        namespace: this.client.options.namespace,
        waitNewEvent: true,
        maximumPageSize: this.opts.pageSize,
      });
    this.stats.requests++;
    const res = req.nextPageToken
      ? await this.client.withDeadline(Date.now() + this.opts.pollTimeoutMs, call)
      : await call();
    const events = res.history?.events ?? [];
    this.stats.eventsFetched += events.length;
    await decodeHistoryInPlace(events, this.client.options.loadedDataConverter.payloadCodecs);
    return { events, token: res.nextPageToken?.length ? res.nextPageToken : undefined };
  }

  /**
   * Reads on from the run's token until `before` matches an event (returns its index), the run closes, or a
   * request brings nothing new (returns -1 for both).
   */
  private async readOn(run: OpenRun, before: (e: HistoryEvent) => boolean): Promise<number> {
    this.stats.incrementalReads++;
    while (run.token) {
      const execution = { workflowId: run.workflowId, runId: run.runId };
      const { events, token } = await this.fetch({ execution, nextPageToken: run.token });
      const from = run.raw.length;
      for (const e of events) run.raw.push(e);
      run.bytes += events.reduce((n, e) => n + 2 * approxBytes(e), 0);
      run.token = token;
      const i = events.findIndex(before);
      if (i >= 0) return from + i;
      if (events.length === 0) break;
    }
    return -1;
  }

  /** Reads run `runId` from its first event (up to `before`, or its end) and the closed runs before it. */
  private async load(workflowId: string, runId: string, before: (e: HistoryEvent) => boolean): Promise<OpenRun> {
    this.stats.fullReads++;
    const execution = { workflowId, runId };
    let raw: HistoryEvent[] = [];
    let token: Uint8Array | undefined;
    try {
      do {
        const page = await this.fetch({ execution, nextPageToken: token });
        for (const e of page.events) raw.push(e);
        token = page.token;
        // With `waitNewEvent` a running run's last page has a token too: stop at the cut, or at a page with nothing.
        if (page.events.some(before) || page.events.length === 0) break;
      } while (token);
    } catch (err) {
      // A later page under the poll deadline failed (a wait for new events, or a slow server): read it plainly.
      if (!token) throw err;
      this.stats.fallbacks++;
      raw = await readHistory(this.client, workflowId, runId);
      token = undefined;
    }
    const chain: HistoryEvent[][] = [];
    for (let prev = raw[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined; prev; ) {
      const events = await this.closedRun(workflowId, prev);
      chain.unshift(events);
      prev = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
    }
    // A fork's log begins with its origin's, up to the fork point (read from the origin, never copied).
    const prefix = await forkPrefix(this.client, (chain[0] ?? raw)[0]);
    const decoder = new LogDecoder(decodeJsonPayload);
    const events: SessionEvent[] = [];
    for (const span of prefix) for (const e of span.events) for (const s of decoder.decode(e, span.offset)) events.push(deepFreeze(s));
    let offset = prefix.length > 0 ? prefix.at(-1)!.offset + prefix.at(-1)!.events.length : 0;
    for (const closed of chain) {
      for (const e of closed) for (const s of decoder.decode(e, offset)) events.push(deepFreeze(s));
      offset += closed.length;
    }
    const bytes = raw.reduce((n, e) => n + 2 * approxBytes(e), 0) + approxBytes(events);
    const run: OpenRun = {
      workflowId,
      runId,
      offset,
      raw,
      token,
      decoder,
      decodedTo: 0,
      events,
      base: events.length,
      ends: [],
      bytes,
    };
    this.runs.set(`${workflowId}/${runId}`, run);
    return run;
  }

  /**
   * A closed run of a chain: from the closed runs' cache, else (after a continue-as-new) the rest of this cache's
   * entry for it read with its token, else read in full.
   */
  private async closedRun(workflowId: string, runId: string): Promise<HistoryEvent[]> {
    const key = `${workflowId}/${runId}`;
    if (this.runs.has(key)) {
      const done = await this.locked(key, async () => {
        const run = this.runs.get(key);
        if (!run) return undefined;
        this.runs.delete(key);
        try {
          await this.readOn(run, () => false);
        } catch {
          this.stats.fallbacks++;
          return undefined;
        }
        if (run.token || !isClosing(run.raw.at(-1))) return undefined;
        rememberClosedRun(workflowId, runId, run.raw);
        return run.raw;
      });
      if (done) return done;
    }
    return runHistory(this.client, workflowId, runId);
  }

  /** The log before `raw[cut]`: decodes up to there if not done yet. */
  private slice(run: OpenRun, cut: number): LogBefore {
    for (; run.decodedTo < cut; run.decodedTo++) {
      for (const s of run.decoder.decode(run.raw[run.decodedTo]!, run.offset)) {
        run.events.push(deepFreeze(s));
        run.bytes += approxBytes(s);
      }
      run.ends.push(run.events.length);
    }
    const n = cut === 0 ? run.base : run.ends[cut - 1]!;
    return { events: run.events.slice(0, n), input: deepFreeze(run.decoder.input) };
  }

  /** Brings the cache back within its limits after `run` has grown, dropping least recently used runs first. */
  private account(run: OpenRun): void {
    let bytes = this.bytes();
    for (const [key, r] of this.runs) {
      if (this.runs.size <= this.opts.maxRuns && bytes <= this.opts.maxBytes) break;
      if (r === run && this.runs.size === 1) break;
      this.runs.delete(key);
      bytes -= r.bytes;
      this.stats.evictions++;
    }
  }
}
