/**
 * examples/research-agent.yaml as shipped: its MCP notes server (@modelcontextprotocol/server-filesystem over stdio)
 * runs on the worker, the scripted model lists and reads notes through it, and no sandbox is ever created.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { readHistory } from '../../src/log/read.js';
import { loadAgentFile } from '../../src/config/agent.js';
import { reply, toolUse } from '../fakes/messages-server.js';
import { sessionEvents, startSession, toolResults, useHarness, waitIdle } from '../helpers/env.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/research-agent.yaml', import.meta.url));
// The worker runs in the repository root, where the example's relative paths point.
const NOTES = join(process.cwd(), 'examples', 'research-notes');

const h = useHarness('research', { assertDone: true });

describe('examples/research-agent.yaml', () => {
  it('reads the notes through its MCP server and answers, with no sandbox', async () => {
    const agent = await loadAgentFile(EXAMPLE);
    const first = h.model.requests.length;
    h.model.push(
      reply(toolUse('list_directory', { path: NOTES }, 'tu_ls')),
      reply(toolUse('read_text_file', { path: join(NOTES, 'durable-execution.md') }, 'tu_read')),
      reply('Per durable-execution.md, a replay reads activity results back from the history instead of rerunning them.'),
    );
    const handle = await startSession(h.client, h.queue, { agent }, 'How does a durable execution engine avoid running side effects twice?');
    const state = await waitIdle(handle, 'end_turn', 3);

    // Only the notes server's reading tools are offered: no built-in tools, no writing tools.
    const offered = h.model.requests[first]!.body.tools!.map((t) => t.name).sort();
    expect(offered).toContain('read_text_file');
    expect(offered).toContain('list_directory');
    for (const absent of ['bash', 'read', 'write_file', 'edit_file', 'create_directory', 'move_file']) expect(offered).not.toContain(absent);
    expect(JSON.stringify(h.model.requests[first]!.body.system)).toContain('research folder');

    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_ls')?.content).toContain('[FILE] durable-execution.md');
    expect(results.get('tu_ls')?.content).toContain('[FILE] agent-harness.md');
    expect(results.get('tu_read')?.is_error).toBe(false);
    expect(results.get('tu_read')?.content).toContain('a replay reads it back instead of running the activity again');

    const events = await sessionEvents(h.client, handle);
    expect(events.filter((e) => e.type === 'agent.mcp_tool_use').map((e) => [e.mcp_server_name, e.name])).toEqual([
      ['notes', 'list_directory'],
      ['notes', 'read_text_file'],
    ]);
    expect(events.at(-1)).toMatchObject({ type: 'session.status_idle' });
    expect(state.sandboxes).toEqual([]);
    const scheduled = (await readHistory(h.client, handle.workflowId)).map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name);
    expect(scheduled).not.toContain('provision');
    await handle.cancel();
  });
});
