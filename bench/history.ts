/**
 * 6. History growth: one session of many short turns (a user message, a one-line text reply). After each turn the
 * bench reads the current run's history and sums the protobuf sizes of its events; a turn's bytes are the growth of
 * the run it happened in (when the session continued as new at the end of a turn, that turn is counted in the run
 * it closed). History must grow linearly: the bytes of turn 400 should equal those of turn 10.
 */
import proto from '@temporalio/proto';
import { readHistory, readRunChain } from '../src/log/read.js';
import { GET_SESSION_QUERY } from '../src/shared/names.js';
import type { SessionState } from '../src/shared/types.js';
import { reply } from '../test/fakes/messages-server.js';
import { log, type BenchEnv } from './lib/env.js';
import type { Section } from './lib/section.js';
import { sleep } from './lib/stats.js';

const HistoryEvent = proto.temporal.api.history.v1.HistoryEvent;
const eventMs = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) =>
  t ? Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : Number.NaN;

interface TurnSample {
  turn: number;
  run: number;
  bytes: number;
  events: number;
  /** The session continued as new right after this turn. */
  continued_as_new: boolean;
  /** Wall time of the turn: message sent until the bench saw the session idle (the model answers at once). */
  ms: number;
  /** The turn's callModel activity, started to completed (reading the log, building the request, ~1 ms of model). */
  read_ms?: number;
}

