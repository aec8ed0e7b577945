/**
 * 3. Sandbox latency, where a tool call is one framed message on a line the toolbox keeps open to its host.
 *
 * Provision, three ways to a running sandbox of the default shape (1 GiB, 1 CPU), interleaved, one at a time:
 * - warm: Tandem's provision on hands that keep one container warm (`warmContainers: 1`): the container takes the
 *   session on (its slot and name). Before each sample the bench waits until `hands.load()` shows the warm
 *   container ready (and after it, until the pool has made the next one), so no sample waits for, or runs beside, a
 *   container being made;
 * - cold: Tandem's provision with no warm container: the slot and its workspace (an ext4 image with a size limit, or
 *   a volume where the host cannot make one), create, start, and the toolbox on the line;
 * - bare: `docker create` + start of the same hardened spec (`containerSpec`) on a slot made beforehand, nothing
 *   waited for: the engine's own floor.
 *
 * Execute: `echo hi` in one running sandbox through Tandem's execute (the toolbox line), by a bare exec over the
 * Docker API (the floor of a design that execs per call), and by `docker exec` from the shell, interleaved.
 */
import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { mkdirSync } from 'node:fs';
import { promisify } from 'node:util';
import { containerSpec, LABEL_MANAGED, LABEL_SESSION, sandboxNames } from '../src/activities/sandbox/docker.js';
import type { SandboxConfig } from '../src/shared/types.js';
import { log, type BenchEnv } from './lib/env.js';
import { goal, ms, p50p95, ratio, type Section } from './lib/section.js';
import { sleep, summarize } from './lib/stats.js';

const execFileP = promisify(execFile);
const COMMAND = 'echo hi';
/** A duration to a tenth of a millisecond. */
const tenth = (v: number) => Math.round(v * 10) / 10;
/** The default container shape: what a host keeps warm from its start. */
const DEFAULT_SHAPE: SandboxConfig = {};

/** Waits (polling, bounded) until `hands.load()` shows at least `n` warm containers of `image`. */
export async function waitWarm(hands: { load(): Promise<{ warm: Record<string, number> }> }, image: string, n = 1, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (((await hands.load()).warm[image] ?? 0) < n) {
    if (Date.now() > deadline) throw new Error(`no warm container of ${image} within ${timeoutMs / 1000} s`);
    await sleep(25);
  }
}

