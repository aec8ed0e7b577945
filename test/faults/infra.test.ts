/**
 * Faults in what Tandem stands on: the Temporal server stopped and restarted on the same SQLite file, and the
 * Docker engine restarted, each in the middle of a session. Each case ends with the same check.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import Docker from 'dockerode';
import { freePort, startDevServer, type DevServer } from '../../src/cli/dev-server.js';
import { TandemClient } from '../../src/client/index.js';
import { reply, startMessagesServer, toolUse, type MessagesServer } from '../fakes/messages-server.js';
import { startWorker, testAgent, testClient, waitFor } from '../helpers/env.js';
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
  let worker: Awaited<ReturnType<typeof startWorker>> | undefined;

  afterAll(async () => {
    await worker?.shutdown();
    await worker?.done.catch(() => undefined);
    await server?.stop();
  });

  it('a session survives its Temporal server stopping and starting again on the same SQLite file', async () => {
    const port = await freePort();
    const dbFile = join(mkdtempSync(join(tmpdir(), 'tandem-restart-')), 'temporal.db');
    const start = () => startDevServer({ cli: inject('temporalCli'), port, dbFile, headless: true });
    server = await start();
    const tandem = new TandemClient(await testClient(server.address), 'restart');
    worker = await startWorker('restart', model.url, server.address);
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
    const queue = `engine-${Date.now()}`;
    const tandem = new TandemClient(await testClient(), queue);
    const worker = await startWorker(queue, model.url);
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
      await worker.done;
    }
  });
});
