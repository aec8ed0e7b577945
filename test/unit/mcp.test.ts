/** MCP servers in agent files, the mcp_toolset policy, tool naming, secret handling and the context of MCP calls. */
import { describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { AgentFileError, parseAgentDefinition } from '../../src/config/agent.js';
import { annotateMcpUses, boundText, McpHub, offerNames, resultText, scrub, scrubDeep } from '../../src/activities/mcp.js';
import { buildMessages, buildRequest } from '../../src/harness/context.js';
import { renderTranscript } from '../../src/harness/grader.js';
import { agentSecretNames, mcpToolPolicy } from '../../src/shared/mcp.js';
import type { SessionEvent, SessionEventType } from '../../src/log/events.js';
import type { AgentDefinition } from '../../src/shared/types.js';

const AGENT = `name: researcher
model: claude-sonnet-5-5
tools:
  - type: mcp_toolset
    mcp_server_name: search
    default_config: { permission_policy: { type: always_allow } }
    configs:
      - name: delete_index
        enabled: false
      - name: publish
        permission_policy: { type: always_ask }
  - type: mcp_toolset
    mcp_server_name: local
mcp_servers:
  - type: url
    name: search
    url: https://mcp.example.com/mcp
    headers:
      Authorization: "Bearer \${secret:search_token}"
      X-Team: { secret: team_id }
      X-Plain: plain
  - type: stdio
    name: local
    command: node
    args: [server.js, --stdio]
    env:
      API_KEY: { secret: local_key }
      MODE: fast
`;

function problems(text: string): Array<{ path: string; line?: number; message: string }> {
  try {
    parseAgentDefinition(text, 'agent.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(AgentFileError);
    return (err as AgentFileError).problems;
  }
  throw new Error('expected an AgentFileError');
}

describe('MCP servers in agent files', () => {
  it('parses url and stdio servers, secret references and mcp_toolset entries', () => {
    const agent = parseAgentDefinition(AGENT);
    expect(agent.mcp_servers).toEqual([
      {
        type: 'url',
        name: 'search',
        url: 'https://mcp.example.com/mcp',
        headers: { Authorization: 'Bearer ${secret:search_token}', 'X-Team': { secret: 'team_id' }, 'X-Plain': 'plain' },
      },
      { type: 'stdio', name: 'local', command: 'node', args: ['server.js', '--stdio'], env: { API_KEY: { secret: 'local_key' }, MODE: 'fast' } },
    ]);
    expect(agent.tools?.[0]).toMatchObject({ type: 'mcp_toolset', mcp_server_name: 'search' });
    expect(agentSecretNames(agent)).toEqual(['search_token', 'team_id', 'local_key']);
    // ...and those of the agents it may delegate to.
    const helper: AgentDefinition = {
      name: 'helper',
      model: 'm',
      tools: [{ type: 'mcp_toolset', mcp_server_name: 'h' }],
      mcp_servers: [{ type: 'stdio', name: 'h', command: 'x', env: { K: { secret: 'helper_key' } } }],
    };
    const lead: AgentDefinition = { ...agent, multiagent: { type: 'coordinator', agents: [{ type: 'self' }, { type: 'agent', definition: helper }] } };
    expect(agentSecretNames(lead)).toEqual(['search_token', 'team_id', 'local_key', 'helper_key']);
  });

  it('names the field and line of a bad secret reference, a bad URL and an unused server', () => {
    const bad = AGENT.replace('${secret:search_token}', '${secret:9bad}')
      .replace('https://mcp.example.com/mcp', 'ftp://x')
      .replace('{ secret: local_key }', '{ secret: "" }');
    const got = problems(bad);
    expect(got.map((p) => [p.path, p.line])).toEqual([
      ['mcp_servers[0].url', 17],
      ['mcp_servers[0].headers.Authorization', 19],
      ['mcp_servers[1].env.API_KEY.secret', 27],
    ]);
    expect(got[0]?.message).toMatch(/http:\/\/ or https:\/\/ URL/);
    expect(got[1]?.message).toMatch(/valid secret name/);
    const unused = problems(AGENT.replace('    mcp_server_name: local\n', '    mcp_server_name: search\n'));
    expect(unused.map((p) => p.path)).toEqual(['tools[1].mcp_server_name', 'mcp_servers[1].name']);
    expect(unused[1]?.message).toMatch(/server "local" is not used/);
  });

  it('rejects duplicate server names and an unknown server type', () => {
    const dup = problems(AGENT.replace('    name: local', '    name: search'));
    expect(dup.some((p) => p.path === 'mcp_servers[1].name' && /duplicate MCP server name/.test(p.message))).toBe(true);
    const wrongType = problems(AGENT.replace('type: stdio', 'type: sse'));
    expect(wrongType).toEqual([
      expect.objectContaining({ path: 'mcp_servers[1].type', message: 'expected one of url|stdio (got "sse")' }),
    ]);
  });
});

describe('mcp_toolset policy', () => {
  const agent = parseAgentDefinition(AGENT);
  it('asks by default, follows default_config, and per-tool configs win', () => {
    expect(mcpToolPolicy(agent, 'local', 'anything')).toEqual({ enabled: true, ask: true });
    expect(mcpToolPolicy(agent, 'search', 'query')).toEqual({ enabled: true, ask: false });
    expect(mcpToolPolicy(agent, 'search', 'publish')).toEqual({ enabled: true, ask: true });
    expect(mcpToolPolicy(agent, 'search', 'delete_index').enabled).toBe(false);
    expect(mcpToolPolicy(agent, 'nowhere', 'x').enabled).toBe(false);
  });
});

describe('MCP tool names offered to the model', () => {
  it('keeps a tool its own name unless it is taken, invalid, or on two servers', () => {
    const names = offerNames(
      [
        { server: 'a', tools: ['echo', 'bash', 'dup', 'has.dot'] },
        { server: 'b-srv', tools: ['dup'] },
      ],
      ['bash', 'read'],
    );
    expect([...names.entries()]).toEqual([
      ['echo', { server: 'a', tool: 'echo' }],
      ['a__bash', { server: 'a', tool: 'bash' }],
      ['a__dup', { server: 'a', tool: 'dup' }],
      ['a__has_dot', { server: 'a', tool: 'has.dot' }],
      ['b-srv__dup', { server: 'b-srv', tool: 'dup' }],
    ]);
  });

  it('marks only the tool calls that name an offered MCP tool', () => {
    const routes = new Map([['echo', { server: 'everything', tool: 'echo' }]]);
    const out = annotateMcpUses(
      [
        { type: 'text', text: 'hi' },
        { type: 'tool_use', id: 't1', name: 'echo', input: {} },
        { type: 'tool_use', id: 't2', name: 'bash', input: {} },
      ],
      routes,
    );
    expect(out[1]).toEqual({ type: 'tool_use', id: 't1', name: 'echo', input: {}, mcp: { server: 'everything', tool: 'echo' } });
    expect(out[2]).not.toHaveProperty('mcp');
  });
});

describe('MCP results and secrets', () => {
  it('scrubs every secret value and bounds long output', () => {
    expect(scrub('token=s3cr3t and again s3cr3t', [['s3cr3t', 'tok']])).toBe('token=[secret tok] and again [secret tok]');
    const schema = { properties: { s3cr3t: { type: 'string', enum: ['a', 'key s3cr3t'] } }, required: ['s3cr3t'], maxLength: 3 };
    expect(scrubDeep(schema, [['s3cr3t', 'tok']])).toEqual({
      properties: { '[secret tok]': { type: 'string', enum: ['a', 'key [secret tok]'] } },
      required: ['[secret tok]'],
      maxLength: 3,
    });
    const long = boundText('x'.repeat(5000), 1000);
    expect(long.truncated).toBe(true);
    expect(long.text.length).toBeLessThan(1100);
    expect(long.text).toContain('4000 characters omitted');
  });

  it('turns result content into text', () => {
    expect(
      resultText({
        content: [
          { type: 'text', text: 'one' },
          { type: 'image', mimeType: 'image/png', data: 'AAAA' },
          { type: 'resource', resource: { uri: 'file:///a.txt', text: 'body' } },
        ],
      }),
    ).toBe('one\n[image image/png, 4 characters of base64 not shown]\n[resource file:///a.txt]\nbody');
    expect(resultText({ content: [], structuredContent: { sum: 3 } })).toBe('{"sum":3}');
  });

  it('resolves secrets on the worker and fails typed and non-retryable when one is missing', () => {
    const hub = new McpHub({ get: (n) => ({ search_token: 'tok-1', team_id: 'team-9' })[n] });
    const agent = parseAgentDefinition(AGENT);
    const resolved = hub.resolve(agent.mcp_servers![0]!);
    expect(resolved.values).toEqual({ Authorization: 'Bearer tok-1', 'X-Team': 'team-9', 'X-Plain': 'plain' });
    let failure: unknown;
    try {
      hub.resolve(agent.mcp_servers![1]!);
    } catch (err) {
      failure = err;
    }
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect((failure as ApplicationFailure).type).toBe('Vault.SecretMissing');
    expect((failure as ApplicationFailure).nonRetryable).toBe(true);
    expect((failure as Error).message).toContain('"local_key"');
    expect((failure as Error).message).toBe(
      'MCP server "local": the vault has no secret "local_key"; add it with `tandem vault set local_key` or the environment variable TANDEM_SECRET_LOCAL_KEY',
    );
  });
});

let seq = 0;
function ev(type: SessionEventType, fields: Record<string, unknown> = {}): SessionEvent {
  seq++;
  return { id: `${seq}.0`, seq, type, processed_at: '2026-01-01T00:00:00.000Z', ...fields } as SessionEvent;
}

describe('context of MCP calls', () => {
  it('pairs each MCP tool use with its result under the name the model called', () => {
    const { messages } = buildMessages([
      ev('user.message', { content: [{ type: 'text', text: 'go' }] }),
      ev('agent.mcp_tool_use', { model_request_id: 'r1', tool_use_id: 'm1', mcp_server_name: 'a', name: 'echo', input: { message: 'x' } }),
      ev('agent.mcp_tool_use', { model_request_id: 'r1', tool_use_id: 'm2', mcp_server_name: 'a', name: 'bash', called_as: 'a__bash', input: {} }),
      ev('agent.mcp_tool_result', { mcp_tool_use_id: 'm2', content: [{ type: 'text', text: 'boom' }], is_error: true }),
      ev('agent.mcp_tool_result', { mcp_tool_use_id: 'm1', content: [{ type: 'text', text: 'Echo: x' }], is_error: false }),
    ]);
    expect(messages[1]).toEqual({
      role: 'assistant',
      content: [
        { type: 'tool_use', id: 'm1', name: 'echo', input: { message: 'x' } },
        { type: 'tool_use', id: 'm2', name: 'a__bash', input: {} },
      ],
    });
    expect(messages[2]?.content).toEqual([
      { type: 'tool_result', tool_use_id: 'm1', content: 'Echo: x', is_error: false },
      { type: 'tool_result', tool_use_id: 'm2', content: 'boom', is_error: true },
    ]);
  });

  it('offers MCP tools after the built-in ones and adds harness notes after the system prompt', () => {
    const agent: AgentDefinition = { name: 'a', model: 'm', system: 'sys', tools: [{ type: 'custom', name: 'c', description: 'd', input_schema: { type: 'object' } }] };
    const { request } = buildRequest(agent, [ev('user.message', { content: [{ type: 'text', text: 'hi' }] })], new Map(), {
      extraTools: [{ name: 'echo', description: 'Echoes', input_schema: { type: 'object' } }],
      notes: ['MCP server "x" is unavailable'],
    });
    expect(request.tools?.map((t) => t.name)).toEqual(['c', 'echo']);
    expect(request.tools?.[1]?.cache_control).toEqual({ type: 'ephemeral' });
    expect(request.system?.map((b) => b.text)).toEqual(['sys', 'MCP server "x" is unavailable']);
  });
});

describe('grader transcript', () => {
  it('shows MCP tool calls and their results', () => {
    const text = renderTranscript([
      ev('agent.mcp_tool_use', { model_request_id: 'r1', tool_use_id: 'm1', mcp_server_name: 'notes', name: 'read_text_file', input: { path: 'a.md' } }),
      ev('agent.mcp_tool_result', { mcp_tool_use_id: 'm1', content: [{ type: 'text', text: 'hello' }], is_error: false }),
    ]);
    expect(text).toBe('[agent calls read_text_file of MCP server notes] {"path":"a.md"}\n[tool result] hello');
  });
});
