/**
 * Faults in the brains: workers killed with SIGKILL during a model call, during provisioning, and while racing
 * another worker on the same task queue. Each case ends with the same check (expectSessionIntact).
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import { TandemClient } from '../../src/client/index.js';
import { LABEL_SESSION } from '../../src/activities/sandbox/docker.js';
import { reply, startMessagesServer, toolUse, type MessagesServer } from '../fakes/messages-server.js';
import { killProcess, spawnWorkerProcess, testAgent, testClient, uniqueQueue, waitFor } from '../helpers/env.js';
import { expectSessionIntact, idle } from './check.js';

let tandem: TandemClient;
let model: MessagesServer;
const queue = uniqueQueue('fault-workers');
const workers: ChildProcess[] = [];

const spawnWorker = () => spawnWorkerProcess(queue, model.url, workers);

beforeAll(async () => {
  tandem = new TandemClient(await testClient(), queue);
  model = await startMessagesServer();
});

afterEach(async () => {
  for (const w of workers.splice(0)) await killProcess(w);
});

afterAll(async () => {
  await model?.close();
});

async function end(id: string): Promise<void> {
  await tandem.temporal.workflow.getHandle(id).cancel();
}

describe('worker faults', () => {
  it('SIGKILL during a model call: another worker makes the call again', async () => {
    model.push({ ...reply('slow answer that never arrives'), latencyMs: 5000 }, reply('answer from the second worker'));
    const first = await spawnWorker();
    const id = await tandem.start({ agent: testAgent(), message: 'think slowly' });
    await model.waitForRequests(model.requests.length + 1, 30_000);
    await killProcess(first);
    await spawnWorker();
    await idle(tandem, id, 1, 90_000);
    const events = await tandem.getEvents(id, { types: ['agent.message'] });
    expect(JSON.stringify(events)).toContain('answer from the second worker');
    expect(events).toHaveLength(1);
    await expectSessionIntact(tandem, model, id, ['think slowly']);
    await end(id);
  });

  it('SIGKILL during provisioning: one sandbox, one tool result', async () => {
    model.push(reply(toolUse('bash', { command: 'echo provisioned-ok' }, 'tu_prov')), reply('done'));
    const first = await spawnWorker();
    const before = model.requests.length;
    const id = await tandem.start({ agent: testAgent(), message: 'provision' });
    await model.waitForRequests(before + 1, 30_000);
    await new Promise((r) => setTimeout(r, 150)); // the reply is streamed; provisioning starts right after
    await killProcess(first);
    await spawnWorker();
    await idle(tandem, id, 2, 90_000);
    const containers = await new Docker().listContainers({ all: true, filters: { label: [`${LABEL_SESSION}=${id}`] } });
    expect(containers).toHaveLength(1);
    const results = await tandem.getEvents(id, { types: ['agent.tool_result'] });
    expect(results).toHaveLength(1);
    expect(JSON.stringify(results[0]!.content)).toContain('provisioned-ok');
    await expectSessionIntact(tandem, model, id, ['provision']);
    await end(id);
  });

  it('two workers race on one task queue and one of them dies: every session finishes', async () => {
    const sessions = 6;
    model = await restartModel(); // a responder serves any number of calls in any order
    const [a] = [await spawnWorker(), await spawnWorker()];
    const ids: string[] = [];
    for (let i = 0; i < sessions; i++) ids.push(await tandem.start({ agent: testAgent(), message: `race ${i}` }));
    await waitFor(() => Promise.resolve(model.requests.length), (n) => n >= sessions, 60_000, 'all sessions to start');
    await killProcess(a!);
    for (const id of ids) await idle(tandem, id, 3, 120_000);
    for (const [i, id] of ids.entries()) {
      const results = await tandem.getEvents(id, { types: ['agent.tool_result'] });
      expect(results).toHaveLength(2);
      expect(results.every((r) => r.is_error === false)).toBe(true);
      await expectSessionIntact(tandem, model, id, [`race ${i}`]);
      await end(id);
    }
  });
});

/** A scripted server that answers each session with two tool calls and then a final message. */
async function restartModel(): Promise<MessagesServer> {
  await model.close();
  const server = await startMessagesServer({
    responder: (r) => {
      const messages = r.body.messages ?? [];
      const last = messages.at(-1);
      if (JSON.stringify(last).includes('are you still there?')) return undefined; // scripted by the check
      const calls = messages.filter((m) => m.role === 'assistant').length;
      if (calls < 2) return reply(toolUse('bash', { command: `sleep 1; echo step-${calls}` }));
      return reply('finished the race');
    },
  });
  // Workers started from now on talk to the new server.
  return server;
}
