/** Starts one Temporal dev server (in memory) for the whole test run. */
import type { TestProject } from 'vitest/node';
import { findTemporalCli, freePort, startDevServer, type DevServer } from '../../src/cli/dev-server.js';

export { freePort };

let server: DevServer | undefined;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const cli = findTemporalCli();
  if (!cli) throw new Error('no temporal CLI found: run scripts/setup first (npm test does)');
  server = await startDevServer({ cli, port: await freePort(), headless: true });
  project.provide('temporalAddress', server.address);
  project.provide('temporalCli', cli);
  return async () => {
    await server?.stop();
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    temporalCli: string;
  }
}
