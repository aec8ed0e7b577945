/**
 * Rewind: a Temporal reset to just before an event. The next model call sees only what came before it, the next tool
 * call finds the workspace as it was then (its latest snapshot), and the old branch stays readable.
 */
import { describe, expect, it } from 'vitest';
import { reply, toolUse, type RequestBody } from '../fakes/messages-server.js';
import { sessionState, testAgent, useHarness, waitFor, waitIdle } from '../helpers/env.js';

const h = useHarness('rewind');

function texts(body: RequestBody): string[] {
  return (body.messages ?? []).flatMap((m) =>
    (m.content as Array<{ type: string; text?: string; content?: string }>).map((b) => b.text ?? b.content ?? ''),
  );
}

describe('rewind', () => {
  it('drops the rewound turn from the next model call and keeps the old branch readable', async () => {
    h.model.push(reply('answer one'), reply('answer two'));
    const id = await h.tandem.start({ agent: testAgent(), message: 'first question' });
    const handle = h.client.workflow.getHandle(id);
    await waitIdle(handle, 'end_turn', 1);
    await h.tandem.sendMessage(id, 'second question');
    await waitIdle(handle, 'end_turn', 2);
    const before = await h.tandem.getEvents(id);
    const target = before.find((e) => e.type === 'user.message' && JSON.stringify(e.content).includes('second question'))!;

    const { runId, previousRunId } = await h.tandem.rewind(id, target.id);
    expect(runId).not.toBe(previousRunId);
    await waitFor(() => h.tandem.getEvents(id), (ev) => ev.at(-1)?.type === 'session.status_idle', 30_000, 'idle after rewind');
    const after = await h.tandem.getEvents(id);
    expect(JSON.stringify(after)).not.toContain('second question');
    expect(JSON.stringify(after)).toContain('answer one');
    // The conversation before the rewind point keeps its ids (status records of the last step are made anew).
    const conversation = (events: typeof before) =>
      events.filter((e) => e.seq < target.seq && /^(user|agent)\./.test(e.type)).map((e) => e.id);
    expect(conversation(after)).toEqual(conversation(before));

    h.model.push(reply('answer three'));
    await h.tandem.sendMessage(id, 'different question');
    await waitFor(() => sessionState(handle), (s) => s.turn === 2 && s.status === 'idle', 30_000);
    expect(texts(h.model.requests.at(-1)!.body)).toEqual(['first question', 'answer one', 'different question']);

    const oldBranch = await h.tandem.getEvents(id, { runId: previousRunId });
    expect(JSON.stringify(oldBranch)).toContain('second question');
    expect(JSON.stringify(oldBranch)).toContain('answer two');
    h.model.assertDone();
    await handle.cancel();
  });

  it('rewinding to a tool result runs the tool again, in the workspace as it was before it', async () => {
    h.model.push(reply(toolUse('bash', { command: 'echo run >> /workspace/runs.txt; wc -l < /workspace/runs.txt' }, 'tu_count')), reply('counted'));
    const id = await h.tandem.start({ agent: testAgent(), message: 'count' });
    const handle = h.client.workflow.getHandle(id);
    await waitIdle(handle, 'end_turn', 2);
    const result = (await h.tandem.getEvents(id, { types: ['agent.tool_result'] }))[0]!;
    expect(JSON.stringify(result.content)).toContain('1');
    h.model.push(reply('counted again'));
    await h.tandem.rewind(id, result.id);
    await waitFor(() => sessionState(handle), (s) => s.status === 'idle' && s.turn === 2, 60_000, 'the turn to finish again');
    const results = await h.tandem.getEvents(id, { types: ['agent.tool_result'] });
    expect(results).toHaveLength(1);
    // The tool ran a second time, in a workspace set back to before its first run: there was no snapshot yet, so
    // an empty one, and the log says so.
    expect(JSON.stringify(results[0]!.content)).toContain('1');
    const restored = await h.tandem.getEvents(id, { types: ['sandbox.restored'] });
    expect(restored).toMatchObject([{ snapshot_id: null, rewind: true }]);
    const lastCall = h.model.requests.at(-1)!.body.messages!;
    expect(JSON.stringify(lastCall)).not.toContain('counted"');
    h.model.assertDone();
    await handle.cancel();
  });

  it('rewinding past a deleted file brings the file back, and the model sees only what came before', async () => {
    h.model.push(reply(toolUse('write', { file_path: '/workspace/keep.txt', content: 'precious' }, 'tu_keep')), reply('kept'));
    const id = await h.tandem.start({ agent: testAgent(), message: 'keep this' });
    const handle = h.client.workflow.getHandle(id);
    await waitIdle(handle, 'end_turn', 2);
    h.model.push(reply(toolUse('bash', { command: 'rm /workspace/keep.txt && echo gone' }, 'tu_rm')), reply('deleted'));
    await h.tandem.sendMessage(id, 'delete it');
    await waitIdle(handle, 'end_turn', 4);
    const events = await h.tandem.getEvents(id);
    const snapshots = events.filter((e) => e.type === 'sandbox.snapshot');
    expect(snapshots).toHaveLength(2); // the write, then the delete
    const target = events.find((e) => e.type === 'user.message' && JSON.stringify(e.content).includes('delete it'))!;

    await h.tandem.rewind(id, target.id);
    await waitFor(() => h.tandem.getEvents(id), (ev) => ev.at(-1)?.type === 'session.status_idle', 30_000, 'idle after rewind');
    h.model.push(reply(toolUse('read', { file_path: '/workspace/keep.txt' }, 'tu_read')), reply('still there'));
    await h.tandem.sendMessage(id, 'is it there?');
    await waitFor(() => sessionState(handle), (s) => s.status === 'idle' && s.turn === 4, 60_000, 'the read');
    const last = h.model.requests.at(-1)!.body;
    expect(JSON.stringify(last.messages)).toContain('precious');
    expect(texts(last)).not.toContain('delete it');
    const after = await h.tandem.getEvents(id);
    // The workspace was set back to the first snapshot: the one at or before the rewind point.
    expect(after.filter((e) => e.type === 'sandbox.restored')).toMatchObject([
      { snapshot_id: snapshots[0]!.snapshot_id, files: 1, rewind: true },
    ]);
    h.model.assertDone();
    await handle.cancel();
  });

  it('refuses an event that is not in the log', async () => {
    h.model.push(reply('hi'));
    const id = await h.tandem.start({ agent: testAgent(), message: 'hello' });
    await waitIdle(h.client.workflow.getHandle(id), 'end_turn', 1);
    await expect(h.tandem.rewind(id, '99999.0')).rejects.toThrow(/event 99999.0 is not in the log/);
    await expect(h.tandem.rewind(id, '1.0')).rejects.toThrow(/before its first step/);
    await h.client.workflow.getHandle(id).cancel();
  });
});
