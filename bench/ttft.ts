/**
 * 1. Time to first token, lazy against eager provisioning.
 *
 * Lazy (Tandem's default): `start()` and the first model call runs; no container exists until a tool needs one.
 * Eager (a monolithic design): before starting the session, create and start the session's container with the
 * same `provision` activity and clone a small git repository into it, then start the session.
 *
 * The clock starts just before the first step of either path (provision, or `start()`) and stops when the
 * worker's Anthropic SDK receives the first streamed content delta of the session's first model call. That moment
 * is `callModel`'s `started_at` plus its `ttft_ms` (both measured in the worker process; same machine clock). As a
 * cross-check, the scripted server's side is reported too: request arrival plus its configured latency and time to
 * first token.
 *
 * Two references put the lazy number in context: the same lazy sessions one at a time (no queueing), and the
 * Temporal floor: a workflow that only runs one activity streaming the same model call (bench/floor), at the same
 * concurrency, so what Temporal itself costs on this machine is told apart from what Tandem adds.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import proto from '@temporalio/proto';
import { sandboxNames } from '../src/activities/sandbox/docker.js';
import { readHistory } from '../src/log/read.js';
import { log, processCpuMs, type BenchEnv } from './lib/env.js';
import { ms, p50p95, type Section } from './lib/section.js';
import { pool, reduction, sleep, summarize } from './lib/stats.js';

type Mode = 'lazy' | 'eager' | 'floor' | 'lazy_serial';

interface Sample {
  mode: Mode;
  session_id: string;
  /** Start of the path to the first model request (provision for eager, `start()` otherwise), epoch ms. */
  t0: number;
  /** Eager only: create + start + toolbox ready, and the clone. */
  provision_ms?: number;
  clone_ms?: number;
  /** `start()` acknowledged, from t0. */
  start_ack_ms: number;
  /** The first model request reached the scripted server, from t0. */
  request_ms: number;
  /** Server side: request arrival + configured latency + time to first token, from t0. */
  server_first_token_ms: number;
  /** Worker side (the reported number): the activity's start + its time to first token, from t0. */
  ttft_ms?: number;
  /** Where the time before the model request went (lazy and floor): see {@link breakdown}. */
  breakdown?: Record<string, number>;
}

const ET = proto.temporal.api.enums.v1.EventType;
const BREAKDOWN = ['start_ack', 'workflow_task_wait', 'workflow_task_run', 'activity_task_wait', 'activity_pickup', 'request_build'] as const;
const SHORT: Record<(typeof BREAKDOWN)[number], string> = {
  start_ack: 'start ack',
  workflow_task_wait: 'wf task wait',
  workflow_task_run: 'wf task run',
  activity_task_wait: 'activity wait',
  activity_pickup: 'activity pickup (+ log read)',
  request_build: 'request build',
};

