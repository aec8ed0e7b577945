import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AgentFileError, agentJsonSchema, loadAgentFile, parseAgentDefinition } from '../../src/config/agent.js';
import { TandemClient } from '../../src/client/index.js';
import type { AgentDefinition } from '../../src/shared/types.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/coding-agent.yaml', import.meta.url));

/** Parses `text` expecting failure; returns the error. */
function fails(text: string, file = 'agent.yaml'): AgentFileError {
  try {
    parseAgentDefinition(text, file);
  } catch (err) {
    expect(err).toBeInstanceOf(AgentFileError);
    return err as AgentFileError;
  }
  throw new Error('expected an AgentFileError');
}

const FULL = `# a full agent
name: full-agent
model:
  id: claude-sonnet-5-5
  max_tokens: 4096
  effort: high
system: You fix bugs.
description: All the fields.
tools:
  - type: agent_toolset_20260401
    default_config:
      enabled: true
      permission_policy: { type: always_allow }
    configs:
      - name: bash
        permission_policy: { type: always_ask }
      - name: write
        enabled: false
  - type: custom
    name: lookup_ticket
    description: Looks up a ticket.
    input_schema:
      type: object
      properties:
        id: { type: string }
      required: [id]
  - type: mcp_toolset
    mcp_server_name: docs
mcp_servers:
  - name: docs
    type: url
    url: http://localhost:9000/mcp
metadata:
  team: core
  tier: "1"
multiagent: null
sandbox:
  image: tandem-sandbox:latest
  cpu: 0.5
  memory_mb: 2048
  pids_limit: 512
  network:
    policy: limited
    allowed_hosts: [registry.npmjs.org]
  workspace: ephemeral
  idle_timeout_s: 300
limits:
  max_turns: 40
  max_output_tokens: 100000
  model_attempts: 3
  tool_attempts: 2
`;

