/**
 * What the Temporal UI shows of a session, read back the way the UI reads it: the static summary and details of
 * the execution (describe), the current details (the `__temporal_workflow_metadata` query), and each tool
 * activity's summary (user metadata of its scheduled event in history).
 */
import { describe, expect, it } from 'vitest';
import { reply, toolUse } from '../fakes/messages-server.js';
import { recordSession, testAgent, useHarness, waitIdle } from '../helpers/env.js';
import { decodeJsonPayload } from '../../src/log/read.js';

const h = useHarness('summ', { assertDone: true, record: 'summaries' });

describe('Temporal UI summaries', () => {
  it('a session has a summary, details, current details and one summary per tool call', async () => {
    h.model.push(
      reply(toolUse('bash', { command: 'echo   summarised\n' }, 'tu_s1'), toolUse('read', { file_path: '/workspace/a.txt' }, 'tu_s2')),
      reply('Done.'),
    );
    const agent = testAgent({ name: 'summary-agent', description: 'Checks what the UI shows.' });
    const id = await h.tandem.start({ agent, message: 'Run a command\nand read a file' });
    const handle = h.client.workflow.getHandle(id);
    recordSession(handle);
    await waitIdle(handle, 'end_turn', 2);

    const d = await handle.describe();
    expect(await d.staticSummary()).toBe('summary-agent: Run a command and read a file');
    const details = await d.staticDetails();
    expect(details).toContain('**agent** summary-agent · **model** claude-sonnet-5-5');
    expect(details).toContain('Checks what the UI shows.');
    expect(details).toContain('**tools** agent_toolset_20260401');

    const meta = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
    expect(meta.currentDetails).toMatch(/^\*\*idle\*\* \(end_turn\) · turn 2 · \d+ in \/ \d+ out tokens · last step: model call 2$/);

    const history = await handle.fetchHistory();
    const scheduled = (history.events ?? []).filter((e) => e.activityTaskScheduledEventAttributes);
    const summaries = scheduled.map((e) => ({
      type: e.activityTaskScheduledEventAttributes!.activityType!.name,
      summary: e.userMetadata?.summary ? decodeJsonPayload(e.userMetadata.summary) : undefined,
    }));
    expect(summaries.filter((s) => s.type === 'execute')).toEqual([
      { type: 'execute', summary: 'bash: echo summarised' },
      { type: 'execute', summary: 'read: /workspace/a.txt' },
    ]);
    await handle.cancel();
  });

  it('a titled session shows its title; a search tool call shows its pattern and path', async () => {
    h.model.push(reply(toolUse('grep', { pattern: 'TODO', path: '/workspace' }, 'tu_s3')), reply('No TODOs.'));
    const id = await h.tandem.start({ agent: testAgent(), message: 'find todos', title: 'Find the TODOs' });
    const handle = h.client.workflow.getHandle(id);
    recordSession(handle);
    await waitIdle(handle, 'end_turn', 2);
    expect(await (await handle.describe()).staticSummary()).toBe('Find the TODOs');
    const history = await handle.fetchHistory();
    const summary = (history.events ?? []).find(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'execute',
    )?.userMetadata?.summary;
    expect(summary && decodeJsonPayload(summary)).toBe('grep: TODO in /workspace');
    await handle.cancel();
  });
});
