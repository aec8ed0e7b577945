/**
 * A scripted Messages API server, over real HTTP on loopback: the model of `tandem demo` when no API key is set
 * (it plays `examples/offline/*.script.json`), and of the tests and benchmarks.
 *
 * Point the real `@anthropic-ai/sdk` at it with `baseURL: server.url` (or
 * `ANTHROPIC_BASE_URL`). Each `POST /v1/messages` consumes the next step of the
 * script, in arrival order; a request with no step left (or on an unknown route)
 * gets an HTTP 500 and is remembered so that `assertDone()` throws.
 *
 * Only node built-ins are used.
 */
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

export type StopReason =
  | 'end_turn'
  | 'tool_use'
  | 'max_tokens'
  | 'stop_sequence'
  | 'pause_turn'
  | 'refusal'
  | 'model_context_window_exceeded';

export interface TextBlockSpec {
  type: 'text';
  text: string;
}

export interface ToolUseBlockSpec {
  type: 'tool_use';
  /** Auto-generated (`toolu_...`) when absent. */
  id?: string;
  name: string;
  input: unknown;
  /** Streamed verbatim as the input JSON instead of `input` (to send invalid JSON, as a model can). */
  rawInput?: string;
}

export interface ThinkingBlockSpec {
  type: 'thinking';
  thinking: string;
  /** Auto-generated when absent. */
  signature?: string;
}

export type BlockSpec = TextBlockSpec | ToolUseBlockSpec | ThinkingBlockSpec;

export interface UsageSpec {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens: number;
  cache_creation_input_tokens: number;
}

export interface Reply {
  content: BlockSpec[];
  /** Default: 'tool_use' if any tool_use block, else 'end_turn'. */
  stop_reason?: StopReason;
  stop_sequence?: string | null;
  /** Merged over the computed rough usage. */
  usage?: Partial<UsageSpec>;
  /** Overrides the echoed request model. */
  model?: string;
  /** Delay before response headers (overrides server default). */
  latencyMs?: number;
  /** Streaming: delay between headers and first content delta (overrides server default). */
  ttftMs?: number;
  /** Streaming: delay between subsequent content deltas (overrides server default). */
  chunkDelayMs?: number;
}

export interface ErrorFault {
  error: {
    status: number;
    /** API error type; derived from status when absent (429 → rate_limit_error, 529 → overloaded_error, ...). */
    type?: string;
    message?: string;
    /** Sets the `retry-after` header (seconds). */
    retryAfterSec?: number;
    /** Sets `x-should-retry: true|false` (the SDK obeys it over its status-based policy). */
    shouldRetry?: boolean;
    /** Extra response headers. */
    headers?: Record<string, string>;
  };
  latencyMs?: number;
}

/**
 * Start a streamed reply, then drop the connection after `cutStreamAfterChunks`
 * SSE events (every event counts, including the `ping`). With `graceful: true`
 * the response is ended cleanly instead (truncated stream, no `message_stop`).
 * A non-streaming request gets its headers and half of its JSON body, then the cut.
 */
export interface CutStreamFault {
  cutStreamAfterChunks: number;
  graceful?: boolean;
  reply?: Reply;
  latencyMs?: number;
  ttftMs?: number;
}

/**
 * Start a streamed reply (HTTP 200), then emit an SSE `event: error` after
 * `afterChunks` events (default 1, i.e. right after `message_start`), like the
 * real API does when it gets overloaded mid-stream. A non-streaming request gets
 * the equivalent HTTP error instead.
 */
export interface StreamErrorFault {
  streamError: { afterChunks?: number; type?: string; message?: string };
  reply?: Reply;
  latencyMs?: number;
  ttftMs?: number;
}

/** Accept the request and never answer (until `close()`). */
export interface HangFault {
  hang: true;
}

export type Fault = ErrorFault | CutStreamFault | StreamErrorFault | HangFault;

/** A step as plain data (what a script file may contain). */
export type PlainStep = Reply | Fault;

export type Step = PlainStep | ((req: RecordedRequest) => PlainStep);

