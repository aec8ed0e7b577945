/**
 * 10. Isolation: what user-namespace remapping costs a sandbox. The bench starts two `dockerd` of its own
 * (test/helpers/engine.ts: own data root, exec root and socket, no bridge network; data under .tandem/engines/, kept
 * between runs so that the image is loaded once): one with `"userns-remap": "default"`, and one started the same way
 * without it, the control that separates the remapping from the rest of a second engine's set-up. On those and on
 * this machine's engine, it measures Tandem's provision (cold: slot and workspace, create, start, the toolbox on the
 * line) and execute of `echo hi`, rotating between the engines one call at a time, with the same settings. It also
 * checks that the remapping holds: the sandbox's processes run as a uid of the remapped range on the host.
 */
import { performance } from 'node:perf_hooks';
import type Docker from 'dockerode';
import { sandboxNames } from '../src/activities/sandbox/docker.js';
import { startEngine, type Engine } from '../test/helpers/engine.js';
import { log, type BenchEnv } from './lib/env.js';
import { p50p95, ratio, type Section } from './lib/section.js';
import { summarize } from './lib/stats.js';

const COMMAND = 'echo hi';
const ENGINES = { plain: 'bench-plain', userns: 'bench-userns' } as const;
type Key = 'default' | 'plain' | 'userns';
const LABEL: Record<Key, string> = {
  default: "this machine's engine",
  plain: 'second engine, no remapping',
  userns: 'second engine, userns-remap',
};

/** A duration to a tenth of a millisecond. */
const tenth = (v: number) => Math.round(v * 10) / 10;

