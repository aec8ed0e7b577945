/** Starts one Temporal dev server (in memory) for the whole test run, and removes the run's sandboxes after it. */
import { connect } from 'node:net';
import Docker from 'dockerode';
import type { TestProject } from 'vitest/node';
import { findTemporalCli, freePort, startDevServer, type DevServer } from '../../src/cli/dev-server.js';
import { defaultHandsDir, LABEL_MANAGED, LABEL_SCOPE } from '../../src/activities/sandbox/docker.js';
import { listSlots, removeSlotDir } from '../../src/activities/sandbox/slot.js';

export { freePort };

let server: DevServer | undefined;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cli = findTemporalCli();
  if (!cli) throw new Error('no temporal CLI found: run scripts/setup first (npm test does)');
  const since = Date.now();
  server = await startDevServer({ cli, port: await freePort(), headless: true });
  project.provide('temporalAddress', server.address);
  project.provide('temporalCli', cli);
  // Workers label their sandboxes with the scope namespace@address of their Temporal server.
  const scope = `default@${server.address}`;
  return async () => {
    await server?.stop();
    await removeSandboxes(async (labelled, created) => labelled === scope || (created >= since && (await goneLocalServer(labelled))));
  };
}

/** Whether a scope names a Temporal server on this host that no longer answers (a test's own server, stopped). */
async function goneLocalServer(scope: string): Promise<boolean> {
  const m = /@127\.0\.0\.1:(\d+)$/.exec(scope);
  if (!m) return false;
  return new Promise((resolve) => {
    const socket = connect(Number(m[1]), '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(false)));
    socket.once('error', () => resolve(true));
  });
}

/**
 * Removes the containers, workspace volumes and slots the run left behind: those of its own server's scope, and those
 * made during the run for a test's own server that has stopped since (`remove(scope, createdMs)` decides). A
 * session a test left running, or whose worker stopped before its cleanup, would otherwise keep them.
 */
async function removeSandboxes(remove: (scope: string, created: number) => Promise<boolean>): Promise<void> {
  const docker = new Docker();
  const filters = { label: [`${LABEL_MANAGED}=true`] };
  const containers = await docker.listContainers({ all: true, filters }).catch(() => []);
  for (const c of containers)
    if (await remove(c.Labels[LABEL_SCOPE] ?? '', c.Created * 1000))
      await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  const { Volumes } = await docker.listVolumes({ filters }).catch(() => ({ Volumes: [] }));
  for (const v of Volumes ?? []) {
    const created = Date.parse((v as { CreatedAt?: string }).CreatedAt ?? '') || 0;
    if (await remove(v.Labels?.[LABEL_SCOPE] ?? '', created)) await docker.getVolume(v.Name).remove().catch(() => undefined);
  }
  // Slots (workspaces, mounted in quota mode) of the tests' workers, in the default hands directory.
  for (const slot of listSlots(process.env.TANDEM_HANDS_DIR ?? defaultHandsDir()))
    if (await remove(slot.scope, Date.parse(slot.created_at) || 0)) await removeSlotDir(slot.dir).catch(() => undefined);
}

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    temporalCli: string;
  }
}