/** Loosely-typed view of a Messages request body. */
export interface RequestBody {
  model?: string;
  max_tokens?: number;
  stream?: boolean;
  system?: unknown;
  messages?: Array<{ role: string; content: unknown }>;
  tools?: Array<{ name: string; [k: string]: unknown }>;
  [k: string]: unknown;
}

export type RequestKind = 'messages' | 'count_tokens' | 'other';

export interface RecordedRequest {
  /** 0-based arrival order (index in `server.requests`). */
  seq: number;
  method: string;
  /** Path without the query string. */
  path: string;
  kind: RequestKind;
  headers: IncomingHttpHeaders;
  /** Parsed JSON body (`{}` if empty or unparseable; see `rawBody`). */
  body: RequestBody;
  rawBody: string;
  /** Date.now() at arrival. */
  receivedAt: number;
  /** Index of the script step it consumed; null if none (unexpected, count_tokens). */
  stepIndex: number | null;
  /** True when the request was not accounted for by the script (→ assertDone throws). */
  unexpected: boolean;
}

export interface MessagesServerOptions {
  script?: Step[];
  /** Default delay before response headers. Default 0. */
  latencyMs?: number;
  /** Default delay between headers and the first content delta when streaming. Default 0. */
  ttftMs?: number;
  /** Default delay between subsequent content deltas when streaming. Default 0. */
  chunkDelayMs?: number;
  /** Max characters per text/thinking/json delta. Default 16. */
  chunkChars?: number;
  /** Replay the script from the start when exhausted (offline demo). Default false. */
  loop?: boolean;
  /** Default 0 (ephemeral). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /**
   * Consulted before the script for every Messages request: a step it returns answers the request without using
   * up the script (for requests whose number a test cannot know in advance, such as summaries for compaction).
   */
  responder?: (req: RecordedRequest) => PlainStep | undefined;
  /** Print unexpected requests to stderr. Default true. */
  logUnexpected?: boolean;
}

