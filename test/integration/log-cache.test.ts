/**
 * The worker's log cache against the real dev server (continue-as-new lowered so that a short session spans several
 * runs): after the first call of a run, `callModel` fetches only the events written since, every model request is
 * the one a read without the cache builds, and a token the server refuses falls back to a full read.
 */
import type { Connection } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { beforeAll, describe, expect, it } from 'vitest';
import { builtinDefinitions } from '../../src/activities/model.js';
import { decodeJsonPayload, readRunChain, readSessionLog } from '../../src/log/read.js';
import { SessionLogCache } from '../../src/log/cache.js';
import { buildRequest } from '../../src/harness/context.js';
import type { CallModelInput } from '../../src/shared/types.js';
import { reply, toolUse, type RecordedRequest } from '../fakes/messages-server.js';
import { testAgent, useHarness, waitFor, waitIdle } from '../helpers/env.js';

type Service = Connection['workflowService'];
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** GetWorkflowExecutionHistory requests with `waitNewEvent` (the cache's reads), as the worker's client made them. */
interface Seen {
  token: boolean;
  events: number;
  error?: string;
}

const seen: Seen[] = [];
let corruptTokens = false;
// A dev server that suggests continue-as-new after 150 events instead of thousands.
const h = useHarness('logcache', { continueAsNewAfter: 150 });

beforeAll(() => {
  // Watch (and, when asked, spoil) the history reads of the worker's own client, which its log cache uses.
  const connection = h.worker.client.connection;
  const service = connection.workflowService;
  const watched = new Proxy(service, {
    get(target, prop, receiver) {
      if (prop !== 'getWorkflowExecutionHistory') return Reflect.get(target, prop, receiver);
      return async (req: Parameters<Service['getWorkflowExecutionHistory']>[0]) => {
        if (!req.waitNewEvent) return target.getWorkflowExecutionHistory(req);
        const token = !!req.nextPageToken?.length;
        const entry: Seen = { token, events: 0 };
        seen.push(entry);
        const sent = token && corruptTokens ? { ...req, nextPageToken: Buffer.from('not a token') } : req;
        try {
          const res = await target.getWorkflowExecutionHistory(sent);
          entry.events = res.history?.events?.length ?? 0;
          return res;
        } catch (err) {
          entry.error = (err as Error).message;
          throw err;
        }
      };
    },
  });
  Object.defineProperty(connection, 'workflowService', { value: watched });
});

/**
 * Each recorded model request of `sessionId` (from `first` on) against what a read without the cache builds for
 * the same call: the log of the call's run up to its scheduling event, read afresh, and the same request builder.
 */
async function expectFreshRequests(sessionId: string, requests: RecordedRequest[]): Promise<number> {
  const runs = await readRunChain(h.tandem.temporal, sessionId);
  const calls = runs.flatMap((run) =>
    run.events.flatMap((e) => {
      const a = e.activityTaskScheduledEventAttributes;
      if (a?.activityType?.name !== 'callModel') return [];
      const input = decodeJsonPayload(a.input!.payloads![0]!) as CallModelInput;
      return [{ runId: run.runId, activityId: a.activityId!, cursor: input.cursor }];
    }),
  );
  expect(calls).toHaveLength(requests.length);
  for (const [i, call] of calls.entries()) {
    const log = await readSessionLog(h.tandem.temporal, sessionId, call.runId, (e) =>
      e.activityTaskScheduledEventAttributes?.activityId === call.activityId &&
      e.activityTaskScheduledEventAttributes.activityType?.name === 'callModel' &&
      Number(e.eventId) > call.cursor,
    );
    const agent = log.decoder.input!.agent;
    const budgetTokens = { ...agent.limits, ...log.decoder.input!.limits }.context_tokens;
    const built = buildRequest(agent, log.events, builtinDefinitions, { budgetTokens, extraTools: [], notes: [] });
    const { stream: _stream, ...sent } = requests[i]!.body as Record<string, unknown>;
    expect(sent, `model request ${i + 1} of ${calls.length}`).toEqual(JSON.parse(JSON.stringify(built.request)));
  }
  return runs.length;
}

describe('the log cache of a worker', () => {
  it('reads only new events after the first call of each run, and builds what a fresh read builds', async () => {
    const STEPS = 30;
    for (let i = 1; i <= STEPS; i++) {
      const command = i === 8 ? 'sleep 1; echo step-8' : `echo step-${i}`;
      h.model.push(reply(toolUse('bash', { command }, `tu_${i}`)));
    }
    h.model.push(reply('all steps done'));
    const from = h.model.requests.length;
    const before = { ...h.worker.logCache.stats };
    const seenFrom = seen.length;
    const agent = testAgent({ limits: { max_turns: 100 } });
    const sessionId = await h.tandem.start({ agent, message: 'run the steps' });
    // A message while step 8 runs: read after that step's result, and the block the breakpoint lands on then.
    await waitFor(() => Promise.resolve(h.model.requests.length - from), (n) => n >= 8, 120_000, 'step 8');
    await h.tandem.sendMessage(sessionId, 'steering during step 8');
    await waitIdle(h.tandem.temporal.workflow.getHandle(sessionId), 'end_turn', STEPS + 1, 180_000);
    h.model.assertDone();

    const requests = h.model.requests.slice(from);
    const runs = await expectFreshRequests(sessionId, requests);
    expect(runs).toBeGreaterThanOrEqual(3);
    const last = JSON.stringify(requests.at(-1)!.body.messages);
    expect(last.split('steering during step 8').length - 1).toBe(1);

    // One full read per run (its first call); every other call read on from a token, or found its point cached.
    const stats = h.worker.logCache.stats;
    expect(stats.fullReads - before.fullReads).toBe(runs);
    expect(stats.fallbacks - before.fallbacks).toBe(0);
    const readOn = stats.incrementalReads - before.incrementalReads + stats.hits - before.hits;
    expect(readOn).toBeGreaterThanOrEqual(STEPS + 1 - runs);
    // Each history event was fetched at most once; reads with a token brought one step's events, not the run.
    const reads = seen.slice(seenFrom);
    const total = (await readRunChain(h.tandem.temporal, sessionId)).reduce((n, r) => n + r.events.length, 0);
    const fetched = reads.reduce((n, r) => n + r.events, 0);
    expect(fetched).toBeLessThanOrEqual(total);
    expect(fetched).toBe(stats.eventsFetched - before.eventsFetched);
    // A step is a model call, a tool call and a snapshot, each with its workflow task: some 30 events, not the run.
    expect(Math.max(...reads.filter((r) => r.token).map((r) => r.events))).toBeLessThan(Math.min(45, total / 5));
    expect(reads.every((r) => !r.error)).toBe(true);
  });

  it('pages through a run from a token in the middle, and gives up a poll that would wait', async () => {
    h.model.push(
      reply(toolUse('bash', { command: 'echo one' }, 'tu_p1')),
      reply(toolUse('bash', { command: 'echo two' }, 'tu_p2')),
      reply('done'),
    );
    const sessionId = await h.tandem.start({ agent: testAgent(), message: 'two steps' });
    await waitIdle(h.tandem.temporal.workflow.getHandle(sessionId), 'end_turn', 3);
    h.model.assertDone();
    const [run] = await readRunChain(h.tandem.temporal, sessionId);
    const points = run!.events.flatMap((e) => {
      const a = e.activityTaskScheduledEventAttributes;
      return a?.activityType?.name === 'callModel' ? [a.activityId!] : [];
    });
    expect(points).toHaveLength(3);
    // Small pages: the first call stops in the middle of the history, the next ones go on from there.
    const cache = new SessionLogCache(h.tandem.temporal, { pageSize: 5 });
    for (const activityId of points) {
      const before = (e: HistoryEvent) => e.activityTaskScheduledEventAttributes?.activityId === activityId;
      const got = await cache.readBefore(sessionId, run!.runId, before);
      expect(got.events).toEqual((await readSessionLog(h.tandem.temporal, sessionId, run!.runId, before)).events);
    }
    expect(cache.stats).toMatchObject({ fullReads: 1, fallbacks: 0 });
    // Each event fetched once: the second and third calls read on from the token, not from the start.
    expect(cache.stats.eventsFetched).toBeLessThanOrEqual(run!.events.length);
    // A point that is not in the history (no call is ever like that): at the end of the run the token asks for a
    // new event. Under the cache's 1 s deadline the server does not wait for one but answers with nothing, and the
    // cache reads the whole run instead.
    const all = await cache.readBefore(sessionId, run!.runId, () => false);
    expect(all.events).toEqual((await readSessionLog(h.tandem.temporal, sessionId, run!.runId)).events);
    expect(cache.stats).toMatchObject({ fullReads: 2, fallbacks: 1 });
  });

  it('falls back to a full read when the server refuses the cached token', async () => {
    h.model.push(reply('first answer'), reply('second answer'), reply('third answer'));
    const from = h.model.requests.length;
    const before = { ...h.worker.logCache.stats };
    const seenFrom = seen.length;
    const sessionId = await h.tandem.start({ agent: testAgent(), message: 'one' });
    const handle = h.tandem.temporal.workflow.getHandle(sessionId);
    await waitIdle(handle, 'end_turn', 1);
    corruptTokens = true;
    try {
      await h.tandem.sendMessage(sessionId, 'two');
      await waitIdle(handle, 'end_turn', 2);
    } finally {
      corruptTokens = false;
    }
    await h.tandem.sendMessage(sessionId, 'three');
    await waitIdle(handle, 'end_turn', 3);
    h.model.assertDone();

    // The server said no to the spoilt token; the call read the run again and went on from the new token.
    const refused = seen.slice(seenFrom).filter((r) => r.error);
    expect(refused).toHaveLength(1);
    expect(refused[0]!.error).toMatch(/token/i);
    const stats = h.worker.logCache.stats;
    expect(stats.fallbacks - before.fallbacks).toBe(1);
    expect(stats.fullReads - before.fullReads).toBe(2);
    expect(stats.incrementalReads - before.incrementalReads).toBe(2);
    await expectFreshRequests(sessionId, h.model.requests.slice(from));
  });
});
