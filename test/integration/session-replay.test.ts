/**
 * Replays of a recorded session against an agent (regression evals): hermetic, the calls that match the recorded
 * ones are answered from the log with no sandbox; the first that does not runs live, in a sandbox restored from the
 * recorded snapshot at that point.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { reply, toolUse, type Reply } from '../fakes/messages-server.js';
import { recordSession, runCli, sessionState, testAgent, useHarness, waitFor } from '../helpers/env.js';

const h = useHarness('replay-eval', { assertDone: true, record: 'replay-eval' });
const STEPS = 8;

/** Step i writes a file of its own; `changed` (1-based) does something else instead. */
function script(changed?: number): Reply[] {
  const steps = Array.from({ length: STEPS }, (_, i) => {
    const n = i + 1;
    const command = n === changed ? `echo changed > /workspace/step-${n}; ls /workspace | tr '\\n' ' '` : `echo ${n} > /workspace/step-${n}; echo wrote ${n}`;
    return reply(toolUse('bash', { command }, `tu_${changed ?? 'o'}_${n}`));
  });
  return [...steps, reply('all steps done'), reply('nothing more')];
}

const idle = (id: string, turns: number) =>
  waitFor(() => sessionState(h.client.workflow.getHandle(id)), (s) => s.status === 'idle' && s.turn >= turns, 120_000, `${id} idle`);

async function recorded(): Promise<string> {
  h.model.push(...script().slice(0, STEPS + 1));
  const id = await h.tandem.start({ agent: testAgent(), message: 'do the steps' });
  recordSession(h.client.workflow.getHandle(id));
  await idle(id, STEPS + 1);
  h.model.push(script().at(-1)!);
  await h.tandem.sendMessage(id, 'anything else?');
  await idle(id, STEPS + 2);
  return id;
}

async function replayed(origin: string, changed?: number): Promise<string> {
  h.model.push(...script(changed));
  const id = await h.tandem.replay(origin, { agent: testAgent({ system: 'You are the new prompt.' }) });
  recordSession(h.client.workflow.getHandle(id));
  await waitFor(() => h.tandem.replayReport(id), (r) => r.done, 120_000, 'the replay to finish');
  return id;
}

describe('replay against a new agent', () => {
  it('hermetic: a replay that does what the session did needs no sandbox and does not diverge', async () => {
    const origin = await recorded();
    const replay = await replayed(origin);
    const report = await h.tandem.replayReport(replay);
    expect(report).toMatchObject({ session_id: origin, mode: 'hermetic', done: true, diverged_at: null, sandboxes: 0 });
    expect(report.turns.map((t) => t.user)).toEqual(['do the steps', 'anything else?']);
    for (const t of report.turns) expect(t.replay).toEqual(t.recorded);
    // The replay ran under its own agent: the new system prompt reached the model.
    expect(JSON.stringify(h.model.requests.at(-1)!.body.system)).toContain('You are the new prompt.');
    // Its log holds the recorded results, as results of its own calls.
    const results = await h.tandem.getEvents(replay, { types: ['agent.tool_result'] });
    expect(results).toHaveLength(STEPS);
    expect(results.every((r) => r.recorded === true)).toBe(true);
    expect(JSON.stringify(results[6]!.content)).toContain('wrote 7');
    await Promise.all([origin, replay].map((id) => h.client.workflow.getHandle(id).cancel()));
  });

  it('diverges at the first call that differs and runs live from the snapshot at that point', async () => {
    const origin = await recorded();
    const replay = await replayed(origin, 7);
    const report = await h.tandem.replayReport(replay);
    expect(report).toMatchObject({ done: true, diverged_at: 6, sandboxes: 1 });
    const events = await h.tandem.getEvents(replay);
    // The live sandbox starts from the recorded workspace before step 7: the files of steps 1 to 6.
    const snapshots = (await h.tandem.getEvents(origin, { types: ['sandbox.snapshot'] })).map((e) => e.snapshot_id);
    expect(events.find((e) => e.type === 'sandbox.restored')).toMatchObject({ snapshot_id: snapshots[5] });
    const live = events.filter((e) => e.type === 'agent.tool_result' && e.recorded !== true);
    expect(live).toHaveLength(2); // step 7 (changed) and step 8
    expect(JSON.stringify(live[0]!.content)).toContain('step-1 step-2 step-3 step-4 step-5 step-6 step-7');
    expect(report.turns[0]!.replay!.tools[6]).toContain('changed');
    await Promise.all([origin, replay].map((id) => h.client.workflow.getHandle(id).cancel()));
  });

  it('tandem replay runs a replay from the command line and prints the comparison', async () => {
    const origin = await recorded();
    h.model.push(...script());
    const dir = mkdtempSync(join(tmpdir(), 'tandem-replay-'));
    const file = join(dir, 'new-agent.yaml');
    writeFileSync(file, 'name: new-agent\nmodel: claude-sonnet-5-5\nsystem: You are the new prompt.\ntools:\n  - type: agent_toolset_20260401\n');
    const out = await runCli(['replay', origin, '--agent', file, '--json'], h.queue, h.model.url);
    expect(out.code, out.stderr).toBe(0);
    const [report] = JSON.parse(out.stdout) as Array<{ session_id: string; done: boolean; diverged_at: number | null; sandboxes: number }>;
    expect(report).toMatchObject({ session_id: origin, done: true, diverged_at: null, sandboxes: 0 });
    await h.client.workflow.getHandle(origin).cancel();
  });
});