export interface MessagesServer {
  /** e.g. `http://127.0.0.1:PORT` — use as the SDK's baseURL. */
  readonly url: string;
  readonly port: number;
  /** Every request received, in arrival order (including unexpected ones). */
  readonly requests: RecordedRequest[];
  /** Descriptions of unexpected requests / step failures. */
  readonly failures: string[];
  /** Number of script steps not yet played. */
  readonly remaining: number;
  push(...steps: Step[]): void;
  /** Throws if steps are left unplayed or anything unexpected happened. */
  assertDone(): void;
  /** Resolves once at least `n` requests were recorded (in total). */
  waitForRequests(n: number, timeoutMs?: number): Promise<RecordedRequest[]>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Step builders
// ---------------------------------------------------------------------------

export function text(t: string): TextBlockSpec {
  return { type: 'text', text: t };
}

export function toolUse(name: string, input: unknown, id?: string): ToolUseBlockSpec {
  return id === undefined ? { type: 'tool_use', name, input } : { type: 'tool_use', id, name, input };
}

export function thinking(t: string, signature?: string): ThinkingBlockSpec {
  return signature === undefined ? { type: 'thinking', thinking: t } : { type: 'thinking', thinking: t, signature };
}

/** `reply('hi')`, `reply(thinking('...'), text('x'), toolUse('ls', {}))`. Strings become text blocks. */
export function reply(...blocks: Array<BlockSpec | string>): Reply {
  return { content: blocks.map((b) => (typeof b === 'string' ? text(b) : b)) };
}

export function apiError(
  status: number,
  opts: Omit<ErrorFault['error'], 'status'> = {},
): ErrorFault {
  return { error: { status, ...opts } };
}

export function cutStream(afterChunks: number, r?: Reply): CutStreamFault {
  return r === undefined ? { cutStreamAfterChunks: afterChunks } : { cutStreamAfterChunks: afterChunks, reply: r };
}

export function hang(): HangFault {
  return { hang: true };
}

// ---------------------------------------------------------------------------
// Script files
// ---------------------------------------------------------------------------

/** Reads `{ "steps": [ Reply | Fault, ... ] }` (plain JSON data) and validates its shape. */
export async function loadScriptFile(path: string): Promise<PlainStep[]> {
  const raw = await readFile(path, 'utf8');
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch (e) {
    throw new Error(`script file ${path}: invalid JSON: ${(e as Error).message}`);
  }
  const steps: unknown = isObject(data) ? data['steps'] : undefined;
  if (!Array.isArray(steps)) throw new Error(`script file ${path}: expected {"steps": [...]}`);
  steps.forEach((s: unknown, i: number) => {
    const problem = validatePlainStep(s);
    if (problem) throw new Error(`script file ${path}: steps[${i}]: ${problem}`);
  });
  return steps as PlainStep[];
}

function validatePlainStep(s: unknown): string | null {
  if (!isObject(s)) return 'not an object';
  if ('hang' in s || 'error' in s || 'cutStreamAfterChunks' in s || 'streamError' in s) {
    if ('error' in s && !(isObject(s['error']) && typeof s['error']['status'] === 'number')) {
      return 'error.status must be a number';
    }
    if ('reply' in s && s['reply'] !== undefined) return validatePlainStep(s['reply']);
    return null;
  }
  const content = s['content'];
  if (!Array.isArray(content)) return 'expected a reply with a "content" array, or a fault';
  for (const [j, b] of content.entries()) {
    if (!isObject(b)) return `content[${j}] is not an object`;
    if (b['type'] === 'text' && typeof b['text'] === 'string') continue;
    if (b['type'] === 'thinking' && typeof b['thinking'] === 'string') continue;
    if (b['type'] === 'tool_use' && typeof b['name'] === 'string' && 'input' in b) continue;
    return `content[${j}] is not a valid text/tool_use/thinking block`;
  }
  return null;
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

const ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  409: 'conflict_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  504: 'timeout_error',
  529: 'overloaded_error',
};

const DEFAULT_MESSAGES: Record<string, string> = {
  invalid_request_error: 'Invalid request',
  authentication_error: 'invalid x-api-key',
  permission_error: 'Your API key does not have permission to use the specified resource.',
  not_found_error: 'Not found',
  request_too_large: 'Request exceeds the maximum allowed number of bytes.',
  rate_limit_error: 'Number of request tokens has exceeded your per-minute rate limit',
  api_error: 'Internal server error',
  timeout_error: 'Request timed out',
  overloaded_error: 'Overloaded',
};

const STATUS_FOR_TYPE: Record<string, number> = Object.fromEntries(
  Object.entries(ERROR_TYPES).map(([status, type]) => [type, Number(status)]),
);

function errorTypeFor(status: number): string {
  return ERROR_TYPES[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
}

function errorBody(type: string, message: string): string {
  return JSON.stringify({ type: 'error', error: { type, message } });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const B62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
function randomId(prefix: string, len = 24): string {
  const bytes = randomBytes(len);
  let out = prefix;
  for (const b of bytes) out += B62[b % 62];
  return out;
}

function roughTokens(chars: number): number {
  return Math.max(1, Math.ceil(chars / 4));
}

/** Split into chunks of at most `size` code points (never splits a surrogate pair). */
function chunk(s: string, size: number): string[] {
  const cps = Array.from(s);
  const n = Math.max(1, Math.min(size, Math.ceil(cps.length / 3)));
  const out: string[] = [];
  for (let i = 0; i < cps.length; i += n) out.push(cps.slice(i, i + n).join(''));
  return out;
}

type WireBlock =
  | { type: 'text'; text: string }
  | { type: 'tool_use'; id: string; name: string; input: unknown; caller: { type: 'direct' }; rawInput?: string }
  | { type: 'thinking'; thinking: string; signature: string };

interface Plan {
  message: {
    id: string;
    type: 'message';
    role: 'assistant';
    model: string;
    content: WireBlock[];
    stop_reason: StopReason;
    stop_sequence: string | null;
    usage: UsageSpec & { service_tier: 'standard' };
  };
}

function planReply(r: Reply, req: RecordedRequest): Plan {
  const content: WireBlock[] = r.content.map((b): WireBlock => {
    switch (b.type) {
      case 'text':
        return { type: 'text', text: b.text };
      case 'tool_use':
        return {
          type: 'tool_use',
          id: b.id ?? randomId('toolu_01'),
          name: b.name,
          input: b.input,
          caller: { type: 'direct' },
          ...(b.rawInput !== undefined ? { rawInput: b.rawInput } : {}),
        };
      case 'thinking':
        return { type: 'thinking', thinking: b.thinking, signature: b.signature ?? randomId('sig_', 48) };
      default: {
        const never: never = b;
        throw new Error(`unknown block type: ${JSON.stringify(never)}`);
      }
    }
  });
  const outChars = content.reduce(
    (n, b) => n + (b.type === 'text' ? b.text.length : b.type === 'thinking' ? b.thinking.length : JSON.stringify(b.input).length + b.name.length),
    0,
  );
  const usage: UsageSpec & { service_tier: 'standard' } = {
    input_tokens: roughTokens(req.rawBody.length),
    output_tokens: roughTokens(outChars),
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
    ...r.usage,
    service_tier: 'standard',
  };
  return {
    message: {
      id: randomId('msg_01'),
      type: 'message',
      role: 'assistant',
      model: r.model ?? (typeof req.body.model === 'string' ? req.body.model : 'claude-fake'),
      content,
      stop_reason: r.stop_reason ?? (content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn'),
      stop_sequence: r.stop_sequence ?? null,
      usage,
    },
  };
}

/** The full SSE event sequence for a message, exactly as the real API orders it. */
function sseEvents(plan: Plan, chunkChars: number): Array<{ event: string; data: unknown; isDelta: boolean }> {
  const m = plan.message;
  const ev: Array<{ event: string; data: unknown; isDelta: boolean }> = [];
  const push = (event: string, data: Record<string, unknown>, isDelta = false): void => {
    ev.push({ event, data: { type: event, ...data }, isDelta });
  };
  push('message_start', {
    message: { ...m, content: [], stop_reason: null, stop_sequence: null, usage: { ...m.usage, output_tokens: 1 } },
  });
  m.content.forEach((b, index) => {
    switch (b.type) {
      case 'text':
        push('content_block_start', { index, content_block: { type: 'text', text: '' } });
        break;
      case 'tool_use':
        push('content_block_start', { index, content_block: { ...b, input: {} } });
        break;
      case 'thinking':
        push('content_block_start', { index, content_block: { type: 'thinking', thinking: '', signature: '' } });
        break;
    }
    if (index === 0) push('ping', {});
    switch (b.type) {
      case 'text':
        for (const t of chunk(b.text, chunkChars)) push('content_block_delta', { index, delta: { type: 'text_delta', text: t } }, true);
        break;
      case 'tool_use':
        // The real API opens with an empty partial_json.
        push('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: '' } }, true);
        for (const j of chunk(b.rawInput ?? JSON.stringify(b.input ?? {}), chunkChars)) {
          push('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: j } }, true);
        }
        break;
      case 'thinking':
        for (const t of chunk(b.thinking, chunkChars)) {
          push('content_block_delta', { index, delta: { type: 'thinking_delta', thinking: t } }, true);
        }
        push('content_block_delta', { index, delta: { type: 'signature_delta', signature: b.signature } }, true);
        break;
    }
    push('content_block_stop', { index });
  });
  if (m.content.length === 0) push('ping', {});
  push('message_delta', {
    delta: { stop_reason: m.stop_reason, stop_sequence: m.stop_sequence },
    usage: {
      input_tokens: m.usage.input_tokens,
      cache_creation_input_tokens: m.usage.cache_creation_input_tokens,
      cache_read_input_tokens: m.usage.cache_read_input_tokens,
      output_tokens: m.usage.output_tokens,
    },
  });
  push('message_stop', {});
  return ev;
}

function formatSse(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

export async function startMessagesServer(opts: MessagesServerOptions = {}): Promise<MessagesServer> {
  const script: Step[] = [...(opts.script ?? [])];
  const requests: RecordedRequest[] = [];
  const failures: string[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  const waiters = new Set<{ n: number; resolve: (r: RecordedRequest[]) => void }>();
  const defaults = {
    latencyMs: opts.latencyMs ?? 0,
    ttftMs: opts.ttftMs ?? 0,
    chunkDelayMs: opts.chunkDelayMs ?? 0,
    chunkChars: Math.max(1, opts.chunkChars ?? 16),
  };
  const loop = opts.loop ?? false;
  const responder = opts.responder;
  const logUnexpected = opts.logUnexpected ?? true;
  let cursor = 0; // next step to play (monotonic; modulo script length when looping)
  let played = 0; // steps consumed (for assertDone without looping)
  let closed = false;

  const delay = (ms: number): Promise<void> => {
    if (ms <= 0 || closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          timers.delete(entry);
          resolve();
        }, ms),
        resolve,
      };
      timers.add(entry);
    });
  };

  const record = (r: RecordedRequest): void => {
    requests.push(r);
    for (const w of [...waiters]) {
      if (requests.length >= w.n) {
        waiters.delete(w);
        w.resolve(requests.slice());
      }
    }
  };

  const fail = (r: RecordedRequest, why: string): string => {
    r.unexpected = true;
    const msg = `scripted server: unexpected request #${r.seq + 1} (${why})`;
    const detail = `${msg}: ${r.method} ${r.path} ${summarize(r)}`;
    failures.push(detail);
    if (logUnexpected) process.stderr.write(`${detail}\n`);
    return msg;
  };

  const alive = (res: ServerResponse): boolean => !closed && !res.destroyed && !res.writableEnded;

  const sendJson = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void => {
    if (!alive(res)) return;
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      'request-id': randomId('req_'),
      ...headers,
    });
    res.end(body);
  };

  const nextStep = (): { step: Step; index: number } | null => {
    if (script.length === 0) return null;
    if (cursor >= script.length) {
      if (!loop) return null;
      cursor = 0;
    }
    const index = cursor++;
    played++;
    const step = script[index];
    return step === undefined ? null : { step, index };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const rawBody = Buffer.concat(chunks).toString('utf8');
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const method = req.method ?? 'GET';
    let body: RequestBody = {};
    let parseError: string | null = null;
    if (rawBody.length > 0) {
      try {
        const parsed: unknown = JSON.parse(rawBody);
        if (isObject(parsed)) body = parsed as RequestBody;
        else parseError = 'body is not a JSON object';
      } catch (e) {
        parseError = `invalid JSON body: ${(e as Error).message}`;
      }
    }
    const kind: RequestKind =
      method === 'POST' && path === '/v1/messages'
        ? 'messages'
        : method === 'POST' && path === '/v1/messages/count_tokens'
          ? 'count_tokens'
          : 'other';
    const r: RecordedRequest = {
      seq: requests.length,
      method,
      path,
      kind,
      headers: req.headers,
      body,
      rawBody,
      receivedAt: Date.now(),
      stepIndex: null,
      unexpected: false,
    };
    record(r);

    if (kind === 'other') {
      const msg = fail(r, `no route for ${method} ${path}`);
      sendJson(res, 500, errorBody('api_error', msg));
      return;
    }
    const invalid = parseError ?? validateRequest(kind, body);
    if (invalid) {
      const msg = fail(r, `invalid request: ${invalid}`);
      sendJson(res, 400, errorBody('invalid_request_error', msg));
      return;
    }
    if (kind === 'count_tokens') {
      const chars = JSON.stringify([body.system ?? null, body.messages ?? [], body.tools ?? []]).length;
      sendJson(res, 200, JSON.stringify({ input_tokens: roughTokens(chars) }));
      return;
    }

    const answered = responder?.(r);
    if (answered) {
      await play(answered, r, res, body.stream === true, -1);
      return;
    }
    const next = nextStep();
    if (!next) {
      const msg = fail(r, 'no step left');
      sendJson(res, 500, errorBody('api_error', msg));
      return;
    }
    r.stepIndex = next.index;
    let step: PlainStep;
    try {
      step = typeof next.step === 'function' ? next.step(r) : next.step;
    } catch (e) {
      const msg = fail(r, `step #${next.index} threw: ${(e as Error).message}`);
      sendJson(res, 500, errorBody('api_error', msg));
      return;
    }
    const streaming = body.stream === true;
    await play(step, r, res, streaming, next.index);
  };

  const play = async (
    step: PlainStep,
    r: RecordedRequest,
    res: ServerResponse,
    streaming: boolean,
    index: number,
  ): Promise<void> => {
    if ('hang' in step) return; // never answered; socket destroyed on close()

    if ('error' in step) {
      const e = step.error;
      await delay(step.latencyMs ?? defaults.latencyMs);
      const type = e.type ?? errorTypeFor(e.status);
      const headers: Record<string, string> = { ...(e.headers ?? {}) };
      if (e.retryAfterSec !== undefined) headers['retry-after'] = String(e.retryAfterSec);
      if (e.shouldRetry !== undefined) headers['x-should-retry'] = String(e.shouldRetry);
      sendJson(res, e.status, errorBody(type, e.message ?? DEFAULT_MESSAGES[type] ?? 'error'), headers);
      return;
    }

    if ('streamError' in step) {
      const se = step.streamError;
      const type = se.type ?? 'overloaded_error';
      const message = se.message ?? DEFAULT_MESSAGES[type] ?? 'error';
      if (!streaming) {
        await delay(step.latencyMs ?? defaults.latencyMs);
        sendJson(res, STATUS_FOR_TYPE[type] ?? 500, errorBody(type, message));
        return;
      }
      await streamReply(res, planReply(step.reply ?? defaultPartialReply, r), {
        latencyMs: step.latencyMs,
        ttftMs: step.ttftMs,
        chunkDelayMs: step.reply?.chunkDelayMs,
        stopAfter: se.afterChunks ?? 1,
        onStop: () => {
          if (!alive(res)) return;
          res.write(formatSse('error', { type: 'error', error: { type, message } }));
          res.end();
        },
      });
      return;
    }

    if ('cutStreamAfterChunks' in step) {
      const n = Math.max(0, step.cutStreamAfterChunks);
      const graceful = step.graceful ?? false;
      const cut = (): void => {
        if (!alive(res)) return;
        if (graceful) res.end();
        else res.socket?.destroy();
      };
      const plan = planReply(step.reply ?? defaultPartialReply, r);
      if (!streaming) {
        await delay(step.latencyMs ?? defaults.latencyMs);
        if (!alive(res)) return;
        const full = JSON.stringify(plan.message);
        res.writeHead(200, { 'content-type': 'application/json', 'request-id': randomId('req_') });
        res.write(full.slice(0, Math.floor(full.length / 2)), () => cut());
        return;
      }
      await streamReply(res, plan, {
        latencyMs: step.latencyMs,
        ttftMs: step.ttftMs,
        chunkDelayMs: step.reply?.chunkDelayMs,
        stopAfter: n,
        onStop: cut,
      });
      return;
    }

    if ('content' in step) {
      const plan = planReply(step, r);
      if (!streaming) {
        await delay(step.latencyMs ?? defaults.latencyMs);
        sendJson(res, 200, JSON.stringify(plan.message));
        return;
      }
      await streamReply(res, plan, { latencyMs: step.latencyMs, ttftMs: step.ttftMs, chunkDelayMs: step.chunkDelayMs });
      return;
    }

    const msg = fail(r, `step #${index} is neither a reply nor a fault: ${JSON.stringify(step)}`);
    sendJson(res, 500, errorBody('api_error', msg));
  };

  const streamReply = async (
    res: ServerResponse,
    plan: Plan,
    o: {
      latencyMs: number | undefined;
      ttftMs: number | undefined;
      chunkDelayMs: number | undefined;
      stopAfter?: number;
      onStop?: () => void;
    },
  ): Promise<void> => {
    await delay(o.latencyMs ?? defaults.latencyMs);
    if (!alive(res)) return;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'request-id': randomId('req_'),
    });
    res.flushHeaders();
    const events = sseEvents(plan, defaults.chunkChars);
    const ttft = o.ttftMs ?? defaults.ttftMs;
    const chunkDelay = o.chunkDelayMs ?? defaults.chunkDelayMs;
    let sawDelta = false;
    let written = 0;
    let flushed: Promise<void> = Promise.resolve();
    for (const e of events) {
      if (o.stopAfter !== undefined && written >= o.stopAfter) break;
      if (e.isDelta) {
        await delay(sawDelta ? chunkDelay : ttft);
        sawDelta = true;
        if (!alive(res)) return;
      }
      flushed = new Promise<void>((resolve) => res.write(formatSse(e.event, e.data), () => resolve()));
      written++;
    }
    if (o.stopAfter !== undefined && o.onStop) {
      await flushed; // let the written events reach the client before the fault
      o.onStop();
      return;
    }
    res.end();
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const msg = `scripted server: internal error: ${(e as Error)?.stack ?? String(e)}`;
      failures.push(msg);
      if (logUnexpected) process.stderr.write(`${msg}\n`);
      if (!res.headersSent) sendJson(res, 500, errorBody('api_error', msg));
      else res.destroy();
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;

  return {
    url,
    port: addr.port,
    requests,
    failures,
    get remaining(): number {
      return loop ? 0 : Math.max(0, script.length - played);
    },
    push(...steps: Step[]): void {
      script.push(...steps);
    },
    assertDone(): void {
      const problems: string[] = [];
      const left = loop ? 0 : script.length - played;
      if (left > 0) {
        const idx = Array.from({ length: left }, (_, i) => played + i);
        problems.push(
          `${left} scripted step(s) left unplayed: ${idx.map((i) => `#${i} ${describeStep(script[i])}`).join(', ')}`,
        );
      }
      problems.push(...failures);
      if (problems.length > 0) {
        throw new Error(
          `scripted server not done (${requests.length} request(s) received, ${played} step(s) played):\n  - ${problems.join('\n  - ')}`,
        );
      }
    },
    waitForRequests(n: number, timeoutMs = 5000): Promise<RecordedRequest[]> {
      if (requests.length >= n) return Promise.resolve(requests.slice());
      return new Promise<RecordedRequest[]>((resolve, reject) => {
        const w = {
          n,
          resolve: (r: RecordedRequest[]): void => {
            clearTimeout(t);
            resolve(r);
          },
        };
        const t = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`scripted server: timed out after ${timeoutMs}ms waiting for ${n} request(s), got ${requests.length}`));
        }, timeoutMs);
        waiters.add(w);
      });
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      for (const t of timers) {
        clearTimeout(t.timer);
        t.resolve();
      }
      timers.clear();
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const s of sockets) s.destroy();
      await done;
    },
  };
}

