/**
 * `tandem codec-server`: the remote codec endpoint of the Temporal UI and CLI (`--ui-codec-endpoint`,
 * `--codec-endpoint`). POST /encode and /decode take and return `{payloads: [{metadata, data}]}` with base64 bytes,
 * so whoever holds the key sees decrypted payloads while the database holds ciphertext. Only callers that know the
 * server's token are served, and a request body is read only up to a cap.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { codecFromEnv } from '../codec/index.js';
import { loadRuntimeConfig } from '../config/env.js';
import type { Io } from './io.js';

/** Default cap of a request body: the payloads of one history page are far below it. */
export const CODEC_MAX_BODY_BYTES = 4 * 1024 * 1024;

/** A token for the codec server when `TANDEM_CODEC_TOKEN` does not give one: URL-safe, so it can be a path segment. */
export function newCodecToken(): string {
  return randomBytes(24).toString('base64url');
}

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

/** Options of {@link startCodecServer}. */
export interface CodecServerOptions {
  /** Web origins (the Temporal UI) whose pages may call the server. */
  origins: readonly string[];
  /**
   * The token a caller must show: `Authorization: Bearer <token>` (the `temporal` CLI's `--codec-auth`, scripts),
   * or as the first path segment, `/<token>/decode` (the Temporal UI, which sends no header of its own to a plain
   * http endpoint: its codec endpoint is then `http://127.0.0.1:8888/<token>`).
   */
  token: string;
  host?: string;
  /** Largest request body read; a larger one gets a 413 as soon as its bytes pass the cap. */
  maxBodyBytes?: number;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Starts the codec server on `host:port`; resolves with the server once it listens. Browsers may call it only from
 * `origins` (the Temporal UI): any other web page the user visits could otherwise have ciphertext decrypted.
 * Requests without an Origin header (the `temporal` CLI, scripts) pass that check, and every request needs the
 * token: any local process could otherwise decrypt what it reads from the database.
 */
export async function startCodecServer(codec: PayloadCodec, port: number, opts: CodecServerOptions): Promise<http.Server> {
  const allowed = new Set(opts.origins.map((o) => o.replace(/\/+$/, '')));
  const host = opts.host ?? '127.0.0.1';
  const limit = opts.maxBodyBytes ?? CODEC_MAX_BODY_BYTES;
  if (opts.token.length === 0) throw new Error('the codec server needs a token');
  const expected = digest(opts.token);
  const isToken = (candidate: string) => timingSafeEqual(digest(candidate), expected);
  /** The operation a request asks for, with the token shown either way; undefined without it. */
  const authorized = (req: http.IncomingMessage): string | undefined => {
    const path = (req.url ?? '').replace(/\?.*$/, '').replace(/\/+$/, '');
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
    if (bearer !== undefined && isToken(bearer)) return path;
    const inPath = /^\/([^/]+)(\/.*)?$/.exec(path);
    if (inPath && isToken(decodeURIComponent(inPath[1]!))) return inPath[2] ?? '';
    return undefined;
  };
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
    if (req.method === 'OPTIONS') return void res.writeHead(204).end(); // a preflight carries no credentials
    let op: string | undefined;
    try {
      op = authorized(req);
    } catch {
      op = undefined; // a path segment that is not valid percent-encoding
    }
    if (op === undefined) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer realm="tandem codec-server"' });
      return void res.end('this codec server needs its token: Authorization: Bearer <token>, or the endpoint http://host:port/<token>\n');
    }
    if (req.method !== 'POST' || (op !== '/encode' && op !== '/decode')) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return void res.end('POST /encode or /decode\n');
    }
    const tooLarge = () => {
      res.writeHead(413, { 'content-type': 'text/plain' });
      res.end(`the request body is over ${limit} bytes\n`);
    };
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) return tooLarge(); // the body is left unread
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (refused) {
        // What follows the cap is read and dropped; a sender that goes on and on is cut off.
        if (size > 2 * limit) req.socket.destroy();
        return;
      }
      if (size > limit) {
        refused = true;
        chunks.length = 0;
        return tooLarge();
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (refused) return;
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

/** `tandem codec-server`: serves the `TANDEM_PAYLOAD_KEY` codec until the process stops, and says how to call it. */
export async function codecServerRun(io: Io, o: { port: number; origin?: string[] }): Promise<never> {
  const codec = codecFromEnv(io.env);
  if (!codec) throw new Error('TANDEM_PAYLOAD_KEY is not set, so there is nothing to decode; set it to the key the workers use');
  const configured = loadRuntimeConfig(io.env).TANDEM_CODEC_TOKEN;
  const token = configured ?? newCodecToken();
  const ui = io.env.TANDEM_UI_ADDRESS;
  const origins = o.origin ?? (ui ? [ui] : ['http://127.0.0.1:8233', 'http://localhost:8233']);
  await startCodecServer(codec, o.port, { origins, token });
  const base = `http://127.0.0.1:${o.port}`;
  const shown = configured ? '$TANDEM_CODEC_TOKEN' : token;
  io.out(
    [
      `tandem codec-server: ${base} (POST /encode, /decode; ${CODEC_MAX_BODY_BYTES / 1024 / 1024} MiB at most a request)`,
      configured ? 'token: the one in TANDEM_CODEC_TOKEN' : `token (shown this once; set TANDEM_CODEC_TOKEN to choose your own): ${token}`,
      `  Temporal UI codec endpoint: ${base}/${shown}   (e.g. temporal server start-dev --ui-codec-endpoint ${base}/${shown})`,
      `  temporal CLI: --codec-endpoint ${base} --codec-auth "Bearer ${shown}"`,
    ].join('\n'),
  );
  return new Promise<never>(() => {}); // serves until the process is stopped
}