/** Measures provision and execute on an engine with user-namespace remapping, against engines without. */
export async function benchIsolation(env: BenchEnv): Promise<Section> {
  const nProvision = env.opts.quick ? 4 : 12;
  const nExec = env.opts.quick ? 15 : 40;
  const started: Engine[] = [];
  const stops: Array<() => Promise<void>> = [];
  const own: Array<ReturnType<BenchEnv['ownHands']>> = [];
  const provision: Record<Key, number[]> = { default: [], plain: [], userns: [] };
  const execute: Record<Key, number[]> = { default: [], plain: [], userns: [] };
  let hostUids: number[] = [];
  const drivers: Partial<Record<Key, string>> = {};
  try {
    const t = Date.now();
    // Both at once; each registered for cleanup as soon as it runs, also when the other one fails.
    const up = await Promise.allSettled(
      (['plain', 'userns'] as const).map(async (k) => {
        const engine = await startEngine(ENGINES[k], { userns: k === 'userns' });
        started.push(engine);
        stops.push(env.own(`engine ${engine.name}`, () => engine.stop(), () => void engine.kill()));
      }),
    );
    for (const r of up) if (r.status === 'rejected') throw r.reason;
    log(`isolation: engines ${Object.values(ENGINES).join(', ')} up in ${Date.now() - t} ms`);
    const engineOf = (k: 'plain' | 'userns') => started.find((e) => e.name === ENGINES[k])!;
    const handsOn = (k: 'plain' | 'userns') => {
      const h = env.ownHands({}, engineOf(k).docker);
      own.push(h);
      return h;
    };
    const engines: Array<{ key: Key; hands: ReturnType<BenchEnv['ownHands']>; docker: Docker }> = [
      { key: 'default', hands: env.hands, docker: env.docker },
      { key: 'plain', hands: handsOn('plain'), docker: engineOf('plain').docker },
      { key: 'userns', hands: handsOn('userns'), docker: engineOf('userns').docker },
    ];
    for (const e of engines) drivers[e.key] = ((await e.docker.info()) as { Driver?: string }).Driver ?? '?';
    /** Round i's order: the engines rotated by i, so that none is always first. */
    const rotated = <T>(list: T[], i: number) => list.map((_, j) => list[(j + i + list.length) % list.length]!);

    // Round -1 is a warm-up.
    for (let i = -1; i < nProvision; i++) {
      for (const e of rotated(engines, i)) {
        const ref = env.sandboxRef(env.newSessionId('iso'));
        const t0 = performance.now();
        await e.hands.activities.provision(ref);
        const took = performance.now() - t0;
        await e.hands.activities.removeSandbox(ref);
        if (i >= 0) provision[e.key].push(tenth(took));
      }
    }
    log(`isolation: ${nProvision} provisions on each engine`);

    const refs = engines.map((e) => ({ ...e, ref: env.sandboxRef(env.newSessionId('iso')) }));
    try {
      for (const e of refs) await e.hands.activities.provision(e.ref);
      for (let i = -3; i < nExec; i++) {
        for (const e of rotated(refs, i)) {
          const t0 = performance.now();
          const r = await e.hands.activities.execute({ sandbox: e.ref, tool_use_id: `bench_iso_${i + 3}`, name: 'bash', input: { command: COMMAND } });
          const took = performance.now() - t0;
          if (r.is_error || r.content.trim() !== 'hi') throw new Error(`unexpected output on ${e.key}: ${JSON.stringify(r.content)}`);
          if (i >= 0) execute[e.key].push(tenth(took));
        }
      }
      const u = refs.find((e) => e.key === 'userns')!;
      hostUids = [...new Set(await processUids(u.docker, sandboxNames(u.ref.session_id, env.sandboxSettings.scope).container))];
      if (hostUids.length === 0 || hostUids.some((uid) => uid < 100_000))
        throw new Error(`the sandbox on ${ENGINES.userns} runs as host uid(s) ${hostUids.join(', ')}: the engine does not remap`);
    } finally {
      for (const e of refs) await e.hands.activities.removeSandbox(e.ref).catch(() => undefined);
    }
    log(`isolation: ${nExec} executes on each engine`);
  } finally {
    for (const h of own) await env.release(h);
    for (const stop of stops) await stop();
  }

  const s = {
    provision: { default: summarize(provision.default), plain: summarize(provision.plain), userns: summarize(provision.userns) },
    execute: { default: summarize(execute.default), plain: summarize(execute.plain), userns: summarize(execute.userns) },
  };
  const keys: Key[] = ['default', 'plain', 'userns'];
  return {
    key: 'isolation',
    title: '10. Isolation: user-namespace remapping',
    method:
      `A second dockerd with "userns-remap": "default" and, as the control, one started the same way without it (both ` +
      `started by the bench), and this machine's engine; the same hands settings on all three: ${nProvision} cold ` +
      `provisions (slot and workspace, create, start, toolbox on the line) and \`${COMMAND}\` ${nExec} times through ` +
      `execute, rotating between the engines one call at a time. Storage driver: ` +
      `${keys.map((k) => `${drivers[k] ?? '?'} (${LABEL[k]})`).join(', ')}.`,
    rows: [
      ...keys.map((k) => ({ metric: `provision p50 / p95: ${LABEL[k]}`, value: p50p95(s.provision[k]) })),
      { metric: '  userns-remap over the control (no remapping), p50', value: ratio(s.provision.userns.p50 / s.provision.plain.p50) },
      { metric: "  userns-remap over this machine's engine, p50", value: ratio(s.provision.userns.p50 / s.provision.default.p50) },
      ...keys.map((k) => ({ metric: `execute \`${COMMAND}\` p50 / p95: ${LABEL[k]}`, value: p50p95(s.execute[k]) })),
      { metric: '  userns-remap over the control (no remapping), p50', value: ratio(s.execute.userns.p50 / s.execute.plain.p50) },
      { metric: "  userns-remap over this machine's engine, p50", value: ratio(s.execute.userns.p50 / s.execute.default.p50) },
      { metric: 'sandbox processes on the host (remapped engine), uid', value: hostUids.join(', ') },
    ],
    data: { ...s, command: COMMAND, engines: LABEL, storage_driver: drivers, remapped_host_uids: hostUids, samples: { provision, execute } },
    panels: [
      {
        kind: 'strip',
        title: 'Isolation: provision (cold), with and without user-namespace remapping',
        unit: 'ms',
        distributions: keys.map((k) => ({ label: LABEL[k], samples: provision[k] })),
      },
      {
        kind: 'strip',
        title: `Isolation: execute \`${COMMAND}\`, with and without user-namespace remapping`,
        unit: 'ms',
        distributions: keys.map((k) => ({ label: LABEL[k], samples: execute[k] })),
      },
    ],
  };
}

/** The host uids of a container's processes. */
async function processUids(docker: Docker, container: string): Promise<number[]> {
  const top = await docker.getContainer(container).top({ ps_args: '-o pid,uid' });
  return top.Processes.map((p: string[]) => Number(p[1]));
}
