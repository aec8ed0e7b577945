/**
 * The shipped coding-agent example on the shipped offline script: the agent file as users get it, the model's
 * replies scripted, every tool call run in a real sandbox. The agent writes a module with a bug and its test, sees
 * the test fail, fixes the bug and sees the suite pass.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { loadScriptFile, startMessagesServer, type MessagesServer } from '../fakes/messages-server.js';
import { sessionEvents, startWorker, testClient, uniqueQueue, waitIdle } from '../helpers/env.js';
import { loadAgentFile } from '../../src/config/agent.js';
import { TandemClient } from '../../src/client/index.js';
import { DEMO_TASK } from '../../src/cli/dev.js';

const root = join(import.meta.dirname, '..', '..');
const queue = uniqueQueue('example');
let client: Client;
let model: MessagesServer;
let worker: Awaited<ReturnType<typeof startWorker>>;

beforeAll(async () => {
  client = await testClient();
  model = await startMessagesServer({ script: await loadScriptFile(join(root, 'examples', 'offline', 'coding-agent.script.json')) });
  worker = await startWorker(queue, model.url);
});

afterAll(async () => {
  await worker?.shutdown();
  await worker?.done;
  await model?.close();
});

describe('examples/coding-agent.yaml', () => {
  it('fixes the bug its tests find, on the offline script, in a real sandbox', async () => {
    const agent = await loadAgentFile(join(root, 'examples', 'coding-agent.yaml'));
    const tandem = new TandemClient(client, queue);
    const id = await tandem.start({ agent, message: DEMO_TASK, title: 'example test' });
    const handle = client.workflow.getHandle(id);
    const state = await waitIdle(handle, 'end_turn', 9, 120_000);
    expect(state.last_error).toBeNull();
    model.assertDone();

    const events = await sessionEvents(client, handle);
    const results = events.filter((e) => e.type === 'agent.tool_result');
    const uses = events.filter((e) => e.type === 'agent.tool_use');
    expect(uses.map((u) => u.name)).toEqual(['write', 'write', 'bash', 'grep', 'read', 'edit', 'bash', 'glob']);
    expect(results).toHaveLength(8);
    expect(results.every((r) => r.is_error !== true)).toBe(true);
    const text = (i: number) => JSON.stringify(results[i]!.content);
    expect(text(2)).toMatch(/FAILED \(failures=1\)/); // the first test run shows the bug
    expect(text(5)).toContain('1 replacement');
    expect(text(6)).toMatch(/Ran 1 test.*OK/); // the fixed code passes
    // The model was sent the real results: the last request carries the passing run.
    const last = model.requests.at(-1)!;
    expect(JSON.stringify(last.body.messages)).toMatch(/Ran 1 test in [\d.]+s\\n\\nOK/);
    await handle.cancel();
  });
});