describe('agent definition files', () => {
  it('parses a full YAML file into the expected object', () => {
    const expected: AgentDefinition = {
      name: 'full-agent',
      model: { id: 'claude-sonnet-5-5', max_tokens: 4096, effort: 'high' },
      system: 'You fix bugs.',
      description: 'All the fields.',
      tools: [
        {
          type: 'agent_toolset_20260401',
          default_config: { enabled: true, permission_policy: { type: 'always_allow' } },
          configs: [
            { name: 'bash', permission_policy: { type: 'always_ask' } },
            { name: 'write', enabled: false },
          ],
        },
        {
          type: 'custom',
          name: 'lookup_ticket',
          description: 'Looks up a ticket.',
          input_schema: { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] },
        },
        { type: 'mcp_toolset', mcp_server_name: 'docs' },
      ],
      mcp_servers: [{ name: 'docs', type: 'url', url: 'http://localhost:9000/mcp' }],
      metadata: { team: 'core', tier: '1' },
      multiagent: null,
      sandbox: {
        image: 'tandem-sandbox:latest',
        cpu: 0.5,
        memory_mb: 2048,
        pids_limit: 512,
        network: { policy: 'limited', allowed_hosts: ['registry.npmjs.org'] },
        workspace: 'ephemeral',
        idle_timeout_s: 300,
      },
      limits: { max_turns: 40, max_output_tokens: 100000, model_attempts: 3, tool_attempts: 2 },
    };
    expect(parseAgentDefinition(FULL)).toEqual(expected);
  });

  it('accepts the minimal file and a plain model id', () => {
    expect(parseAgentDefinition('name: a\nmodel: m\n')).toEqual({ name: 'a', model: 'm' });
  });

  it('reports a wrong type with its path and line', () => {
    const err = fails(FULL.replace('memory_mb: 2048', 'memory_mb: "lots"'));
    expect(err.problems).toEqual([
      {
        path: 'sandbox.memory_mb',
        line: 40, // the 40th line of FULL
        column: 14,
        message: 'expected an integer from 64 to 65536 (got "lots")',
      },
    ]);
    expect(err.file).toBe('agent.yaml');
    expect(err.message).toBe(
      'agent.yaml:40:14: sandbox.memory_mb: expected an integer from 64 to 65536 (got "lots")',
    );
  });

  it('reports an out-of-range number', () => {
    const err = fails('name: a\nmodel: m\nlimits:\n  model_attempts: 50\n');
    expect(err.problems).toEqual([
      { path: 'limits.model_attempts', line: 4, column: 19, message: 'expected an integer from 1 to 20 (got 50)' },
    ]);
  });

  it('reports an unknown field with its path and line', () => {
    const err = fails('name: a\nmodel: m\nsandbox:\n  cpu: 1\n  foo: bar\n');
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatchObject({ path: 'sandbox.foo', line: 5, column: 3 });
    expect(err.problems[0]?.message).toMatch(/^unknown field "foo" \(known fields: image, cpu, memory_mb/);
  });

  it('reports a missing required field at the parent object', () => {
    const err = fails('# no model\nname: a\nsystem: hi\n');
    expect(err.problems).toEqual([{ path: 'model', line: 2, column: 1, message: 'missing required field "model"' }]);

    const nested = fails('name: a\nmodel: m\nsandbox:\n  network:\n    allowed_hosts: [x]\n');
    expect(nested.problems).toEqual([
      { path: 'sandbox.network.policy', line: 4, column: 3, message: 'missing required field "policy"' },
    ]);
  });

  it('reports an invalid enum value deep in the tools', () => {
    const text = [
      'name: a',
      'model: m',
      'tools:',
      '  - type: agent_toolset_20260401',
      '    configs:',
      '      - name: bash',
      '      - name: bsh',
    ].join('\n');
    const err = fails(text, 'examples/x.yaml');
    expect(err.problems).toEqual([
      {
        path: 'tools[0].configs[1].name',
        line: 7,
        column: 15,
        message: 'expected one of bash|read|write|edit|glob|grep (got "bsh")',
      },
    ]);
    expect(err.message).toBe(
      'examples/x.yaml:7:15: tools[0].configs[1].name: expected one of bash|read|write|edit|glob|grep (got "bsh")',
    );
  });

  it("refuses the hosted toolset's web tools with the reason Tandem does not offer them", () => {
    const text = (name: string) => `name: a\nmodel: m\ntools:\n  - type: agent_toolset_20260401\n    configs: [{name: ${name}, enabled: true}]\n`;
    expect(fails(text('web_search')).message).toBe(
      'agent.yaml:5:22: tools[0].configs[0].name: Tandem has no web search provider, so the toolset does not offer web_search; remove it from configs',
    );
    expect(fails(text('web_fetch')).message).toMatch(/tools\[0\]\.configs\[0\]\.name: Tandem's toolset does not offer web_fetch yet/);
  });

  it('reports invalid YAML with the parser line', () => {
    const err = fails('name: a\nmodel: m\nsandbox:\n  cpu: 1\n memory_mb: 5\n');
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatchObject({ path: '', line: 5, column: 1 });
    expect(err.problems[0]?.message).toMatch(/^invalid YAML: /);
    expect(err.message).toMatch(/^agent\.yaml:5:1: invalid YAML: /);
  });

  it('reports a file that is not a mapping, and an empty file', () => {
    expect(fails('- a\n- b\n').problems).toEqual([
      { path: '', line: 1, column: 1, message: 'expected a mapping of agent fields (got a list)' },
    ]);
    expect(fails('# nothing\n').problems[0]?.message).toMatch(/empty/);
  });

  it('rejects a custom tool named like a built-in tool', () => {
    const text = [
      'name: a',
      'model: m',
      'tools:',
      '  - type: agent_toolset_20260401',
      '  - type: custom',
      '    name: bash',
      '    description: shadows the built-in',
      '    input_schema: { type: object }',
    ].join('\n');
    const err = fails(text);
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatchObject({ path: 'tools[1].name', line: 6, column: 11 });
    expect(err.problems[0]?.message).toMatch(/clashes with a built-in tool/);
  });

  it('rejects an mcp_toolset whose server is not in mcp_servers', () => {
    const err = fails('name: a\nmodel: m\ntools:\n  - type: mcp_toolset\n    mcp_server_name: docs\n');
    expect(err.problems).toEqual([
      {
        path: 'tools[0].mcp_server_name',
        line: 5,
        column: 22,
        message: 'names no server of mcp_servers (known: none) (got "docs")',
      },
    ]);
  });

  it('explains the matching branch of the model union', () => {
    const err = fails('name: a\nmodel:\n  id: m\n  max_tokens: many\n');
    expect(err.problems).toEqual([
      { path: 'model.max_tokens', line: 4, column: 15, message: 'expected an integer >= 1 (got "many")' },
    ]);
    expect(fails('name: a\nmodel: 5\n').problems).toEqual([
      { path: 'model', line: 2, column: 8, message: 'expected a string or a mapping (got 5)' },
    ]);
  });

  it('lists every problem, one per line, in file order', () => {
    const err = fails('name: ""\nmodel: m\nsandbox:\n  cpu: 100\nlimits:\n  max_turns: 0\n');
    expect(err.problems.map((p) => [p.path, p.line])).toEqual([
      ['name', 1],
      ['sandbox.cpu', 4],
      ['limits.max_turns', 6],
    ]);
    expect(err.message.split('\n')).toHaveLength(3);
  });

  it('loads a JSON file with lines', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-agent-'));
    const good = join(dir, 'agent.json');
    await writeFile(good, JSON.stringify({ name: 'j', model: 'm', sandbox: { cpu: 2 } }, null, 2));
    expect(await loadAgentFile(good)).toEqual({ name: 'j', model: 'm', sandbox: { cpu: 2 } });

    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ name: 'j', model: 'm', sandbox: { cpu: 2, memory_mb: 'lots' } }, null, 2));
    const err = await loadAgentFile(bad).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AgentFileError);
    expect((err as AgentFileError).file).toBe(bad);
    expect((err as AgentFileError).problems).toEqual([
      {
        path: 'sandbox.memory_mb',
        line: 6,
        column: 18,
        message: 'expected an integer from 64 to 65536 (got "lots")',
      },
    ]);
  });

  it('reports a missing file', async () => {
    const missing = join(tmpdir(), 'tandem-no-such-agent.yaml');
    await expect(loadAgentFile(missing)).rejects.toThrow(`${missing}: agent file not found`);
    await expect(loadAgentFile(missing)).rejects.toBeInstanceOf(AgentFileError);
  });

  it('accepts examples/coding-agent.yaml', async () => {
    const agent = parseAgentDefinition(await readFile(EXAMPLE, 'utf8'), EXAMPLE);
    expect(agent).toMatchObject({
      name: 'coding-agent',
      model: 'claude-sonnet-5-5',
      sandbox: { cpu: 1, memory_mb: 1024 },
      limits: { max_turns: 30 },
    });
    expect(await loadAgentFile(EXAMPLE)).toEqual(agent);
  });

  it('exports a JSON Schema', () => {
    const schema = agentJsonSchema();
    expect(schema).toMatchObject({ type: 'object', required: ['name', 'model'], additionalProperties: false });
    expect(Object.keys(schema['properties'] as object)).toContain('sandbox');
  });
});

