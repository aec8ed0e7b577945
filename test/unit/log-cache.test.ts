/**
 * The worker's log cache against an in-memory history service that behaves like Temporal's (pages, a token at the
 * end of a running run's history with `waitNewEvent`, a long poll when nothing is new): every call sees exactly
 * what a fresh read up to its scheduling point sees, and later calls fetch only what was written since.
 */
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import type { temporal } from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { decodeJsonPayload, decodeRuns, type RunSpan } from '../../src/log/read.js';
import { SessionLogCache } from '../../src/log/cache.js';
import type { SessionInput } from '../../src/shared/types.js';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
type Request = temporal.api.workflowservice.v1.IGetWorkflowExecutionHistoryRequest;

const dir = join(import.meta.dirname, '..', 'fixtures', 'histories');
const MODEL_ACTIVITIES = ['callModel', 'gradeOutcome'];

function load(file: string, edit?: (json: { events: Array<Record<string, any>> }) => void): HistoryEvent[] {
  const json = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  edit?.(json);
  return historyFromJSON(json).events ?? [];
}

/** Indexes of the events that schedule a model activity (the points where `callModel`/`gradeOutcome` read). */
function modelCalls(events: HistoryEvent[]): number[] {
  return events.flatMap((e, i) =>
    MODEL_ACTIVITIES.includes(e.activityTaskScheduledEventAttributes?.activityType?.name ?? '') ? [i] : [],
  );
}

/** The predicate `callModel` reads with: the scheduling event of this activity. */
function scheduledAt(events: HistoryEvent[], i: number): (e: HistoryEvent) => boolean {
  const a = events[i]!.activityTaskScheduledEventAttributes!;
  return (e) =>
    e.activityTaskScheduledEventAttributes?.activityId === a.activityId &&
    e.activityTaskScheduledEventAttributes?.activityType?.name === a.activityType?.name;
}

interface FakeRun {
  events: HistoryEvent[];
  /** How many of `events` the server has written so far. */
  visible: number;
  waiters: Array<() => void>;
}

/** A history service with Temporal's paging and long-poll behaviour, and a client around it. */
class FakeHistory {
  readonly runs = new Map<string, FakeRun>();
  readonly requests: Array<{ runId: string; token: boolean; wait: boolean; returned: number }> = [];
  refuseTokens = false;
  pageSize = 1000;
  private deadline: number | undefined;
  readonly client = {
    options: { namespace: 'default', loadedDataConverter: { payloadCodecs: [] } },
    withDeadline: <T>(deadline: number, fn: () => Promise<T>): Promise<T> => {
      this.deadline = deadline;
      try {
        return fn();
      } finally {
        this.deadline = undefined;
      }
    },
    workflowService: { getWorkflowExecutionHistory: (req: Request) => this.get(req) },
  } as unknown as Client;

  add(runId: string, events: HistoryEvent[], visible = events.length): void {
    this.runs.set(runId, { events, visible, waiters: [] });
  }

  /** The server writes more of the run's events. */
  show(runId: string, visible: number): void {
    const run = this.runs.get(runId)!;
    run.visible = Math.max(run.visible, visible);
    for (const w of run.waiters.splice(0)) w();
  }

  private running(run: FakeRun): boolean {
    const last = run.events[run.visible - 1];
    return !(run.visible === run.events.length && last?.workflowExecutionCompletedEventAttributes);
  }

