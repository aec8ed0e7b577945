/**
 * A replay of a session that used a repository with a token and an MCP server with a bearer token: the recorded
 * MCP call is answered from the log (the server is not called again), the diverging call runs live in a sandbox
 * that clones the repository through the credential proxy, and neither token is anywhere in the replay's history or
 * in its container's spec.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readHistory } from '../../src/log/read.js';
import type { AgentDefinition, McpServerConfig, RepositoryResource } from '../../src/shared/types.js';
import { Vault } from '../../src/vault/index.js';
import { startGitServer, type GitServer } from '../fakes/git-server.js';
import { startTestMcpServer, type TestMcpServer } from '../fakes/mcp-http-server.js';
import { reply, toolUse } from '../fakes/messages-server.js';
import { historyText, sandboxName, testAgent, toolResults, useHarness, waitFor } from '../helpers/env.js';

const canary = `tdmcanary${randomBytes(16).toString('hex')}`;
const vault = new Vault(join(mkdtempSync(join(tmpdir(), 'tandem-vault-')), 'vault.json'), {});
vault.set('repo-token', canary);
vault.set('search_token', canary);
const h = useHarness('replay-creds', { assertDone: true, worker: () => ({ vault }) });
let git: GitServer;
let search: TestMcpServer;

beforeAll(async () => {
  git = await startGitServer(canary);
  search = await startTestMcpServer({ token: canary });
});
afterAll(async () => {
  await git?.close();
  await search?.close();
});

describe('a replay keeps every credential out', () => {
  it('answers the MCP call from the log, runs the diverging call live, and holds no token anywhere', async () => {
    const server: McpServerConfig = { type: 'url', name: 'search', url: search.url, headers: { Authorization: 'Bearer ${secret:search_token}' } };
    const agent: AgentDefinition = testAgent({
      tools: [
        { type: 'agent_toolset_20260401' },
        { type: 'mcp_toolset', mcp_server_name: 'search', default_config: { permission_policy: { type: 'always_allow' } } },
      ],
      mcp_servers: [server],
    });
    const resource: RepositoryResource = { type: 'git_repository', url: git.createRepo('canary-repo'), credential: 'repo-token' };
    const step = (cmd: string, id: string) => reply(toolUse('bash', { command: `cd /workspace/canary-repo && ${cmd}` }, id));
    h.model.push(reply(toolUse('lookup', { query: 'tokens' }, 'tu_q')), step('git log --oneline | wc -l', 'tu_git'), reply('done'));
    const origin = await h.tandem.start({ agent, resources: [resource], message: 'look it up' });
    await waitFor(() => h.tandem.getSession(origin), (s) => s.status === 'idle' && s.turn >= 3, 120_000, 'the recorded session');
    const mcpCalls = search.calls.length;

    // The replay asks the same question, then does something else in the repository: it goes live there.
    h.model.push(reply(toolUse('lookup', { query: 'tokens' }, 'tu_q')), step('git remote -v; git status --short | wc -l', 'tu_live'), reply('done'));
    const replay = await h.tandem.replay(origin, { agent });
    await waitFor(() => h.tandem.replayReport(replay), (r) => r.done, 120_000, 'the replay');
    const report = await h.tandem.replayReport(replay);
    expect(report).toMatchObject({ diverged_at: 1, sandboxes: 1 });
    expect(search.calls.length).toBe(mcpCalls); // the recorded result answered it
    const live = toolResults(h.model.requests.at(-1)!).get('tu_live')!.content;
    expect(live).toContain('127.0.0.1:47011'); // the clone's remote is the proxy, with the phantom token
    expect(live).not.toContain(canary);

    const text = historyText(await readHistory(h.tandem.temporal, replay));
    expect(text).toContain('repo-token'); // the secret's name is there, its value is not
    expect(text).not.toContain(canary);
    const info = await new Docker().getContainer(sandboxName(replay)).inspect();
    expect(JSON.stringify(info)).not.toContain(canary);
    await Promise.all([origin, replay].map((id) => h.client.workflow.getHandle(id).cancel()));
  });
});
