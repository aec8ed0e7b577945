/**
 * Many hands: two hands hosts on two Docker engines (the machine's own, and a second dockerd the test starts), two
 * brain workers with no Docker of their own, and the workspace snapshots in a real S3-compatible store (MinIO on
 * loopback) that both hosts share. 20 sessions with tool calls spread over both hosts; in the middle, one host dies
 * with its engine (both SIGKILLed). Every session finishes on the other host with its files restored from the latest
 * snapshot and a complete log.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { S3Store } from '../../src/activities/sandbox/blob-store.js';
import { LABEL_MANAGED, LABEL_SESSION } from '../../src/activities/sandbox/docker.js';
import { HostRegistry } from '../../src/activities/sandbox/hosts.js';
import { listSlots, removeSlotDir } from '../../src/activities/sandbox/slot.js';
import { TandemClient } from '../../src/client/index.js';
import { reply, startMessagesServer, toolUse, type MessagesServer, type RecordedRequest } from '../fakes/messages-server.js';
import { startEngine, type Engine } from '../helpers/engine.js';
import { killProcess, spawnWorkerProcess, startWorker, testAgent, testClient, uniqueQueue, waitFor } from '../helpers/env.js';
import { minioStore, startMinio, type Minio } from '../helpers/minio.js';
import { expectSessionIntact } from './check.js';

const SESSIONS = 20;
const queue = uniqueQueue('fault-hands');
let engine: Engine;
let minio: Minio;
let model: MessagesServer;
let tandem: TandemClient;
let store: S3Store;
const brains: Array<Awaited<ReturnType<typeof startWorker>>> = [];
const processes: ChildProcess[] = [];
const handsDirs = [mkdtempSync(join(tmpdir(), 'tandem-hands-a-')), mkdtempSync(join(tmpdir(), 'tandem-hands-b-'))];

const RELEASE = '/tmp/tandem-test-release';

/** Each session writes a note, appends to it in a call that waits for the test, appends again, and ends. */
function respond(r: RecordedRequest) {
  const messages = r.body.messages ?? [];
  const first = JSON.stringify(messages[0]?.content ?? '');
  if (JSON.stringify(messages.at(-1)).includes('are you still there?')) return reply('still here');
  const i = /job (\d+)/.exec(first)?.[1] ?? '?';
  const calls = messages.filter((m) => m.role === 'assistant').length;
  if (calls === 0) return reply(toolUse('write', { file_path: '/workspace/notes.txt', content: `job ${i} step 1\n` }, `tu_${i}_1`));
  // The second call waits until the test lets it go on (a file it puts in the sandbox's /tmp), so host B dies while
  // every one of its sessions is inside that call, however slow the machine.
  if (calls === 1)
    return reply(toolUse('bash', { command: `until [ -e ${RELEASE} ]; do sleep 0.2; done; echo step 2 >> notes.txt; cat notes.txt`, timeout_ms: 600_000 }, `tu_${i}_2`));
  if (calls === 2) return reply(toolUse('bash', { command: 'echo step 3 >> notes.txt; cat notes.txt' }, `tu_${i}_3`));
  return reply('finished');
}

beforeAll(async () => {
  [engine, minio] = await Promise.all([startEngine('hands-b'), startMinio()]);
  store = minioStore(minio);
  model = await startMessagesServer({ responder: respond });
  tandem = new TandemClient(await testClient(), queue);
  const common = {
    TANDEM_SNAPSHOT_STORE: `s3://${minio.bucket}/snapshots`,
    TANDEM_S3_ENDPOINT: minio.endpoint,
    AWS_ACCESS_KEY_ID: minio.accessKey,
    AWS_SECRET_ACCESS_KEY: minio.secretKey,
    TANDEM_WORKER_ROLE: 'hands',
  };
  // Hands host A on this machine's engine, hands host B (`tandem hands`) on the second engine: processes, so B can
  // die for real.
  await spawnWorkerProcess(queue, model.url, processes, { ...common, TANDEM_HANDS_ID: 'host-a', TANDEM_HANDS_DIR: handsDirs[0]! });
  await spawnWorkerProcess(
    queue,
    model.url,
    processes,
    { ...common, TANDEM_HANDS_ID: 'host-b', TANDEM_HANDS_DIR: handsDirs[1]!, DOCKER_HOST: engine.host },
    ['hands'],
  );
  // Two brains: sessions and model calls only, no Docker.
  for (let i = 0; i < 2; i++) brains.push(await startWorker(queue, model.url, undefined, { env: { TANDEM_WORKER_ROLE: 'brain' } }));
  const registry = new HostRegistry(store, queue, 'observer', async () => ({ running: 0, warm: {} }));
  await waitFor(() => registry.read(), (hosts) => hosts.length === 2, 60_000, 'both hands hosts to announce themselves');
}, 600_000);