describe('multiagent rosters', () => {
  it('inlines the agent files a roster names, relative to the file, and keeps self', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-team-'));
    await writeFile(join(dir, 'reviewer.yaml'), 'name: reviewer\nmodel: claude-sonnet-5-5\ndescription: reviews diffs\n');
    await writeFile(
      join(dir, 'lead.yaml'),
      'name: lead\nmodel: claude-sonnet-5-5\nmultiagent:\n  type: coordinator\n  agents: [./reviewer.yaml, {type: self}]\n  max_depth: 3\n',
    );
    const lead = await loadAgentFile(join(dir, 'lead.yaml'));
    expect(lead.multiagent).toEqual({
      type: 'coordinator',
      max_depth: 3,
      agents: [
        { type: 'agent', definition: { name: 'reviewer', model: 'claude-sonnet-5-5', description: 'reviews diffs' } },
        { type: 'self' },
      ],
    });
  });

  it('names the roster entry whose file is missing or loops back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-team-'));
    await writeFile(join(dir, 'a.yaml'), 'name: a\nmodel: m\nmultiagent: {type: coordinator, agents: [./b.yaml]}\n');
    await writeFile(join(dir, 'b.yaml'), 'name: b\nmodel: m\nmultiagent: {type: coordinator, agents: [./a.yaml]}\n');
    await writeFile(join(dir, 'c.yaml'), 'name: c\nmodel: m\nmultiagent: {type: coordinator, agents: [./nope.yaml]}\n');
    await expect(loadAgentFile(join(dir, 'a.yaml'))).rejects.toThrow(/b\.yaml: multiagent\.agents\[0\]: \.\/a\.yaml names a file that names this one again/);
    await expect(loadAgentFile(join(dir, 'c.yaml'))).rejects.toThrow(/nope\.yaml: agent file not found/);
    expect(fails('name: x\nmodel: m\nmultiagent: {type: coordinator, agents: []}\n').message).toMatch(/agent\.yaml:3:\d+: multiagent\.agents/);
  });
});

