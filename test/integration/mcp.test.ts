/**
 * MCP servers through the harness: real servers (server-everything over stdio, a streamable HTTP server built with
 * the MCP SDK that requires a bearer token), a real worker, real Temporal, and the scripted Messages API server.
 * The token is a canary secret in a temporary vault: it must appear in no history payload and in no sandbox.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { readHistory } from '../../src/log/read.js';
import { McpHub } from '../../src/activities/mcp.js';
import { Signals } from '../../src/shared/names.js';
import type { AgentDefinition, McpServerConfig } from '../../src/shared/types.js';
import { Vault } from '../../src/vault/index.js';
import { reply, text, toolUse, type RecordedRequest } from '../fakes/messages-server.js';
import { startTestMcpServer, type TestMcpServer } from '../fakes/mcp-http-server.js';
import {
  sendMessage,
  sessionEvents,
  sessionState,
  startSession,
  testAgent,
  toolResults,
  useHarness,
  waitFor,
  waitIdle,
  historyText,
  sandboxName,
} from '../helpers/env.js';

// The worker of this file reads this vault (createWorker's default `new Vault()` follows TANDEM_VAULT_FILE).
const vaultFile = join(mkdtempSync(join(tmpdir(), 'tandem-mcp-vault-')), 'vault.json');
process.env.TANDEM_VAULT_FILE = vaultFile;
const vault = new Vault(vaultFile);
const CANARY = `canary${randomUUID().replace(/-/g, '')}`;
const ENV_CANARY = `envcanary${randomUUID().replace(/-/g, '')}`;
vault.set('search_token', CANARY);
vault.set('env_canary', ENV_CANARY);
vault.set('wrong_token', 'not-the-token');

const EVERYTHING = fileURLToPath(new URL('../../node_modules/@modelcontextprotocol/server-everything/dist/index.js', import.meta.url));
// A marker argument (ignored by the server) that finds this file's server processes in `ps`.
const MARKER = `--tandem-test-${randomUUID().slice(0, 8)}`;

const docker = new Docker();
const h = useHarness('mcp', { assertDone: true, record: 'mcp' });
let search: TestMcpServer;

beforeAll(async () => {
  search = await startTestMcpServer({ token: CANARY });
});
afterAll(async () => {
  await search?.close();
});

const everything: McpServerConfig = {
  type: 'stdio',
  name: 'everything',
  command: process.execPath,
  args: [EVERYTHING, 'stdio', MARKER],
  env: { TANDEM_TEST_ENV_CANARY: { secret: 'env_canary' } },
};

function mcpAgent(servers: McpServerConfig[], policy: 'always_allow' | 'always_ask' | null, extra: Partial<AgentDefinition> = {}): AgentDefinition {
  return testAgent({
    tools: [
      { type: 'agent_toolset_20260401' },
      ...servers.map((s) => ({
        type: 'mcp_toolset' as const,
        mcp_server_name: s.name,
        ...(policy ? { default_config: { permission_policy: { type: policy } } } : {}),
      })),
    ],
    mcp_servers: servers,
    ...extra,
  });
}


function activityTypes(history: Awaited<ReturnType<typeof readHistory>>): string[] {
  return history.flatMap((e) => (e.activityTaskScheduledEventAttributes ? [e.activityTaskScheduledEventAttributes.activityType?.name ?? ''] : []));
}

function serverProcesses(marker = MARKER): number {
  const out = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.includes(marker)).length;
}

function systemText(req: RecordedRequest): string {
  return JSON.stringify(req.body.system ?? '');
}

describe('MCP tools through the harness', () => {
  it('calls server-everything over stdio; results reach the model; no sandbox; one reused server process', async () => {
    const first = h.model.requests.length;
    h.model.push(
      reply(text('Echoing.'), toolUse('echo', { message: 'hello from tandem' }, 'tu_echo')),
      reply(toolUse('get-sum', { a: 1 }, 'tu_bad')), // invalid input: the server says so
      reply(toolUse('get-env', {}, 'tu_env')), // the server prints its environment, which holds a secret
      reply(toolUse('get-sum', { a: 2, b: 3 }, 'tu_sum')),
      reply('All done.'),
    );
    const handle = await startSession(h.client, h.queue, { agent: mcpAgent([everything], 'always_allow') }, 'use the MCP tools');
    const state = await waitIdle(handle, 'end_turn', 5);

    // The model was offered the server's tools next to the built-in ones.
    const offered = h.model.requests[first]!.body.tools!.map((t) => t.name);
    expect(offered).toEqual(expect.arrayContaining(['bash', 'read', 'echo', 'get-sum', 'get-env']));
    const echoDef = h.model.requests[first]!.body.tools!.find((t) => t.name === 'echo')!;
    expect(echoDef.input_schema).toMatchObject({ type: 'object', properties: { message: { type: 'string' } } });

    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_echo')).toEqual({ content: 'Echo: hello from tandem', is_error: false });
    expect(results.get('tu_bad')?.is_error).toBe(true);
    expect(results.get('tu_bad')?.content).toMatch(/Invalid arguments for tool get-sum/);
    expect(results.get('tu_sum')?.content).toContain('5');
    const env = results.get('tu_env')!.content;
    expect(env).toContain('TANDEM_TEST_ENV_CANARY');
    expect(env).toContain('[secret env_canary]');
    expect(env).not.toContain(ENV_CANARY);
    // The worker's own environment is not passed on (only PATH, HOME and the like, plus the server's env).
    expect(env).not.toContain('TANDEM_VAULT_FILE');
    expect(env).not.toContain('ANTHROPIC_API_KEY');

    const events = await sessionEvents(h.client, handle);
    const use = events.find((e) => e.type === 'agent.mcp_tool_use' && e.tool_use_id === 'tu_echo');
    expect(use).toMatchObject({ mcp_server_name: 'everything', name: 'echo', input: { message: 'hello from tandem' } });
    const result = events.find((e) => e.type === 'agent.mcp_tool_result' && e.mcp_tool_use_id === 'tu_echo');
    expect(result).toMatchObject({ is_error: false, content: [{ type: 'text', text: 'Echo: hello from tandem' }] });
    expect(events.filter((e) => e.type === 'agent.mcp_tool_result')).toHaveLength(4);
    expect(events.some((e) => e.type === 'agent.tool_use' || e.type === 'agent.tool_result')).toBe(false);

    // MCP needs no sandbox: nothing was provisioned, no tool ran through execute.
    expect(state.sandboxes).toEqual([]);
    const history = await readHistory(h.client, handle.workflowId);
    expect(activityTypes(history).filter((t) => t === 'callMcpTool')).toHaveLength(4);
    expect(activityTypes(history)).not.toContain('provision');
    expect(activityTypes(history)).not.toContain('execute');
    // Five model calls and four tool calls went to one server process, kept alive between them.
    expect(serverProcesses()).toBe(1);
    expect(historyText(await readHistory(h.client, handle.workflowId))).not.toContain(ENV_CANARY);
    await handle.cancel();
  });

  it('an always_ask MCP tool waits for user.tool_confirmation; allow runs it, deny tells the model', async () => {
    h.model.push(
      reply(toolUse('echo', { message: 'asked first' }, 'tu_ask'), toolUse('get-sum', { a: 2, b: 2 }, 'tu_deny')),
      reply('Understood.'),
    );
    // No default_config: MCP toolsets ask by default.
    const handle = await startSession(h.client, h.queue, { agent: mcpAgent([everything], null) }, 'echo something');
    const waiting = await waitIdle(handle, 'requires_action', 1);
    expect(waiting.stop_reason).toEqual({ type: 'requires_action', event_ids: ['tu_ask', 'tu_deny'] });
    expect(waiting.pending.map((p) => [p.tool_use_id, p.kind, p.mcp])).toEqual([
      ['tu_ask', 'confirmation', { server: 'everything', tool: 'echo' }],
      ['tu_deny', 'confirmation', { server: 'everything', tool: 'get-sum' }],
    ]);
    let history = await readHistory(h.client, handle.workflowId);
    expect(activityTypes(history)).not.toContain('callMcpTool'); // nothing ran before the answer

    await handle.signal(Signals.toolConfirmation, { tool_use_id: 'tu_ask', result: 'allow' });
    await handle.signal(Signals.toolConfirmation, { tool_use_id: 'tu_deny', result: 'deny', deny_message: 'No sums today.' });
    await waitIdle(handle, 'end_turn', 2);
    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_ask')).toEqual({ content: 'Echo: asked first', is_error: false });
    expect(results.get('tu_deny')).toEqual({ content: 'No sums today.', is_error: true });
    const events = await sessionEvents(h.client, handle);
    expect(events.find((e) => e.type === 'agent.mcp_tool_result' && e.mcp_tool_use_id === 'tu_deny')).toMatchObject({
      is_error: true,
      mcp_server_name: 'everything',
      name: 'get-sum',
    });
    history = await readHistory(h.client, handle.workflowId);
    expect(activityTypes(history).filter((t) => t === 'callMcpTool')).toHaveLength(1);
    await handle.cancel();
  });

  it('calls a bearer-token HTTP server with the vault secret; the token is in no history payload and not in the sandbox', async () => {
    const server: McpServerConfig = { type: 'url', name: 'search', url: search.url, headers: { Authorization: 'Bearer ${secret:search_token}' } };
    const before = search.authorizations.length;
    // The bash command finds the canary without naming it (a character class splits it).
    const pattern = `${CANARY.slice(0, 10)}[${CANARY[10]}]${CANARY.slice(11)}`;
    h.model.push(
      reply(toolUse('lookup', { query: 'durable execution' }, 'tu_lookup')),
      reply(toolUse('echo_headers', {}, 'tu_headers')),
      reply(
        toolUse(
          'bash',
          { command: `env | grep -c '${pattern}'; grep -rsl '${pattern}' /workspace /tmp /home /etc /run /var /opt /root; echo "grep-status=$?"` },
          'tu_bash',
        ),
      ),
      reply('Found it.'),
    );
    const handle = await startSession(h.client, h.queue, { agent: mcpAgent([server], 'always_allow') }, 'search for durable execution');
    await waitIdle(handle, 'end_turn', 4);

    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_lookup')).toEqual({ content: 'result for durable execution', is_error: false });
    // A listing that names the token reaches the model with the secret's name in its place.
    const offered = h.model.requests.at(-1)!.body.tools!.find((t) => t.name === 'echo_headers')!;
    expect(offered.description).toContain('listed for Bearer [secret search_token]');
    expect(JSON.stringify(h.model.requests.at(-1)!.body)).not.toContain(CANARY);
    // The server got the token; a server that echoes it back does not get it into the session.
    expect(search.authorizations.slice(before)).toContain(`Bearer ${CANARY}`);
    expect(results.get('tu_headers')?.content).toContain('Bearer [secret search_token]');
    expect(results.get('tu_headers')?.content).not.toContain(CANARY);
    // The sandbox (provisioned for bash) has no trace of the token: not in its environment, not in any file.
    const bash = results.get('tu_bash')!;
    const lines = bash.content.trim().split('\n');
    expect(lines[0]).toBe('0'); // no environment variable holds it
    expect(lines.at(-1)).toMatch(/^grep-status=[12]$/); // 1: no match; 2: some file was unreadable, still no match
    expect(lines.filter((l) => l.startsWith('/'))).toEqual([]);
    const info = await docker.getContainer(sandboxName(handle.workflowId)).inspect();
    expect(JSON.stringify(info.Config.Env)).not.toContain(CANARY);
    expect(JSON.stringify(info)).not.toContain(CANARY);

    // Every payload of every history event: the secret's name is there, its value is not.
    const all = historyText(await readHistory(h.client, handle.workflowId));
    expect(all).toContain('search_token');
    expect(all).toContain('result for durable execution');
    expect(all).not.toContain(CANARY);
    await handle.cancel();
    await waitFor(() => docker.getContainer(info.Id).inspect().then(() => 'exists', () => 'gone'), (s) => s === 'gone', 30_000, 'container removal');
  });

  it('a revoked or wrong token is a clear tool error or a note to the model, never a dead session', async () => {
    const server: McpServerConfig = { type: 'url', name: 'search', url: search.url, headers: { Authorization: 'Bearer ${secret:search_token}' } };
    h.model.push(
      reply(toolUse('lookup', { query: 'one' }, 'tu_ok')),
      () => {
        search.setToken('rotated-token'); // the server revokes the token between two calls
        return reply(toolUse('lookup', { query: 'two' }, 'tu_revoked'));
      },
      reply('The search server refused me.'),
    );
    const handle = await startSession(h.client, h.queue, { agent: mcpAgent([server], 'always_allow') }, 'look up two things');
    try {
      await waitIdle(handle, 'end_turn', 3);
    } finally {
      search.setToken(CANARY);
    }
    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_ok')?.is_error).toBe(false);
    const revoked = results.get('tu_revoked')!;
    expect(revoked.is_error).toBe(true);
    expect(revoked.content).toMatch(/MCP server "search" refused the credentials \(HTTP 401\)/);
    expect(revoked.content).toContain('(Mcp.AuthenticationFailed)');
    expect(revoked.content).toContain('after 1 attempt(s)'); // not retried
    expect(revoked.content).not.toContain(CANARY);

    // A server whose token is wrong from the start cannot list its tools: the model is told, the session goes on.
    const wrong: McpServerConfig = { type: 'url', name: 'search2', url: search.url, headers: { Authorization: 'Bearer ${secret:wrong_token}' } };
    h.model.push(reply('I cannot search right now.'));
    await handle.cancel();
    const second = await startSession(h.client, h.queue, { agent: mcpAgent([wrong], 'always_allow') }, 'search');
    await waitIdle(second, 'end_turn', 1);
    const req = h.model.requests.at(-1)!;
    expect(req.body.tools?.map((t) => t.name)).not.toContain('lookup');
    expect(systemText(req)).toMatch(/MCP server \\"search2\\" is unavailable.*refused the credentials \(HTTP 401\)/);
    expect(systemText(req)).not.toContain('not-the-token');
    expect(historyText(await readHistory(h.client, handle.workflowId))).not.toContain(CANARY);
    await second.cancel();
  });

  it('an unknown secret name stops the start with one sentence, and is a typed non-retryable failure on the worker', async () => {
    const server: McpServerConfig = { type: 'url', name: 'search', url: search.url, headers: { Authorization: 'Bearer ${secret:late_token}' } };
    const agent = mcpAgent([server], 'always_allow');
    await expect(h.tandem.start({ agent, message: 'hi', vault })).rejects.toThrow(
      'cannot start the session: the vault has no secret "late_token"; add it with `tandem vault set late_token` or the environment variable TANDEM_SECRET_LATE_TOKEN',
    );

    // Started without the check (a client elsewhere): the first model call fails once, typed, not retried.
    const requestsBefore = h.model.requests.length;
    const handle = await startSession(h.client, h.queue, { agent }, 'hi');
    const state = await waitIdle(handle, 'retries_exhausted', 0);
    expect(state.last_error).toMatchObject({ type: 'Vault.SecretMissing', retryable: false });
    expect(state.last_error?.message).toContain('"late_token"');
    expect(h.model.requests.length).toBe(requestsBefore);
    const history = await readHistory(h.client, handle.workflowId);
    const started = history.filter((e) => e.activityTaskStartedEventAttributes);
    expect(started.map((e) => e.activityTaskStartedEventAttributes?.attempt)).toEqual([1]);

    // Once the secret is set, wake retries and the session goes on.
    vault.set('late_token', CANARY);
    h.model.push(reply(toolUse('lookup', { query: 'late' }, 'tu_late')), reply('ok'));
    await handle.signal(Signals.wake, {});
    await waitIdle(handle, 'end_turn', 2);
    expect(toolResults(h.model.requests.at(-1)!).get('tu_late')).toEqual({ content: 'result for late', is_error: false });
    expect(historyText(await readHistory(h.client, handle.workflowId))).not.toContain(CANARY);
    await handle.cancel();
  });

  it('tandem run refuses an agent file that names a secret the vault lacks, in one sentence', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'tandem-mcp-agent-')), 'agent.yaml');
    writeFileSync(
      file,
      [
        'name: cli-agent',
        'model: claude-sonnet-5-5',
        'tools: [{type: mcp_toolset, mcp_server_name: search}]',
        'mcp_servers:',
        `  - {type: url, name: search, url: "${search.url}", headers: {Authorization: "Bearer \${secret:never_set}"}}`,
      ].join('\n'),
    );
    const run = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['bin/tandem', 'run', file, 'hi'], {
        cwd: fileURLToPath(new URL('../..', import.meta.url)),
        env: { ...process.env, TEMPORAL_ADDRESS: inject('temporalAddress'), TANDEM_TASK_QUEUE: h.queue, NO_COLOR: '1' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      child.on('exit', (code) => resolve({ code, stderr }));
    });
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      'tandem: cannot start the session: the vault has no secret "never_set"; add it with `tandem vault set never_set` or the environment variable TANDEM_SECRET_NEVER_SET',
    );
  });

  it('heartbeats through a long MCP call, and interrupt cancels one', async () => {
    h.model.push(
      reply(toolUse('trigger-long-running-operation', { duration: 12, steps: 4 }, 'tu_long')), // longer than the 10 s heartbeat timeout
      reply(toolUse('trigger-long-running-operation', { duration: 120, steps: 120 }, 'tu_stuck')),
    );
    const first = h.model.requests.length;
    const handle = await startSession(h.client, h.queue, { agent: mcpAgent([everything], 'always_allow') }, 'run long things');
    await h.model.waitForRequests(first + 2, 60_000); // the second model call asked for the stuck one
    await new Promise((r) => setTimeout(r, 1500));
    await handle.signal(Signals.interrupt, {});
    await waitIdle(handle, 'end_turn', 2, 30_000);
    const events = await sessionEvents(h.client, handle);
    const long = events.find((e) => e.type === 'agent.mcp_tool_result' && e.mcp_tool_use_id === 'tu_long');
    expect(long).toMatchObject({ is_error: false, content: [{ type: 'text', text: expect.stringContaining('Long running operation completed') }] });
    const stuck = events.find((e) => e.type === 'agent.mcp_tool_result' && e.mcp_tool_use_id === 'tu_stuck');
    expect(stuck).toMatchObject({ is_error: true, content: [{ type: 'text', text: 'The tool call was interrupted by the user.' }] });
    const history = await readHistory(h.client, handle.workflowId);
    expect(history.filter((e) => (e.activityTaskStartedEventAttributes?.attempt ?? 1) > 1)).toHaveLength(0);

    h.model.push(reply('Stopped.'));
    await sendMessage(handle, 'what happened?');
    await waitIdle(handle, 'end_turn', 3);
    expect(toolResults(h.model.requests.at(-1)!).get('tu_stuck')?.is_error).toBe(true);
    await handle.cancel();
  });

  it('a stdio server that dies in the middle of a call is started again and the call retried', async () => {
    const marker = `--tandem-crash-${randomUUID().slice(0, 8)}`;
    const crashing: McpServerConfig = { ...everything, name: 'crashing', args: [EVERYTHING, 'stdio', marker] };
    const first = h.model.requests.length;
    h.model.push(reply(toolUse('trigger-long-running-operation', { duration: 4, steps: 4 }, 'tu_crash')), reply('Done.'));
    const handle = await startSession(h.client, h.queue, { agent: mcpAgent([crashing], 'always_allow') }, 'run it');
    await h.model.waitForRequests(first + 1, 60_000);
    // The worker starts the server for the call (slowly on a busy machine); the call then runs for 4 s.
    const serverPids = () =>
      execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.includes(marker))
        .map((l) => Number(l.trim().split(/\s+/)[0]));
    await waitFor(async () => serverPids(), (p) => p.length > 0, 30_000, 'the MCP server process');
    await new Promise((r) => setTimeout(r, 1500)); // the call is running in the server
    const pids = serverPids();
    expect(pids).toHaveLength(1);
    process.kill(pids[0]!, 'SIGKILL');
    await waitIdle(handle, 'end_turn', 2, 60_000);
    const result = toolResults(h.model.requests.at(-1)!).get('tu_crash');
    expect(result?.is_error).toBe(false);
    expect(result?.content).toContain('Long running operation completed');
    const history = await readHistory(h.client, handle.workflowId);
    const retried = history.find((e) => (e.activityTaskStartedEventAttributes?.attempt ?? 1) > 1);
    expect(retried?.activityTaskStartedEventAttributes?.lastFailure?.applicationFailureInfo?.type).toBe('Mcp.ConnectionFailed');
    expect(serverProcesses(marker)).toBe(1); // a fresh process took over
    await handle.cancel();
  });

  it('a server that goes down is a tool error after the retry budget; the session goes on', async () => {
    const flaky = await startTestMcpServer();
    const server: McpServerConfig = { type: 'url', name: 'flaky', url: flaky.url };
    h.model.push(
      reply(toolUse('lookup', { query: 'up' }, 'tu_up')),
      () => {
        void flaky.close(); // down after the listing and the first call (stops listening at once)
        return reply(toolUse('lookup', { query: 'down' }, 'tu_down'));
      },
      reply('The server is down.'),
    );
    const agent = mcpAgent([server], 'always_allow', { limits: { tool_attempts: 2 } });
    const handle = await startSession(h.client, h.queue, { agent }, 'look up');
    await waitIdle(handle, 'end_turn', 3, 60_000);
    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_up')).toEqual({ content: 'result for up', is_error: false });
    expect(results.get('tu_down')?.is_error).toBe(true);
    expect(results.get('tu_down')?.content).toMatch(/failed after 2 attempt\(s\): MCP server "flaky" is unavailable: .*\(Mcp\.ConnectionFailed\)/);
    expect((await sessionState(handle)).last_error).toBeNull();
    await handle.cancel();
  });
});

describe('MCP connections of a worker', () => {
  it('keeps a stdio server running between calls, closes it when idle, and starts it again on the next call', async () => {
    const marker = `--tandem-idle-${randomUUID().slice(0, 8)}`;
    const hub = new McpHub(vault, { idleMs: 1000 });
    const server: McpServerConfig = { type: 'stdio', name: 'idle', command: process.execPath, args: [EVERYTHING, 'stdio', marker] };
    try {
      expect((await hub.callTool(server, 'echo', { message: 'a' })).content).toBe('Echo: a');
      expect((await hub.callTool(server, 'echo', { message: 'b' })).content).toBe('Echo: b');
      expect(serverProcesses(marker)).toBe(1);
      await waitFor(async () => serverProcesses(marker), (n) => n === 0, 20_000, 'the idle server to exit');
      expect((await hub.callTool(server, 'echo', { message: 'c' })).content).toBe('Echo: c');
      expect(serverProcesses(marker)).toBe(1);
    } finally {
      await hub.close();
    }
    await waitFor(async () => serverProcesses(marker), (n) => n === 0, 20_000, 'the server to exit on close');
  });
});
