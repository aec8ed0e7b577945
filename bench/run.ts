/**
 * The benchmark suite: `npm run bench [-- --quick] [-- --only ttft,sandbox] [-- --latency 300 --ttft 150]`;
 * `--render bench/results/<date>.json` draws the chart and tables of an earlier run again.
 *
 * Runs against a real Temporal dev server (its own, in memory), the real Docker engine, real worker processes and
 * the scripted Messages API server; some measurements start more of their own and stop it after them: MinIO on
 * loopback (snapshot, when built), second Docker engines (isolation: with user-namespace remapping and without;
 * host-loss and many-hands: a second hands host). It asserts nothing about timing: it prints what it measured, with
 * the comparisons measured side by side in the same run, and writes bench/results/<date>.json (raw samples and
 * summaries), <date>.md (tables) and <date>.png (the distributions). `--quick` scales the counts down and writes
 * <date>-quick.* instead; a run of some sections (`--only`) writes <date>-<sections>.*.
 */
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchHistory } from './history.js';
import { benchHostLoss } from './host-loss.js';
import { benchIsolation } from './isolation.js';
import { BenchEnv, log, type BenchOptions } from './lib/env.js';
import { printSection, readResults, writeResults, type RunInfo } from './lib/report.js';
import type { Section } from './lib/section.js';
import { benchManyHands } from './many-hands.js';
import { benchOverhead } from './overhead.js';
import { benchRecovery } from './recovery.js';
import { benchSandbox } from './sandbox.js';
import { benchScale } from './scale.js';
import { benchSnapshot } from './snapshot.js';
import { benchTimeTravel } from './time-travel.js';
import { benchTtft } from './ttft.js';

const ALL = ['sandbox', 'snapshot', 'isolation', 'ttft', 'overhead', 'recovery', 'host-loss', 'many-hands', 'history', 'time-travel', 'scale'] as const;
type Name = (typeof ALL)[number];

function git(...args: string[]): string {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      latency: { type: 'string', default: '300' },
      ttft: { type: 'string', default: '150' },
      render: { type: 'string' },
    },
    strict: true,
  });
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
  if (values.render) {
    // Draw the chart and the tables of an earlier run again from its JSON file.
    const { info, sections } = readResults(values.render);
    log(`wrote ${(await writeResults(dir, info, sections, false)).join(', ')}`);
    return;
  }
  const only = (values.only?.split(',').map((s) => s.trim()) ?? [...ALL]) as Name[];
  for (const n of only) if (!ALL.includes(n)) throw new Error(`--only: unknown benchmark "${n}" (one of ${ALL.join(', ')})`);
  const opts: BenchOptions = { quick: values.quick ?? false, latencyMs: Number(values.latency), ttftMs: Number(values.ttft) };
  if (!(opts.latencyMs >= 0 && opts.ttftMs >= 0)) throw new Error('--latency and --ttft must be non-negative numbers');

  const date = new Date().toISOString().slice(0, 10);
  const info: RunInfo = {
    date,
    started_at: new Date().toISOString(),
    quick: opts.quick,
    scripted_model: { latency_ms: opts.latencyMs, ttft_ms: opts.ttftMs },
    machine: { cpus: cpus().length, cpu_model: cpus()[0]?.model ?? '?', memory_gb: Math.round(totalmem() / 2 ** 30), node: process.version },
    git: { commit: git('rev-parse', '--short', 'HEAD'), dirty: git('status', '--porcelain', '--', 'src', 'sandbox', 'test') !== '' },
    docker: dockerVersion(),
    benchmarks: only,
    // A run of some sections does not overwrite the full run of the day.
    name: `${date}${opts.quick ? '-quick' : ''}${only.length < ALL.length ? `-${only.join('-')}` : ''}`,
    load_average: { start: loadavg().map((v) => Math.round(v * 100) / 100) },
  };
  log(`tandem bench${opts.quick ? ' (quick)' : ''}: ${only.join(', ')}; scripted model ${opts.latencyMs} ms latency + ${opts.ttftMs} ms TTFT`);

  const env = await BenchEnv.start(opts);
  log(`dev server ${env.server.address}, scripted model ${env.model.url}`);
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: stopping`);
    void env.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', () => env.killAllSync());

  const sections: Section[] = [];
  let failed = false;
  try {
    // One worker process serves the measurements that need just one; recovery, host-loss, many-hands and scale start
    // their own.
    const mainQueue = env.queue('main');
    const needsMain = only.some((n) => n === 'ttft' || n === 'overhead' || n === 'recovery' || n === 'history' || n === 'time-travel');
    if (needsMain) await env.spawnWorker(mainQueue);
    const run: Record<Name, () => Promise<Section>> = {
      sandbox: () => benchSandbox(env),
      snapshot: () => benchSnapshot(env),
      isolation: () => benchIsolation(env),
      ttft: () => benchTtft(env, mainQueue),
      overhead: () => benchOverhead(env, mainQueue),
      recovery: () => benchRecovery(env, mainQueue),
      'host-loss': () => benchHostLoss(env),
      'many-hands': () => benchManyHands(env),
      history: () => benchHistory(env, mainQueue),
      'time-travel': () => benchTimeTravel(env, mainQueue),
      scale: () => benchScale(env),
    };
    for (const name of ALL.filter((n) => only.includes(n))) {
      log(`${name}: start`);
      try {
        const section = await run[name]();
        sections.push(section);
        printSection(section);
      } catch (err) {
        failed = true;
        log(`${name}: FAILED: ${(err as Error).stack ?? String(err)}`);
      }
      await env.removeBenchSandboxes().catch(() => undefined);
    }
  } finally {
    await env.close();
  }
  info.finished_at = new Date().toISOString();
  info.load_average.end = loadavg().map((v) => Math.round(v * 100) / 100);
  const files = await writeResults(dir, info, sections);
  log(`wrote ${files.join(', ')}`);
  if (failed) process.exitCode = 1;
}

function dockerVersion(): string {
  try {
    return execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '?';
  }
}

main().catch((err: unknown) => {
  console.error(`bench: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
