/**
 * Observability of a worker process: its Prometheus endpoint (TANDEM_METRICS_ADDRESS) serves the SDK's metrics and
 * Tandem's own after a session with a tool call, and TANDEM_LOG_FORMAT=json makes every log line a JSON object.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { reply, startMessagesServer, toolUse, type MessagesServer } from '../fakes/messages-server.js';
import { freePort } from '../helpers/global-setup.js';
import { killProcess, sandboxName, startSession, testClient, uniqueQueue, waitFor, waitIdle, workerEnv } from '../helpers/env.js';
import { repoRoot } from '../helpers/cli.js';

const queue = uniqueQueue('metrics');
let client: Client;
let model: MessagesServer;
let worker: ChildProcess;
let metricsUrl: string;
let output = '';

beforeAll(async () => {
  client = await testClient();
  model = await startMessagesServer();
  const address = `127.0.0.1:${await freePort()}`;
  metricsUrl = `http://${address}/metrics`;
  worker = spawn(process.execPath, ['bin/tandem', 'worker'], {
    cwd: repoRoot,
    env: {
      ...process.env,
      ...workerEnv(queue, model.url),
      TANDEM_METRICS_ADDRESS: address,
      TANDEM_LOG_FORMAT: 'json',
      TANDEM_LOG_LEVEL: 'INFO',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  worker.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  worker.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  await waitFor(async () => output, (o) => o.includes('worker polling task queue'), 60_000, 'the worker to poll');
});

afterAll(async () => {
  if (worker) await killProcess(worker);
  await model?.close();
});

/** Sum of the samples of `name` (a counter, or a histogram's `_count`/`_sum`) whose labels contain `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  let found = false;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const l = m[2] ?? '';
    if (!Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`))) continue;
    found = true;
    total += Number(m[3]);
  }
  if (!found) throw new Error(`no sample of ${name} ${JSON.stringify(labels)} in /metrics`);
  return total;
}

describe('worker metrics and logs', () => {
  it('serves Tandem metrics with counts after a session with a tool call', async () => {
    model.push(reply(toolUse('bash', { command: 'echo measured' }, 'tu_m1')), reply('Measured.'));
    const handle = await startSession(client, queue, {}, 'measure something');
    await waitIdle(handle, 'end_turn', 2);
    model.assertDone();

    const text = await waitFor(
      () => fetch(metricsUrl).then((r) => r.text()),
      (t) => /tandem_tool_latency_count\{[^}]*tool="bash"/.test(t),
      30_000,
      'the tool metric to be exported',
    );
    const prefix = /^(\w*)tandem_model_ttft_count/m.exec(text)?.[1] ?? '';
    const m = (name: string, labels?: Record<string, string>) => sample(text, `${prefix}${name}`, labels);
    expect(m('tandem_model_ttft_count')).toBe(2);
    expect(m('tandem_model_latency_count', { model: 'claude-sonnet-5-5' })).toBe(2);
    expect(m('tandem_model_latency_sum')).toBeGreaterThan(0);
    expect(m('tandem_model_input_tokens')).toBeGreaterThan(0);
    expect(m('tandem_model_output_tokens')).toBeGreaterThan(0);
    expect(m('tandem_tool_latency_count', { tool: 'bash' })).toBe(1);
    expect(m('tandem_tool_latency_sum', { tool: 'bash' })).toBeGreaterThan(0);
    expect(m('tandem_sandbox_provision_latency_count')).toBe(1);
    // The SDK's own metrics share the endpoint.
    expect(sample(text, 'temporal_activity_execution_latency_count')).toBeGreaterThanOrEqual(3);
    await handle.cancel();
    await handle.result().catch(() => undefined);
  });

  it('counts a sandbox loss', async () => {
    model.push(reply(toolUse('bash', { command: 'sleep 30' }, 'tu_m2')), reply('Recovered.'));
    const handle = await startSession(client, queue, {}, 'sleep a while');
    const { execFileSync } = await import('node:child_process');
    const container = sandboxName(handle.workflowId);
    await waitFor(
      async () => execFileSync('docker', ['top', container], { encoding: 'utf8' }),
      (ps) => ps.includes('sleep 30'),
      60_000,
      'the tool call to run',
    );
    execFileSync('docker', ['kill', container]);
    // The retry runs the tool in a fresh container; `sleep 30` then completes there.
    await waitIdle(handle, 'end_turn', 2, 90_000);
    const text = await fetch(metricsUrl).then((r) => r.text());
    const prefix = /^(\w*)tandem_model_ttft_count/m.exec(text)?.[1] ?? '';
    expect(sample(text, `${prefix}tandem_sandbox_lost`)).toBeGreaterThanOrEqual(1);
    expect(sample(text, `${prefix}tandem_tool_errors`, { tool: 'bash', type: 'Sandbox.Lost' })).toBeGreaterThanOrEqual(1);
    model.assertDone();
    await handle.cancel();
    await handle.result().catch(() => undefined);
  });

  it('logs JSON lines', () => {
    const lines = output.split('\n').filter((l) => l.trim());
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      const entry = JSON.parse(line) as { time: string; level: string; message: string };
      expect(entry.time).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR']).toContain(entry.level);
      expect(typeof entry.message).toBe('string');
    }
    expect(lines.some((l) => JSON.parse(l).message.startsWith('worker polling task queue'))).toBe(true);
  });
});
