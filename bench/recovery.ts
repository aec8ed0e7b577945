/**
 * 4. Recovery.
 *
 * Sandbox: a tool call runs `sleep` in the session's container; the bench `docker kill`s the container and times
 * until the session's next successful tool result (the activity fails with `Sandbox.Lost`, Temporal retries it,
 * the retry provisions a fresh container on the same workspace volume and runs the tool again; a marker file on the
 * volume makes the second run return at once).
 *
 * Worker: two worker processes serve one task queue. The bench SIGKILLs the worker that holds the session and
 * times until the session's next event written by the other worker, in two situations: the session is idle (the
 * bench sends a message right after the kill; the next event is `session.status_running`), and a tool call is
 * running on the killed worker (the next event is that tool's result, from the other worker).
 */
import type { SessionEvent } from '../src/log/events.js';
import type { ExecuteResult } from '../src/shared/types.js';
import { readHistory } from '../src/log/read.js';
import { reply, toolUse } from '../test/fakes/messages-server.js';
import { log, type BenchEnv, type WorkerProcess } from './lib/env.js';
import { ms, type Section } from './lib/section.js';
import { sleep, summarize } from './lib/stats.js';
import { until, waitForEvent } from './lib/wait.js';

const MARKER = '/workspace/.bench-attempt';
/** First run: leaves a marker and blocks; a run that finds the marker (after the kill) answers at once. */
const KILL_ME = `if [ -e ${MARKER} ]; then echo recovered; else touch ${MARKER}; sleep 120; fi`;

