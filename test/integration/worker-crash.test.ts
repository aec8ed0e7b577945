/**
 * A worker process killed with SIGKILL in the middle of a session: another worker finishes it, and every user
 * message reaches the model exactly once.
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { startMessagesServer, reply, toolUse, type MessagesServer } from '../fakes/messages-server.js';
import Docker from 'dockerode';
import {
  sendMessage,
  sessionEvents,
  killProcess,
  startSession,
  testClient,
  uniqueQueue,
  waitFor,
  spawnWorkerProcess,
  waitIdle,
  sandboxName,
} from '../helpers/env.js';

let client: Client;
let model: MessagesServer;
const workers: ChildProcess[] = [];
const queue = uniqueQueue('crash');

const spawnWorker = () => spawnWorkerProcess(queue, model.url, workers);

beforeAll(async () => {
  client = await testClient();
  model = await startMessagesServer();
});

afterAll(async () => {
  for (const w of workers) await killProcess(w);
  await model?.close();
});

function userTexts(messages: Array<{ role: string; content: unknown }>): string[] {
  return messages
    .filter((m) => m.role === 'user')
    .flatMap((m) => (m.content as Array<{ type: string; text?: string }>).filter((b) => b.type === 'text').map((b) => b.text!));
}

describe('worker crash', () => {
  it('finishes a session on a new worker after SIGKILL mid tool call, losing and duplicating nothing', async () => {
    model.push(reply(toolUse('bash', { command: 'sleep 3; echo slept' }, 'tu_sleep')), reply('all done'));
    const first = await spawnWorker();
    const handle = await startSession(client, queue, {}, 'please sleep');
    // Kill the worker while the tool call runs in the sandbox.
    await waitFor(() => sessionEvents(client, handle), (ev) => ev.some((e) => e.type === 'sandbox.provisioned'), 60_000, 'provisioning');
    await killProcess(first);
    // A message sent while no worker runs is kept in the log and applied once.
    await sendMessage(handle, 'and then report', 'steer-1');
    await sendMessage(handle, 'and then report', 'steer-1');
    await spawnWorker();
    const state = await waitIdle(handle, 'end_turn', 2, 120_000);
    expect(state.turn).toBe(2);
    const last = model.requests.at(-1)!.body.messages!;
    expect(userTexts(last)).toEqual(['please sleep', 'and then report']);
    const toolResult = (last.at(-1)!.content as Array<{ type: string; content?: string }>).find((b) => b.type === 'tool_result');
    expect(toolResult?.content).toContain('slept');
    model.assertDone();
    const events = await sessionEvents(client, handle);
    expect(events.filter((e) => e.type === 'user.message')).toHaveLength(2);
    expect(events.filter((e) => e.type === 'agent.tool_result')).toHaveLength(1);
    await handle.cancel();
    await waitFor(
      () => new Docker().getContainer(sandboxName(handle.workflowId)).inspect().then(() => 'exists', () => 'gone'),
      (s) => s === 'gone',
      30_000,
      'sandbox removal',
    );
  });
});
