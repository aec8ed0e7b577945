/**
 * 5. Scale: how fast sessions start, and what one worker process costs while it holds many idle sessions.
 *
 * A fresh worker process (`node --import tsx src/worker.ts`, as `tandem worker` runs it) serves its own queue. The
 * bench starts N sessions at client concurrency 50; each first model call ends the turn with a text reply, so
 * every session ends idle, without a sandbox, cached in the worker (Temporal's sticky cache). It reports the rate
 * of acknowledged starts, the rate at which sessions completed their first turn, and the worker's resident memory
 * (VmRSS from /proc) before and after.
 */
import { log, type BenchEnv } from './lib/env.js';
import { p50p95, type Section } from './lib/section.js';
import { pool, sleep, summarize } from './lib/stats.js';

/** Measures start rate and idle-session memory. */
export async function benchScale(env: BenchEnv): Promise<Section> {
  const n = env.opts.quick ? 200 : 1000;
  const warm = 10;
  const concurrency = 50;
  const queue = env.queue('scale');
  const worker = await env.spawnWorker(queue);
  const tandem = env.tandem(queue);
  const idle = async () =>
    Number((await env.temporal.workflow.count(`TaskQueue = "${queue}" AND TandemStatus = "idle"`)).count);
  const waitIdle = async (target: number, timeoutMs: number, progress = false) => {
    const deadline = Date.now() + timeoutMs;
    let lastLog = Date.now();
    for (;;) {
      const c = await idle();
      if (c >= target) return;
      if (Date.now() > deadline) throw new Error(`only ${c} of ${target} sessions idle after ${timeoutMs / 1000} s`);
      if (progress && Date.now() - lastLog > 10_000) {
        log(`scale: ${c}/${target} idle`);
        lastLog = Date.now();
      }
      await sleep(250);
    }
  };
  const start = (id: string) => tandem.start({ agent: env.agent(id), message: 'Hello.', sessionId: id });

  try {
    // Warm-up: the worker's first sessions load the workflow bundle into its isolate.
    await pool(Array.from({ length: warm }, () => env.newSessionId('scale')), 10, start);
    await waitIdle(warm, 120_000);
    await sleep(5000);
    const before = worker.memory();

    const ids = Array.from({ length: n }, () => env.newSessionId('scale'));
    const startLatency: number[] = [];
    const t0 = Date.now();
    await pool(ids, concurrency, async (id) => {
      const t = Date.now();
      await start(id);
      startLatency.push(Date.now() - t);
    });
    const tAcked = Date.now();
    log(`scale: ${n} sessions started in ${((tAcked - t0) / 1000).toFixed(1)} s`);
    await waitIdle(warm + n, 15 * 60_000, true);
    const tIdle = Date.now();
    log(`scale: all ${n} idle after ${((tIdle - t0) / 1000).toFixed(1)} s; letting the worker settle`);
    await sleep(10_000);
    const after = worker.memory();

    const startsPerS = n / ((tAcked - t0) / 1000);
    const turnsPerS = n / ((tIdle - t0) / 1000);
    const perSessionKb = (after.rssKb - before.rssKb) / n;
    const mib = (kb: number) => `${Math.round(kb / 1024)} MiB`;
    return {
      key: 'scale',
      title: '5. Scale',
      method:
        `${n} sessions started at client concurrency ${concurrency} on one worker process; each first turn is one ` +
        `model call with a text reply, so every session ends idle, holding no sandbox. Memory is the worker's VmRSS ` +
        `after ${warm} warm-up sessions, and 10 s after all ${n} were idle.`,
      rows: [
        { metric: 'sessions started per second (start() acknowledged)', value: startsPerS.toFixed(1) },
        { metric: 'start() latency at that rate p50 / p95', value: p50p95(summarize(startLatency)) },
        { metric: 'sessions through their first turn per second', value: turnsPerS.toFixed(1) },
        { metric: `worker RSS: before / holding ${n} idle sessions`, value: `${mib(before.rssKb)} / ${mib(after.rssKb)}` },
        { metric: 'worker RSS per idle session', value: `${Math.round(perSessionKb)} KiB` },
        { metric: 'worker peak RSS (VmHWM)', value: mib(after.hwmKb) },
      ],
      data: {
        sessions: n,
        client_concurrency: concurrency,
        starts_per_second: Math.round(startsPerS * 10) / 10,
        first_turns_per_second: Math.round(turnsPerS * 10) / 10,
        start_seconds: (tAcked - t0) / 1000,
        start_latency: summarize(startLatency),
        start_latency_samples: startLatency,
        all_idle_seconds: (tIdle - t0) / 1000,
        worker_rss_kb: { before: before.rssKb, after: after.rssKb, peak: after.hwmKb },
        rss_per_idle_session_kb: Math.round(perSessionKb * 10) / 10,
      },
      panels: [
        {
          kind: 'strip',
          title: `start() latency, ${n} sessions at client concurrency ${concurrency}`,
          unit: 'ms',
          distributions: [{ label: 'start() acknowledged', samples: startLatency }],
        },
      ],
    };
  } finally {
    await worker.kill('SIGTERM');
  }
}
