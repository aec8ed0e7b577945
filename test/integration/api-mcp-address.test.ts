/**
 * An API client cannot lead the worker to a cloud metadata endpoint or to the worker host's own services through an
 * MCP server URL: the API refuses such a URL with a 400 naming the field, and the worker refuses to connect to a
 * server of an API session that is (or resolves to) such an address, whatever the API accepted earlier.
 */
import { dirname, join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { startApiServer } from '../../src/server/index.js';
import { Vault } from '../../src/vault/index.js';
import { startTestMcpServer } from '../fakes/mcp-http-server.js';
import { reply, useApiHarness, waitFor } from '../helpers/api.js';

const h = useApiHarness('api-mcp-addr', { assertDone: true });

const toolset = (name: string) => ({
  type: 'mcp_toolset' as const,
  mcp_server_name: name,
  default_config: { permission_policy: { type: 'always_allow' as const } },
});

describe('MCP server URLs through the API', () => {
  it('refuses metadata and loopback addresses with a 400 naming the field, on create, update and session overrides', async () => {
    const mcp = await startTestMcpServer();
    try {
      const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
      const create = (url: string) =>
        client.beta.agents
          .create({
            name: 'reach-in',
            model: 'claude-sonnet-5-5',
            mcp_servers: [
              { type: 'url', name: 'fine', url: 'https://93.184.215.14/mcp' },
              { type: 'url', name: 'inside', url },
            ],
            tools: [toolset('fine'), toolset('inside')],
          })
          .catch((e: unknown) => e);
      const metadata = await create('http://169.254.169.254/');
      expect(metadata).toBeInstanceOf(Anthropic.BadRequestError);
      expect((metadata as Error).message).toContain(
        'mcp_servers[1].url: 169.254.169.254 is a loopback, private, link-local or otherwise internal address: the worker would ' +
          'request it from its own network (the operator can allow a host with TANDEM_MCP_PRIVATE_HOSTS)',
      );
      const loopback = await create(mcp.url);
      expect(loopback).toBeInstanceOf(Anthropic.BadRequestError);
      expect((loopback as Error).message).toMatch(/mcp_servers\[1\]\.url: 127\.0\.0\.1 is a loopback, private, link-local/);
      const named = await create(`http://localhost:${new URL(mcp.url).port}/mcp`);
      expect((named as Error).message).toMatch(/mcp_servers\[1\]\.url: localhost names this machine/);

      // An agent with a public server may not be changed to an internal one, nor be run with one.
      const agent = await client.beta.agents.create({
        name: 'public',
        model: 'claude-sonnet-5-5',
        mcp_servers: [{ type: 'url', name: 'search', url: 'https://93.184.215.14/mcp' }],
        tools: [toolset('search')],
      });
      const update = await client.beta.agents
        .update(agent.id, { version: agent.version, mcp_servers: [{ type: 'url', name: 'search', url: mcp.url }], tools: [toolset('search')] })
        .catch((e: unknown) => e);
      expect(update).toBeInstanceOf(Anthropic.BadRequestError);
      expect((update as Error).message).toMatch(/mcp_servers\[0\]\.url: 127\.0\.0\.1 is a loopback/);
      const env = await client.beta.environments.create({ name: 'mcp-addr-env' });
      const overridden = await client.beta.sessions
        .create({
          agent: {
            type: 'agent_with_overrides',
            id: agent.id,
            mcp_servers: [{ type: 'url', name: 'search', url: 'http://0251.0376.0251.0376/' }],
            tools: [toolset('search')],
          },
          environment_id: env.id,
        } as never)
        .catch((e: unknown) => e);
      expect(overridden).toBeInstanceOf(Anthropic.BadRequestError);
      expect((overridden as Error).message).toMatch(/agent\.mcp_servers\[0\]\.url: 169\.254\.169\.254 is a loopback/);
      expect(mcp.authorizations).toHaveLength(0);
    } finally {
      await mcp.close();
    }
  });

  it('a session started through the API never reaches an internal server, even one an earlier policy accepted', async () => {
    const mcp = await startTestMcpServer();
    // An API server whose operator allowed 127.0.0.1 (TANDEM_MCP_PRIVATE_HOSTS) stores the agent...
    const permissive = await startApiServer({
      tandem: h.tandem,
      keys: [h.apiKey],
      vault: new Vault(join(dirname(h.vaultFile), 'permissive-vault.json'), {}),
      port: 0,
      mcpPrivateHosts: ['127.0.0.1'],
    });
    try {
      const agent = await new Anthropic({ baseURL: permissive.url, apiKey: h.apiKey, maxRetries: 0 }).beta.agents.create({
        name: 'accepted-earlier',
        model: 'claude-sonnet-5-5',
        mcp_servers: [{ type: 'url', name: 'search', url: mcp.url }],
        tools: [toolset('search')],
      });
      // ...and a session is started through the server without that allowance: the worker refuses the connection.
      const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
      const env = await client.beta.environments.create({ name: 'mcp-addr-env-2' });
      h.model.push(reply('No search today.'));
      const session = await client.beta.sessions.create({
        agent: agent.id,
        environment_id: env.id,
        initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'search for something' }] }],
      });
      await waitFor(() => client.beta.sessions.retrieve(session.id), (s) => s.status === 'idle' && (s.usage.output_tokens ?? 0) > 0, 60_000, 'idle');
      const request = JSON.stringify(h.model.requests.at(-1)!.body);
      expect(request).toContain('MCP server \\"search\\" is unavailable');
      expect(request).toContain('was not contacted: 127.0.0.1 is a loopback, private, link-local or otherwise internal address');
      expect(request).not.toContain('"name":"lookup"'); // none of its tools is offered
      expect(mcp.authorizations).toHaveLength(0); // not a single request reached it
      await client.beta.sessions.delete(session.id);
    } finally {
      await permissive.close();
      await mcp.close();
    }
  });
});
