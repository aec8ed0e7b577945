/**
 * Faults in what Tandem stands on: the Temporal server stopped and restarted on the same SQLite file, and the
 * Docker engine restarted, each in the middle of a session. Each case ends with the same check.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import Docker from 'dockerode';
import { startDevServer, type DevServer } from '../../src/cli/dev-server.js';
import { TandemClient } from '../../src/client/index.js';
import { loadRuntimeConfig } from '../../src/config/env.js';
import { createWorker, type TandemWorker } from '../../src/worker.js';
import { reply, startMessagesServer, toolUse, type MessagesServer } from '../fakes/messages-server.js';
import { freePort } from '../helpers/global-setup.js';
import { testAgent, waitFor, workflowBundle } from '../helpers/env.js';
import { expectSessionIntact, idle } from './check.js';

const docker = new Docker();
let model: MessagesServer;

beforeAll(async () => {
  model = await startMessagesServer();
});

afterAll(async () => {
  await model?.close();
});

describe('Temporal server restart', () => {
  let server: DevServer | undefined;
  let worker: TandemWorker | undefined;
  let running: Promise<void> | undefined;

  afterAll(async () => {
    await worker?.shutdown();
    await running?.catch(() => undefined);
    await server?.stop();
  });

  it('a session survives its Temporal server stopping and starting again on the same SQLite file', async () => {
    const port = await freePort();
    const dbFile = join(mkdtempSync(join(tmpdir(), 'tandem-restart-')), 'temporal.db');
    const start = () => startDevServer({ cli: inject('temporalCli'), port, dbFile, headless: true });
    server = await start();
    const address = server.address;
    const tandem = new TandemClient(new Client({ connection: await Connection.connect({ address }) }), 'restart');
    worker = await createWorker({
      config: loadRuntimeConfig({ TEMPORAL_ADDRESS: address, TANDEM_TASK_QUEUE: 'restart', TANDEM_REAP_INTERVAL_S: '0' }),
      workflowBundle: await workflowBundle(),
      anthropic: { baseURL: model.url, apiKey: 'test' },
    });
    running = worker.run();
    model.push(reply(toolUse('bash', { command: 'sleep 4; echo survived-restart' }, 'tu_r')), reply('done'));
    const id = await tandem.start({ agent: testAgent(), message: 'outlive the server' });
    await waitFor(() => tandem.getEvents(id), (ev) => ev.some((e) => e.type === 'sandbox.provisioned'), 60_000);
    await server.stop();
    await new Promise((r) => setTimeout(r, 2000));
    server = await start();
    await idle(tandem, id, 2, 180_000);
    const results = await tandem.getEvents(id, { types: ['agent.tool_result'] });
    expect(results).toHaveLength(1);
    expect(JSON.stringify(results[0]!.content)).toContain('survived-restart');
    await expectSessionIntact(tandem, model, id, ['outlive the server']);
    await tandem.temporal.workflow.getHandle(id).cancel();
  });
});

/** Restarts the local Docker engine (as scripts/setup starts it). */
async function restartDockerEngine(): Promise<void> {
  execFileSync('pkill', ['-x', 'dockerd']);
  const running = () => {
    try {
      return execFileSync('pgrep', ['-x', 'dockerd']).toString().trim() !== '';
    } catch {
      return false;
    }
  };
  await waitFor(() => Promise.resolve(running()), (r) => !r, 60_000, 'dockerd to exit');
  const log = openSync(join(tmpdir(), 'tandem-dockerd-restart.log'), 'a');
  spawn('dockerd', [], { detached: true, stdio: ['ignore', log, log] }).unref();
  await waitFor(() => docker.ping().then(() => 'up', () => 'down'), (s) => s === 'up', 60_000, 'dockerd to start');
}

const canRestartDocker = (() => {
  try {
    return process.getuid?.() === 0 && execFileSync('pgrep', ['-x', 'dockerd']).toString().trim() !== '';
  } catch {
    return false;
  }
})();

describe('Docker engine restart', () => {
  it.skipIf(!canRestartDocker)('a tool call survives the Docker engine restarting under it', async () => {
    const address = inject('temporalAddress');
    const queue = `engine-${Date.now()}`;
    const tandem = new TandemClient(new Client({ connection: await Connection.connect({ address }) }), queue);
    const worker = await createWorker({
      config: loadRuntimeConfig({ TEMPORAL_ADDRESS: address, TANDEM_TASK_QUEUE: queue, TANDEM_REAP_INTERVAL_S: '0' }),
      workflowBundle: await workflowBundle(),
      anthropic: { baseURL: model.url, apiKey: 'test' },
    });
    const running = worker.run();
    try {
      model.push(reply(toolUse('bash', { command: 'echo kept > /workspace/k; sleep 5; echo engine-ok-$(cat /workspace/k)' }, 'tu_e')), reply('done'));
      const id = await tandem.start({ agent: testAgent(), message: 'outlive the engine' });
      await waitFor(() => tandem.getEvents(id), (ev) => ev.some((e) => e.type === 'sandbox.provisioned'), 60_000);
      await new Promise((r) => setTimeout(r, 1500));
      await restartDockerEngine();
      await idle(tandem, id, 2, 180_000);
      const results = await tandem.getEvents(id, { types: ['agent.tool_result'] });
      expect(results).toHaveLength(1);
      expect(JSON.stringify(results[0]!.content)).toContain('engine-ok-kept');
      await expectSessionIntact(tandem, model, id, ['outlive the engine']);
      await tandem.temporal.workflow.getHandle(id).cancel();
    } finally {
      await worker.shutdown();
      await running;
    }
  });
});