/** Measures history bytes per turn over one long session. */
export async function benchHistory(env: BenchEnv, queue: string): Promise<Section> {
  const turns = env.opts.quick ? 100 : 400;
  const marks = env.opts.quick ? [10, 50, 100] : [10, 100, 400];
  const tandem = env.tandem(queue);
  const id = env.newSessionId('history');
  // History bytes do not depend on the model's latency: answer at once to keep the run short.
  env.route(id, (req) => {
    const k = ((req.body.messages?.length ?? 1) + 1) / 2;
    return { ...reply(`Noted, turn ${k}.`), latencyMs: 0, ttftMs: 0 };
  });
  const handle = env.temporal.workflow.getHandle(id);

  const runBytes = async (runId: string) => {
    const events = await readHistory(env.temporal, id, runId);
    return { bytes: events.reduce((n, e) => n + HistoryEvent.encode(e).finish().length, 0), events: events.length };
  };

  const samples: TurnSample[] = [];
  const runs: string[] = [];
  let prev = { runId: '', bytes: 0, events: 0 };
  const t0 = Date.now();
  let sent = Date.now();
  await tandem.start({ agent: env.agent(id), message: 'Turn 1.', sessionId: id });
  for (let k = 1; k <= turns; k++) {
    for (;;) {
      const s = await handle.query<SessionState>(GET_SESSION_QUERY).catch(() => undefined);
      if (s && s.turn >= k && s.status === 'idle') break;
      await sleep(10);
    }
    const took = Date.now() - sent;
    const runId = (await handle.describe()).runId;
    if (!runs.includes(runId)) runs.push(runId);
    const now = await runBytes(runId);
    if (runId === prev.runId || prev.runId === '') {
      samples.push({
        turn: k,
        run: runs.indexOf(runId),
        bytes: now.bytes - prev.bytes,
        events: now.events - prev.events,
        continued_as_new: false,
        ms: took,
      });
    } else {
      // The session continued as new right after this turn: the turn's events are at the end of the run it closed.
      const closed = await runBytes(prev.runId);
      samples.push({
        turn: k,
        run: runs.indexOf(prev.runId),
        bytes: closed.bytes - prev.bytes,
        events: closed.events - prev.events,
        continued_as_new: true,
        ms: took,
      });
    }
    prev = { runId, ...now };
    if (k % 100 === 0) log(`history: turn ${k}/${turns} (${runs.length} run(s), ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
    if (k < turns) {
      sent = Date.now();
      await tandem.sendMessage(id, `Turn ${k + 1}.`);
    }
  }
  // The callModel activity of each turn, from its start to its completion (history event times). With the model
  // answering at once, that is almost all reading the log and building the request.
  const calls: number[] = [];
  for (const run of await readRunChain(env.temporal, id)) {
    const scheduled = new Map<string, { type: string; started?: number }>();
    for (const e of run.events) {
      const a = e.activityTaskScheduledEventAttributes;
      if (a) scheduled.set(String(e.eventId), { type: a.activityType?.name ?? '' });
      const st = e.activityTaskStartedEventAttributes;
      const sched = st ? scheduled.get(String(st.scheduledEventId)) : undefined;
      if (sched) sched.started = eventMs(e.eventTime);
      const c = e.activityTaskCompletedEventAttributes;
      const done = c ? scheduled.get(String(c.scheduledEventId)) : undefined;
      if (done?.type === 'callModel' && done.started !== undefined) calls.push(eventMs(e.eventTime) - done.started);
    }
  }
  for (const s of samples) s.read_ms = calls[s.turn - 1] ?? Number.NaN;
  await handle.terminate('bench done');

  const at = (turn: number) => samples.find((s) => s.turn === turn)!;
  // The mean over the ten turns ending at a mark (turns that closed a run excluded) smooths the digits of counters.
  const windowMean = (turn: number) => {
    const w = samples.filter((s) => s.turn > turn - 10 && s.turn <= turn && !s.continued_as_new && s.turn > 1);
    return Math.round(w.reduce((n, s) => n + s.bytes, 0) / (w.length || 1));
  };
  const windowMs = (turn: number) => {
    const w = samples.filter((s) => s.turn > turn - 10 && s.turn <= turn && s.turn > 1);
    return Math.round(w.reduce((n, s) => n + s.ms, 0) / (w.length || 1));
  };
  const windowRead = (turn: number) => {
    const w = samples.filter((s) => s.turn > turn - 10 && s.turn <= turn && s.turn > 1);
    return Math.round(w.reduce((n, s) => n + (s.read_ms ?? 0), 0) / (w.length || 1));
  };
  const first = marks[0]!;
  const last = marks.at(-1)!;
  const growth = windowMean(last) / windowMean(first);
  const canTurns = samples.filter((s) => s.continued_as_new).map((s) => s.turn);
  return {
    key: 'history',
    title: '6. History growth per turn',
    method:
      `One session of ${turns} turns (user message, one-line reply; model latency 0 here since bytes do not depend on it). ` +
      `Bytes per turn = growth of the run's history (sum of protobuf-encoded HistoryEvent sizes) during that turn.`,
    rows: [
      ...marks.map((m) => ({
        metric: `turn ${m}: bytes / events (mean of turns ${Math.max(2, m - 9)}–${m})`,
        value: `${at(m).bytes} B / ${at(m).events} (${windowMean(m)} B)`,
      })),
      { metric: `turn ${last} over turn ${first} (window means)`, value: `${growth.toFixed(3)}× (${Math.abs(growth - 1) <= 0.05 ? 'flat' : 'NOT flat'})` },
      {
        metric: `turn wall time (model answers at once), mean of the same turns`,
        value: marks.map((m) => `${windowMs(m)} ms`).join(' / '),
      },
      {
        metric: `of which the callModel activity (reads the log, builds the request; the model answers at once)`,
        value: marks.map((m) => `${windowRead(m)} ms`).join(' / '),
      },
      ...(canTurns.length
        ? [
            {
              metric: `callModel activity around the first continue-as-new: turns ${canTurns[0]! - 9}–${canTurns[0]} / turns ${canTurns[0]! + 1}–${canTurns[0]! + 10}`,
              value: `${windowRead(canTurns[0]!)} ms / ${windowRead(canTurns[0]! + 10)} ms`,
            },
          ]
        : []),
      { metric: 'runs (continue-as-new after turn)', value: `${runs.length}${canTurns.length ? ` (after ${canTurns.join(', ')})` : ''}` },
      { metric: 'history total, all runs', value: `${Math.round(samples.reduce((n, s) => n + s.bytes, 0) / 1024)} KiB` },
    ],
    data: {
      turns,
      marks: Object.fromEntries(
        marks.map((m) => [m, { bytes: at(m).bytes, events: at(m).events, window_mean_bytes: windowMean(m), window_mean_turn_ms: windowMs(m), window_mean_read_ms: windowRead(m) }]),
      ),
      growth_last_over_first: Math.round(growth * 1000) / 1000,
      runs: runs.length,
      continued_as_new_after_turns: canTurns,
      seconds: Math.round((Date.now() - t0) / 100) / 10,
      samples,
    },
    panels: [
      {
        kind: 'series',
        title: `History bytes per turn over ${turns} turns of one session`,
        xLabel: 'turn',
        yLabel: 'bytes',
        points: samples.filter((s) => s.turn > 1).map((s) => ({ x: s.turn, y: s.bytes, mark: s.continued_as_new })),
      },
      {
        kind: 'series',
        title: `Turn wall time over the same session (the scripted model answers at once)`,
        xLabel: 'turn',
        yLabel: 'ms',
        points: samples.filter((s) => s.turn > 1).map((s) => ({ x: s.turn, y: s.ms, mark: s.continued_as_new })),
      },
      {
        kind: 'series',
        title: `callModel activity (started to completed) over the same session`,
        xLabel: 'turn',
        yLabel: 'ms',
        points: samples
          .filter((s) => s.turn > 1 && Number.isFinite(s.read_ms))
          .map((s) => ({ x: s.turn, y: s.read_ms!, mark: s.continued_as_new })),
      },
    ],
  };
}
