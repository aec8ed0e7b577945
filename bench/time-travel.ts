/**
 * 11. Time travel (issue 15): fork, rewind and hermetic replay, on sessions the scripted model builds.
 *
 * One session makes N tool calls in its first turn (a small file, then one call that writes M MB of random bytes in
 * 100 KiB files, then small bash calls), each snapshotted by its hands; a second user message has the model `cat`
 * the small file, count the big files, then change the small file and delete ten big ones. That message is the
 * fork point: a fork there makes at once the model call the origin made next.
 *
 * - Fork: from the `fork()` call until the scripted model receives the fork's first request, and until the result
 *   of the fork's first tool call (the same check, in a sandbox restored from the origin's snapshot at the fork
 *   point) is in the fork's log; the request is compared with the origin's, the tool result with the files then.
 * - Rewind: the origin is rewound to its latest user message and a new one is sent at once; from the `rewind()` call
 *   until the next model request, and until the result of the next tool call (the same check: the workspace emptied
 *   and the snapshot at the rewind point restored) is in the log. Each rewind goes to the message of the one before.
 * - Replay: a session of S bash steps, then a hermetic replay of it with the same agent and the same script; the
 *   sandboxes it created, where it diverged, and its wall time against the recorded session's.
 *
 * The first turn is answered at zero model latency (its only purpose is the session); every measured call, and both
 * runs of the replay comparison, have the bench's scripted latency. Times "in the log" are the history's event times
 * (the Temporal server on this machine), the others the bench's clock.
 */
import { randomBytes } from 'node:crypto';
import proto from '@temporalio/proto';
import { canonical } from '../src/activities/replay.js';
import { LABEL_SESSION } from '../src/activities/sandbox/docker.js';
import { listSlots } from '../src/activities/sandbox/slot.js';
import type { TandemClient } from '../src/client/index.js';
import { decodeJsonPayload, readHistory, readRunChain } from '../src/log/read.js';
import type { SessionEvent } from '../src/log/events.js';
import type { SessionState } from '../src/shared/types.js';
import { reply, toolUse, type PlainStep, type RecordedRequest, type Reply, type RequestBody } from '../test/fakes/messages-server.js';
import { log, type BenchEnv } from './lib/env.js';
import { bytes, goal, ms, ratio, type Section } from './lib/section.js';
import { summarize } from './lib/stats.js';
import { until } from './lib/wait.js';

const GOAL_MS = 3000;
const BUILD = 'Turn: build the workspace.';
const CHECK = 'Turn: check the files.';
const STEPS = 'Turn: do the steps.';
const REWOUND = /^Turn: rewound (\d+), check the files\.$/;
const rewoundPrompt = (i: number) => `Turn: rewound ${i}, check the files.`;
const EARLY_PATH = '/workspace/early.txt';
/** Prints the small file and the number of big files, then changes the one and deletes ten of the others. */
const CHECK_CMD = `cat ${EARLY_PATH}; echo; ls /workspace/data | wc -l; echo late > ${EARLY_PATH}; rm -f /workspace/data/part-000*`;

const HistoryEvent = proto.temporal.api.history.v1.HistoryEvent;
const eventMs = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) =>
  t ? Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : Number.NaN;

interface Script {
  /** The small file's content. */
  early: string;
  /** Tool calls of the first turn. */
  turns: number;
  /** MB the second call writes. */
  mb: number;
  /** Steps of the session to replay. */
  steps: number;
}

/** The text of a message's content. */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return (content as Array<{ type?: string; text?: string }>)
    .filter((b) => b?.type === 'text')
    .map((b) => b.text ?? '')
    .join('');
}

/** The latest prompt of a request (a user message starting "Turn:") and the model calls made since. */
function lastPrompt(body: RequestBody): { text: string; calls: number } {
  const msgs = body.messages ?? [];
  for (let i = msgs.length - 1; i >= 0; i--) {
    const m = msgs[i]!;
    const t = m.role === 'user' ? textOf(m.content) : '';
    if (t.startsWith('Turn:')) return { text: t, calls: msgs.slice(i + 1).filter((x) => x.role === 'assistant').length };
  }
  return { text: '', calls: 0 };
}

/** The content of the tool result `toolUseId` in a request. */
function toolResult(body: RequestBody, toolUseId: string): string | undefined {
  for (const m of body.messages ?? []) {
    if (m.role !== 'user' || !Array.isArray(m.content)) continue;
    for (const b of m.content as Array<{ type: string; tool_use_id?: string; content?: unknown }>)
      if (b.type === 'tool_result' && b.tool_use_id === toolUseId) return textOf(b.content) || (typeof b.content === 'string' ? b.content : '');
  }
  return undefined;
}

