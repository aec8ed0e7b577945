/**
 * 9. Many hands: N sessions with three tool calls each, spread over two hands hosts by placement; one host dies in
 * the middle. Reported: the time until every session is idle again, where they ran, how many were moved and had
 * their workspace restored, and whether every log is complete (three good tool results, and the file the calls
 * build holds every step exactly once).
 *
 * Each session writes a note, appends to it in a slow call (`sleep 6`), and appends again. Host B (the bench's
 * second engine) dies, with its process and its containers, once every session placed on it has taken its first
 * snapshot: most are then in their slow call, and each goes on on host A from that snapshot.
 */
import type { SessionEvent } from '../src/log/events.js';
import type { SandboxConfig } from '../src/shared/types.js';
import { reply, toolUse, type RecordedRequest } from '../test/fakes/messages-server.js';
import { log, type BenchEnv } from './lib/env.js';
import { HandsHosts, HOST_A, HOST_B } from './lib/hands-hosts.js';
import { ms, type Section } from './lib/section.js';
import { pool, summarize } from './lib/stats.js';
import { until } from './lib/wait.js';

const SHAPE: SandboxConfig = { idle_timeout_s: 600 };

/** The three calls of session `i`, then a text reply. */
function script(i: number) {
  return (req: RecordedRequest) => {
    const calls = (req.body.messages ?? []).filter((m) => m.role === 'assistant').length;
    if (calls === 0) return reply(toolUse('write', { file_path: '/workspace/notes.txt', content: `job ${i} step 1\n` }, `tu_${i}_1`));
    if (calls === 1) return reply(toolUse('bash', { command: 'sleep 6; echo step 2 >> notes.txt; cat notes.txt' }, `tu_${i}_2`));
    if (calls === 2) return reply(toolUse('bash', { command: 'echo step 3 >> notes.txt; cat notes.txt' }, `tu_${i}_3`));
    return reply('finished');
  };
}

