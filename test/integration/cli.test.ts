/**
 * The `tandem` command as a user runs it: a separate process against the real dev server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { startMessagesServer, reply, toolUse, apiError, type MessagesServer } from '../fakes/messages-server.js';
import { freePort } from '../helpers/global-setup.js';
import { runTandem, type CliRun } from '../helpers/cli.js';
import { sessionState, startWorker, testClient, uniqueQueue, waitFor, waitIdle, workerEnv } from '../helpers/env.js';

const root = join(import.meta.dirname, '..', '..');
let client: Client;
let model: MessagesServer;
let worker: Awaited<ReturnType<typeof startWorker>>;
const queue = uniqueQueue('cli');
const children: ChildProcess[] = [];

/** Runs `tandem <args>` against this file's worker and scripted model. */
function tandem(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return runTandem(args, { ...workerEnv(queue, model.url), ...env });
}

beforeAll(async () => {
  client = await testClient();
  model = await startMessagesServer();
  worker = await startWorker(queue, model.url);
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await worker?.shutdown();
  await worker?.done;
  await model?.close();
});

function sessionIdOf(run: CliRun): string {
  const m = /session (sesn_[a-z0-9]+) started/.exec(run.stderr);
  if (!m) throw new Error(`no session id in: ${run.stderr}`);
  return m[1]!;
}

describe('tandem CLI', () => {
  it('run prints the events of a session until it is idle; send --wait continues it', async () => {
    model.push(reply(toolUse('bash', { command: 'echo from-the-sandbox' }, 'tu_cli')), reply('The command printed it.'));
    const run = await tandem(['run', 'examples/coding-agent.yaml', 'say something from the sandbox']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/user\.message\s+say something from the sandbox/);
    expect(run.stdout).toMatch(/agent\.tool_use\s+bash \{"command":"echo from-the-sandbox"\}/);
    expect(run.stdout).toMatch(/agent\.tool_result\s+ok from-the-sandbox/);
    expect(run.stdout).toMatch(/agent\.message\s+The command printed it\./);
    expect(run.stdout.trimEnd().split('\n').at(-1)).toMatch(/session\.status_idle\s+end_turn$/);
    const id = sessionIdOf(run);

    model.push(reply('second answer'));
    const send = await tandem(['send', id, 'and now?', '--wait']);
    expect(send.code).toBe(0);
    expect(send.stdout).toMatch(/user\.message\s+and now\?/);
    expect(send.stdout).toMatch(/agent\.message\s+second answer/);
    expect(send.stdout).not.toContain('say something from the sandbox'); // only what came after the send

    const events = await tandem(['events', id, '--json']);
    const parsed = events.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string });
    expect(parsed.filter((e) => e.type === 'user.message')).toHaveLength(2);
    await client.workflow.getHandle(id).cancel();
    model.assertDone();
  });

  it('interrupt stops a long tool call and wake retries after a model error', async () => {
    model.push(reply(toolUse('bash', { command: 'sleep 60' }, 'tu_long')));
    const handle = await client.workflow.start('agentSession', {
      taskQueue: queue,
      workflowId: `sesn_cli_${Date.now()}`,
      args: [{ agent: { name: 'a', model: 'm', tools: [{ type: 'agent_toolset_20260401' }] }, initial_events: [{ content: [{ type: 'text', text: 'sleep' }] }] }],
    });
    await waitFor(() => sessionState(handle), (s) => s.sandboxes.length === 1, 60_000, 'provisioned');
    const interrupt = await tandem(['interrupt', handle.workflowId]);
    expect(interrupt.code).toBe(0);
    await waitIdle(handle, 'end_turn', 1, 30_000);

    model.push(apiError(400, { message: 'scripted failure' }));
    expect((await tandem(['send', handle.workflowId, 'try again'])).code).toBe(0);
    await waitFor(() => sessionState(handle), (s) => s.stop_reason?.type === 'retries_exhausted', 30_000);
    model.push(reply('recovered'));
    expect((await tandem(['wake', handle.workflowId])).code).toBe(0);
    const state = await waitIdle(handle, 'end_turn', 2, 30_000);
    expect(state.last_error).toBeNull();
    await handle.cancel();
    model.assertDone();
  });

  it('rejects a bad agent file with file, line and field, and starts nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-cli-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'name: broken\nmodel: claude-sonnet-5-5\nsandbox:\n  memory_mb: lots\n');
    const before = model.requests.length;
    const run = await tandem(['run', file, 'hello']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`${file}:4:14: sandbox.memory_mb:`);
    expect(model.requests.length).toBe(before);
  });

  it('send to a session that does not exist is one clear error and a non-zero exit', async () => {
    const run = await tandem(['send', 'sesn_does_not_exist', 'hi']);
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(`tandem: no session "sesn_does_not_exist" on ${inject('temporalAddress')}`);
  });

  it('dev starts a dev server with a SQLite file; sessions survive its restart', async () => {
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'tandem-dev-'));
    const env = { TEMPORAL_ADDRESS: `127.0.0.1:${port}`, TANDEM_DATA_DIR: dataDir, TANDEM_TASK_QUEUE: 'tandem' };
    const startDev = async (): Promise<{ child: ChildProcess; output: () => string }> => {
      const child = spawn(process.execPath, ['bin/tandem', 'dev', '--ui-port', String(await freePort())], {
        cwd: root,
        env: { ...process.env, ...workerEnv('tandem', model.url), ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      let out = '';
      child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
      await waitFor(async () => out, (o) => o.includes('worker polling'), 60_000, 'tandem dev to start');
      return { child, output: () => out };
    };
    const first = await startDev();
    expect(first.output()).toContain('starting the Temporal dev server');
    expect(first.output()).toMatch(/Temporal UI: http:\/\/127\.0\.0\.1:\d+/);
    model.push(reply('hello from dev'));
    const run = await tandem(['run', 'examples/coding-agent.yaml', 'hi dev'], env);
    expect(run.code).toBe(0);
    const id = sessionIdOf(run);
    first.child.kill('SIGINT');
    await new Promise((r) => first.child.once('exit', r));

    const second = await startDev();
    const events = await tandem(['events', id], env);
    expect(events.code).toBe(0);
    expect(events.stdout).toMatch(/agent\.message\s+hello from dev/);
    // The session is alive in the restarted server and answers again.
    model.push(reply('still here'));
    const send = await tandem(['send', id, 'are you there?', '--wait'], env);
    expect(send.stdout).toMatch(/agent\.message\s+still here/);
    second.child.kill('SIGINT');
    await new Promise((r) => second.child.once('exit', r));
    model.assertDone();
  });
});

