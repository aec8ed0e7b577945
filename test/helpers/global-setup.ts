/** Starts one Temporal dev server (in memory) for the whole test run, and removes the run's sandboxes after it. */
import Docker from 'dockerode';
import type { TestProject } from 'vitest/node';
import { findTemporalCli, freePort, startDevServer, type DevServer } from '../../src/cli/dev-server.js';
import { LABEL_SCOPE } from '../../src/activities/sandbox/docker.js';

export { freePort };

let server: DevServer | undefined;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cli = findTemporalCli();
  if (!cli) throw new Error('no temporal CLI found: run scripts/setup first (npm test does)');
  server = await startDevServer({ cli, port: await freePort(), headless: true });
  project.provide('temporalAddress', server.address);
  project.provide('temporalCli', cli);
  // Workers of this run label their sandboxes with this scope (the default: namespace@address).
  const scope = `default@${server.address}`;
  return async () => {
    await server?.stop();
    await removeSandboxes(scope);
  };
}

/**
 * Removes the containers and workspace volumes of one scope: sessions a test left running (or whose worker stopped
 * before their cleanup) would otherwise keep their containers after the run.
 */
async function removeSandboxes(scope: string): Promise<void> {
  const docker = new Docker();
  const filters = { label: [`${LABEL_SCOPE}=${scope}`] };
  const containers = await docker.listContainers({ all: true, filters }).catch(() => []);
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  const { Volumes } = await docker.listVolumes({ filters }).catch(() => ({ Volumes: [] }));
  await Promise.all((Volumes ?? []).map((v) => docker.getVolume(v.Name).remove().catch(() => undefined)));
}

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    temporalCli: string;
  }
}