afterAll(async () => {
  for (const b of brains) await b.shutdown();
  await Promise.all(brains.map((b) => b.done));
  for (const p of processes) await killProcess(p);
  await model?.close();
  await minio?.stop();
  // Host B's engine was killed: start it again to remove what it held, then stop it.
  await (await startEngine('hands-b')).stop();
  for (const dir of handsDirs) for (const slot of listSlots(dir)) await removeSlotDir(slot.dir);
}, 300_000);

describe('hands hosts', () => {
  it(`${SESSIONS} sessions over two hosts; one host dies; every session finishes with its files`, async () => {
    const ids = await Promise.all(
      Array.from({ length: SESSIONS }, (_, i) => tandem.start({ agent: testAgent({ sandbox: { memory_mb: 128 } }), message: `job ${i}` })),
    );
    const hostOf = async (id: string) => (await tandem.getSession(id)).sandboxes[0]?.host;
    // Wait until both hosts run sessions' slow calls, then kill host B (engine and process) under them.
    const placed = await waitFor(
      () => Promise.all(ids.map(hostOf)),
      (hosts) => hosts.every(Boolean),
      180_000,
      'every session placed',
    );
    const onB = ids.filter((_, i) => placed[i] === 'host-b');
    expect(onB.length).toBeGreaterThanOrEqual(3);
    expect(SESSIONS - onB.length).toBeGreaterThanOrEqual(3);
    // Host B dies while each of its sessions runs its second call (held by the test), after the snapshot of the first.
    const inStep2 = async (id: string) => {
      const events = await tandem.getEvents(id);
      const done = new Set(events.filter((e) => e.type === 'agent.tool_result').map((e) => e.tool_use_id));
      return events.some((e) => e.type === 'sandbox.snapshot') && done.size === 1 && events.some((e) => e.type === 'agent.tool_use' && !done.has(e.tool_use_id));
    };
    await waitFor(() => Promise.all(onB.map(inStep2)), (all) => all.every(Boolean), 300_000, 'every session on host B in its second call');
    await engine.kill();
    await killProcess(processes[1]!);

    // From now on every held call on host A goes on: its own sessions' and those moved there from B.
    const docker = new Docker();
    const release = async () => {
      const running = await docker.listContainers({ filters: { label: [`${LABEL_MANAGED}=true`], status: ['running'] } });
      for (const c of running.filter((c) => ids.includes(c.Labels[LABEL_SESSION] ?? ''))) {
        const exec = await docker.getContainer(c.Id).exec({ Cmd: ['touch', RELEASE], User: 'root' });
        await exec.start({ Detach: true });
      }
    };
    for (const id of ids)
      await waitFor(
        async () => (await release(), tandem.getSession(id)),
        (s) => s.status === 'idle' && s.turn >= 4,
        300_000,
        `session ${id} to finish`,
      );
    for (const [i, id] of ids.entries()) {
      const events = await expectSessionIntact(tandem, model, id, [`job ${i}`], { scripted: false });
      const results = events.filter((e) => e.type === 'agent.tool_result');
      expect(results).toHaveLength(3);
      // The files: step 1 (on B's sessions from the snapshot, restored on A), step 2 once (run again on A), step 3.
      const last = (results.at(-1)!.content as Array<{ text: string }>)[0]!.text;
      expect(last).toMatch(new RegExp(`(^|\\n)job ${i} step 1\\nstep 2\\nstep 3$`));
      expect(results.every((r) => !r.is_error)).toBe(true);
      const moved = events.some((e) => e.type === 'sandbox.lost' && (e.error as { type: string }).type === 'Sandbox.HostLost');
      if (moved) {
        expect(onB).toContain(id);
        expect(await hostOf(id)).toBe('host-a');
        expect(events.find((e) => e.type === 'sandbox.restored')).toMatchObject({ host: 'host-a' });
        expect(JSON.stringify(results)).toContain('because hands host host-b stopped answering');
      }
      expect(events.some((e) => e.type === 'sandbox.snapshot')).toBe(true);
    }
    const movedSessions = await Promise.all(
      onB.map(async (id) => (await tandem.getEvents(id)).some((e) => e.type === 'sandbox.restored')),
    );
    expect(movedSessions.filter(Boolean).length).toBeGreaterThanOrEqual(1);
    console.log(`${SESSIONS} sessions, ${onB.length} on host B, ${movedSessions.filter(Boolean).length} restored on host A`);
    await Promise.all(ids.map((id) => tandem.temporal.workflow.getHandle(id).cancel()));
  }, 900_000);
});