describe('tandem rewind and events slicing', () => {
  it('rewinds a session from the command line and shows both branches', async () => {
    model.push(reply('one'), reply('two'));
    const run = await tandem(['run', 'examples/coding-agent.yaml', 'q1']);
    const id = sessionIdOf(run);
    expect((await tandem(['send', id, 'q2', '--wait'])).code).toBe(0);
    const users = await tandem(['events', id, '--type', 'user.message', '--json']);
    const lines = users.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string });
    expect(lines).toHaveLength(2);
    const rewind = await tandem(['rewind', id, '--to', lines[1]!.id]);
    expect(rewind.code).toBe(0);
    const oldRun = /--run (\S+)/.exec(rewind.stdout)?.[1];
    expect(oldRun).toBeTruthy();
    await waitFor(() => tandem(['events', id, '--json']), (r) => !r.stdout.includes('"q2"') && r.stdout.trim().endsWith('}'), 30_000);
    const old = await tandem(['events', id, '--run', oldRun!, '--type', 'agent.message']);
    expect(old.stdout).toMatch(/agent\.message\s+two/);
    const limited = await tandem(['events', id, '--limit', '2', '--json']);
    expect(limited.stdout.trim().split('\n')).toHaveLength(2);
    const bad = await tandem(['events', id, '--type', 'agent.nonsense']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/unknown event type agent\.nonsense/);
    await client.workflow.getHandle(id).cancel();
    model.assertDone();
  });
});
