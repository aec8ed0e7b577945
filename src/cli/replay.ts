/** `tandem replay`: replays of recorded sessions against an agent, a few at a time, and their comparison. */
import type { ReplayReport, TandemClient } from '../client/index.js';
import type { AgentDefinition } from '../shared/types.js';
import { estimateCost } from '../shared/pricing.js';
import { forTerminal } from './terminal.js';

/** Starts one replay per session, at most `concurrency` at once, waits for each to finish, and returns the reports. */
export async function runReplays(
  client: TandemClient,
  sessions: string[],
  opts: { agent: AgentDefinition; mode: 'hermetic' | 'live'; concurrency: number; from?: string },
): Promise<ReplayReport[]> {
  const reports: ReplayReport[] = new Array(sessions.length);
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < sessions.length; i = next++) {
      const id = await client.replay(sessions[i]!, { agent: opts.agent, mode: opts.mode, ...(opts.from ? { from: opts.from } : {}) });
      for (;;) {
        const report = await client.replayReport(id);
        const state = await client.getSession(id);
        // Done, or stopped where it cannot go on by itself (an error it could be woken from).
        if (report.done || state.stop_reason?.type === 'retries_exhausted') {
          reports[i] = report;
          break;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, sessions.length) }, lane));
  return reports;
}

/** A report for the terminal: one line per turn, then divergence, sandboxes, tokens and cost. */
export function formatReport(r: ReplayReport): string {
  const cost = (model: string | null, u: ReplayReport['usage']['recorded']) => {
    const c = estimateCost(model, u);
    return c === null ? '' : `, ~$${c.toFixed(4)}`;
  };
  const lines = [
    `replay ${r.replay_id} of ${r.session_id} (${r.mode})${r.done ? '' : ' — not finished'}`,
    ...r.turns.map((t, i) => {
      const same = JSON.stringify(t.recorded) === JSON.stringify(t.replay);
      return [
        `  turn ${i + 1}: ${t.user.slice(0, 60)}`,
        `    recorded: ${t.recorded?.tools.length ?? 0} tool call(s); ${(t.recorded?.final ?? '').slice(0, 80)}`,
        `    replay:   ${t.replay?.tools.length ?? 0} tool call(s); ${(t.replay?.final ?? '').slice(0, 80)}${same ? '  (same)' : ''}`,
      ].join('\n');
    }),
    `  diverged: ${r.diverged_at === null ? 'no' : `at tool call ${r.diverged_at + 1}`}; sandboxes: ${r.sandboxes}`,
    `  tokens: recorded ${r.usage.recorded.input_tokens} in / ${r.usage.recorded.output_tokens} out${cost(r.models.recorded, r.usage.recorded)}; ` +
      `replay ${r.usage.replay.input_tokens} in / ${r.usage.replay.output_tokens} out${cost(r.models.replay, r.usage.replay)}`,
    ...(r.outcomes.recorded.length || r.outcomes.replay.length
      ? [`  outcome: recorded ${r.outcomes.recorded.join(', ') || '-'}; replay ${r.outcomes.replay.join(', ') || '-'}`]
      : []),
  ];
  return forTerminal(lines.join('\n'), { newlines: true });
}
