/**
 * MCP servers named through the API may only be on public addresses: the API's check of a URL, and the worker's
 * check of every connection it opens for such a server (a real MCP server on loopback stands in for the metadata
 * endpoint or a service of the worker host).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createPublicOnlyFetch, mcpUrlRefusal } from '../../src/activities/mcp-address.js';
import { McpHub } from '../../src/activities/mcp.js';
import { Failure } from '../../src/shared/failures.js';
import type { McpServerConfig } from '../../src/shared/types.js';
import { startTestMcpServer, type TestMcpServer } from '../fakes/mcp-http-server.js';

describe('MCP server URLs an API client may name', () => {
  const resolve = (answers: Record<string, string[]>) => async (host: string) => {
    const a = answers[host];
    if (!a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return a;
  };

  it('refuses internal addresses however the URL spells them, and names for this machine or a private network', async () => {
    for (const url of [
      'http://169.254.169.254/latest/meta-data/',
      'http://127.0.0.1:8233/mcp',
      'http://[::1]:7233/',
      'http://10.1.2.3/mcp',
      'http://192.168.0.10/',
      'http://0.0.0.0:8888/',
      'http://2130706433/', // 127.0.0.1 as one number
      'http://0x7f.1/', // and in hex
      'http://[fd00:ec2::254]/', // the IPv6 metadata endpoint
      'http://localhost:8888/decode',
      'http://api.localhost/',
      'http://metadata/computeMetadata/v1/',
      'http://metadata.google.internal/',
      'http://printer.local/',
    ]) {
      expect(await mcpUrlRefusal(url, { resolve: resolve({}) }), url).toMatch(/worker would request it from its own network/);
    }
  });

  it('looks names up: one that resolves to an internal address is refused, a public or unknown one is left to the worker', async () => {
    const answers = resolve({ 'mcp.example.com': ['93.184.215.14'], 'rebind.example.net': ['93.184.215.14', '169.254.169.254'] });
    expect(await mcpUrlRefusal('https://mcp.example.com/mcp', { resolve: answers })).toBeUndefined();
    expect(await mcpUrlRefusal('https://rebind.example.net/mcp', { resolve: answers })).toBe(
      'rebind.example.net resolves to 169.254.169.254, a loopback, private, link-local or otherwise internal address: the ' +
        'worker would request it from its own network (the operator can allow a host with TANDEM_MCP_PRIVATE_HOSTS)',
    );
    expect(await mcpUrlRefusal('https://not-resolvable.example.org/mcp', { resolve: answers })).toBeUndefined();
    expect(await mcpUrlRefusal('https://93.184.215.14/mcp', { resolve: answers })).toBeUndefined();
  });

  it('allows the hosts the operator names, and only those', async () => {
    const allowed = ['127.0.0.1', 'mcp.internal', '[::1]'];
    expect(await mcpUrlRefusal('http://127.0.0.1:9000/mcp', { allowed })).toBeUndefined();
    expect(await mcpUrlRefusal('http://MCP.internal./mcp', { allowed })).toBeUndefined();
    expect(await mcpUrlRefusal('http://[::1]:9000/mcp', { allowed })).toBeUndefined();
    expect(await mcpUrlRefusal('http://169.254.169.254/', { allowed })).toMatch(/169\.254\.169\.254 is a loopback/);
  });
});

describe('the worker connects to a server named through the API only on public addresses', () => {
  let server: TestMcpServer;
  let hub: McpHub;
  beforeAll(async () => {
    server = await startTestMcpServer();
    hub = new McpHub({ get: () => undefined }, { listTtlMs: 0 });
  });
  afterAll(async () => {
    await hub?.close();
    await server?.close();
  });
  const port = () => new URL(server.url).port;

  it('refuses, before any request, a name that resolves to loopback and a loopback address in the URL', async () => {
    for (const url of [`http://localhost:${port()}/mcp`, server.url]) {
      const config: McpServerConfig = { type: 'url', name: 'named-by-api', url, public_only: true };
      const before = server.authorizations.length;
      const listing = await hub.listTools(config).catch((e: unknown) => e);
      expect(listing).toBeInstanceOf(ApplicationFailure);
      expect(listing).toMatchObject({ type: Failure.McpAddressRefused, nonRetryable: true });
      expect((listing as Error).message).toMatch(/^MCP server "named-by-api" was not contacted: (localhost resolves to (127\.0\.0\.1|::1),|127\.0\.0\.1 is) a loopback/);
      const call = await hub.callTool(config, 'lookup', { query: 'x' }).catch((e: unknown) => e);
      expect(call).toMatchObject({ type: Failure.McpAddressRefused, nonRetryable: true });
      expect(server.authorizations.length).toBe(before); // not a single request reached the server
    }
  });

  it('the same server without the mark (an agent file of the operator) is reached as before', async () => {
    const tools = await hub.listTools({ type: 'url', name: 'operator', url: `http://localhost:${port()}/mcp` });
    expect(tools.map((t) => t.name)).toContain('lookup');
  });

  it('the checked fetch carries a whole MCP session when the address is public (here: a policy that calls loopback public)', async () => {
    const loopbackIsPublic = createPublicOnlyFetch((a) => !(a.startsWith('127.') || a === '::1') && a !== 'localhost');
    const client = new Client({ name: 'test', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`http://localhost:${port()}/mcp`), { fetch: loopbackIsPublic }));
    try {
      expect((await client.listTools()).tools.map((t) => t.name)).toContain('lookup');
      const result = await client.callTool({ name: 'lookup', arguments: { query: 'temporal' } });
      expect(result.content).toEqual([{ type: 'text', text: 'result for temporal' }]);
    } finally {
      await client.close();
    }
  });
});