/** The top-level fields in which two request bodies differ. */
function differing(a: RequestBody, b: RequestBody): string[] {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
  return keys.filter((k) => canonical(a[k]) !== canonical(b[k]));
}

/**
 * The scripted model of every session of this section. It answers from the request alone (the latest prompt and the
 * calls since), so a fork or a replay, whose requests name the origin's session in the system prompt and so reach
 * the origin's route, gets what the origin got for the same request.
 */
function script(s: Script) {
  const instant = (r: Reply): Reply => ({ ...r, latencyMs: 0, ttftMs: 0 });
  return (req: RecordedRequest): PlainStep => {
    const { text, calls } = lastPrompt(req.body);
    if (text === BUILD) {
      if (calls === 0) return instant(reply(toolUse('write', { file_path: EARLY_PATH, content: s.early }, 'tu_b_0')));
      if (calls === 1) {
        const command = `mkdir -p /workspace/data && head -c ${s.mb}M /dev/urandom | split -b 100K -d -a 4 - /workspace/data/part- && ls /workspace/data | wc -l`;
        return instant(reply(toolUse('bash', { command }, 'tu_b_1')));
      }
      if (calls < s.turns) return instant(reply(toolUse('bash', { command: `echo step ${calls} >> /workspace/steps.txt; wc -l < /workspace/steps.txt` }, `tu_b_${calls}`)));
      return instant(reply('Built.'));
    }
    if (text === STEPS) {
      if (calls < s.steps) return reply(toolUse('bash', { command: `echo step ${calls} >> /workspace/steps.txt; wc -l < /workspace/steps.txt` }, `tu_s_${calls}`));
      return reply('All steps done.');
    }
    const rewound = REWOUND.exec(text);
    if (text === CHECK || rewound) return calls === 0 ? reply(toolUse('bash', { command: CHECK_CMD }, checkId(rewound ? Number(rewound[1]) : undefined))) : reply('Checked.');
    return reply('ok');
  };
}

/** The tool use id of the check at the fork point (no index) or after rewind `i`. */
const checkId = (i?: number) => (i === undefined ? 'tu_check' : `tu_check_r${i}`);

/** Whether a check's output shows the files as at the fork or rewind point. */
function checkOk(output: string | undefined, early: string, files: number): boolean {
  const lines = (output ?? '').trim().split('\n').map((l) => l.trim());
  return lines[0] === early && Number(lines[1]) === files;
}

/** A promise that is also caught, so that a timeout nobody waits for any more is not an unhandled rejection. */
function held<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

/**
 * Runs `act` and waits for the next two model requests routed to `routeId`: the one it causes (a model call that
 * asks for a tool) and the one after the tool's result.
 */
async function twoRequests<T>(env: BenchEnv, routeId: string, act: () => Promise<T>) {
  const first = held(env.nextRequest(routeId));
  const t0 = Date.now();
  const result = await act();
  const acted = Date.now();
  const r1 = await first;
  const r2 = await env.nextRequest(routeId);
  return { t0, acted, result, first: r1, second: r2 };
}

/** Waits until the session is idle (and `more` holds). */
function idle(tandem: TandemClient, id: string, more: (s: SessionState) => boolean = () => true, timeoutMs = 300_000, everyMs = 100) {
  return until(
    async () => {
      const s = await tandem.getSession(id);
      return s.status === 'idle' && more(s) ? s : undefined;
    },
    `${id} idle`,
    timeoutMs,
    everyMs,
  );
}

/**
 * Where the time from `t0` to a tool call's result went, from one run's history (event times, ms since `t0`): the
 * session's input (the fork's start, or the message after a rewind), the first workflow task after `t0` (after a
 * rewind, the new run's first, which replays the history up to the rewind point) and the one that scheduled the model
 * call, the model call, and the tool call (`execute`; for a fork, placement and the provision with the restore come
 * before it is scheduled; after a rewind, the call itself empties the workspace and restores the snapshot).
 */
interface Phases {
  input: number;
  /** The first workflow task after the call (after a rewind, the new run's first), started and completed. */
  first_task_started: number;
  first_task_completed: number;
  /** The workflow task that scheduled the model call. */
  task_started: number;
  task_completed: number;
  model_started: number;
  model_completed: number;
  execute_scheduled: number;
  execute_started: number;
  execute_completed: number;
}

