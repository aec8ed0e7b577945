/**
 * Bad input: signals of the wrong shape sent with the plain `temporal` CLI, and broken agent files given to the
 * `tandem` CLI. Nothing stalls, nothing starts by mistake, and the session stays usable.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it } from 'vitest';
import { reply } from '../fakes/messages-server.js';
import { testAgent, useHarness, waitFor, workerEnv } from '../helpers/env.js';
import { expectSessionIntact, idle } from './check.js';

const run = promisify(execFile);
const h = useHarness('fault-input');

/** `temporal workflow signal` with a raw JSON input, as an outside client would send it. */
async function temporalSignal(id: string, name: string, input: string): Promise<void> {
  await run(inject('temporalCli'), ['workflow', 'signal', '--address', inject('temporalAddress'), '-w', id, '--name', name, '--input', input]);
}

describe('signals of the wrong shape', () => {
  it('are reported as session.error and ignored; the workflow never stalls', async () => {
    h.model.push(reply('first'));
    const id = await h.tandem.start({ agent: testAgent(), message: 'hello' });
    await idle(h.tandem, id, 1);
    const bad: Array<[string, string]> = [
      ['user.message', '{"content": 5}'],
      ['user.message', '"just a string"'],
      ['user.message', '{"content": [{"type": "image"}]}'],
      ['user.message', '{"id": 7, "content": [{"type": "text", "text": "bad id"}]}'],
      ['user.tool_confirmation', '{"tool_use_id": "nope", "result": "maybe"}'],
      ['user.tool_confirmation', '{"tool_use_id": "nope", "result": "allow"}'],
      ['user.custom_tool_result', '{"content": "no id"}'],
      ['user.interrupt', '[1, 2]'],
      ['no.such.signal', '{}'],
    ];
    for (const [name, input] of bad) await temporalSignal(id, name, input);
    const errors = await waitFor(
      () => h.tandem.getEvents(id, { types: ['session.error'] }),
      (ev) => ev.length === bad.length,
      30_000,
      'one session.error per bad signal',
    );
    const messages = errors.map((e) => (e.error as { message: string }).message);
    expect(messages[0]).toMatch(/user\.message: content: must be a non-empty list of content blocks/);
    expect(messages[2]).toMatch(/user\.message: content\[0\]\.source: must be/);
    expect(messages[3]).toMatch(/"id" must be a non-empty string/);
    expect(messages[4]).toMatch(/"result" must be "allow" or "deny"/);
    expect(messages[5]).toMatch(/no pending tool call nope/);
    expect(messages[8]).toMatch(/unknown signal "no\.such\.signal"/);
    expect(errors.every((e) => (e.error as { type: string }).type === 'Signal.Invalid')).toBe(true);
    // No workflow task failed: the history has no WorkflowTaskFailed event.
    const { stdout } = await run(inject('temporalCli'), ['workflow', 'show', '--address', inject('temporalAddress'), '-w', id, '-o', 'json']);
    const types = [...stdout.matchAll(/"eventType": *"([A-Z_]+)"/g)].map((m) => m[1]);
    expect(types).toContain('EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED');
    expect(types).not.toContain('EVENT_TYPE_WORKFLOW_TASK_FAILED');
    // A well-formed signal from the same CLI works.
    h.model.push(reply('second'));
    await temporalSignal(id, 'user.message', '{"content": [{"type": "text", "text": "from the temporal CLI"}]}');
    await idle(h.tandem, id, 2);
    await expectSessionIntact(h.tandem, h.model, id, ['hello', 'from the temporal CLI']);
    await h.tandem.temporal.workflow.getHandle(id).cancel();
  });
});

describe('broken agent files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-bad-agents-'));
  const cases: Array<[string, string, RegExp]> = [
    ['wrong-type.yaml', 'name: a\nmodel: m\nlimits:\n  max_turns: "many"\n', /wrong-type\.yaml:4:\d+: limits\.max_turns:/],
    ['unknown-field.yaml', 'name: a\nmodel: m\nsandbox:\n  gpu: 1\n', /unknown-field\.yaml:4:\d+: sandbox\.gpu: unknown field "gpu"/],
    ['no-model.yaml', 'name: a\nsystem: hi\n', /no-model\.yaml:1:\d+: model: missing required field "model"/],
    ['invalid.yaml', 'name: a\nmodel: [unclosed\n', /invalid\.yaml:\d+:\d+: invalid YAML/],
    ['not-found.yaml', '', /not-found\.yaml: agent file not found/],
  ];

  it.each(cases)('%s: a clear error with file and line, a non-zero exit, nothing started', async (file, text, expected) => {
    const path = join(dir, file);
    if (text) writeFileSync(path, text);
    const before = (await h.tandem.temporal.workflowService.countWorkflowExecutions({ namespace: 'default', query: `TaskQueue = "${h.queue}"` })).count;
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['bin/tandem', 'run', path, 'hi'], {
        env: { ...process.env, ...workerEnv(h.queue, h.model.url) },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      child.on('exit', (c) => resolve({ code: c, stderr: err }));
    });
    expect(code).toBe(2);
    expect(stderr).toMatch(expected);
    const after = (await h.tandem.temporal.workflowService.countWorkflowExecutions({ namespace: 'default', query: `TaskQueue = "${h.queue}"` })).count;
    expect(Number(after)).toBe(Number(before));
  });
});
