/**
 * A sandbox's network policy as agent files and API environments give it: `limited` with its flags folded into one
 * allow-list (the package registries, the agent's MCP servers), `unrestricted` as it is, and the fields that need
 * `limited` refused with the policy named.
 */
import { describe, expect, it } from 'vitest';
import { AgentFileError, parseAgentDefinition } from '../../src/config/agent.js';
import { sandboxOf } from '../../src/server/resources.js';
import { foldNetwork, PACKAGE_REGISTRY_HOSTS } from '../../src/shared/network.js';
import type { ResourceRecord } from '../../src/shared/resources.js';
import type { McpServerConfig } from '../../src/shared/types.js';

const mcp: McpServerConfig[] = [
  { type: 'url', name: 'docs', url: 'https://mcp.docs.example/mcp' },
  { type: 'url', name: 'v6', url: 'http://[2001:db8::5]:8080/mcp' },
  { type: 'stdio', name: 'local', command: 'node' },
];

describe('foldNetwork', () => {
  it('folds the registries and the MCP servers into allowed_hosts, each host once', () => {
    const n = foldNetwork({ policy: 'limited', allowed_hosts: ['pypi.org', 'api.example'], allow_package_managers: true, allow_mcp_servers: true }, mcp);
    expect(n.policy).toBe('limited');
    expect(n.allowed_hosts!.slice(0, 2)).toEqual(['pypi.org', 'api.example']);
    for (const host of Object.values(PACKAGE_REGISTRY_HOSTS).flat()) expect(n.allowed_hosts).toContain(host);
    expect(n.allowed_hosts!.slice(-2)).toEqual(['mcp.docs.example', '2001:db8::5']);
    expect(new Set(n.allowed_hosts).size).toBe(n.allowed_hosts!.length);
    expect(n).not.toHaveProperty('allow_package_managers');
  });

  it('limited with nothing to let through is none; unrestricted and none stay as they are', () => {
    expect(foldNetwork({ policy: 'limited', allowed_hosts: [], allow_mcp_servers: true }, [])).toEqual({ policy: 'none' });
    expect(foldNetwork({ policy: 'unrestricted' }, mcp)).toEqual({ policy: 'unrestricted' });
    expect(foldNetwork({ policy: 'none' })).toEqual({ policy: 'none' });
  });
});

describe('agent files', () => {
  const agent = (network: string) =>
    parseAgentDefinition(
      [
        'name: net',
        'model: claude-sonnet-5-5',
        'mcp_servers:',
        '  - { type: url, name: docs, url: "https://mcp.docs.example/mcp" }',
        'tools:',
        '  - type: mcp_toolset',
        '    mcp_server_name: docs',
        'sandbox:',
        `  network: ${network}`,
        '',
      ].join('\n'),
      'net.yaml',
    );

  it('read unrestricted, and limited with its flags folded', () => {
    expect(agent('{ policy: unrestricted }').sandbox?.network).toEqual({ policy: 'unrestricted' });
    const limited = agent('{ policy: limited, allowed_hosts: [api.example], allow_mcp_servers: true }').sandbox?.network;
    expect(limited).toEqual({ policy: 'limited', allowed_hosts: ['api.example', 'mcp.docs.example'] });
  });

  it('refuse a limited-only field with another policy, naming the field and the policy', () => {
    const problem = (network: string) => {
      try {
        agent(network);
      } catch (err) {
        expect(err).toBeInstanceOf(AgentFileError);
        return (err as AgentFileError).problems.map((p) => `${p.path}: ${p.message}`);
      }
      return expect.unreachable(`${network} was accepted`);
    };
    expect(problem('{ policy: unrestricted, allowed_hosts: [a.example] }')).toEqual([
      'sandbox.network.allowed_hosts: allowed_hosts needs policy: limited (policy unrestricted allows every public host)',
    ]);
    expect(problem('{ policy: none, allow_package_managers: true }')).toEqual([
      'sandbox.network.allow_package_managers: allow_package_managers needs policy: limited (policy none allows no network at all) (got true)',
    ]);
  });
});

describe('API environments', () => {
  const env = (config: Record<string, unknown>) => ({ id: 'env_1', config }) as unknown as ResourceRecord;

  it('give their sessions the policy they name', () => {
    expect(sandboxOf(env({ type: 'cloud', networking: { type: 'unrestricted' } }), {})).toEqual({ network: { policy: 'unrestricted' } });
    const limited = sandboxOf(
      env({ type: 'cloud', networking: { type: 'limited', allowed_hosts: ['api.example'], allow_package_managers: true, allow_mcp_servers: true } }),
      { mcp_servers: mcp },
    );
    expect(limited.network?.policy).toBe('limited');
    expect(limited.network?.allowed_hosts).toEqual(expect.arrayContaining(['api.example', 'pypi.org', 'registry.npmjs.org', 'mcp.docs.example']));
    expect(sandboxOf(env({ type: 'cloud', networking: { type: 'limited', allowed_hosts: [] } }), {})).toEqual({ network: { policy: 'none' } });
    expect(sandboxOf(env({ type: 'self_hosted' }), {})).toEqual({ network: { policy: 'none' } });
  });
});