async function phases(env: BenchEnv, id: string, runId: string | undefined, toolUseId: string, t0: number): Promise<Phases> {
  const events = await readHistory(env.temporal, id, runId);
  const at = (e: (typeof events)[number] | undefined) => (e ? eventMs(e.eventTime) - t0 : Number.NaN);
  const byId = new Map(events.map((e) => [String(e.eventId), e]));
  const exec = events.find((e) => {
    const a = e.activityTaskScheduledEventAttributes;
    const p = a?.activityType?.name === 'execute' ? a.input?.payloads?.[0] : undefined;
    return p !== undefined && (decodeJsonPayload(p) as { tool_use_id?: string } | undefined)?.tool_use_id === toolUseId;
  });
  if (!exec) throw new Error(`${id}: no execute of ${toolUseId} in run ${runId ?? '(latest)'}`);
  const before = (pred: (e: (typeof events)[number]) => boolean, limit: number) =>
    events.filter((e) => Number(e.eventId) < limit && pred(e)).at(-1);
  const model = before((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'callModel', Number(exec.eventId));
  const task = model ? before((e) => e.workflowTaskCompletedEventAttributes !== null && e.workflowTaskCompletedEventAttributes !== undefined, Number(model.eventId)) : undefined;
  const input = before(
    (e) => Boolean(e.workflowExecutionSignaledEventAttributes ?? e.workflowExecutionStartedEventAttributes),
    Number(task?.eventId ?? exec.eventId),
  );
  const of = (scheduled: (typeof events)[number] | undefined, kind: 'activityTaskStartedEventAttributes' | 'activityTaskCompletedEventAttributes') =>
    scheduled ? events.find((e) => String(e[kind]?.scheduledEventId ?? '') === String(scheduled.eventId)) : undefined;
  const started = (c: (typeof events)[number]) => byId.get(String(c.workflowTaskCompletedEventAttributes?.startedEventId));
  const first = events.find((e) => e.workflowTaskCompletedEventAttributes && at(started(e)) >= 0);
  return {
    input: at(input),
    first_task_started: at(first ? started(first) : undefined),
    first_task_completed: at(first),
    task_started: at(task ? byId.get(String(task.workflowTaskCompletedEventAttributes?.startedEventId)) : undefined),
    task_completed: at(task),
    model_started: at(of(model, 'activityTaskStartedEventAttributes')),
    model_completed: at(of(model, 'activityTaskCompletedEventAttributes')),
    execute_scheduled: at(exec),
    execute_started: at(of(exec, 'activityTaskStartedEventAttributes')),
    execute_completed: at(of(exec, 'activityTaskCompletedEventAttributes')),
  };
}

/** Events and protobuf bytes of history events. */
function historySize(events: proto.temporal.api.history.v1.IHistoryEvent[]) {
  return { events: events.length, bytes: events.reduce((n, e) => n + HistoryEvent.encode(e).finish().length, 0) };
}

type Restored = SessionEvent & { snapshot_id: string | null; files: number; bytes: number; duration_ms: number; rewind?: boolean };
type Snapshot = SessionEvent & { snapshot_id: string; files: number; bytes: number; written_bytes: number; duration_ms: number };

interface Built {
  origin: string;
  early: string;
  files: number;
  build_ms: number;
  snapshots: number;
  /** The snapshot at the fork point: the latest before the second message. */
  at_fork: { snapshot_id: string; files: number; bytes: number };
  big_snapshot: { duration_ms: number; written_bytes: number };
  small_snapshot_ms: ReturnType<typeof summarize>;
  /** The second message (the fork point) and the request the origin made for it. */
  at: SessionEvent;
  origin_next: RequestBody;
}

interface ForkSample {
  fork_id: string;
  /** fork() called → the scripted model received the fork's first request. */
  to_request_ms: number;
  /** The fork() call itself (reads the origin's log, starts the workflow). */
  fork_call_ms: number;
  /** fork() called → the result of the fork's first tool call is in its log. */
  to_tool_result_ms: number;
  parts: Phases;
  request_equal: boolean;
  request_differs_in: string[];
  files_ok: boolean;
  output: string;
  restored: { snapshot_id: string | null; files: number; bytes: number; duration_ms: number } | null;
  provision_ms: number | null;
}

interface RewindSample {
  /** rewind() called (the message is sent as soon as it returns) → the next model request. */
  to_request_ms: number;
  rewind_call_ms: number;
  /** Message sent → request. */
  message_to_request_ms: number;
  /** rewind() called → the result of the next tool call is in the log. */
  to_tool_result_ms: number;
  parts: Phases;
  /** The request holds the turns before the rewind point and the new message, nothing of what came after. */
  context_ok: boolean;
  files_ok: boolean;
  output: string;
  restored: { snapshot_id: string | null; files: number; bytes: number; duration_ms: number } | null;
  /** The call ran in a new container (a rewind's call replaces the container on an emptied workspace). */
  container_replaced: boolean;
}

interface ReplayResult {
  recorded_id: string;
  replay_id: string;
  steps: number;
  recorded_ms: number;
  replay_ms: number;
  /** The sum of the model calls' own durations (callModel's duration_ms), recorded / replay. */
  model_ms: { recorded: number; replay: number };
  sandboxes_in_log: number;
  containers: number;
  slots: number;
  diverged_at: number | null;
  turns_equal: boolean;
  recorded_results: number;
  tool_results: number;
}

/** Builds the origin: the first turn, the snapshots checked, then the message that is the fork point. */
async function build(env: BenchEnv, tandem: TandemClient, ids: string[], s: Script): Promise<Built> {
  const origin = env.newSessionId('travel');
  ids.push(origin);
  env.route(origin, script(s));
  const t0 = Date.now();
  await tandem.start({ agent: env.agent(origin), message: BUILD, sessionId: origin });
  await idle(tandem, origin, (st) => st.turn >= s.turns + 1, 900_000, 250);
  const buildMs = Date.now() - t0;
  const events = await tandem.getEvents(origin);
  const snaps = events.filter((e) => e.type === 'sandbox.snapshot') as Snapshot[];
  const last = snaps.at(-1);
  if (!last) throw new Error(`${origin}: no snapshot after ${s.turns} tool turns`);
  if (last.bytes < s.mb * 2 ** 20) throw new Error(`${origin}: the latest snapshot holds ${bytes(last.bytes)}, less than the ${s.mb} MB written`);
  const big = snaps.reduce((a, b) => (b.written_bytes > a.written_bytes ? b : a));
  const small = snaps.filter((x) => x.seq > big.seq).map((x) => x.duration_ms);
  log(`time-travel: ${origin}: ${s.turns} tool turns in ${ms(buildMs)}, ${snaps.length} snapshots, the latest ${last.files} files, ${bytes(last.bytes)}`);

  // The second message: the fork point, and the request the origin makes for it.
  const turn = await twoRequests(env, origin, () => tandem.sendMessage(origin, CHECK));
  await idle(tandem, origin);
  const out = toolResult(turn.second.body, checkId());
  const files = Math.ceil((s.mb * 1024) / 100);
  if (!checkOk(out, s.early, files)) throw new Error(`${origin}: the check at the fork point printed ${JSON.stringify(out)}, not ${s.early} and ${files} files`);
  const at = (await tandem.getEvents(origin, { types: ['user.message'] })).at(-1)!;
  if (textOf(at.content) !== CHECK) throw new Error(`${origin}: the latest user message is not the fork point`);
  return {
    origin,
    early: s.early,
    files,
    build_ms: buildMs,
    snapshots: snaps.length,
    at_fork: { snapshot_id: last.snapshot_id, files: last.files, bytes: last.bytes },
    big_snapshot: { duration_ms: big.duration_ms, written_bytes: big.written_bytes },
    small_snapshot_ms: summarize(small),
    at,
    origin_next: turn.first.body,
  };
}

/** One fork at the fork point, to its first tool result and idle. */
async function forkOnce(env: BenchEnv, tandem: TandemClient, ids: string[], b: Built): Promise<ForkSample> {
  const forkId = env.newSessionId('fork');
  ids.push(forkId);
  const r = await twoRequests(env, b.origin, () => tandem.fork(b.origin, { at: b.at.id, id: forkId }));
  await idle(tandem, forkId);
  const parts = await phases(env, forkId, undefined, checkId(), r.t0);
  const events = await tandem.getEvents(forkId);
  const forked = events.find((e) => e.type === 'session.forked');
  if (!forked) throw new Error(`${forkId}: no session.forked in its log`);
  if (forked.snapshot_id !== b.at_fork.snapshot_id)
    throw new Error(`${forkId}: forked with snapshot ${String(forked.snapshot_id)}, not the origin's ${b.at_fork.snapshot_id} at the fork point`);
  const own = events.filter((e) => e.seq > forked.seq);
  const restored = own.find((e) => e.type === 'sandbox.restored') as Restored | undefined;
  const provisioned = own.find((e) => e.type === 'sandbox.provisioned') as (SessionEvent & { duration_ms?: number }) | undefined;
  const output = toolResult(r.second.body, checkId()) ?? '';
  const diff = differing(r.first.body, b.origin_next);
  return {
    fork_id: forkId,
    to_request_ms: r.first.receivedAt - r.t0,
    fork_call_ms: r.acted - r.t0,
    to_tool_result_ms: parts.execute_completed,
    parts,
    request_equal: diff.length === 0,
    request_differs_in: diff,
    files_ok: checkOk(output, b.early, b.files),
    output: output.slice(0, 200),
    restored: restored ? { snapshot_id: restored.snapshot_id, files: restored.files, bytes: restored.bytes, duration_ms: restored.duration_ms } : null,
    provision_ms: provisioned?.duration_ms ?? null,
  };
}

/** One rewind of the origin to `target` (a user message), a new message at once, to its first tool result and idle. */
async function rewindOnce(env: BenchEnv, tandem: TandemClient, b: Built, target: SessionEvent, i: number): Promise<RewindSample> {
  let rewound = 0;
  const r = await twoRequests(env, b.origin, async () => {
    const res = await tandem.rewind(b.origin, target.id, 'bench: time travel');
    rewound = Date.now();
    await tandem.sendMessage(b.origin, rewoundPrompt(i));
    return res;
  });
  await idle(tandem, b.origin);
  const parts = await phases(env, b.origin, r.result.runId, checkId(i), r.t0);
  const events = await tandem.getEvents(b.origin);
  const restored = events.filter((e) => e.type === 'sandbox.restored' && e.rewind === true).at(-1) as Restored | undefined;
  const message = events.filter((e) => e.type === 'user.message').at(-1);
  const replaced = events.some((e) => e.type === 'sandbox.provisioned' && message !== undefined && e.seq > message.seq);
  // Everything before the rewind point as the fork point's request had it (the build turn), then the new message.
  const msgs = r.first.body.messages ?? [];
  const before = b.origin_next.messages ?? [];
  const contextOk =
    canonical(msgs.slice(0, -1)) === canonical(before.slice(0, -1)) &&
    textOf(msgs.at(-1)?.content) === rewoundPrompt(i) &&
    !JSON.stringify(msgs).includes(textOf(target.content));
  const output = toolResult(r.second.body, checkId(i)) ?? '';
  return {
    to_request_ms: r.first.receivedAt - r.t0,
    rewind_call_ms: rewound - r.t0,
    message_to_request_ms: r.first.receivedAt - rewound,
    to_tool_result_ms: parts.execute_completed,
    parts,
    context_ok: contextOk,
    files_ok: checkOk(output, b.early, b.files),
    output: output.slice(0, 200),
    restored: restored ? { snapshot_id: restored.snapshot_id, files: restored.files, bytes: restored.bytes, duration_ms: restored.duration_ms } : null,
    container_replaced: replaced,
  };
}

/** A session of `steps` bash steps, then its hermetic replay with the same agent and script. */
async function replayRun(env: BenchEnv, tandem: TandemClient, ids: string[], s: Script): Promise<ReplayResult> {
  const rec = env.newSessionId('recorded');
  ids.push(rec);
  env.route(rec, script(s));
  const t0 = Date.now();
  await tandem.start({ agent: env.agent(rec), message: STEPS, sessionId: rec });
  await idle(tandem, rec, (st) => st.turn >= s.steps + 1, 600_000, 50);
  const recordedMs = Date.now() - t0;
  log(`time-travel: recorded session ${rec}: ${s.steps} steps in ${ms(recordedMs)}`);

  const replayId = env.newSessionId('replay');
  ids.push(replayId);
  const t1 = Date.now();
  await tandem.replay(rec, { agent: env.agent(rec), mode: 'hermetic', id: replayId });
  await until(
    async () => {
      const st = await tandem.getSession(replayId);
      const rp = st.replay;
      return rp && rp.turns !== null && rp.next_turn >= rp.turns && st.status === 'idle' && st.stop_reason?.type !== 'requires_action';
    },
    `the replay ${replayId} to finish`,
    600_000,
    50,
  );
  const replayMs = Date.now() - t1;
  const report = await tandem.replayReport(replayId);
  const containers = await env.docker.listContainers({ all: true, filters: { label: [`${LABEL_SESSION}=${replayId}`] } });
  const results = await tandem.getEvents(replayId, { types: ['agent.tool_result'] });
  const modelMs = async (id: string) => (await env.modelCalls(id)).reduce((n, c) => n + c.duration_ms, 0);
  return {
    recorded_id: rec,
    replay_id: replayId,
    steps: s.steps,
    recorded_ms: recordedMs,
    replay_ms: replayMs,
    model_ms: { recorded: await modelMs(rec), replay: await modelMs(replayId) },
    sandboxes_in_log: report.sandboxes,
    containers: containers.length,
    slots: listSlots(env.handsDir).filter((x) => x.session_id === replayId).length,
    diverged_at: report.diverged_at,
    turns_equal: report.done && report.turns.every((t) => t.recorded !== null && canonical(t.recorded) === canonical(t.replay)),
    recorded_results: results.filter((e) => e.recorded === true).length,
    tool_results: results.length,
  };
}

/** Runs the time-travel measurements on the worker of `queue`. */
export async function benchTimeTravel(env: BenchEnv, queue: string): Promise<Section> {
  const quick = env.opts.quick;
  const s: Script = { early: `early-${randomBytes(6).toString('hex')}`, turns: quick ? 30 : 100, mb: quick ? 20 : 200, steps: quick ? 20 : 50 };
  const nForks = quick ? 2 : 3;
  const nRewinds = quick ? 2 : 3;
  const tandem = env.tandem(queue);
  const ids: string[] = [];
  const errors: Record<string, string> = {};
  const fail = (part: string, err: unknown) => {
    errors[part] = (err as Error).message ?? String(err);
    log(`time-travel: ${part} FAILED: ${(err as Error).stack ?? String(err)}`);
    process.exitCode = 1;
  };
  let built: Built | undefined;
  const forks: ForkSample[] = [];
  const rewinds: RewindSample[] = [];
  let cost: { fork: { events: number; bytes: number }; origin_prefix: { events: number; bytes: number } } | undefined;
  let replay: ReplayResult | undefined;
  try {
    try {
      built = await build(env, tandem, ids, s);
    } catch (err) {
      fail('build', err);
    }
    if (built) {
      const b = built;
      try {
        for (let i = 0; i < nForks; i++) {
          const f = await forkOnce(env, tandem, ids, b);
          forks.push(f);
          log(
            `time-travel: fork ${i + 1}/${nForks}: first model request ${ms(f.to_request_ms)}, first tool result ${ms(f.to_tool_result_ms)}` +
              ` (${f.restored ? `${f.restored.files} files, ${bytes(f.restored.bytes)} restored in ${ms(f.restored.duration_ms)}` : 'nothing restored'})` +
              `; request ${f.request_equal ? 'equal' : `differs in ${f.request_differs_in.join(', ')}`}, files ${f.files_ok ? 'as at the fork point' : `WRONG: ${JSON.stringify(f.output)}`}`,
          );
          if (i === 0) {
            // What a fork costs in history: its own run against the origin's log up to the fork point (read, not copied).
            const prefix = (await readRunChain(env.temporal, b.origin)).flatMap((run) => run.events.filter((e) => run.offset + Number(e.eventId) <= b.at.seq));
            cost = { fork: historySize(await readHistory(env.temporal, f.fork_id)), origin_prefix: historySize(prefix) };
          }
        }
      } catch (err) {
        fail('fork', err);
      }
      try {
        let target = b.at;
        for (let i = 0; i < nRewinds; i++) {
          const r = await rewindOnce(env, tandem, b, target, i);
          rewinds.push(r);
          log(
            `time-travel: rewind ${i + 1}/${nRewinds}: next model request ${ms(r.to_request_ms)}, tool result ${ms(r.to_tool_result_ms)}` +
              ` (${r.restored ? `${r.restored.files} files, ${bytes(r.restored.bytes)} restored in ${ms(r.restored.duration_ms)}` : 'nothing restored'})` +
              `; context ${r.context_ok ? 'as at the rewind point' : 'WRONG'}, files ${r.files_ok ? 'as at the rewind point' : `WRONG: ${JSON.stringify(r.output)}`}`,
          );
          target = (await tandem.getEvents(b.origin, { types: ['user.message'] })).at(-1)!;
        }
      } catch (err) {
        fail('rewind', err);
      }
    }
    try {
      replay = await replayRun(env, tandem, ids, s);
      log(
        `time-travel: hermetic replay: ${replay.sandboxes_in_log} sandbox(es), diverged at ${replay.diverged_at ?? 'none'}, ` +
          `${ms(replay.replay_ms)} against ${ms(replay.recorded_ms)}`,
      );
    } catch (err) {
      fail('replay', err);
    }
  } finally {
    await Promise.all(ids.map((id) => env.temporal.workflow.getHandle(id).terminate('bench done').catch(() => undefined)));
    await env.removeBenchSandboxes().catch(() => undefined);
  }

  const failed = (part: string) => `n/a: ${part} failed (${errors[part] ?? errors.build ?? '?'})`;
  const fk = {
    request: summarize(forks.map((f) => f.to_request_ms)),
    call: summarize(forks.map((f) => f.fork_call_ms)),
    tool: summarize(forks.map((f) => f.to_tool_result_ms)),
    restore: summarize(forks.flatMap((f) => (f.restored ? [f.restored.duration_ms] : []))),
    provision: summarize(forks.flatMap((f) => (f.provision_ms === null ? [] : [f.provision_ms]))),
  };
  const rw = {
    request: summarize(rewinds.map((r) => r.to_request_ms)),
    call: summarize(rewinds.map((r) => r.rewind_call_ms)),
    message: summarize(rewinds.map((r) => r.message_to_request_ms)),
    tool: summarize(rewinds.map((r) => r.to_tool_result_ms)),
    restore: summarize(rewinds.flatMap((r) => (r.restored ? [r.restored.duration_ms] : []))),
  };
  const restoredOf = (xs: Array<{ restored: ForkSample['restored'] }>) => {
    const x = xs.find((v) => v.restored)?.restored;
    return x ? `${x.files} files, ${bytes(x.bytes)}` : 'nothing';
  };
  const modelMs = (env.opts.latencyMs + env.opts.ttftMs) / 1000;
  /** The p50 of each phase, since the fork() or rewind() call. */
  const partsOf = (xs: Array<{ parts: Phases; to_request_ms: number }>, input: string) => {
    const p = (f: (x: { parts: Phases; to_request_ms: number }) => number) => ms(summarize(xs.map(f)).p50);
    return (
      `${input} ${p((x) => x.parts.input)} · workflow tasks: the first ${p((x) => x.parts.first_task_started)}–${p((x) => x.parts.first_task_completed)}, ` +
      `the model call's ${p((x) => x.parts.task_started)}–${p((x) => x.parts.task_completed)} · ` +
      `model call started ${p((x) => x.parts.model_started)} · request ${p((x) => x.to_request_ms)} · answered ${p((x) => x.parts.model_completed)} · ` +
      `tool call scheduled ${p((x) => x.parts.execute_scheduled)}, started ${p((x) => x.parts.execute_started)}, done ${p((x) => x.parts.execute_completed)}`
    );
  };
  const within = (v: number) => `(≤ ${GOAL_MS / 1000} s: ${v <= GOAL_MS ? 'yes' : 'no'})`;
  const rows: Section['rows'] = [];
  if (built) {
    rows.push(
      {
        metric: `origin: ${s.turns} tool turns (one writes ${s.mb} MB in ${built.files} files), model at zero latency`,
        value: `built in ${ms(built.build_ms)}; ${built.snapshots} snapshots; at the fork point ${built.at_fork.files} files, ${bytes(built.at_fork.bytes)}`,
      },
      {
        metric: `  snapshot after the ${s.mb} MB turn / after a small turn p50`,
        value: `${ms(built.big_snapshot.duration_ms)} (wrote ${bytes(built.big_snapshot.written_bytes)}) / ${ms(built.small_snapshot_ms.p50)}`,
      },
    );
  } else rows.push({ metric: `origin: ${s.turns} tool turns, ${s.mb} MB workspace`, value: failed('build') });
  if (forks.length > 0) {
    rows.push(
      {
        metric: `fork at a user message → the fork's first model request, p50 / max of ${forks.length}`,
        value: `${ms(fk.request.p50)} / ${ms(fk.request.max)} ${goal(`≤ ${GOAL_MS / 1000} s, every sample`, fk.request.max <= GOAL_MS)}`,
      },
      { metric: '  of which the fork() call (reads the origin\'s log, starts the session), p50', value: ms(fk.call.p50) },
      {
        metric: `fork → its first tool call's result in its log, files restored, p50 / max (one model call of ${modelMs} s in it)`,
        value: `${ms(fk.tool.p50)} / ${ms(fk.tool.max)} ${within(fk.tool.max)}`,
      },
      { metric: '  where the time went, p50 of each, since fork() (history times)', value: partsOf(forks, 'started') },
      { metric: '  provision with the restore / the restore alone, p50', value: `${ms(fk.provision.p50)} / ${ms(fk.restore.p50)} (${restoredOf(forks)})` },
      {
        metric: "fork's first request equals the origin's next request (whole body)",
        value:
          `${forks.filter((f) => f.request_equal).length} of ${forks.length}` +
          (forks.some((f) => !f.request_equal) ? ` (differs in ${[...new Set(forks.flatMap((f) => f.request_differs_in))].join(', ')})` : ''),
      },
      { metric: "fork's first tool call sees the files as at the fork point", value: `${forks.filter((f) => f.files_ok).length} of ${forks.length}` },
    );
    if (cost)
      rows.push({
        metric: "fork's own history / the origin's log up to the fork point (read, not copied)",
        value: `${cost.fork.events} events, ${bytes(cost.fork.bytes)} / ${cost.origin_prefix.events} events, ${bytes(cost.origin_prefix.bytes)}`,
      });
  } else rows.push({ metric: "fork → the fork's first model request", value: failed('fork') });
  if (rewinds.length > 0) {
    rows.push(
      {
        metric: `rewind to a user message, new message → next model request, p50 / max of ${rewinds.length}`,
        value: `${ms(rw.request.p50)} / ${ms(rw.request.max)} ${goal(`≤ ${GOAL_MS / 1000} s, every sample`, rw.request.max <= GOAL_MS)}`,
      },
      { metric: '  of which the rewind() call / message sent → request, p50', value: `${ms(rw.call.p50)} / ${ms(rw.message.p50)}` },
      {
        metric: `rewind → the next tool call's result in the log, files restored, p50 / max (one model call of ${modelMs} s in it)`,
        value: `${ms(rw.tool.p50)} / ${ms(rw.tool.max)} ${within(rw.tool.max)}`,
      },
      { metric: '  where the time went, p50 of each, since rewind() (history times)', value: partsOf(rewinds, 'message in') },
      { metric: '  the workspace emptied and restored in that call, p50', value: `${ms(rw.restore.p50)} (${restoredOf(rewinds)}; a new container in ${rewinds.filter((r) => r.container_replaced).length} of ${rewinds.length})` },
      {
        metric: 'next request holds only what came before the rewind point / the tool call sees the files as then',
        value: `${rewinds.filter((r) => r.context_ok).length} of ${rewinds.length} / ${rewinds.filter((r) => r.files_ok).length} of ${rewinds.length}`,
      },
    );
  } else rows.push({ metric: 'rewind → next model request', value: failed('rewind') });
  if (replay) {
    const outside = (wall: number, model: number) => (wall - model) / replay!.steps;
    rows.push(
      {
        metric: `hermetic replay of a ${replay.steps}-step session, same agent and script: sandboxes created`,
        value:
          `${replay.sandboxes_in_log} in its log, ${replay.containers} containers, ${replay.slots} slots ` +
          goal('0', replay.sandboxes_in_log === 0 && replay.containers === 0 && replay.slots === 0),
      },
      {
        metric: '  divergences',
        value: `${replay.diverged_at === null ? 'none' : `at call ${replay.diverged_at}`}; turns ${replay.turns_equal ? 'equal' : 'NOT equal'} ${goal('none', replay.diverged_at === null)}`,
      },
      { metric: '  tool results answered from the recording', value: `${replay.recorded_results} of ${replay.tool_results}` },
      {
        metric: `  wall time replay / recorded session (model ${modelMs} s per call on both)`,
        value: `${ms(replay.replay_ms)} / ${ms(replay.recorded_ms)} (${ratio(replay.replay_ms / replay.recorded_ms)})`,
      },
      {
        metric: '  per step outside the model calls, replay / recorded',
        value: `${ms(outside(replay.replay_ms, replay.model_ms.replay))} / ${ms(outside(replay.recorded_ms, replay.model_ms.recorded))}`,
      },
    );
  } else rows.push({ metric: `hermetic replay of a ${s.steps}-step session`, value: failed('replay') });

  return {
    key: 'time-travel',
    title: '11. Time travel: fork, rewind, replay',
    method:
      `One session on one worker (as \`tandem worker\` runs, no warm containers): ${s.turns} tool calls in its first turn ` +
      `(a small file, ${s.mb} MB of random bytes in 100 KiB files, then small bash calls; each snapshotted), answered ` +
      `at zero model latency; then a message whose tool call prints the small file and counts the big ones, then ` +
      `changes the one and deletes ten of the others. Fork (${nForks}×) at that message: from fork() until the scripted ` +
      `model receives the fork's first request (compared with the origin's), and until the fork's first tool call ` +
      `(the same check, in a new sandbox restored from the snapshot at the fork point) is in its log. Rewind ` +
      `(${nRewinds}×) to the latest user message and a new message sent at once: from rewind() until the next model ` +
      `request, and until the next tool call (the same check, the workspace emptied and restored) is in the log. Replay: ` +
      `a session of ${s.steps} bash steps, then its hermetic replay with the same agent and script, both timed until ` +
      `idle (the recorded one's time includes provisioning its sandbox). Measured calls have the scripted latency; tool results are timed by the history's event times.`,
    rows,
    data: {
      turns: s.turns,
      workspace_mb: s.mb,
      steps: s.steps,
      errors,
      build: built ? { ...built, at: built.at.id, origin_next: undefined } : null,
      fork: { ...fk, cost: cost ?? null, samples: forks },
      rewind: { ...rw, samples: rewinds },
      replay: replay ?? null,
    },
    panels: [
      {
        kind: 'strip',
        title: `Time travel: to the first model request and to the first tool result with the files restored (${s.mb} MB workspace; s)`,
        unit: 's',
        distributions: [
          { label: 'fork → first model request', samples: forks.map((f) => f.to_request_ms / 1000) },
          { label: 'fork → first tool result', samples: forks.map((f) => f.to_tool_result_ms / 1000) },
          { label: 'rewind → next model request', samples: rewinds.map((r) => r.to_request_ms / 1000) },
          { label: 'rewind → next tool result', samples: rewinds.map((r) => r.to_tool_result_ms / 1000) },
        ],
      },
    ],
  };
}
