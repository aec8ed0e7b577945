/**
 * One machine, no new setting: the worker runs the brain and the hands, sessions are placed on its own host and
 * pinned to its queue, their workspaces are snapshotted after each tool turn, and a warm container takes a new
 * sandbox on without weakening any hardening setting.
 */
import Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { hostQueue } from '../../src/shared/names.js';
import { reply, toolUse } from '../fakes/messages-server.js';
import { sandboxName, testAgent, toolResults, useHarness, waitFor, waitIdle, startSession } from '../helpers/env.js';

const h = useHarness('hands', { assertDone: true, record: 'hands', worker: () => ({ env: { TANDEM_WARM_CONTAINERS: '1' } }) });
const docker = new Docker();
const agent = testAgent({ sandbox: { memory_mb: 256 } });

describe('hands on one machine', () => {
  it('places the sandbox on the worker host and snapshots the workspace with the last call of each turn that changes it', async () => {
    h.model.push(
      reply(toolUse('write', { file_path: '/workspace/a.txt', content: 'alpha' }, 'tu_w')),
      reply(toolUse('read', { file_path: '/workspace/a.txt' }, 'tu_r')),
      reply(toolUse('write', { file_path: '/workspace/b.txt', content: 'beta' }, 'tu_w2'), toolUse('bash', { command: 'cat /workspace/b.txt' }, 'tu_b')),
      reply('done'),
    );
    const handle = await startSession(h.client, h.queue, { agent }, 'write and read');
    const state = await waitIdle(handle, 'end_turn', 4);
    expect(state.sandboxes[0]).toMatchObject({ host: h.worker.host!.id, task_queue: hostQueue(h.queue, h.worker.host!.id) });
    const events = await h.tandem.getEvents(handle.workflowId);
    const snaps = events.filter((e) => e.type === 'sandbox.snapshot');
    // The first write changed the workspace; the read did not, so its turn logged no snapshot; the two-call turn's
    // snapshot came after both of its calls.
    expect(snaps).toHaveLength(2);
    expect(snaps[0]).toMatchObject({ changed: true, files: 1, bytes: 5 });
    expect(snaps[1]).toMatchObject({ changed: true, files: 2, bytes: 9 });
    expect(state.snapshot?.snapshot_id).toBe(snaps[1]!.snapshot_id);
    // Each snapshot was taken by its turn's last call: it is in the log with that call's result.
    const resultOf = (id: string) => events.find((e) => e.type === 'agent.tool_result' && e.tool_use_id === id)!;
    expect(snaps.map((e) => e.seq)).toEqual([resultOf('tu_w').seq, resultOf('tu_b').seq]);
    const activities = (await handle.fetchHistory()).events!.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
    expect(activities.filter((a) => a === 'execute')).toHaveLength(4);
    expect(activities).not.toContain('snapshotSandbox');
    expect(toolResults(h.model.requests.at(-2)!).get('tu_r')?.content).toContain('alpha');
    expect(toolResults(h.model.requests.at(-1)!).get('tu_b')?.content).toContain('beta');
    await handle.cancel();
  });

  it('a warm container takes a new sandbox on, with the hardening of a cold one', async () => {
    // The first session of this shape starts cold, and from then on the host keeps one of its shape warm.
    h.model.push(reply(toolUse('bash', { command: 'echo cold' }, 'tu_cold')), reply('ok'));
    const cold = await startSession(h.client, h.queue, { agent }, 'cold start');
    await waitIdle(cold, 'end_turn', 2);
    await waitFor(async () => h.worker.hands.warmReady(agent.sandbox!), (n) => n >= 1, 60_000, 'a warm container of its shape');
    h.model.push(reply(toolUse('bash', { command: 'id -u; ls -A /workspace; echo warm > /workspace/w.txt; cat /workspace/w.txt' }, 'tu_warm')), reply('ok'));
    const hot = await startSession(h.client, h.queue, { agent }, 'warm start');
    await waitIdle(hot, 'end_turn', 2);
    const provisioned = (await h.tandem.getEvents(hot.workflowId)).find((e) => e.type === 'sandbox.provisioned');
    expect(provisioned).toMatchObject({ warm: true });
    // A fresh, empty workspace of its own, the sandbox user, and the session's container name.
    expect(toolResults(h.model.requests.at(-1)!).get('tu_warm')?.content).toBe('1000\nwarm');
    const [a, b] = await Promise.all([cold, hot].map((x) => docker.getContainer(sandboxName(x.workflowId)).inspect()));
    const hardening = (i: Docker.ContainerInspectInfo) => {
      const { CapDrop, SecurityOpt, ReadonlyRootfs, Tmpfs, PidsLimit, Memory, MemorySwap, NanoCpus, NetworkMode, Privileged, Ulimits, LogConfig, Init } =
        i.HostConfig as Docker.HostConfig & { Init?: boolean };
      return { CapDrop, SecurityOpt, ReadonlyRootfs, Tmpfs, PidsLimit, Memory, MemorySwap, NanoCpus, NetworkMode, Privileged, Ulimits, LogConfig, Init, User: i.Config.User, Mounts: i.Mounts.map((m) => `${m.Destination} ${m.Type} ${m.RW}`).sort() };
    };
    // Inspect lists mounts in no fixed order.
    expect(hardening(b!)).toEqual(hardening(a!));
    await Promise.all([cold, hot].map((x) => x.cancel()));
  });
});