/** Runs the recovery measurements. */
export async function benchRecovery(env: BenchEnv, mainQueue: string): Promise<Section> {
  const nSandbox = env.opts.quick ? 2 : 5;
  const nIdle = env.opts.quick ? 1 : 3;
  const nTool = env.opts.quick ? 1 : 2;

  // --- docker kill of a sandbox ---------------------------------------------------------------------------------
  const main = env.tandem(mainQueue);
  const sandboxSamples: Array<{ session_id: string; to_tool_result_ms: number; retry_attempt_ms: number | null; lost_event: boolean }> = [];
  for (let i = 0; i < nSandbox; i++) {
    const id = env.newSessionId('dkill');
    env.route(id, (req) => ((req.body.messages?.length ?? 1) === 1 ? reply(toolUse('bash', { command: KILL_ME })) : reply('Recovered.')));
    await main.start({ agent: env.agent(id), message: 'Run the command.', sessionId: id });
    const container = env.containerName(id);
    await until(async () => (await env.exec(container, ['test', '-e', MARKER])).exitCode === 0, `the tool call in ${id}`);
    await sleep(200);
    const before = (await main.getEvents(id)).at(-1)?.id;
    const tKill = Date.now();
    await env.docker.getContainer(container).kill();
    const { event, seenAt } = await waitForEvent(main, id, (e) => e.type === 'agent.tool_result', before);
    const result = event as SessionEvent & { is_error?: boolean; content?: Array<{ text: string }> };
    if (result.is_error || !result.content?.[0]?.text.includes('recovered'))
      throw new Error(`${id}: tool result after the kill was not a success: ${JSON.stringify(result).slice(0, 500)}`);
    const events = await main.getEvents(id, { after: before });
    // The successful attempt's own duration: a fresh container on the same volume, then the tool.
    const retried = (await env.activityResults<ExecuteResult>(id, 'execute')).at(-1);
    sandboxSamples.push({
      session_id: id,
      to_tool_result_ms: seenAt - tKill,
      retry_attempt_ms: retried?.provisioned ? retried.duration_ms : null,
      lost_event: events.some((e) => e.type === 'sandbox.lost'),
    });
    log(`recovery: docker kill ${i + 1}/${nSandbox}: next successful tool result after ${ms(seenAt - tKill)}`);
    await env.temporal.workflow.getHandle(id).terminate('bench done');
    await env.sandbox.removeSandbox(env.sandboxRef(id));
  }

  // --- SIGKILL of a worker -----------------------------------------------------------------------------------------
  const queue = env.queue('failover');
  const tandem = env.tandem(queue);
  const workers: WorkerProcess[] = [await env.spawnWorker(queue), await env.spawnWorker(queue)];
  const replace = async (victim: WorkerProcess) => {
    workers.splice(workers.indexOf(victim), 1);
    workers.push(await env.spawnWorker(queue));
  };
  const holderOf = (identity: string | null | undefined, what: string) => {
    const w = env.workerByIdentity(identity);
    if (!w || !workers.includes(w)) throw new Error(`${what}: worker "${identity}" is not one of the bench's`);
    return w;
  };

  const idleSamples: Array<{ session_id: string; to_next_event_ms: number; next_event: string; new_worker: string }> = [];
  for (let i = 0; i < nIdle; i++) {
    const id = env.newSessionId('widle');
    env.route(id, () => reply('Here.'));
    await tandem.start({ agent: env.agent(id), message: 'Hello.', sessionId: id });
    await waitForEvent(tandem, id, (e) => e.type === 'session.status_idle');
    const history = await readHistory(env.temporal, id);
    const lastTask = history.filter((e) => e.workflowTaskCompletedEventAttributes).at(-1);
    const victim = holderOf(lastTask?.workflowTaskCompletedEventAttributes?.identity, `idle session ${id}`);
    const before = (await tandem.getEvents(id)).at(-1)?.id;
    const tKill = Date.now();
    await victim.kill('SIGKILL');
    await tandem.sendMessage(id, 'Are you still there?');
    const { event, seenAt } = await waitForEvent(tandem, id, (e) => e.type !== 'user.message', before);
    const after = await readHistory(env.temporal, id);
    const newWorker = after.filter((e) => e.workflowTaskCompletedEventAttributes).at(-1)?.workflowTaskCompletedEventAttributes?.identity ?? '?';
    idleSamples.push({ session_id: id, to_next_event_ms: seenAt - tKill, next_event: event.type, new_worker: newWorker });
    log(`recovery: worker SIGKILL, idle session ${i + 1}/${nIdle}: ${event.type} after ${ms(seenAt - tKill)}`);
    await env.temporal.workflow.getHandle(id).terminate('bench done');
    await replace(victim);
  }

  const toolSamples: Array<{ session_id: string; to_tool_result_ms: number }> = [];
  for (let i = 0; i < nTool; i++) {
    const id = env.newSessionId('wtool');
    env.route(id, (req) =>
      (req.body.messages?.length ?? 1) === 1 ? reply(toolUse('bash', { command: 'sleep 3; echo slept' })) : reply('Done.'),
    );
    await tandem.start({ agent: env.agent(id), message: 'Sleep a little.', sessionId: id });
    const handle = env.temporal.workflow.getHandle(id);
    const identity = await until(async () => {
      const d = await handle.describe();
      const pending = d.raw.pendingActivities?.find((a) => a.activityType?.name === 'execute' && a.lastWorkerIdentity);
      return pending?.lastWorkerIdentity ?? undefined;
    }, `the tool call of ${id}`);
    const victim = holderOf(identity, `tool call of ${id}`);
    await sleep(300);
    const before = (await tandem.getEvents(id)).at(-1)?.id;
    const tKill = Date.now();
    await victim.kill('SIGKILL');
    const { event, seenAt } = await waitForEvent(tandem, id, (e) => e.type === 'agent.tool_result', before);
    const result = event as SessionEvent & { is_error?: boolean; content?: Array<{ text: string }> };
    if (result.is_error || !result.content?.[0]?.text.includes('slept'))
      throw new Error(`${id}: tool result after the worker kill was not a success: ${JSON.stringify(result).slice(0, 500)}`);
    toolSamples.push({ session_id: id, to_tool_result_ms: seenAt - tKill });
    log(`recovery: worker SIGKILL during a tool call ${i + 1}/${nTool}: tool result after ${ms(seenAt - tKill)}`);
    await handle.terminate('bench done');
    await env.sandbox.removeSandbox(env.sandboxRef(id));
    await replace(victim);
  }
  await Promise.all(workers.map((w) => w.kill('SIGTERM')));

  const sandboxKill = summarize(sandboxSamples.map((s) => s.to_tool_result_ms));
  const reprovision = summarize(sandboxSamples.map((s) => s.retry_attempt_ms).filter((v): v is number => v !== null));
  const idle = summarize(idleSamples.map((s) => s.to_next_event_ms));
  const tool = summarize(toolSamples.map((s) => s.to_tool_result_ms));
  return {
    key: 'recovery',
    title: '4. Recovery',
    method:
      `Sandbox: docker kill of the container while a tool call runs in it, ${nSandbox} times, until the client sees the ` +
      `next successful tool result. Worker: two worker processes on one queue; SIGKILL of the worker holding the ` +
      `session, until the client sees the session's next event from the other worker: ${nIdle}× with the session idle ` +
      `(a message sent right after the kill), ${nTool}× during a 3 s tool call.`,
    rows: [
      { metric: 'docker kill → next successful tool result p50 / max', value: `${ms(sandboxKill.p50)} / ${ms(sandboxKill.max)}` },
      { metric: '  of which: the retry (fresh container + tool), p50', value: ms(reprovision.p50) },
      { metric: '  of which: detection + retry backoff, p50', value: ms(sandboxKill.p50 - reprovision.p50) },
      { metric: 'worker SIGKILL (idle session) → next event p50 / max', value: `${ms(idle.p50)} / ${ms(idle.max)}` },
      { metric: 'worker SIGKILL (tool call running) → tool result p50 / max', value: `${ms(tool.p50)} / ${ms(tool.max)}` },
    ],
    data: {
      sandbox_kill: { to_tool_result: sandboxKill, retry_attempt: reprovision, samples: sandboxSamples },
      worker_kill_idle: { to_next_event: idle, samples: idleSamples },
      worker_kill_tool: { to_tool_result: tool, samples: toolSamples },
    },
    panels: [
      {
        kind: 'strip',
        title: 'Recovery: from the kill until the session goes on',
        unit: 's',
        distributions: [
          { label: 'docker kill → tool result', samples: sandboxSamples.map((s) => s.to_tool_result_ms / 1000) },
          { label: 'worker kill, idle → next event', samples: idleSamples.map((s) => s.to_next_event_ms / 1000) },
          { label: 'worker kill, in tool → result', samples: toolSamples.map((s) => s.to_tool_result_ms / 1000) },
        ],
      },
    ],
  };
}
