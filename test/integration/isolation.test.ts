/**
 * Stronger isolation, on by configuration: a Docker engine with user-namespace remapping, where the sandbox's uid 1000
 * is an unprivileged uid of the host. Real tool calls with the same hardening, the toolbox line and the workspace
 * quota.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reply, toolUse } from '../fakes/messages-server.js';
import { startEngine, type Engine } from '../helpers/engine.js';
import { sandboxName, testAgent, toolResults, useHarness, waitFor } from '../helpers/env.js';

let userns: Engine;

beforeAll(async () => {
  userns = await startEngine('userns', { userns: true });
}, 300_000);
afterAll(async () => {
  await userns?.stop();
});

const remapped = useHarness('iso-userns', { worker: () => ({ docker: userns.docker }) });

const agent = testAgent({ sandbox: { memory_mb: 256, disk_mb: 64 } });
const TOOLS = [
  toolUse('write', { file_path: '/workspace/a.txt', content: 'alpha\n' }, 'tu_w'),
  toolUse('bash', { command: 'id -u; cat /workspace/a.txt' }, 'tu_b'),
  toolUse('bash', { command: 'dd if=/dev/zero of=/workspace/fill bs=1M count=100 2>&1 | head -1; rm -f /workspace/fill' }, 'tu_q'),
];

describe('stronger isolation', () => {
  it('user-namespace remapping: uid 1000 in the sandbox is an unprivileged uid of the host', async () => {
    const h = remapped;
    h.model.push(reply(TOOLS[0]!), reply(TOOLS[1]!), reply(TOOLS[2]!), reply('done'));
    const id = await h.tandem.start({ agent, message: 'who am i' });
    await waitFor(() => h.tandem.getSession(id), (st) => st.status === 'idle' && st.turn >= 4, 120_000, 'four turns');
    const out = toolResults(h.model.requests.at(-1)!);
    expect(out.get('tu_b')!.content).toBe('1000\nalpha');
    expect(out.get('tu_q')!.content).toMatch(/No space left on device/);
    // On the host, the sandbox's processes and files belong to the remapped range (dockremap starts at 100000).
    const top = await userns.docker.getContainer(sandboxName(id)).top({ ps_args: '-o pid,uid,args' });
    const uids = top.Processes.map((p: string[]) => Number(p[1]));
    expect(uids.length).toBeGreaterThan(0);
    for (const uid of uids) expect(uid).toBeGreaterThanOrEqual(100000);
    const slot = h.worker.hands.slots.paths(id);
    if (h.worker.hands.slots.mode === 'quota') expect(statSync(join(slot.workspace, 'a.txt')).uid).toBe(101000);
    await h.tandem.temporal.workflow.getHandle(id).cancel();
  });
});
