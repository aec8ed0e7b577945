/**
 * 50 sessions at once while containers are killed at random: at the end every session is idle with a complete
 * log and answers again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import { temporal } from '@temporalio/proto';
import { TandemClient } from '../../src/client/index.js';
import { LABEL_MANAGED } from '../../src/activities/sandbox/docker.js';
import { reply, startMessagesServer, toolUse, type MessagesServer } from '../fakes/messages-server.js';
import { startWorker, testAgent, testClient, uniqueQueue } from '../helpers/env.js';
import { expectSessionIntact, idle } from './check.js';

const SESSIONS = 50;
const TOOL_CALLS = 3;
let tandem: TandemClient;
let model: MessagesServer;
let worker: Awaited<ReturnType<typeof startWorker>>;
const docker = new Docker();
const queue = uniqueQueue('fault-many');

beforeAll(async () => {
  tandem = new TandemClient(await testClient(), queue);
  // Every session gets TOOL_CALLS tool calls, then a final answer; the check's question gets a short answer.
  model = await startMessagesServer({
    responder: (r) => {
      const messages = r.body.messages ?? [];
      if (JSON.stringify(messages.at(-1)).includes('are you still there?')) return reply('still here');
      const calls = messages.filter((m) => m.role === 'assistant').length;
      return calls < TOOL_CALLS ? reply(toolUse('bash', { command: `sleep 2; echo step-${calls}` })) : reply('finished');
    },
  });
  worker = await startWorker(queue, model.url);
});

afterAll(async () => {
  await worker?.shutdown();
  await worker?.done;
  await model?.close();
});

describe('many sessions under random container kills', () => {
  it(`${SESSIONS} sessions finish with complete logs while containers are killed`, async () => {
    const ids = await Promise.all(
      Array.from({ length: SESSIONS }, (_, i) => tandem.start({ agent: testAgent({ sandbox: { memory_mb: 128 } }), message: `job ${i}` })),
    );
    // Kill the container of a pseudo-random session whose tool call is running (seeded: reproducible order), until
    // 10 such kills have landed or every session is done. A kill aimed at a call that just ended is not counted:
    // only a kill that hits a running call is the fault this case is about, and it must give a `sandbox.lost`.
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let kills = 0;
    const deadline = Date.now() + 240_000;
    while (kills < 10 && Date.now() < deadline) {
      const busy: string[] = [];
      for (const id of ids) {
        const d = await tandem.temporal.workflow.getHandle(id).describe().catch(() => undefined);
        if (d?.raw.pendingActivities?.some((a) => a.activityType?.name === 'execute' && a.state === temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED)) busy.push(id);
      }
      const open = (await Promise.all(ids.map((id) => tandem.getSession(id)))).filter((st) => st.turn <= TOOL_CALLS);
      if (open.length === 0) break;
      const victim = busy[Math.floor(rand() * busy.length)];
      if (!victim) continue;
      const [c] = await docker.listContainers({ filters: { label: [`${LABEL_MANAGED}=true`, `tandem.session=${victim}`], status: ['running'] } });
      if (c) await docker.getContainer(c.Id).kill().then(() => kills++, () => undefined);
    }
    expect(kills, 'kills that hit a running tool call').toBeGreaterThanOrEqual(5);
    for (const id of ids) await idle(tandem, id, TOOL_CALLS + 1, 300_000);
    let lost = 0;
    for (const [i, id] of ids.entries()) {
      const events = await expectSessionIntact(tandem, model, id, [`job ${i}`], { scripted: false });
      const results = events.filter((e) => e.type === 'agent.tool_result');
      expect(results).toHaveLength(TOOL_CALLS);
      lost += events.filter((e) => e.type === 'sandbox.lost').length;
      // A call whose container was killed on every attempt may end as a Sandbox.Lost tool error; nothing else may.
      const otherErrors = results.filter((r) => r.is_error && !JSON.stringify(r.error ?? r.content).includes('Sandbox.Lost'));
      expect(otherErrors).toEqual([]);
    }
    // Each kill hit a running call, so each gave a loss, unless the container was killed between the
    // activity's start and its call reaching the toolbox (then the retry finds it gone at provision).
    expect(lost).toBeGreaterThanOrEqual(1);
    console.log(`${SESSIONS} sessions, ${kills} containers killed, ${lost} sandbox.lost events, all logs complete`);
    await Promise.all(ids.map((id) => tandem.temporal.workflow.getHandle(id).cancel()));
  }, 600_000);
});
