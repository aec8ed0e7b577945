/**
 * 8. Losing a hands host: a session's tool call runs on hands host B when B dies (its process, its Docker engine
 * and its containers' processes, SIGKILLed); the bench times from the kill until the client sees the session's next
 * good tool result: the same call run again on host A, in a sandbox whose workspace was restored from the latest
 * snapshot.
 *
 * Each sample places its session on B for sure: host A's process is stopped while the session's first tool call is
 * placed, and started once the sandbox is on B. That first call waits (polling a file in its workspace) until host A
 * has announced itself with its warm containers ready; the bench then drops the file in (an exec on B's engine), the
 * call writes a file and ends, the host snapshots the workspace, and the model asks for the second call, `sleep 2`
 * (it also prints the file from the first call). As soon as that call has started on B, B dies.
 */
import type { SessionEvent } from '../src/log/events.js';
import type { SandboxConfig } from '../src/shared/types.js';
import { sandboxNames } from '../src/activities/sandbox/docker.js';
import { reply, toolUse } from '../test/fakes/messages-server.js';
import { log, type BenchEnv } from './lib/env.js';
import { HandsHosts, HOST_A, HOST_B } from './lib/hands-hosts.js';
import { goal, ms, type Section } from './lib/section.js';
import { summarize } from './lib/stats.js';
import { followUntil, until } from './lib/wait.js';

/** The default container shape, so that a host's warm containers fit the session's sandbox. */
const SHAPE: SandboxConfig = { idle_timeout_s: 600 };
const GATE = '/workspace/.bench-go';
const FIRST = `while [ ! -e ${GATE} ]; do sleep 0.05; done; echo from-the-first-call > /workspace/first.txt; echo ready`;
const SECOND = 'sleep 2; cat /workspace/first.txt; echo slept';
const GOAL_MS = 15_000;

/** One sample. */
interface Sample {
  session_id: string;
  /** Kill → the client sees the next good tool result. */
  to_tool_result_ms: number;
  /** Kill → `sandbox.lost` (the session noticed the host was gone). */
  to_lost_ms: number | null;
  /** Kill → `sandbox.provisioned` on the other host. */
  to_provisioned_ms: number | null;
  /** The provision on the other host: a warm container took the sandbox on. */
  warm: boolean;
  restored: { files: number; bytes: number; duration_ms: number } | null;
  host_after: string | undefined;
}