const defaultPartialReply: Reply = {
  content: [{ type: 'text', text: 'This reply is going to be cut off somewhere in the middle, sorry about that.' }],
};

function validateRequest(kind: RequestKind, body: RequestBody): string | null {
  if (typeof body.model !== 'string' || body.model.length === 0) return 'model: Field required';
  if (!Array.isArray(body.messages)) return 'messages: Field required';
  if (kind === 'messages' && typeof body.max_tokens !== 'number') return 'max_tokens: Field required';
  return null;
}

function summarize(r: RecordedRequest): string {
  const msgs = r.body.messages;
  const last = Array.isArray(msgs) ? msgs[msgs.length - 1] : undefined;
  const lastStr = last === undefined ? '' : JSON.stringify(last.content);
  return `(model=${String(r.body.model)}, stream=${String(r.body.stream === true)}, messages=${Array.isArray(msgs) ? msgs.length : '?'}${
    lastStr ? `, last=${lastStr.length > 120 ? `${lastStr.slice(0, 120)}…` : lastStr}` : ''
  })`;
}

function describeStep(s: Step | undefined): string {
  if (s === undefined) return '?';
  if (typeof s === 'function') return `<function ${s.name || 'anonymous'}>`;
  if ('hang' in s) return 'hang';
  if ('error' in s) return `error ${s.error.status}`;
  if ('cutStreamAfterChunks' in s) return `cutStreamAfterChunks ${s.cutStreamAfterChunks}`;
  if ('streamError' in s) return `streamError ${s.streamError.type ?? 'overloaded_error'}`;
  const blocks = s.content.map((b) => (b.type === 'tool_use' ? `tool_use(${b.name})` : b.type)).join('+');
  return `reply[${blocks}]`;
}
