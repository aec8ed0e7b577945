/**
 * The shipped coding-agent example on the shipped offline script: the agent file as users get it, the demo's
 * repository (`examples/bugfix-repo`, committed into a local git repository and cloned into the sandbox through the
 * worker's gateway), the model's replies scripted, every tool call run in a real sandbox. The agent runs the
 * repository's tests and sees one fail, finds and fixes the bug, and sees the suite pass.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { loadScriptFile, reply, startMessagesServer, toolUse, type MessagesServer } from '../fakes/messages-server.js';
import { sessionEvents, startWorker, testClient, toolResults, uniqueQueue, waitIdle } from '../helpers/env.js';
import { loadAgentFile } from '../../src/config/agent.js';
import { TandemClient } from '../../src/client/index.js';
import { createDemoRepository, DEMO_TASK, type DemoRepository } from '../../src/cli/dev.js';

const root = join(import.meta.dirname, '..', '..');
const queue = uniqueQueue('example');
let client: Client;
let model: MessagesServer;
let worker: Awaited<ReturnType<typeof startWorker>>;
let repo: DemoRepository;

beforeAll(async () => {
  client = await testClient();
  model = await startMessagesServer({ script: await loadScriptFile(join(root, 'examples', 'offline', 'coding-agent.script.json')) });
  worker = await startWorker(queue, model.url, undefined, {
    env: { TANDEM_HANDS_DIR: mkdtempSync(join(tmpdir(), 'tandem-gw-')) },
  });
  repo = createDemoRepository();
});

afterAll(async () => {
  await worker?.shutdown();
  await worker?.done;
  await model?.close();
  repo?.remove();
});

describe('examples/coding-agent.yaml', () => {
  it('fixes the bug the tests of examples/bugfix-repo find, on the offline script, in a real sandbox', async () => {
    const agent = await loadAgentFile(join(root, 'examples', 'coding-agent.yaml'));
    const tandem = new TandemClient(client, queue);
    const id = await tandem.start({ agent, message: DEMO_TASK, title: 'example test', resources: [repo.resource] });
    const handle = client.workflow.getHandle(id);
    const state = await waitIdle(handle, 'end_turn', 7, 120_000);
    expect(state.last_error).toBeNull();
    model.assertDone();

    const events = await sessionEvents(client, handle);
    const uses = events.filter((e) => e.type === 'agent.tool_use');
    const results = events.filter((e) => e.type === 'agent.tool_result');
    expect(uses.map((u) => u.name)).toEqual(['bash', 'grep', 'read', 'edit', 'bash', 'bash']);
    expect(results).toHaveLength(6);
    const text = (i: number) => (results[i]!.content as Array<{ text: string }>).map((c) => c.text).join('');

    // The first run: the repository, cloned from the host, fails exactly test_first_page, and the shell says so.
    expect(results[0]!.is_error).toBe(true);
    expect(text(0)).toContain('FAIL: test_first_page (test_pager.PageTest');
    expect(text(0)).toContain('AssertionError: Lists differ: [3, 4, 5] != [0, 1, 2]');
    expect(text(0)).toMatch(/Ran 4 tests in [\d.]+s\n\nFAILED \(failures=1\)\n\[exit 1\]$/);
    expect(text(0).match(/^(FAIL|ERROR):/gm)).toHaveLength(1);
    // The search and the read find the slice; the edit changes that one line.
    expect(text(1)).toMatch(/pager\.py:\d+:\s+start = number \* size/);
    expect(text(2)).toContain('start = number * size');
    expect(results[3]!.is_error).not.toBe(true);
    expect(text(3)).toContain('1 replacement');
    // The second run passes, and git sees only the fix.
    expect(results[4]!.is_error).not.toBe(true);
    expect(text(4)).toMatch(/^\.\.\.\.\n-+\nRan 4 tests in [\d.]+s\n\nOK\n?$/);
    expect(text(5)).toMatch(/^ M pager\.py\n/);
    expect(text(5)).toContain('-    start = number * size\n+    start = (number - 1) * size');
    expect(text(5)).not.toContain('__pycache__');

    // The model was sent the real results: the failing run, then the passing one.
    const sent = toolResults(model.requests.at(-1)!);
    expect(sent.get('toolu_demo_01')).toMatchObject({ is_error: true });
    expect(sent.get('toolu_demo_01')?.content).toContain('FAIL: test_first_page');
    expect(sent.get('toolu_demo_05')?.content).toMatch(/Ran 4 tests in [\d.]+s\n\nOK/);
    expect(sent.get('toolu_demo_06')?.content).toContain('+    start = (number - 1) * size');
    const last = events.filter((e) => e.type === 'agent.message').at(-1);
    expect(JSON.stringify(last)).toContain('all 4 tests pass');

    // The repository's file in the workspace holds the fix (read through a tool call of its own), and the
    // repository on the host is untouched: the resource is read-only.
    model.push(reply(toolUse('read', { file_path: '/workspace/bugfix-repo/pager.py' }, 'toolu_check')), reply('checked'));
    await handle.signal('user.message', { content: [{ type: 'text', text: 'show pager.py' }] });
    await waitIdle(handle, 'end_turn', 9, 60_000);
    const check = toolResults(model.requests.at(-1)!).get('toolu_check')?.content ?? '';
    expect(check).toContain('start = (number - 1) * size');
    expect(check).not.toContain('start = number * size');
    expect(readFileSync(join(repo.path, 'pager.py'), 'utf8')).toContain('    start = number * size\n');
    await handle.cancel();
  });
});
