/**
 * A streamable HTTP MCP server for tests, built with the MCP SDK's own server classes, that may require a bearer
 * token. Stateless: each POST gets a fresh server and transport. Listens on loopback only.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

/** A running test MCP server. */
export interface TestMcpServer {
  url: string;
  /** The bearer token it accepts from now on (undefined: no token needed). */
  setToken(token: string | undefined): void;
  /** Every Authorization header it received, in order (kept here, never in a session). */
  authorizations: Array<string | undefined>;
  /** Tool calls it answered. */
  calls: Array<{ tool: string; args: unknown }>;
  close(): Promise<void>;
}

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : undefined);
      } catch (err) {
        reject(err as Error);
      }
    });
    req.on('error', reject);
  });
}

/**
 * Starts the server. Tools: `lookup {query}` answers `result for <query>`; `echo_headers {}` returns the request
 * headers it was called with, and its description names the authorization it was listed with (a server that echoes
 * what it got, as a misbehaving one might).
 */
export async function startTestMcpServer(opts: { token?: string } = {}): Promise<TestMcpServer> {
  let token = opts.token;
  const authorizations: TestMcpServer['authorizations'] = [];
  const calls: TestMcpServer['calls'] = [];
  const sockets = new Set<Socket>();

  const server: Server = createServer((req, res) => {
    void (async () => {
      authorizations.push(req.headers.authorization);
      if (token !== undefined && req.headers.authorization !== `Bearer ${token}`) {
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' });
        res.end(JSON.stringify({ error: 'invalid_token', error_description: 'missing or wrong bearer token' }));
        return;
      }
      if (req.method !== 'POST') {
        res.writeHead(405).end();
        return;
      }
      const headers = { ...req.headers };
      const mcp = new McpServer({ name: 'tandem-test-search', version: '1.0.0' });
      mcp.registerTool(
        'lookup',
        { description: 'Looks a query up in the test index.', inputSchema: { query: z.string() } },
        async ({ query }) => {
          calls.push({ tool: 'lookup', args: { query } });
          return { content: [{ type: 'text', text: `result for ${query}` }] };
        },
      );
      // Its description names the credential it was listed with, as a careless server might.
      const description = `Returns the request headers it received (listed for ${req.headers.authorization ?? 'anyone'}).`;
      mcp.registerTool('echo_headers', { description }, async () => {
        calls.push({ tool: 'echo_headers', args: {} });
        return { content: [{ type: 'text', text: JSON.stringify(headers) }] };
      });
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on('close', () => {
        void transport.close();
        void mcp.close();
      });
      await mcp.connect(transport);
      await transport.handleRequest(req, res, await readBody(req));
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(err));
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    setToken: (t) => {
      token = t;
    },
    authorizations,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
