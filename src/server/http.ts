/**
 * HTTP plumbing of `tandem serve`: the API's error shape, a small router, JSON bodies, API-key checks and cursor
 * pagination as the official SDK reads it (`data`, `next_page`; the next request sends `page`).
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { ResourceFailure } from '../shared/resources.js';
import { AgentFileError } from '../config/agent.js';
import { SessionNotFoundError } from '../client/index.js';
import { VaultError } from '../vault/index.js';
import { FileStoreError } from '../files/store.js';
import { TandemError } from '../shared/errors.js';

/** Error types of the API, by HTTP status. */
const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  405: 'invalid_request_error',
  409: 'conflict_error',
  413: 'request_too_large',
  500: 'api_error',
  503: 'overloaded_error',
};

/** An error the API answers with `{type: 'error', error: {type, message}}` and its status. */
export class ApiError extends TandemError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }

  /** The body the API sends. */
  body(): { type: 'error'; error: { type: string; message: string } } {
    return { type: 'error', error: { type: ERROR_TYPES[this.status] ?? 'api_error', message: this.message } };
  }
}

/** 400 naming the field that is wrong. */
export function invalid(field: string, message: string): ApiError {
  return new ApiError(400, field ? `${field}: ${message}` : message);
}

/** 404 for a resource id. */
export function notFound(kind: string, id: string): ApiError {
  return new ApiError(404, `${kind} "${id}" was not found`);
}

/** Turns Tandem's own errors and Temporal and entity-workflow failures into API errors; anything else is a 500. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof VaultError || err instanceof AgentFileError) return new ApiError(400, err.message);
  if (err instanceof SessionNotFoundError) return new ApiError(404, err.message);
  if (err instanceof FileStoreError) return new ApiError(err.status, err.message);
  if (err instanceof WorkflowUpdateFailedError && err.cause instanceof ApplicationFailure) {
    const status =
      err.cause.type === ResourceFailure.conflict ? 409 : err.cause.type === ResourceFailure.notFound ? 404 : 400;
    return new ApiError(status, err.cause.message);
  }
  const code = (err as { code?: number })?.code ?? (err as { cause?: { code?: number } })?.cause?.code;
  if (err instanceof WorkflowNotFoundError || code === 5) return new ApiError(404, 'the resource was not found');
  return new ApiError(500, `internal error: ${(err as Error)?.message ?? String(err)}`);
}

/** One request as the handlers see it. */
export interface ApiRequest {
  method: string;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: unknown;
  raw: IncomingMessage;
  res: ServerResponse;
}

/** A handler returns the JSON to send (status 200), or undefined when it wrote the response itself. */
export type Handler = (req: ApiRequest) => Promise<unknown>;

interface Route {
  method: string;
  parts: string[];
  handler: Handler;
}

/** Method + path pattern (`/v1/agents/:agent_id`) routing. */
export class Router {
  private readonly routes: Route[] = [];

  add(method: string, pattern: string, handler: Handler): this {
    this.routes.push({ method, parts: pattern.split('/').filter(Boolean), handler });
    return this;
  }

  /** The handler and path parameters for a request, or a 404/405 ApiError. */
  match(method: string, path: string): { handler: Handler; params: Record<string, string> } {
    let segs: string[];
    try {
      segs = path.split('/').filter(Boolean).map(decodeURIComponent);
    } catch {
      throw new ApiError(400, `the path ${path} is not valid percent-encoding`);
    }
    let pathMatched = false;
    for (const r of this.routes) {
      if (r.parts.length !== segs.length) continue;
      const params: Record<string, string> = {};
      const ok = r.parts.every((p, i) => (p.startsWith(':') ? ((params[p.slice(1)] = segs[i]!), true) : p === segs[i]));
      if (!ok) continue;
      pathMatched = true;
      if (r.method === method) return { handler: r.handler, params };
    }
    if (pathMatched) throw new ApiError(405, `${method} is not allowed on ${path}`);
    throw new ApiError(404, `no endpoint ${method} ${path} in Tandem's Managed Agents API`);
  }
}

const MAX_BODY = 8 * 1024 * 1024;

/**
 * Reads a request body of at most `max` bytes: a 413 when it announces more, or as soon as more has come (the
 * connection stays up for the answer; the rest of the body is not read).
 */
export async function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) throw new ApiError(413, `the request body is ${declared} bytes; at most ${max} fit`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > max) throw new ApiError(413, `the request body is over ${max} bytes`);
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks, size);
}