/** A small repository (a few dozen files) as a git bundle, what the eager path clones into each container. */
function makeRepoBundle(): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-repo-'));
  try {
    const git = (...args: string[]) =>
      execFileSync('git', args, {
        cwd: dir,
        stdio: 'pipe',
        env: { ...process.env, GIT_AUTHOR_NAME: 'bench', GIT_AUTHOR_EMAIL: 'bench@localhost', GIT_COMMITTER_NAME: 'bench', GIT_COMMITTER_EMAIL: 'bench@localhost' },
      });
    git('init', '-q', '-b', 'main');
    writeFileSync(join(dir, 'README.md'), '# calc\n\nA tiny project the benchmark clones into each eager sandbox.\n');
    for (let i = 0; i < 40; i++) {
      writeFileSync(join(dir, `mod_${i}.py`), `def f${i}(x):\n    return x * ${i} + ${i}\n\n`.repeat(20));
    }
    git('add', '-A');
    git('commit', '-q', '-m', 'initial');
    git('bundle', 'create', '-q', 'repo.bundle', '--all');
    return readFileSync(join(dir, 'repo.bundle'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Measures time to first token over `sessions` sessions per mode at `concurrency`. */
export async function benchTtft(env: BenchEnv, queue: string): Promise<Section> {
  const { quick, latencyMs, ttftMs } = env.opts;
  const perMode = quick ? 20 : 60;
  const serial = quick ? 5 : 15;
  const concurrency = 10;
  const modelTtft = latencyMs + ttftMs;
  // Lanes start this far apart, so sessions arrive spread out as in a steady state rather than in bursts of 10.
  const stagger = Math.round(modelTtft / concurrency);
  const tandem = env.tandem(queue);
  const floorQueue = env.queue('floor');
  const floorWorker = await env.spawnWorker(floorQueue, 'bench/floor/worker.ts');
  const tandemWorker = env.workersOn(queue)[0];
  if (!tandemWorker) throw new Error(`no worker on ${queue}`);
  const serverPid = env.server.process.pid!;
  /** CPU used per session of a round, by the round's worker process and by the Temporal server. */
  const cpu: Record<'lazy' | 'floor', { worker: number; server: number; sessions: number }> = {
    lazy: { worker: 0, server: 0, sessions: 0 },
    floor: { worker: 0, server: 0, sessions: 0 },
  };
  const bundle = makeRepoBundle();
  const eagerIds: string[] = [];

  async function one(mode: Mode): Promise<Sample> {
    const id = env.newSessionId(mode === 'lazy_serial' ? 'lazy' : mode);
    const request = env.nextRequest(id);
    const t0 = Date.now();
    let provision_ms: number | undefined;
    let clone_ms: number | undefined;
    if (mode === 'eager') {
      eagerIds.push(id);
      await env.sandbox.provision(env.sandboxRef(id));
      const t1 = Date.now();
      provision_ms = t1 - t0;
      const script = 'cat > /tmp/repo.bundle && HOME=/tmp git clone -q /tmp/repo.bundle /workspace/repo && rm /tmp/repo.bundle';
      const r = await env.exec(sandboxNames(id, env.sandboxSettings.scope).container, ['sh', '-c', script], bundle);
      if (r.exitCode !== 0) throw new Error(`clone into ${id} failed (${r.exitCode}): ${r.stderr}`);
      clone_ms = Date.now() - t1;
    }
    if (mode === 'floor') {
      await env.temporal.workflow.start('floorSession', { taskQueue: floorQueue, workflowId: id, args: [env.agent(id).system] });
    } else {
      await tandem.start({ agent: env.agent(id), message: 'Say hello.', sessionId: id });
    }
    const start_ack_ms = Date.now() - t0;
    const req = await request;
    const firstToken = req.receivedAt + modelTtft;
    // The session holds its concurrency slot until its first token.
    await sleep(firstToken - Date.now());
    return {
      mode,
      session_id: id,
      t0,
      ...(provision_ms !== undefined ? { provision_ms, clone_ms } : {}),
      start_ack_ms,
      request_ms: req.receivedAt - t0,
      server_first_token_ms: firstToken - t0,
    };
  }

  /** Reads the first model call from the session's log: the worker-side first token and the breakdown. */
  async function complete(s: Sample): Promise<void> {
    const activity = s.mode === 'floor' ? 'streamOnce' : 'callModel';
    for (let i = 0; i < 100; i++) {
      const call = (await env.activityResults<{ started_at: string; ttft_ms: number | null }>(s.session_id, activity))[0];
      if (call && call.ttft_ms !== null) {
        const started = Date.parse(call.started_at);
        s.ttft_ms = started + call.ttft_ms - s.t0;
        if (s.mode === 'eager') return;
        const h = await readHistory(env.temporal, s.session_id);
        const at = (type: number) => {
          const t = h.find((e) => e.eventType === type)?.eventTime;
          return t ? Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : Number.NaN;
        };
        s.breakdown = {
          start_ack: s.start_ack_ms,
          workflow_task_wait: at(ET.EVENT_TYPE_WORKFLOW_TASK_STARTED) - at(ET.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED),
          workflow_task_run: at(ET.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) - at(ET.EVENT_TYPE_WORKFLOW_TASK_STARTED),
          activity_task_wait: at(ET.EVENT_TYPE_ACTIVITY_TASK_STARTED) - at(ET.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED),
          activity_pickup: started - at(ET.EVENT_TYPE_ACTIVITY_TASK_STARTED),
          request_build: s.t0 + s.request_ms - started,
        };
        return;
      }
      await sleep(100);
    }
    throw new Error(`session ${s.session_id}: no completed model call`);
  }

  const samples: Sample[] = [];
  try {
    // Warm-up (not counted): first calls load code paths in the workers and the engine.
    for (const mode of ['lazy', 'eager', 'floor', 'lazy', 'eager', 'floor'] as const) await one(mode);

    // One at a time: the lazy path without any queueing.
    for (let i = 0; i < serial; i++) samples.push(await one('lazy_serial'));
    log(`ttft: ${serial} lazy sessions one at a time`);

    // Lazy, eager and the floor alternate in halves, so drift on a noisy machine hits all of them.
    const half = Math.ceil(perMode / 2);
    const rounds = ['lazy', 'eager', 'floor', 'lazy', 'eager', 'floor'] as const;
    for (const [round, mode] of rounds.entries()) {
      const n = round < 3 ? half : perMode - half;
      const t = Date.now();
      const worker = mode === 'floor' ? floorWorker : tandemWorker;
      const cpu0 = { worker: worker.cpuMs(), server: processCpuMs(serverPid) };
      samples.push(...(await pool(Array.from({ length: n }), concurrency, () => one(mode), stagger)));
      log(`ttft: ${n} ${mode} sessions at concurrency ${concurrency} in ${((Date.now() - t) / 1000).toFixed(1)} s`);
      if (mode === 'lazy' || mode === 'floor') {
        await sleep(1500); // the rest of each first turn (the reply's end, the idle status) belongs to the round
        cpu[mode].worker += worker.cpuMs() - cpu0.worker;
        cpu[mode].server += processCpuMs(serverPid) - cpu0.server;
        cpu[mode].sessions += n;
      }
    }

    // Worker-side first token and breakdown, read from each session's log after the runs (outside the timed path).
    await pool(samples, 8, complete);
  } finally {
    await pool(eagerIds, 4, (id) => env.sandbox.removeSandbox(env.sandboxRef(id)));
    await pool(samples, 8, (s) => env.temporal.workflow.getHandle(s.session_id).terminate('bench done').catch(() => undefined));
    await floorWorker.kill('SIGTERM');
  }

  const of = (mode: Mode, key: 'ttft_ms' | 'server_first_token_ms' | 'request_ms' | 'start_ack_ms' | 'provision_ms' | 'clone_ms') =>
    samples.filter((s) => s.mode === mode).map((s) => s[key]).filter((v): v is number => typeof v === 'number');
  const parts = (mode: Mode) =>
    Object.fromEntries(BREAKDOWN.map((k) => [k, summarize(samples.filter((s) => s.mode === mode && s.breakdown).map((s) => s.breakdown![k]!))]));
  const lazy = summarize(of('lazy', 'ttft_ms'));
  const eager = summarize(of('eager', 'ttft_ms'));
  const floor = summarize(of('floor', 'ttft_ms'));
  const lazySerial = summarize(of('lazy_serial', 'ttft_ms'));
  const lazyServer = summarize(of('lazy', 'server_first_token_ms'));
  const eagerServer = summarize(of('eager', 'server_first_token_ms'));
  const provision = summarize(of('eager', 'provision_ms'));
  const clone = summarize(of('eager', 'clone_ms'));
  const lazyParts = parts('lazy');
  const floorParts = parts('floor');
  const overhead = lazy.p50 - modelTtft;
  const perSession = (m: 'lazy' | 'floor') => ({
    worker_ms: Math.round(cpu[m].worker / cpu[m].sessions),
    server_ms: Math.round(cpu[m].server / cpu[m].sessions),
  });
  const cpuLazy = perSession('lazy');
  const cpuFloor = perSession('floor');
  const breakdownRow = (p: Record<string, { p50: number }>) => BREAKDOWN.map((k) => `${SHORT[k]} ${Math.round(p[k]!.p50)}`).join(' · ') + ' ms';

  return {
    key: 'ttft',
    title: '1. Time to first token (lazy vs eager provisioning)',
    method:
      `${perMode} sessions per mode at concurrency ${concurrency} (lanes started ${stagger} ms apart), from the first ` +
      `step (start() for lazy; provision + git clone of a 41-file repository, then start(), for eager) to the first ` +
      `streamed content delta received by the worker's SDK (callModel started_at + ttft_ms). Scripted model: ` +
      `${latencyMs} ms latency + ${ttftMs} ms TTFT = ${modelTtft} ms. Floor: a bare Temporal workflow running one ` +
      `activity that streams the same call, same concurrency. The parts before the model request come from the ` +
      `history's event times (workflow task scheduled/started/completed, activity scheduled/started) and the worker's ` +
      `clock (callModel's started_at is taken after it has read the log, so the log read counts as pickup).`,
    rows: [
      { metric: 'lazy TTFT p50 / p95', value: p50p95(lazy) },
      { metric: 'eager TTFT p50 / p95', value: p50p95(eager) },
      { metric: 'reduction p50 / p95 (lazy vs eager)', value: `${reduction(eager.p50, lazy.p50)}% / ${reduction(eager.p95, lazy.p95)}%` },
      { metric: "lazy p50 over the model's own TTFT", value: `${ms(overhead)} (target ≤ 50 ms: ${overhead <= 50 ? 'met' : 'missed'})` },
      { metric: `lazy, one session at a time (${serial}): p50 / p95`, value: `${p50p95(lazySerial)} (${ms(lazySerial.p50 - modelTtft)} over the model)` },
      { metric: 'Temporal floor (1-activity workflow) p50 / p95', value: `${p50p95(floor)} (${ms(floor.p50 - modelTtft)} over the model)` },
      { metric: 'lazy: start to model request, p50 of each part', value: breakdownRow(lazyParts) },
      { metric: 'floor: the same', value: breakdownRow(floorParts) },
      {
        metric: 'CPU per session (first turn), worker / Temporal server',
        value: `lazy ${cpuLazy.worker_ms} / ${cpuLazy.server_ms} ms, floor ${cpuFloor.worker_ms} / ${cpuFloor.server_ms} ms`,
      },
      { metric: 'eager: provision (create + start + ready) p50 / p95', value: p50p95(provision) },
      { metric: 'eager: git clone p50 / p95', value: p50p95(clone) },
      { metric: 'cross-check, server side: lazy / eager p50', value: `${ms(lazyServer.p50)} / ${ms(eagerServer.p50)}` },
    ],
    data: {
      sessions_per_mode: perMode,
      concurrency,
      stagger_ms: stagger,
      model_ttft_ms: modelTtft,
      lazy,
      eager,
      reduction_p50_pct: reduction(eager.p50, lazy.p50),
      reduction_p95_pct: reduction(eager.p95, lazy.p95),
      lazy_p50_over_model_ms: Math.round(overhead * 10) / 10,
      target_met: overhead <= 50,
      lazy_serial: lazySerial,
      floor,
      cpu_per_session: { lazy: cpuLazy, floor: cpuFloor },
      lazy_breakdown: lazyParts,
      floor_breakdown: floorParts,
      eager_provision: provision,
      eager_clone: clone,
      server_side: { lazy: lazyServer, eager: eagerServer },
      samples,
    },
    panels: [
      {
        kind: 'strip',
        title: `Time to first token, ${perMode} sessions each at concurrency ${concurrency} (model's own: ${modelTtft} ms)`,
        unit: 'ms',
        distributions: [
          { label: 'lazy (Tandem)', samples: of('lazy', 'ttft_ms') },
          { label: 'eager (provision + clone)', samples: of('eager', 'ttft_ms') },
          { label: 'Temporal floor (1 activity)', samples: of('floor', 'ttft_ms') },
          { label: `lazy, one at a time`, samples: of('lazy_serial', 'ttft_ms') },
        ],
      },
      {
        kind: 'strip',
        title: `Time to first token without a sandbox on the path (zoom; the model's own is ${modelTtft} ms)`,
        unit: 'ms',
        distributions: [
          { label: 'lazy (Tandem)', samples: of('lazy', 'ttft_ms') },
          { label: 'Temporal floor (1 activity)', samples: of('floor', 'ttft_ms') },
          { label: `lazy, one at a time`, samples: of('lazy_serial', 'ttft_ms') },
        ],
      },
    ],
  };
}
