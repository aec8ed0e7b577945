/**
 * 3. Sandbox latency: Tandem's `provision` (volume, create, start, toolbox ready) and the bare Docker create +
 * start of the same hardened spec; `execute` of a trivial command through the toolbox, against the same command by
 * `docker exec` from the shell (the floor a user sees) and by a bare exec over the Docker API.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { containerSpec, LABEL_MANAGED, LABEL_SESSION, sandboxNames } from '../src/activities/sandbox/docker.js';
import { log, type BenchEnv } from './lib/env.js';
import { p50p95, type Section } from './lib/section.js';
import { summarize } from './lib/stats.js';

const execFileP = promisify(execFile);
const COMMAND = 'echo hi';

/** Measures provisioning and exec latency, one call at a time. */
export async function benchSandbox(env: BenchEnv): Promise<Section> {
  const nProvision = env.opts.quick ? 6 : 20;
  const nExec = env.opts.quick ? 20 : 60;
  const provision: number[] = [];
  const createStart: number[] = [];
  const create: number[] = [];
  const start: number[] = [];

  // Provision (Tandem's activity) and the bare create + start alternate, one container at a time.
  const warm = env.newSessionId('sbx');
  await env.sandbox.provision(env.sandboxRef(warm));
  await env.sandbox.removeSandbox(env.sandboxRef(warm));
  for (let i = 0; i < nProvision; i++) {
    const a = env.newSessionId('sbx');
    const t0 = Date.now();
    await env.sandbox.provision(env.sandboxRef(a));
    provision.push(Date.now() - t0);

    const b = env.newSessionId('sbx');
    const ref = env.sandboxRef(b);
    const slot = env.hands.slots.prepare(b);
    await env.docker.createVolume({ Name: slot.workspace, Labels: { [LABEL_MANAGED]: 'true', [LABEL_SESSION]: b } });
    const t1 = Date.now();
    const c = await env.docker.createContainer(containerSpec(ref, env.sandboxSettings, slot));
    const t2 = Date.now();
    await c.start();
    const t3 = Date.now();
    create.push(t2 - t1);
    start.push(t3 - t2);
    createStart.push(t3 - t1);
    await env.sandbox.removeSandbox(env.sandboxRef(a));
    await env.sandbox.removeSandbox(ref);
  }
  log(`sandbox: ${nProvision} provisions and ${nProvision} bare create + start`);

  // Execute: the same trivial command three ways, interleaved, in one running sandbox.
  const id = env.newSessionId('sbx');
  const ref = env.sandboxRef(id);
  await env.sandbox.provision(ref);
  const name = sandboxNames(id, env.sandboxSettings.scope).container;
  const execute: number[] = [];
  const cli: number[] = [];
  const api: number[] = [];
  for (let i = -3; i < nExec; i++) {
    const t0 = Date.now();
    const r = await env.sandbox.execute({ sandbox: ref, tool_use_id: `bench_exec_${i + 3}`, name: 'bash', input: { command: COMMAND } });
    const t1 = Date.now();
    const { stdout } = await execFileP('docker', ['exec', '-u', '1000:1000', name, 'bash', '-c', COMMAND]);
    const t2 = Date.now();
    const a = await env.exec(name, ['bash', '-c', COMMAND]);
    const t3 = Date.now();
    if (r.is_error || !r.content.includes('hi') || stdout.trim() !== 'hi' || a.stdout.trim() !== 'hi')
      throw new Error(`unexpected output: execute=${JSON.stringify(r.content)} cli=${stdout} api=${a.stdout}`);
    if (i < 0) continue; // warm-up
    execute.push(t1 - t0);
    cli.push(t2 - t1);
    api.push(t3 - t2);
  }
  await env.sandbox.removeSandbox(ref);
  log(`sandbox: ${nExec} executes, docker exec (CLI) and exec (API) each`);

  const s = {
    provision: summarize(provision),
    create_start: summarize(createStart),
    create: summarize(create),
    start: summarize(start),
    execute: summarize(execute),
    docker_exec_cli: summarize(cli),
    docker_exec_api: summarize(api),
  };
  return {
    key: 'sandbox',
    title: '3. Sandbox latency',
    method:
      `${nProvision} sandboxes one at a time: Tandem's provision (volume + create + start + toolbox ready) and, on ` +
      `another container of the same hardened spec, bare Docker create + start. Then \`${COMMAND}\` ${nExec} times in one ` +
      `running sandbox through Tandem's execute (toolbox, persistent bash), \`docker exec\` from the shell, and a bare ` +
      `exec over the Docker API, interleaved.`,
    rows: [
      { metric: 'provision (create + start + toolbox ready) p50 / p95', value: p50p95(s.provision) },
      { metric: 'bare docker create + start p50 / p95', value: p50p95(s.create_start) },
      { metric: '  of which create / start, p50', value: `${Math.round(s.create.p50)} ms / ${Math.round(s.start.p50)} ms` },
      { metric: `execute \`${COMMAND}\` p50 / p95`, value: p50p95(s.execute) },
      { metric: `docker exec \`${COMMAND}\` from the shell p50 / p95 (floor)`, value: p50p95(s.docker_exec_cli) },
      { metric: `exec over the Docker API p50 / p95`, value: p50p95(s.docker_exec_api) },
      { metric: 'execute over docker exec (CLI), p50', value: `${(s.execute.p50 / s.docker_exec_cli.p50).toFixed(2)}×` },
    ],
    data: { ...s, command: COMMAND, samples: { provision, create_start: createStart, create, start, execute, docker_exec_cli: cli, docker_exec_api: api } },
    panels: [
      {
        kind: 'strip',
        title: `Sandbox provisioning, ${nProvision} containers one at a time`,
        unit: 'ms',
        distributions: [
          { label: 'provision (Tandem)', samples: provision },
          { label: 'docker create + start', samples: createStart },
        ],
      },
      {
        kind: 'strip',
        title: `Running \`${COMMAND}\` in a running sandbox, ${nExec} times each`,
        unit: 'ms',
        distributions: [
          { label: 'execute (Tandem toolbox)', samples: execute },
          { label: 'docker exec (shell)', samples: cli },
          { label: 'exec (Docker API)', samples: api },
        ],
      },
    ],
  };
}