/** Reads a JSON body (empty body: undefined). */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  const body = await readBody(req, MAX_BODY);
  if (body.length === 0) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    // Not the parser's message: it quotes the body, which may hold a secret.
    throw new ApiError(400, 'the request body is not valid JSON');
  }
}

/** Sends JSON with a status. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Checks `x-api-key` (or `Authorization: Bearer`) against the configured keys; 401 otherwise. */
export function checkApiKey(headers: IncomingMessage['headers'], keys: string[]): void {
  const given =
    (typeof headers['x-api-key'] === 'string' ? headers['x-api-key'] : undefined) ??
    (typeof headers.authorization === 'string' && headers.authorization.startsWith('Bearer ')
      ? headers.authorization.slice(7)
      : undefined);
  if (!given) throw new ApiError(401, 'missing API key: send it in the x-api-key header');
  const a = Buffer.from(given);
  const ok = keys.some((k) => {
    const b = Buffer.from(k);
    return a.length === b.length && timingSafeEqual(a, b);
  });
  if (!ok) throw new ApiError(401, 'invalid API key: use one of the keys configured for this server (TANDEM_API_KEYS)');
}

// ---------------------------------------------------------------------------------------------------------------
// Request fields
// ---------------------------------------------------------------------------------------------------------------

/** A plain object body, or a 400. */
export function objectBody(body: unknown): Record<string, unknown> {
  if (body === undefined) return {};
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw invalid('', 'the request body must be a JSON object');
  return body as Record<string, unknown>;
}

/** `limit` of a list request: 1..1000, default 20. */
export function pageLimit(query: URLSearchParams, def = 20): number {
  const raw = query.get('limit');
  if (raw === null) return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw invalid('limit', 'must be an integer from 1 to 1000');
  return n;
}

/** A boolean query parameter. */
export function queryBool(query: URLSearchParams, name: string): boolean {
  const v = query.get(name);
  if (v === null) return false;
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw invalid(name, 'must be true or false');
}

/** Encodes a cursor for `next_page`. */
export function encodeCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** Decodes the `page` cursor (undefined when absent); a malformed one is a 400. */
export function decodeCursor<T>(query: URLSearchParams): T | undefined {
  const page = query.get('page');
  if (!page) return undefined;
  try {
    return JSON.parse(Buffer.from(page, 'base64url').toString('utf8')) as T;
  } catch {
    throw invalid('page', 'is not a cursor this server returned; pass next_page from the previous response');
  }
}

/** One page of an in-memory list, by offset. */
export function pageOf<T>(items: T[], query: URLSearchParams): { data: T[]; next_page: string | null } {
  const limit = pageLimit(query);
  const cursor = decodeCursor<{ offset: number }>(query);
  const offset = cursor?.offset ?? 0;
  if (!Number.isInteger(offset) || offset < 0) throw invalid('page', 'is not a cursor this server returned');
  const data = items.slice(offset, offset + limit);
  return { data, next_page: offset + limit < items.length ? encodeCursor({ offset: offset + limit }) : null };
}

/** Validates `metadata` of a create request: at most 16 string pairs, keys ≤ 64, values ≤ 512 characters. */
export function metadataField(v: unknown, field = 'metadata', allowNull = false): Record<string, string | null> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(field, 'must be an object of strings');
  const out: Record<string, string | null> = {};
  for (const [k, x] of Object.entries(v)) {
    if (k.length === 0 || k.length > 64) throw invalid(`${field}.${k}`, 'keys must have 1 to 64 characters');
    if (x === null && allowNull) out[k] = null;
    else if (typeof x !== 'string' || x.length > 512)
      throw invalid(`${field}.${k}`, 'values must be strings of at most 512 characters');
    else out[k] = x;
  }
  if (Object.keys(out).length > 16) throw invalid(field, 'at most 16 keys');
  return out;
}

/** A required non-empty string field. */
export function stringField(body: Record<string, unknown>, name: string, opts: { optional?: boolean } = {}): string | undefined {
  const v = body[name];
  if (v === undefined && opts.optional) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw invalid(name, 'must be a non-empty string');
  return v;
}

/** A nullable string field: undefined (omitted), null or a string. */
export function nullableString(body: Record<string, unknown>, name: string): string | null | undefined {
  const v = body[name];
  if (v === undefined || v === null) return v;
  if (typeof v !== 'string') throw invalid(name, 'must be a string or null');
  return v;
}
