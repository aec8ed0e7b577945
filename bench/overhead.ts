/**
 * 2. Orchestration overhead per step: a 20-step tool-using session on Tandem against the same scripted model and the
 * same sandbox driven by a plain in-process loop (the SDK's stream, then the sandbox's `execute`, in a `for` loop:
 * what a user writes without Temporal). Each step is one model call that asks for `bash`, and one tool call; a
 * 21st model call ends the turn.
 */
import { setMaxListeners } from 'node:events';
import Anthropic from '@anthropic-ai/sdk';
import { builtinDefinitions } from '../src/activities/model.js';
import { decodeJsonPayload, readHistory } from '../src/log/read.js';
import type { ExecuteResult } from '../src/shared/types.js';
import type { RecordedRequest } from '../test/fakes/messages-server.js';
import { reply, toolUse } from '../test/fakes/messages-server.js';
import { log, type BenchEnv } from './lib/env.js';
import { ms, p50p95, type Section } from './lib/section.js';
import { summarize, type Summary } from './lib/stats.js';

const STEPS = 20;
const PROMPT = `Run ${STEPS} small steps.`;

/** Step k of the script: `bash echo step k` for the first STEPS calls, then the final answer. */
function stepReply(req: RecordedRequest) {
  const k = ((req.body.messages?.length ?? 1) - 1) / 2;
  return k < STEPS ? reply(toolUse('bash', { command: `echo step ${k}` })) : reply(`All ${STEPS} steps done.`);
}

/** One session's wall time and the gaps between its steps. */
interface Run {
  wall: number;
  /** From the model's answer to the start of the tool call, per step. */
  modelToTool: number[];
  /** From the end of the tool call to the next request reaching the model, per step. */
  toolToModel: number[];
  /** The workspace snapshot after each tool turn: in the call's execute, or an activity of its own. */
  snapshot: number[];
}

const eventMs = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) =>
  t ? Number(t.seconds) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : Number.NaN;