  private async get(req: Request) {
    const deadline = this.deadline;
    const runId = req.execution!.runId!;
    const run = this.runs.get(runId);
    const token = req.nextPageToken?.length ? Number(Buffer.from(req.nextPageToken).toString()) : undefined;
    const record = { runId, token: token !== undefined, wait: false, returned: 0 };
    this.requests.push(record);
    if (!run) throw Object.assign(new Error(`workflow run ${runId} not found`), { code: 5 });
    if (token !== undefined && this.refuseTokens) throw Object.assign(new Error('invalid NextPageToken'), { code: 3 });
    const pos = token ?? 0;
    if (token !== undefined && pos >= run.visible && req.waitNewEvent && this.running(run)) {
      record.wait = true;
      await new Promise<void>((resolve, reject) => {
        run.waiters.push(resolve);
        if (deadline !== undefined)
          setTimeout(() => reject(Object.assign(new Error('deadline exceeded'), { code: 4 })), deadline - Date.now());
      });
    }
    const end = Math.min(run.visible, pos + (req.maximumPageSize || this.pageSize), pos + this.pageSize);
    const events = run.events.slice(pos, end);
    record.returned = events.length;
    const more = end < run.visible || (!!req.waitNewEvent && this.running(run));
    return { history: { events }, nextPageToken: more ? Buffer.from(String(end)) : new Uint8Array() };
  }
}

/** What a fresh read of the chain sees, cut before the first event `before` matches in the last run. */
function fresh(chain: HistoryEvent[][], before: (e: HistoryEvent) => boolean) {
  let offset = 0;
  const runs: RunSpan[] = chain.map((events, i) => {
    const span = { runId: `r${i}`, offset, events };
    offset += events.length;
    return span;
  });
  const log = decodeRuns(runs, before);
  return { events: log.events, input: log.decoder.input };
}

/** A fork's origin (another fixture, found by its run id): all its events, and those up to the fork point. */
function originOf(events: HistoryEvent[]): { runId: string; events: HistoryEvent[]; prefix: HistoryEvent[] } | undefined {
  const input = events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  const fork = input ? (decodeJsonPayload(input) as SessionInput).fork : undefined;
  if (!fork) return undefined;
  const file = readdirSync(dir).find((f) => f.endsWith('.json') && load(f)[0]?.workflowExecutionStartedEventAttributes?.firstExecutionRunId === fork.run_id);
  if (!file) throw new Error(`a fork of run ${fork.run_id}, which no fixture holds`);
  const all = load(file);
  return { runId: fork.run_id, events: all, prefix: all.filter((e) => Number(e.eventId) <= fork.seq) };
}

const sessionFiles = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .filter((f) => modelCalls(load(f)).length > 1);

