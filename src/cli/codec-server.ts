/**
 * `tandem codec-server`: the remote codec endpoint of the Temporal UI and CLI (`--ui-codec-endpoint`,
 * `--codec-endpoint`). POST /encode and /decode take and return `{payloads: [{metadata, data}]}` with base64 bytes,
 * so whoever holds the key sees decrypted payloads while the database holds ciphertext.
 */
import * as http from 'node:http';
import type { Payload, PayloadCodec } from '@temporalio/common';

interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

function fromJson(p: JsonPayload): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    data: Buffer.from(p.data ?? '', 'base64'),
  };
}

function toJson(p: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? []).toString('base64')])),
    data: Buffer.from(p.data ?? []).toString('base64'),
  };
}

/**
 * Starts the codec server on `host:port`; resolves with the server once it listens. Browsers may call it only from
 * `origins` (the Temporal UI): any other web page the user visits could otherwise have ciphertext decrypted.
 * Requests without an Origin header (the `temporal` CLI, scripts) are served.
 */
export async function startCodecServer(
  codec: PayloadCodec,
  port: number,
  origins: readonly string[],
  host = '127.0.0.1',
): Promise<http.Server> {
  const allowed = new Set(origins.map((o) => o.replace(/\/+$/, '')));
  const server = http.createServer((req, res) => {
    const origin = req.headers.origin;
    if (origin !== undefined && !allowed.has(origin)) {
      res.writeHead(403, { 'content-type': 'text/plain' });
      return void res.end(`origin ${origin} may not use this codec server (allowed: ${[...allowed].join(', ')})\n`);
    }
    if (origin !== undefined) {
      res.setHeader('access-control-allow-origin', origin);
      res.setHeader('vary', 'origin');
      res.setHeader('access-control-allow-methods', 'POST, OPTIONS');
      res.setHeader('access-control-allow-headers', 'content-type, x-namespace, authorization');
      res.setHeader('access-control-allow-credentials', 'true');
    }
    if (req.method === 'OPTIONS') return void res.writeHead(204).end();
    const op = req.url?.replace(/\?.*$/, '').replace(/\/+$/, '');
    if (req.method !== 'POST' || (op !== '/encode' && op !== '/decode')) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return void res.end('POST /encode or /decode\n');
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { payloads?: JsonPayload[] };
          const payloads = (body.payloads ?? []).map(fromJson);
          const out = op === '/encode' ? await codec.encode(payloads) : await codec.decode(payloads);
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ payloads: out.map(toJson) }));
        } catch (err) {
          res.writeHead(400, { 'content-type': 'text/plain' });
          res.end(`${(err as Error).message}\n`);
        }
      })();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  return server;
}