describe('cost budgets', () => {
  it('takes limits.max_cost_usd when every model of the team has a price, and names the unpriced ones otherwise', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-budget-'));
    await writeFile(join(dir, 'priced.yaml'), 'name: priced\nmodel: claude-haiku-4-5\n');
    await writeFile(join(dir, 'house.yaml'), 'name: house\nmodel: house-model-1\n');
    const lead = (sub: string) =>
      `name: lead\nmodel: claude-sonnet-5-5\nlimits: {max_cost_usd: 2.5}\nmultiagent: {type: coordinator, agents: [./${sub}]}\n`;
    await writeFile(join(dir, 'lead.yaml'), lead('priced.yaml'));
    await writeFile(join(dir, 'lead-house.yaml'), lead('house.yaml'));
    expect((await loadAgentFile(join(dir, 'lead.yaml'))).limits).toEqual({ max_cost_usd: 2.5 });
    await expect(loadAgentFile(join(dir, 'lead-house.yaml'))).rejects.toThrow(
      /lead-house\.yaml: limits\.max_cost_usd: a cost budget needs a list price for every model the session can run, and Tandem has none for house-model-1/,
    );
    // Without a budget, an unpriced model is fine.
    expect((await loadAgentFile(join(dir, 'house.yaml'))).model).toBe('house-model-1');
    expect(fails('name: x\nmodel: m\nlimits: {max_cost_usd: -1}\n').message).toMatch(/limits\.max_cost_usd/);
  });
});

describe('local repositories', () => {
  it('resolves a repository path against the agent file, in sub-agent files too, and keeps file:// URLs', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tandem-local-'));
    await mkdir(join(dir, 'agents', 'sub'), { recursive: true });
    await writeFile(
      join(dir, 'agents', 'sub', 'helper.yaml'),
      'name: helper\nmodel: m\nresources: [{type: git_repository, url: ../../repos/shared}]\n',
    );
    await writeFile(
      join(dir, 'agents', 'lead.yaml'),
      'name: lead\nmodel: m\nmultiagent: {type: coordinator, agents: [./sub/helper.yaml]}\nresources:\n' +
        '  - {type: git_repository, url: ./my repo, push_branches: [agent/*]}\n' +
        '  - {type: git_repository, url: /srv/git/tools.git}\n' +
        '  - {type: git_repository, url: "file:///srv/git/other"}\n' +
        '  - {type: github_repository, url: https://github.com/acme/widgets}\n',
    );
    const lead = await loadAgentFile(join(dir, 'agents', 'lead.yaml'));
    expect(lead.resources).toEqual([
      { type: 'git_repository', url: pathToFileURL(join(dir, 'agents', 'my repo')).href, push_branches: ['agent/*'] },
      { type: 'git_repository', url: 'file:///srv/git/tools.git' },
      { type: 'git_repository', url: 'file:///srv/git/other' },
      { type: 'github_repository', url: 'https://github.com/acme/widgets' },
    ]);
    expect(lead.resources![0]!.url).toMatch(/\/my%20repo$/);
    const helper = lead.multiagent!.agents[0] as { definition: AgentDefinition };
    expect(helper.definition.resources).toEqual([{ type: 'git_repository', url: pathToFileURL(join(dir, 'repos', 'shared')).href }]);
    // The text alone (no file to be relative to) keeps the path as written.
    expect(parseAgentDefinition('name: a\nmodel: m\nresources: [{type: git_repository, url: ./r}]\n').resources![0]!.url).toBe('./r');
  });

  it('refuses a credential, github_repository and a file URL with a host for a local repository', () => {
    const base = 'name: a\nmodel: m\nresources:\n  - type: git_repository\n';
    expect(fails(`${base}    url: ./repo\n    credential: gh\n`).message).toBe(
      'agent.yaml:6:17: resources[0].credential: a local repository takes no credential (got "gh")',
    );
    expect(fails('name: a\nmodel: m\nresources: [{type: github_repository, url: "file:///srv/r"}]\n').message).toMatch(
      /agent\.yaml:3:\d+: resources\[0\]\.type: a local repository is a git_repository \(got "github_repository"\)/,
    );
    for (const url of ['file://host/srv/r', 'repo', 'ssh://git@x.test/r.git', 'git@x.test:r.git'])
      expect(fails(`${base}    url: "${url}"\n`).message, url).toMatch(
        /resources\[0\]\.url: expected an http\(s\) URL without credentials in it, or a local git repository/,
      );
  });

  it('TandemClient.start refuses a path: only an agent file says what it is relative to', async () => {
    const tandem = new TandemClient({ connection: { options: {} } } as never, 'q');
    const agent: AgentDefinition = { name: 'a', model: 'm' };
    await expect(tandem.start({ agent, resources: [{ type: 'git_repository', url: '../repo' }] })).rejects.toThrow(
      'repository ../repo: name a local repository by its file:// URL (paths are for agent files)',
    );
    await expect(
      tandem.start({ agent: { ...agent, resources: [{ type: 'git_repository', url: '/srv/repo' }] } }),
    ).rejects.toThrow(/repository \/srv\/repo: name a local repository by its file:\/\/ URL/);
    await expect(
      tandem.start({ agent, resources: [{ type: 'git_repository', url: 'file:///srv/repo', credential: 'x' }] }),
    ).rejects.toThrow('resources[0].credential: a local repository takes no credential');
  });
});