/** Measures provisioning (warm, cold, bare) and execute latency, one call at a time. */
export async function benchSandbox(env: BenchEnv): Promise<Section> {
  const nProvision = env.opts.quick ? 6 : 20;
  const nExec = env.opts.quick ? 20 : 60;
  const image = env.sandboxSettings.image;
  const quota = env.sandboxSettings.workspaceMode === 'quota';
  const warmProvision: number[] = [];
  const provision: number[] = [];
  const createStart: number[] = [];
  const create: number[] = [];
  const start: number[] = [];
  let warmTaken = 0;

  // Warm containers take a workspace of their own with them, so hosts keep them only where workspaces are slots.
  const warmSkipped = quota ? undefined : 'workspaces are Docker volumes on this host (not root, or no loop devices): no warm containers';
  if (warmSkipped) log(`sandbox: warm provision skipped: ${warmSkipped}`);
  const warm = warmSkipped ? undefined : env.ownHands({ warmContainers: 1 });
  try {
    if (warm) await warm.start();
    // Sample -1 of each is a warm-up.
    for (let i = -1; i < nProvision; i++) {
      const ids = { warm: env.newSessionId('sbx'), cold: env.newSessionId('sbx'), bare: env.newSessionId('sbx') };
      if (warm) {
        await waitWarm(warm, image);
        const t0 = performance.now();
        const r = await warm.activities.provision(env.sandboxRef(ids.warm, DEFAULT_SHAPE));
        const t1 = performance.now();
        await waitWarm(warm, image);
        if (i >= 0) {
          warmProvision.push(tenth(t1 - t0));
          if (r.warm) warmTaken++;
        }
      }

      const t0 = performance.now();
      await env.sandbox.provision(env.sandboxRef(ids.cold, DEFAULT_SHAPE));
      const t1 = performance.now();

      const ref = env.sandboxRef(ids.bare, DEFAULT_SHAPE);
      const slot = env.hands.slots.prepare(ids.bare);
      if (quota) mkdirSync(slot.workspace, { recursive: true });
      else await env.docker.createVolume({ Name: slot.workspace, Labels: { [LABEL_MANAGED]: 'true', [LABEL_SESSION]: ids.bare } });
      const t2 = performance.now();
      const c = await env.docker.createContainer(containerSpec(ref, env.sandboxSettings, slot));
      const t3 = performance.now();
      await c.start();
      const t4 = performance.now();
      if (i >= 0) {
        provision.push(tenth(t1 - t0));
        create.push(tenth(t3 - t2));
        start.push(tenth(t4 - t3));
        createStart.push(tenth(t4 - t2));
      }
      if (warm) await warm.activities.removeSandbox(env.sandboxRef(ids.warm, DEFAULT_SHAPE));
      await env.sandbox.removeSandbox(env.sandboxRef(ids.cold, DEFAULT_SHAPE));
      await env.sandbox.removeSandbox(ref);
    }
  } finally {
    if (warm) await env.release(warm);
  }
  log(`sandbox: ${nProvision} provisions each warm${warm ? '' : ' (skipped)'}, cold, and bare create + start`);

  // Execute: the same trivial command three ways, interleaved, in one running sandbox.
  const id = env.newSessionId('sbx');
  const ref = env.sandboxRef(id);
  const execute: number[] = [];
  const cli: number[] = [];
  const api: number[] = [];
  try {
    await env.sandbox.provision(ref);
    const name = sandboxNames(id, env.sandboxSettings.scope).container;
    for (let i = -3; i < nExec; i++) {
      const t0 = performance.now();
      const r = await env.sandbox.execute({ sandbox: ref, tool_use_id: `bench_exec_${i + 3}`, name: 'bash', input: { command: COMMAND } });
      const t1 = performance.now();
      const a = await env.exec(name, ['bash', '-c', COMMAND]);
      const t2 = performance.now();
      const { stdout } = await execFileP('docker', ['exec', '-u', '1000:1000', name, 'bash', '-c', COMMAND]);
      const t3 = performance.now();
      if (r.is_error || !r.content.includes('hi') || stdout.trim() !== 'hi' || a.stdout.trim() !== 'hi')
        throw new Error(`unexpected output: execute=${JSON.stringify(r.content)} cli=${stdout} api=${a.stdout}`);
      if (i < 0) continue; // warm-up
      execute.push(tenth(t1 - t0));
      api.push(tenth(t2 - t1));
      cli.push(tenth(t3 - t2));
    }
  } finally {
    await env.sandbox.removeSandbox(ref);
  }
  log(`sandbox: ${nExec} executes, exec (API) and docker exec (CLI) each`);

  const s = {
    warm_provision: summarize(warmProvision),
    provision: summarize(provision),
    create_start: summarize(createStart),
    create: summarize(create),
    start: summarize(start),
    execute: summarize(execute),
    docker_exec_api: summarize(api),
    docker_exec_cli: summarize(cli),
  };
  const execRatio = s.execute.p50 / s.docker_exec_api.p50;
  const warmRatio = s.warm_provision.p50 / s.create_start.p50;
  const workspace = quota ? 'an ext4 image with a size limit, mounted' : 'a Docker volume';
  return {
    key: 'sandbox',
    title: '3. Sandbox latency',
    method:
      `${nProvision} sandboxes of the default shape one at a time, three ways interleaved: Tandem's provision on hands ` +
      `keeping one container warm (the bench waits until hands.load() shows it ready before each sample and until the ` +
      `next one is made after it); Tandem's provision cold (slot and workspace: ${workspace}; create, start, the ` +
      `toolbox dials the host's line); and bare Docker create + start of the same hardened spec on a slot made ` +
      `beforehand. Then \`${COMMAND}\` ${nExec} times in one running sandbox through Tandem's execute (one message on ` +
      `the toolbox's open line, no exec), a bare exec over the Docker API, and \`docker exec\` from the shell, ` +
      `interleaved.`,
    rows: [
      { metric: `execute \`${COMMAND}\` (toolbox line) p50 / p95`, value: p50p95(s.execute) },
      { metric: 'bare exec over the Docker API p50 / p95', value: p50p95(s.docker_exec_api) },
      { metric: `docker exec \`${COMMAND}\` from the shell p50 / p95`, value: p50p95(s.docker_exec_cli) },
      {
        metric: 'execute over the bare exec (API), p50',
        value: `${ratio(execRatio)} ${goal('≤ 10 ms and ≤ 0.15×', s.execute.p50 <= 10 && execRatio <= 0.15)}`,
      },
      { metric: 'execute over docker exec (CLI), p50', value: ratio(s.execute.p50 / s.docker_exec_cli.p50) },
      ...(warmSkipped
        ? [{ metric: 'provision with a warm container', value: `n/a: ${warmSkipped}` }]
        : [
            { metric: 'provision with a warm container p50 / p95', value: p50p95(s.warm_provision) },
            { metric: '  samples a warm container took on', value: `${warmTaken} of ${warmProvision.length}` },
          ]),
      { metric: 'provision, cold (slot, create, start, toolbox on the line) p50 / p95', value: p50p95(s.provision) },
      { metric: 'bare docker create + start p50 / p95', value: p50p95(s.create_start) },
      { metric: '  of which create / start, p50', value: `${ms(s.create.p50)} / ${ms(s.start.p50)}` },
      ...(warmSkipped
        ? []
        : [
            {
              metric: 'warm provision over bare create + start, p50',
              value: `${ratio(warmRatio)} ${goal('≤ 50 ms and ≤ 0.4×', s.warm_provision.p50 <= 50 && warmRatio <= 0.4)}`,
            },
          ]),
    ],
    data: {
      ...s,
      command: COMMAND,
      workspace_mode: env.sandboxSettings.workspaceMode,
      warm_taken: warmTaken,
      ...(warmSkipped ? { warm_skipped: warmSkipped } : {}),
      samples: { warm_provision: warmProvision, provision, create_start: createStart, create, start, execute, docker_exec_api: api, docker_exec_cli: cli },
    },
    panels: [
      {
        kind: 'strip',
        title: `Sandbox provisioning, ${nProvision} containers each, one at a time`,
        unit: 'ms',
        distributions: [
          ...(warmSkipped ? [] : [{ label: 'provision, warm (Tandem)', samples: warmProvision }]),
          { label: 'provision, cold (Tandem)', samples: provision },
          { label: 'docker create + start', samples: createStart },
        ],
      },
      {
        kind: 'strip',
        title: `Running \`${COMMAND}\` in a running sandbox, ${nExec} times each`,
        unit: 'ms',
        distributions: [
          { label: 'execute (toolbox line)', samples: execute },
          { label: 'exec (Docker API)', samples: api },
          { label: 'docker exec (shell)', samples: cli },
        ],
      },
    ],
  };
}