describe('SessionLogCache', () => {
  it.each(sessionFiles)('%s: each call sees what a fresh read sees, and reads each event once', (file) => {
    return (async () => {
      const events = load(file);
      const fake = new FakeHistory();
      const id = `sesn_${randomUUID()}`;
      fake.add('run', events, 1);
      // A fork reads its origin (once, on the full read) and begins its log with the origin's up to the fork point.
      const origin = originOf(events);
      if (origin) fake.add(origin.runId, origin.events);
      const prefix = origin ? [origin.prefix] : [];
      const originReads = origin?.events.length ?? 0;
      const cache = new SessionLogCache(fake.client);
      const calls = modelCalls(events);
      for (const [n, i] of calls.entries()) {
        // The server has written the activity's scheduling event and, for some calls, a few events more.
        const visible = Math.min(events.length, i + 1 + (n % 3));
        fake.show('run', visible);
        const before = scheduledAt(events, i);
        const got = await cache.readBefore(id, 'run', before);
        const want = fresh([...prefix, events.slice(0, visible)], before);
        expect(got.events).toEqual(want.events);
        expect(got.input).toEqual(want.input);
        // Every event was fetched once: the first call read the run, later ones only what was new.
        expect(fake.requests.reduce((s, r) => s + r.returned, 0)).toBe(originReads + visible);
        expect(fake.requests.some((r) => r.wait)).toBe(false);
      }
      expect(cache.stats.fullReads).toBe(1);
      expect(cache.stats.fallbacks).toBe(0);
      // An earlier call again (a retry after a later read): answered from the cache, cut where it was.
      const before = scheduledAt(events, calls[0]!);
      const requests = fake.requests.length;
      expect((await cache.readBefore(id, 'run', before)).events).toEqual(fresh([...prefix, events], before).events);
      expect(fake.requests.length).toBe(requests);
    })();
  });

  it('reads only new events across many turns (model-07: 40 model calls)', async () => {
    const events = load('model-07.json');
    const fake = new FakeHistory();
    fake.add('run', events, 1);
    const cache = new SessionLogCache(fake.client);
    const perCall: number[] = [];
    for (const i of modelCalls(events)) {
      fake.show('run', i + 1);
      const before = fake.requests.reduce((s, r) => s + r.returned, 0);
      const got = await cache.readBefore('sesn_m7', 'run', scheduledAt(events, i));
      expect(got.events).toEqual(fresh([events], scheduledAt(events, i)).events);
      perCall.push(fake.requests.reduce((s, r) => s + r.returned, 0) - before);
    }
    // The first call reads the run so far; each later call reads one turn's events (a few), not the run.
    expect(perCall[0]).toBe(modelCalls(events)[0]! + 1);
    expect(Math.max(...perCall.slice(1))).toBeLessThan(40);
    expect(cache.stats).toMatchObject({ fullReads: 1, incrementalReads: perCall.length - 1, hits: 0, fallbacks: 0 });
  });

  it('falls back to a full read when the server refuses the cached token', async () => {
    const events = load('tools-01.json');
    const [first, second] = modelCalls(events);
    const fake = new FakeHistory();
    fake.add('run', events, first! + 1);
    const cache = new SessionLogCache(fake.client);
    await cache.readBefore('sesn_refused', 'run', scheduledAt(events, first!));
    fake.show('run', second! + 1);
    fake.refuseTokens = true;
    const got = await cache.readBefore('sesn_refused', 'run', scheduledAt(events, second!));
    expect(got.events).toEqual(fresh([events], scheduledAt(events, second!)).events);
    expect(cache.stats).toMatchObject({ fullReads: 2, incrementalReads: 1, fallbacks: 1 });
  });

  it('never waits on a long poll: a cut that is not there gives up at the poll deadline, reads in full', async () => {
    const events = load('tools-01.json');
    const [first] = modelCalls(events);
    const fake = new FakeHistory();
    fake.add('run', events, first! + 1);
    const cache = new SessionLogCache(fake.client, { pollTimeoutMs: 200 });
    await cache.readBefore('sesn_nowait', 'run', scheduledAt(events, first!));
    const got = await cache.readBefore('sesn_nowait', 'run', () => false);
    expect(got.events).toEqual(fresh([events.slice(0, first! + 1)], () => false).events);
    // Two polls that would have waited, each given up after 200 ms: the cached token, then the full read's own.
    expect(fake.requests.filter((r) => r.wait)).toHaveLength(2);
    expect(cache.stats.fallbacks).toBe(2);
  });

  it('reads pages of a long run and of what was written since', async () => {
    const events = load('model-07.json');
    const calls = modelCalls(events);
    const fake = new FakeHistory();
    fake.pageSize = 7;
    fake.add('run', events, calls[20]! + 1);
    const cache = new SessionLogCache(fake.client);
    for (const i of [calls[20]!, calls[30]!, calls[39]!]) {
      fake.show('run', i + 1);
      expect((await cache.readBefore('sesn_pages', 'run', scheduledAt(events, i))).events).toEqual(
        fresh([events], scheduledAt(events, i)).events,
      );
    }
    expect(fake.requests.reduce((s, r) => s + r.returned, 0)).toBe(calls[39]! + 1);
  });

  it('serialises concurrent calls of one run: no event is read or decoded twice', async () => {
    const events = load('model-07.json');
    const [a, b] = modelCalls(events).slice(5);
    const fake = new FakeHistory();
    fake.add('run', events, a! + 1);
    const cache = new SessionLogCache(fake.client);
    await cache.readBefore('sesn_conc', 'run', scheduledAt(events, a!));
    fake.show('run', b! + 1);
    const [ga, gb] = await Promise.all([
      cache.readBefore('sesn_conc', 'run', scheduledAt(events, b!)),
      cache.readBefore('sesn_conc', 'run', scheduledAt(events, a!)),
    ]);
    expect(gb.events).toEqual(fresh([events], scheduledAt(events, a!)).events);
    expect(ga.events).toEqual(fresh([events], scheduledAt(events, b!)).events);
    expect(fake.requests.reduce((s, r) => s + r.returned, 0)).toBe(b! + 1);
  });

  it('follows a continue-as-new chain: the closed run is finished from its token, the new one read in full', async () => {
    const run1 = load('model-07.json');
    const run2 = load('tools-01.json', (json) => {
      json.events[0]!.workflowExecutionStartedEventAttributes.continuedExecutionRunId = 'run1';
    });
    const fake = new FakeHistory();
    const c1 = modelCalls(run1).at(-1)!;
    fake.add('run1', run1, c1 + 1);
    const cache = new SessionLogCache(fake.client);
    await cache.readBefore('sesn_can', 'run1', scheduledAt(run1, c1));
    expect(cache.size.runs).toBe(1);
    // Run 1 closes; run 2 calls the model.
    fake.show('run1', run1.length);
    const [c2, c3] = modelCalls(run2);
    fake.add('run2', run2, c2! + 1);
    const got = await cache.readBefore('sesn_can', 'run2', scheduledAt(run2, c2!));
    expect(got.events).toEqual(fresh([run1, run2], scheduledAt(run2, c2!)).events);
    expect(got.input).toEqual(fresh([run1, run2], scheduledAt(run2, c2!)).input);
    // Run 1 was read once in all (its rest through the token), and its entry is gone.
    expect(fake.requests.filter((r) => r.runId === 'run1').reduce((s, r) => s + r.returned, 0)).toBe(run1.length);
    expect(cache.size.runs).toBe(1);
    fake.show('run2', c3! + 1);
    const later = await cache.readBefore('sesn_can', 'run2', scheduledAt(run2, c3!));
    expect(later.events).toEqual(fresh([run1, run2], scheduledAt(run2, c3!)).events);
    expect(fake.requests.filter((r) => r.runId === 'run1')).toHaveLength(2);
  });

  it('keeps at most maxRuns open runs, least recently used out, and drops a run that has closed', async () => {
    const events = load('model-02.json');
    const [first] = modelCalls(events);
    const fake = new FakeHistory();
    for (const r of ['a', 'b', 'c']) fake.add(r, events, first! + 1);
    const cache = new SessionLogCache(fake.client, { maxRuns: 2 });
    await cache.readBefore('sesn_lru', 'a', scheduledAt(events, first!));
    await cache.readBefore('sesn_lru', 'b', scheduledAt(events, first!));
    await cache.readBefore('sesn_lru', 'a', scheduledAt(events, first!)); // a is now the newest
    await cache.readBefore('sesn_lru', 'c', scheduledAt(events, first!));
    expect(cache.stats.evictions).toBe(1);
    expect(cache.size.runs).toBe(2);
    await cache.readBefore('sesn_lru', 'a', scheduledAt(events, first!));
    expect(cache.stats.fullReads).toBe(3); // a was kept; b went
    // A read that reaches the end of a closed run drops its entry.
    fake.show('c', events.length);
    await cache.readBefore('sesn_lru', 'c', () => false);
    expect(cache.size.runs).toBe(1);
    // A byte budget smaller than one run keeps just the run in use.
    const small = new SessionLogCache(fake.client, { maxBytes: 1 });
    await small.readBefore('sesn_lru2', 'a', scheduledAt(events, first!));
    await small.readBefore('sesn_lru2', 'b', scheduledAt(events, first!));
    expect(small.size.runs).toBe(1);
  });

  it('hands out events that cannot be changed', async () => {
    const events = load('model-02.json');
    const [, second] = modelCalls(events);
    const fake = new FakeHistory();
    fake.add('run', events, second! + 1);
    const got = await new SessionLogCache(fake.client).readBefore('sesn_frozen', 'run', scheduledAt(events, second!));
    expect(Object.isFrozen(got.events[0])).toBe(true);
    expect(Object.isFrozen(got.input?.agent)).toBe(true);
  });
});