/** Measures Tandem and the plain loop alternately. */
export async function benchOverhead(env: BenchEnv, queue: string): Promise<Section> {
  const reps = env.opts.quick ? 2 : 5;
  const tandem = env.tandem(queue);
  const anthropic = new Anthropic({ maxRetries: 0, apiKey: 'bench-key', baseURL: env.model.url });
  const tools = [...builtinDefinitions.values()];

  /** Arrival times of a session's model requests at the scripted server. */
  const arrivals = (id: string) => env.model.requests.filter((r) => r.rawBody.includes(id)).map((r) => r.receivedAt);

  async function onTandem(): Promise<Run> {
    const id = env.newSessionId('steps');
    env.route(id, stepReply);
    const abort = new AbortController();
    setMaxListeners(0, abort.signal); // the client adds one listener per long poll
    const t0 = Date.now();
    await tandem.start({ agent: env.agent(id), message: PROMPT, sessionId: id });
    let toolResults = 0;
    for await (const e of tandem.followEvents(id, { signal: abort.signal })) {
      if (e.type === 'agent.tool_result') {
        if ((e as { is_error?: boolean }).is_error) throw new Error(`tool error in ${id}: ${JSON.stringify(e)}`);
        toolResults++;
      }
      if (e.type === 'session.status_idle') break;
    }
    const wall = Date.now() - t0;
    abort.abort();
    if (toolResults !== STEPS) throw new Error(`${id}: ${toolResults} tool results, expected ${STEPS}`);
    // The gaps between steps, from the history's event times and the scripted server's arrival times.
    const history = await readHistory(env.temporal, id);
    const scheduled = new Map<string, { type: string; at: number }>();
    const modelDone: number[] = [];
    const tools: Array<{ start: number; end: number }> = [];
    const snapshot: number[] = [];
    for (const e of history) {
      const s = e.activityTaskScheduledEventAttributes;
      if (s) scheduled.set(String(e.eventId), { type: s.activityType?.name ?? '', at: eventMs(e.eventTime) });
      const c = e.activityTaskCompletedEventAttributes;
      const from = c ? scheduled.get(String(c.scheduledEventId)) : undefined;
      if (from?.type === 'callModel') modelDone.push(eventMs(e.eventTime));
      if (from?.type === 'snapshotSandbox') snapshot.push(eventMs(e.eventTime) - from.at);
      if (from?.type === 'execute') {
        const r = decodeJsonPayload(c!.result!.payloads![0]!) as ExecuteResult;
        // The call ran for duration_ms; a snapshot taken with it came after, before the activity completed.
        const end = eventMs(e.eventTime) - (r.snapshot?.duration_ms ?? 0);
        tools.push({ start: end - r.duration_ms, end });
        if (r.snapshot) snapshot.push(r.snapshot.duration_ms);
      }
    }
    const requests = arrivals(id);
    await env.temporal.workflow.getHandle(id).terminate('bench done');
    await env.sandbox.removeSandbox(env.sandboxRef(id));
    return {
      wall,
      modelToTool: tools.map((t, k) => t.start - modelDone[k]!),
      toolToModel: tools.map((t, k) => requests[k + 1]! - t.end),
      snapshot,
    };
  }

  async function plainLoop(): Promise<Run> {
    const id = env.newSessionId('plain');
    env.route(id, stepReply);
    const agent = env.agent(id);
    const ref = env.sandboxRef(id);
    const messages: Anthropic.Messages.MessageParam[] = [{ role: 'user', content: PROMPT }];
    let provisioned = false;
    let toolResults = 0;
    const modelToTool: number[] = [];
    const toolEnds: number[] = [];
    const t0 = Date.now();
    for (;;) {
      const message = await anthropic.messages
        .stream({ model: 'claude-sonnet-5-5', max_tokens: 8192, system: agent.system!, tools: tools as Anthropic.Messages.Tool[], messages })
        .finalMessage();
      const modelDone = Date.now();
      messages.push({ role: 'assistant', content: message.content });
      const uses = message.content.filter((b): b is Anthropic.Messages.ToolUseBlock => b.type === 'tool_use');
      if (uses.length === 0) break;
      if (!provisioned) {
        await env.sandbox.provision(ref);
        provisioned = true;
      }
      const results: Anthropic.Messages.ToolResultBlockParam[] = [];
      for (const u of uses) {
        modelToTool.push(Date.now() - modelDone);
        const r = await env.sandbox.execute({ sandbox: ref, tool_use_id: u.id, name: u.name, input: u.input as Record<string, unknown> });
        if (r.is_error) throw new Error(`tool error in the plain loop: ${r.content}`);
        results.push({ type: 'tool_result', tool_use_id: u.id, content: r.content });
        toolResults++;
        toolEnds.push(Date.now());
      }
      messages.push({ role: 'user', content: results });
    }
    const wall = Date.now() - t0;
    if (toolResults !== STEPS) throw new Error(`plain loop: ${toolResults} tool results, expected ${STEPS}`);
    await env.sandbox.removeSandbox(ref);
    const requests = arrivals(id);
    return { wall, modelToTool, toolToModel: toolEnds.map((end, k) => requests[k + 1]! - end), snapshot: [] };
  }

  await plainLoop(); // warm-up of the bench process's SDK and exec paths (not counted)
  const tandemRuns: Run[] = [];
  const plainRuns: Run[] = [];
  for (let i = 0; i < reps; i++) {
    // Alternate which goes first, so drift hits both.
    if (i % 2 === 0) {
      tandemRuns.push(await onTandem());
      plainRuns.push(await plainLoop());
    } else {
      plainRuns.push(await plainLoop());
      tandemRuns.push(await onTandem());
    }
    log(`overhead: pair ${i + 1}/${reps}: Tandem ${ms(tandemRuns.at(-1)!.wall)}, plain loop ${ms(plainRuns.at(-1)!.wall)}`);
  }
  const tandemWall = tandemRuns.map((r) => r.wall);
  const plainWall = plainRuns.map((r) => r.wall);
  const t = summarize(tandemWall);
  const p = summarize(plainWall);
  const gaps = (runs: Run[]) => ({
    model_to_tool: summarize(runs.flatMap((r) => r.modelToTool)),
    tool_to_model: summarize(runs.flatMap((r) => r.toolToModel)),
  });
  const tg = gaps(tandemRuns);
  const snap = summarize(tandemRuns.flatMap((r) => r.snapshot));
  const pg = gaps(plainRuns);
  const gapRow = (g: { model_to_tool: Summary; tool_to_model: Summary }) =>
    `${Math.round(g.model_to_tool.p50)} ms model → tool, ${Math.round(g.tool_to_model.p50)} ms tool → next model request`;
  const perStep = (t.p50 - p.p50) / STEPS;
  const pairs = tandemWall.map((w, i) => (w - plainWall[i]!) / STEPS);
  return {
    key: 'overhead',
    title: '2. Orchestration overhead per step',
    method:
      `${reps} sessions each, alternating: ${STEPS} steps (a model call asking for \`bash echo\`, then the tool call) and ` +
      `a final answer, wall time from start() until the client sees session.status_idle; the plain loop streams with ` +
      `the same SDK and runs the same sandbox's execute in-process. Includes lazy provisioning on both sides.`,
    rows: [
      { metric: 'Tandem session wall time p50 / p95', value: p50p95(t) },
      { metric: 'plain loop wall time p50 / p95', value: p50p95(p) },
      { metric: 'wall-time ratio Tandem / plain (p50)', value: `${(t.p50 / p.p50).toFixed(3)}×` },
      { metric: `overhead per step (p50 difference / ${STEPS})`, value: `${perStep.toFixed(1)} ms` },
      { metric: 'overhead per step, per pair: min / max', value: `${Math.min(...pairs).toFixed(1)} / ${Math.max(...pairs).toFixed(1)} ms` },
      { metric: 'Tandem: gaps between steps, p50', value: gapRow(tg) },
      { metric: 'plain loop: the same gaps, p50', value: gapRow(pg) },
      {
        metric: 'Tandem: the workspace snapshot after each tool turn (in the call, or its own activity scheduled → completed), p50 / p95',
        value: p50p95(snap),
      },
    ],
    data: {
      steps: STEPS,
      sessions: reps,
      tandem: t,
      plain: p,
      ratio_p50: Math.round((t.p50 / p.p50) * 1000) / 1000,
      overhead_per_step_ms: Math.round(perStep * 10) / 10,
      overhead_per_step_per_pair_ms: pairs.map((v) => Math.round(v * 10) / 10),
      gaps: { tandem: tg, plain: pg },
      snapshot: snap,
      samples: { tandem: tandemRuns, plain: plainRuns },
    },
    panels: [
      {
        kind: 'strip',
        title: `${STEPS}-step tool-using session, wall time (${reps} each)`,
        unit: 's',
        distributions: [
          { label: 'Tandem (Temporal)', samples: tandemWall.map((v) => v / 1000) },
          { label: 'plain in-process loop', samples: plainWall.map((v) => v / 1000) },
        ],
      },
    ],
  };
}