/** Runs N sessions over two hosts and kills one in the middle. */
export async function benchManyHands(env: BenchEnv): Promise<Section> {
  const n = env.opts.quick ? 8 : 20;
  const image = env.sandboxSettings.image;
  const hosts = await HandsHosts.start(env, 'manyhands');
  const tandem = env.tandem(hosts.queue);
  const ids = Array.from({ length: n }, () => env.newSessionId('hands'));
  try {
    await Promise.all([hosts.startHost('a'), hosts.startHost('b')]);
    await Promise.all([hosts.waitReady('a', image), hosts.waitReady('b', image)]);
    ids.forEach((id, i) => env.route(id, script(i)));

    const t0 = Date.now();
    const started = new Map<string, number>();
    await pool(ids, 10, async (id) => {
      started.set(id, Date.now());
      await tandem.start({ agent: env.agent(id, SHAPE), message: `Job ${ids.indexOf(id)}.`, sessionId: id });
    });
    const placed = await until(
      async () => {
        const hs = await Promise.all(ids.map(async (id) => (await tandem.getSession(id)).sandboxes[0]?.host));
        return hs.every(Boolean) ? (hs as string[]) : undefined;
      },
      'every session placed',
      300_000,
      1000,
    );
    const onB = ids.filter((_, i) => placed[i] === HOST_B);
    log(`many-hands: ${n} sessions placed, ${n - onB.length} on ${HOST_A}, ${onB.length} on ${HOST_B}`);

    // B dies once every session on it has its first snapshot (so each has files to come back with).
    let killAt: number | undefined;
    let inSlowCall = 0;
    if (onB.length > 0) {
      await until(
        async () => (await Promise.all(onB.map(async (id) => Boolean((await tandem.getSession(id)).snapshot)))).every(Boolean),
        `every session on ${HOST_B} snapshotted`,
        300_000,
        250,
      );
      // How many were in their slow call at that moment (its tool use logged, its result not yet).
      inSlowCall = (
        await Promise.all(
          onB.map(async (id) => {
            const i = ids.indexOf(id);
            const events = await tandem.getEvents(id);
            const has = (type: string, tu: string) => events.some((e) => e.type === type && e.tool_use_id === tu);
            return has('agent.tool_use', `tu_${i}_2`) && !has('agent.tool_result', `tu_${i}_2`);
          }),
        )
      ).filter(Boolean).length;
      killAt = Date.now();
      await hosts.killB();
      log(`many-hands: ${HOST_B} killed at ${ms(killAt - t0)} (${inSlowCall} of its ${onB.length} sessions in their slow call)`);
    }

    const idleAt = new Map<string, number>();
    await until(
      async () => {
        await Promise.all(
          ids
            .filter((id) => !idleAt.has(id))
            .map(async (id) => {
              const s = await tandem.getSession(id);
              if (s.status === 'idle' && s.turn >= 4) idleAt.set(id, Date.now());
            }),
        );
        return idleAt.size === ids.length;
      },
      'every session idle after its three calls',
      600_000,
      500,
    );
    const tAll = Math.max(...idleAt.values());
    log(`many-hands: all ${n} idle after ${ms(tAll - t0)}`);

    // Every log: three good tool results; the last shows the file with each step once; who was moved and restored.
    const perSession = await Promise.all(
      ids.map(async (id, i) => {
        const events = await tandem.getEvents(id);
        const results = events.filter((e) => e.type === 'agent.tool_result') as Array<SessionEvent & { is_error?: boolean; content?: Array<{ text: string }> }>;
        const last = results.at(-1)?.content?.[0]?.text ?? '';
        const complete =
          results.length === 3 && results.every((r) => !r.is_error) && new RegExp(`(^|\\n)job ${i} step 1\\nstep 2\\nstep 3$`).test(last);
        return {
          session_id: id,
          placed_on: placed[i]!,
          ended_on: (await tandem.getSession(id)).sandboxes[0]?.host ?? null,
          tool_results: results.length,
          good_tool_results: results.filter((r) => !r.is_error).length,
          complete,
          moved: events.some((e) => e.type === 'sandbox.lost' && (e.error as { type?: string } | undefined)?.type === 'Sandbox.HostLost'),
          restored: events.some((e) => e.type === 'sandbox.restored'),
          warm_provisions: events.filter((e) => e.type === 'sandbox.provisioned' && (e as { warm?: boolean }).warm === true).length,
          to_idle_ms: idleAt.get(id)! - started.get(id)!,
        };
      }),
    );
    const complete = perSession.filter((s) => s.complete).length;
    const moved = perSession.filter((s) => s.moved);
    const restored = perSession.filter((s) => s.restored);
    const resultsTotal = perSession.reduce((a, s) => a + s.tool_results, 0);
    const goodTotal = perSession.reduce((a, s) => a + s.good_tool_results, 0);
    const warm = perSession.reduce((a, s) => a + s.warm_provisions, 0);
    const perSessionSummary = summarize(perSession.map((s) => s.to_idle_ms));
    if (complete !== n) log(`many-hands: ${n - complete} session(s) with an incomplete log: ${perSession.filter((s) => !s.complete).map((s) => s.session_id).join(', ')}`);

    return {
      key: 'many-hands',
      title: '9. Many hands: sessions over two hosts, one dies',
      method:
        `${n} sessions started at once (client concurrency 10) on two hands hosts (A on this machine's engine, B on a ` +
        `second dockerd) and one brain worker, placed by the hosts themselves (warm containers first, then the least ` +
        `loaded); each writes a note, appends to it in a call that sleeps 6 s, and appends again. Host B (process, ` +
        `engine, containers) is SIGKILLed once every session on it has its first snapshot. Timed from the first ` +
        `start() until every session is idle after its three calls; then every log is read.`,
      rows: [
        { metric: 'start → every session idle (three calls each)', value: ms(tAll - t0) },
        { metric: '  host B killed at', value: killAt ? `${ms(killAt - t0)} (${inSlowCall} of its sessions in their slow call)` : 'n/a: no session was placed on B' },
        { metric: '  one session, start → idle p50 / max', value: `${ms(perSessionSummary.p50)} / ${ms(perSessionSummary.max)}` },
        { metric: `sessions placed on ${HOST_A} / ${HOST_B}`, value: `${n - onB.length} / ${onB.length}` },
        { metric: 'sessions moved to A / of them with the workspace restored', value: `${moved.length} / ${restored.length}` },
        { metric: 'provisions a warm container took on', value: `${warm} of ${n + moved.length}` },
        { metric: 'complete logs (3 good tool results, every step once in the file)', value: `${complete} of ${n} (${goodTotal} of ${resultsTotal} tool results good)` },
      ],
      data: {
        sessions: n,
        all_idle_ms: tAll - t0,
        kill_at_ms: killAt ? killAt - t0 : null,
        in_slow_call_at_kill: inSlowCall,
        placed: { [HOST_A]: n - onB.length, [HOST_B]: onB.length },
        moved: moved.length,
        restored: restored.length,
        warm_provisions: warm,
        complete_logs: complete,
        tool_results: { total: resultsTotal, good: goodTotal },
        session_to_idle: perSessionSummary,
        container_processes_killed_with_host_b: hosts.orphansKilled,
        per_session: perSession,
      },
      panels: [
        {
          kind: 'strip',
          title: `Many hands: ${n} sessions over two hosts, one killed; start → idle per session (s)`,
          unit: 's',
          distributions: [
            { label: `stayed on ${HOST_A}`, samples: perSession.filter((s) => s.placed_on === HOST_A).map((s) => s.to_idle_ms / 1000) },
            { label: `on ${HOST_B}, not moved`, samples: perSession.filter((s) => s.placed_on === HOST_B && !s.moved).map((s) => s.to_idle_ms / 1000) },
            { label: `moved from ${HOST_B} to ${HOST_A}`, samples: moved.map((s) => s.to_idle_ms / 1000) },
          ],
        },
      ],
    };
  } finally {
    await Promise.all(ids.map((id) => env.temporal.workflow.getHandle(id).terminate('bench done').catch(() => undefined)));
    await hosts.close();
  }
}