/** Measures host loss → next good tool result, `n` times. */
export async function benchHostLoss(env: BenchEnv): Promise<Section> {
  const n = env.opts.quick ? 1 : 3;
  const image = env.sandboxSettings.image;
  const hosts = await HandsHosts.start(env, 'hostloss');
  const tandem = env.tandem(hosts.queue);
  const samples: Sample[] = [];
  try {
    for (let i = 0; i < n; i++) {
      // Only B may take the placement: A is stopped (its announcement withdrawn) until the sandbox is on B.
      if (hosts.running('a')) await hosts.stopHost('a');
      await hosts.clearSlots('a');
      await hosts.startHost('b');
      await hosts.waitReady('b', image);

      const id = env.newSessionId('hostloss');
      env.route(id, (req) => {
        const calls = (req.body.messages ?? []).filter((m) => m.role === 'assistant').length;
        if (calls === 0) return reply(toolUse('bash', { command: FIRST }, 'tu_first'));
        if (calls === 1) return reply(toolUse('bash', { command: SECOND }, 'tu_second'));
        return reply('Done.');
      });
      await tandem.start({ agent: env.agent(id, SHAPE), message: 'Work on two hosts.', sessionId: id });
      const handle = env.temporal.workflow.getHandle(id);
      try {
        const host = await until(async () => (await tandem.getSession(id)).sandboxes[0]?.host, `the sandbox of ${id} placed`, 120_000, 200);
        if (host !== HOST_B) throw new Error(`${id} was placed on ${host}, not on ${HOST_B}`);
        await hosts.startHost('a');
        await hosts.waitReady('a', image);
        const container = sandboxNames(id, env.workerScope).container;
        const touched = await env.exec(container, ['touch', GATE], undefined, hosts.dockerB);
        if (touched.exitCode !== 0) throw new Error(`could not open the gate of ${id}: ${touched.stderr}`);

        // The second call has started on B (the first one is done and snapshotted).
        const identityB = hosts.identity('b');
        await until(
          async () => {
            const events = await tandem.getEvents(id);
            if (!events.some((e) => e.type === 'sandbox.snapshot') || !events.some((e) => e.type === 'agent.tool_use' && e.tool_use_id === 'tu_second'))
              return false;
            const d = await handle.describe();
            return d.raw.pendingActivities?.some((a) => a.activityType?.name === 'execute' && a.lastWorkerIdentity === identityB) ?? false;
          },
          `the second call of ${id} running on ${HOST_B}`,
          120_000,
        );
        const before = (await tandem.getEvents(id)).at(-1)?.id;
        const tKill = Date.now();
        await hosts.killB();
        const { event, seenAt, firstSeen, events } = await followUntil(
          tandem,
          id,
          (e) => e.type === 'agent.tool_result' && e.tool_use_id === 'tu_second',
          before,
          180_000,
        );
        const result = event as SessionEvent & { is_error?: boolean; content?: Array<{ text: string }> };
        const text = result.content?.[0]?.text ?? '';
        if (result.is_error || !text.includes('from-the-first-call') || !text.includes('slept'))
          throw new Error(`${id}: the tool result after the host died was not a good one: ${JSON.stringify(result).slice(0, 600)}`);
        const provisioned = events.find((e) => e.type === 'sandbox.provisioned') as (SessionEvent & { warm?: boolean }) | undefined;
        const restored = events.find((e) => e.type === 'sandbox.restored') as (SessionEvent & Sample['restored']) | undefined;
        const since = (type: string) => (firstSeen.has(type) ? firstSeen.get(type)! - tKill : null);
        const sample: Sample = {
          session_id: id,
          to_tool_result_ms: seenAt - tKill,
          to_lost_ms: since('sandbox.lost'),
          to_provisioned_ms: since('sandbox.provisioned'),
          warm: provisioned?.warm === true,
          restored: restored ? { files: restored.files, bytes: restored.bytes, duration_ms: restored.duration_ms } : null,
          host_after: (await tandem.getSession(id)).sandboxes[0]?.host,
        };
        samples.push(sample);
        log(
          `host-loss: ${i + 1}/${n}: good tool result ${ms(sample.to_tool_result_ms)} after the kill (host lost at ` +
            `${ms(sample.to_lost_ms ?? NaN)}, provisioned on ${sample.host_after} at ${ms(sample.to_provisioned_ms ?? NaN)}` +
            `${sample.warm ? ', warm' : ''}${sample.restored ? `, ${sample.restored.files} file(s) restored` : ''})`,
        );
      } finally {
        await handle.terminate('bench done').catch(() => undefined);
      }
      await hosts.stopHost('a');
      await env.removeBenchSandboxes();
      await hosts.clearSlots('a');
    }
  } finally {
    await hosts.close();
  }

  const total = summarize(samples.map((s) => s.to_tool_result_ms));
  const lost = summarize(samples.flatMap((s) => (s.to_lost_ms === null ? [] : [s.to_lost_ms])));
  const provisioned = summarize(samples.flatMap((s) => (s.to_provisioned_ms === null ? [] : [s.to_provisioned_ms])));
  const restore = summarize(samples.flatMap((s) => (s.restored ? [s.restored.duration_ms] : [])));
  return {
    key: 'host-loss',
    title: '8. Losing a hands host',
    method:
      `Two hands hosts as worker processes (A on this machine's engine, B on a second dockerd of the bench's own), one ` +
      `brain worker, a shared snapshot directory; each host keeps its warm containers. ${n} session(s), each placed ` +
      `on B (A started only after that), runs a first call (snapshotted), then \`${SECOND}\`; once that call has ` +
      `started, B's process, its engine and its containers are SIGKILLed. Timed from the kill until the client sees ` +
      `the session's next good tool result: the call run again on A, on the workspace restored from the snapshot.`,
    rows: [
      {
        metric: 'host killed → next good tool result p50 / max',
        value: `${ms(total.p50)} / ${ms(total.max)} ${goal(`≤ ${GOAL_MS / 1000} s at p50`, total.p50 <= GOAL_MS)}`,
      },
      { metric: '  kill → sandbox.lost in the log (the host noticed gone), p50', value: ms(lost.p50) },
      { metric: '  kill → sandbox provisioned on host A, p50', value: ms(provisioned.p50) },
      { metric: '  of that, the restore of the snapshot (host A), p50', value: ms(restore.p50) },
      {
        metric: '  provisions on A that a warm container took on',
        value: `${samples.filter((s) => s.warm).length} of ${samples.length}`,
      },
      {
        metric: '  sessions on host A afterwards, with their files restored',
        value: `${samples.filter((s) => s.host_after === HOST_A && s.restored).length} of ${samples.length}`,
      },
    ],
    data: {
      to_tool_result: total,
      to_lost: lost,
      to_provisioned: provisioned,
      restore,
      second_call: SECOND,
      container_processes_killed_with_host_b: hosts.orphansKilled,
      samples,
    },
    panels: [
      {
        kind: 'strip',
        title: 'Losing a hands host: from the kill until the session goes on (s)',
        unit: 's',
        distributions: [
          { label: 'kill → sandbox.lost', samples: samples.flatMap((s) => (s.to_lost_ms === null ? [] : [s.to_lost_ms / 1000])) },
          { label: 'kill → provisioned on A', samples: samples.flatMap((s) => (s.to_provisioned_ms === null ? [] : [s.to_provisioned_ms / 1000])) },
          { label: 'kill → good tool result', samples: samples.map((s) => s.to_tool_result_ms / 1000) },
        ],
      },
    ],
  };
}
