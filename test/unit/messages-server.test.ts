import { spawn } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Anthropic from '@anthropic-ai/sdk';
import { afterEach, describe, expect, it } from 'vitest';
import {
  apiError,
  cutStream,
  hang,
  loadScriptFile,
  reply,
  startMessagesServer,
  text,
  thinking,
  toolUse,
} from '../fakes/messages-server.js';
import type { MessagesServer, MessagesServerOptions } from '../fakes/messages-server.js';

const MODEL = 'claude-test-model';
const servers: MessagesServer[] = [];

async function setup(opts: MessagesServerOptions = {}): Promise<{ server: MessagesServer; client: Anthropic }> {
  const server = await startMessagesServer({ logUnexpected: false, ...opts });
  servers.push(server);
  const client = new Anthropic({ apiKey: 'test', baseURL: server.url, maxRetries: 0 });
  return { server, client };
}

const ask = (content: string) => ({
  model: MODEL,
  max_tokens: 1024,
  messages: [{ role: 'user' as const, content }],
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('scripted messages server', () => {
  it('serves a non-streaming text reply and records the request', async () => {
    const { server, client } = await setup({ script: [reply('Hello there!')] });
    const msg = await client.messages.create(ask('hi'));
    expect(msg.type).toBe('message');
    expect(msg.role).toBe('assistant');
    expect(msg.id).toMatch(/^msg_/);
    expect(msg.model).toBe(MODEL);
    expect(msg.content).toEqual([{ type: 'text', text: 'Hello there!' }]);
    expect(msg.stop_reason).toBe('end_turn');
    expect(msg.usage.input_tokens).toBeGreaterThan(0);
    expect(msg.usage.output_tokens).toBeGreaterThan(0);
    expect(msg.usage.cache_read_input_tokens).toBe(0);
    expect(msg.usage.cache_creation_input_tokens).toBe(0);
    expect(msg._request_id).toMatch(/^req_/);

    expect(server.requests).toHaveLength(1);
    const r = server.requests[0]!;
    expect(r.path).toBe('/v1/messages');
    expect(r.stepIndex).toBe(0);
    expect(r.body.model).toBe(MODEL);
    expect(r.body.messages).toEqual([{ role: 'user', content: 'hi' }]);
    // SDK v1.12 sends the apiKey as `Authorization: Bearer <key>` (not x-api-key).
    expect(r.headers['x-api-key'] ?? r.headers.authorization).toMatch(/^(Bearer )?test$/);
    expect(r.headers['anthropic-version']).toBeTruthy();
    expect(typeof r.receivedAt).toBe('number');
    server.assertDone();
  });

  it('streams text in several deltas; finalMessage() assembles it', async () => {
    const long = 'The quick brown fox jumps over the lazy dog. ✨ Ünïcödé 🦊 too.';
    const { server, client } = await setup({ script: [{ ...reply(long), usage: { output_tokens: 42 } }] });
    const stream = client.messages.stream(ask('tell me'));
    const deltas: string[] = [];
    const types: string[] = [];
    stream.on('text', (d) => deltas.push(d));
    stream.on('streamEvent', (e) => types.push(e.type));
    const msg = await stream.finalMessage();
    expect(deltas.length).toBeGreaterThan(2);
    expect(deltas.join('')).toBe(long);
    expect(msg.content).toEqual([{ type: 'text', text: long }]);
    expect(msg.stop_reason).toBe('end_turn');
    expect(msg.usage.output_tokens).toBe(42);
    expect(msg.model).toBe(MODEL);
    expect(types[0]).toBe('message_start');
    expect(types.at(-1)).toBe('message_stop');
    expect(types).toContain('message_delta');
    expect(server.requests[0]!.body.stream).toBe(true);
    server.assertDone();
  });

  it('streams tool_use whose input parses back to the object; stop_reason defaults to tool_use', async () => {
    const input = {
      path: 'src/a "quoted" file.ts',
      lines: [1, 2, 3.5, -4e3],
      nested: { ok: true, none: null, empty: {}, list: [] },
      unicode: 'héllo 🌍 \n\t',
    };
    const { server, client } = await setup({
      script: [reply(thinking('Let me think about this carefully.'), text('Reading it.'), toolUse('read_file', input))],
    });
    const stream = client.messages.stream(ask('read it'));
    const jsonDeltas: string[] = [];
    stream.on('inputJson', (d) => jsonDeltas.push(d));
    const msg = await stream.finalMessage();
    expect(jsonDeltas.length).toBeGreaterThan(2);
    expect(msg.stop_reason).toBe('tool_use');
    expect(msg.content.map((b) => b.type)).toEqual(['thinking', 'text', 'tool_use']);
    const th = msg.content[0];
    if (th?.type !== 'thinking') throw new Error('expected thinking');
    expect(th.thinking).toBe('Let me think about this carefully.');
    expect(th.signature).toMatch(/^sig_/);
    const tu = msg.content[2];
    if (tu?.type !== 'tool_use') throw new Error('expected tool_use');
    expect(tu.id).toMatch(/^toolu_/);
    expect(tu.name).toBe('read_file');
    expect(tu.input).toEqual(input);
    server.assertDone();
  });

  it('non-streaming tool_use keeps an explicit id; function steps see the request', async () => {
    const { server, client } = await setup({
      script: [
        reply(toolUse('bash', { cmd: 'ls' }, 'toolu_fixed')),
        (req) => reply(`you said ${JSON.stringify(req.body.messages?.at(-1)?.content)}`),
      ],
    });
    const first = await client.messages.create(ask('run'));
    expect(first.content).toEqual([
      { type: 'tool_use', id: 'toolu_fixed', name: 'bash', input: { cmd: 'ls' }, caller: { type: 'direct' } },
    ]);
    expect(first.stop_reason).toBe('tool_use');
    const second = await client.messages.create(ask('again'));
    expect(second.content[0]).toEqual({ type: 'text', text: 'you said "again"' });
    expect(server.requests.map((r) => r.stepIndex)).toEqual([0, 1]);
    server.assertDone();
  });

  it('429 with retry-after surfaces as RateLimitError carrying the header', async () => {
    const { server, client } = await setup({ script: [apiError(429, { retryAfterSec: 7 })] });
    const err = await client.messages.create(ask('hi')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    const e = err as InstanceType<typeof Anthropic.RateLimitError>;
    expect(e.status).toBe(429);
    expect(e.headers.get('retry-after')).toBe('7');
    expect(e.type).toBe('rate_limit_error');
    expect(e.error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
    server.assertDone();
  });

  it('529 surfaces as APIError status 529 (overloaded_error), also when streaming', async () => {
    const { server, client } = await setup({
      script: [apiError(529), { error: { status: 529, message: 'busy' } }],
    });
    const err = await client.messages.create(ask('hi')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.APIError);
    expect((err as InstanceType<typeof Anthropic.APIError>).status).toBe(529);
    expect((err as InstanceType<typeof Anthropic.APIError>).type).toBe('overloaded_error');
    const err2 = await client.messages
      .stream(ask('hi'))
      .finalMessage()
      .catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(Anthropic.APIError);
    expect((err2 as InstanceType<typeof Anthropic.APIError>).status).toBe(529);
    expect((err2 as InstanceType<typeof Anthropic.APIError>).apiMessage).toBe('busy');
    server.assertDone();
  });

  it('the SDK retries a 500 when maxRetries allows it (retry-after honoured)', async () => {
    const { server } = await setup({ script: [apiError(500, { retryAfterSec: 0.01 }), reply('ok')] });
    const client = new Anthropic({ apiKey: 'test', baseURL: server.url, maxRetries: 1 });
    const msg = await client.messages.create(ask('hi'));
    expect(msg.content).toEqual([{ type: 'text', text: 'ok' }]);
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]!.headers['x-stainless-retry-count']).toBe('1');
    server.assertDone();
  });

  it('a cut stream makes the SDK throw, after some events arrived', async () => {
    const { server, client } = await setup({
      script: [cutStream(4, reply('a fairly long answer that will never be finished by the server'))],
    });
    const stream = client.messages.stream(ask('hi'));
    const seen: string[] = [];
    stream.on('streamEvent', (e) => seen.push(e.type));
    const err = await stream.finalMessage().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen).not.toContain('message_stop');
    server.assertDone();
  });

  it('a cut non-streaming response makes the SDK throw', async () => {
    const { server, client } = await setup({ script: [cutStream(0)] });
    await expect(client.messages.create(ask('hi'))).rejects.toThrow();
    server.assertDone();
  });

  it('a graceful cut (no message_stop) fails finalMessage() but not the raw iterator', async () => {
    const { server, client } = await setup({
      script: [
        { cutStreamAfterChunks: 5, graceful: true },
        { cutStreamAfterChunks: 5, graceful: true },
      ],
    });
    await expect(client.messages.stream(ask('hi')).finalMessage()).rejects.toThrow(/without producing a Message/);
    // Surprising but true: the raw stream iterator does not notice a missing message_stop.
    const raw = await client.messages.create({ ...ask('hi'), stream: true });
    const types: string[] = [];
    for await (const ev of raw) types.push(ev.type);
    expect(types).toHaveLength(4); // 5 events minus the ping the SDK swallows
    expect(types).not.toContain('message_stop');
    server.assertDone();
  });

  it('an SSE error event mid-stream surfaces as APIError', async () => {
    const { server, client } = await setup({ script: [{ streamError: { afterChunks: 3 } }] });
    const err = await client.messages
      .stream(ask('hi'))
      .finalMessage()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.APIError);
    expect((err as InstanceType<typeof Anthropic.APIError>).type).toBe('overloaded_error');
    server.assertDone();
  });

  it('hang never answers; the client times out', async () => {
    const { server } = await setup({ script: [hang()] });
    const client = new Anthropic({ apiKey: 'test', baseURL: server.url, maxRetries: 0, timeout: 200 });
    await expect(client.messages.create(ask('hi'))).rejects.toBeInstanceOf(Anthropic.APIConnectionTimeoutError);
    server.assertDone();
  });

  it('an unexpected request gets a loud 500 and makes assertDone throw', async () => {
    const { server, client } = await setup({ script: [reply('only one')] });
    await client.messages.create(ask('one'));
    const err = await client.messages.create(ask('two')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.InternalServerError);
    expect((err as Error).message).toContain('scripted server: unexpected request #2 (no step left)');
    expect(server.requests[1]!.unexpected).toBe(true);
    expect(server.requests[1]!.stepIndex).toBeNull();
    expect(() => server.assertDone()).toThrow(/unexpected request #2 \(no step left\)/);
  });

  it('assertDone throws when steps are left unplayed; push() appends', async () => {
    const { server, client } = await setup({ script: [reply('a')] });
    server.push(reply('b'), reply(toolUse('t', { a: 1 })));
    expect(server.remaining).toBe(3);
    await client.messages.create(ask('1'));
    expect(() => server.assertDone()).toThrow(/2 scripted step\(s\) left unplayed: #1 reply\[text\], #2 reply\[tool_use\(t\)\]/);
    await client.messages.create(ask('2'));
    await client.messages.create(ask('3'));
    server.assertDone();
  });

  it('unknown routes and invalid bodies are failures', async () => {
    const { server, client } = await setup();
    const res = await fetch(`${server.url}/v1/models`);
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ type: 'error', error: { type: 'api_error' } });
    const bad = await client.messages
      .create({ model: MODEL, messages: [] } as unknown as Anthropic.MessageCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(Anthropic.BadRequestError);
    expect(() => server.assertDone()).toThrow(/no route for GET \/v1\/models[\s\S]*max_tokens/);
  });

  it('count_tokens returns a rough count without consuming steps', async () => {
    const { server, client } = await setup({ script: [reply('x')] });
    const res = await client.messages.countTokens({ model: MODEL, messages: [{ role: 'user', content: 'a'.repeat(400) }] });
    expect(res.input_tokens).toBeGreaterThanOrEqual(100);
    expect(server.remaining).toBe(1);
    await client.messages.create(ask('x'));
    server.assertDone();
  });

  it('honours latency and ttft; waitForRequests resolves on arrival', async () => {
    const { server, client } = await setup({ latencyMs: 60, ttftMs: 80, script: [reply('slow')] });
    const t0 = Date.now();
    const stream = client.messages.stream(ask('hi'));
    let tConnect = 0;
    let tFirstText = 0;
    stream.on('connect', () => (tConnect = Date.now()));
    stream.on('text', () => (tFirstText ||= Date.now()));
    const reqs = await server.waitForRequests(1, 2000);
    expect(reqs[0]!.body.model).toBe(MODEL);
    await stream.finalMessage();
    // Lower bounds from the request's start only: a busy client may see 'connect' late, never early.
    expect(tConnect - t0).toBeGreaterThanOrEqual(55);
    expect(tFirstText - t0).toBeGreaterThanOrEqual(135);
    await expect(server.waitForRequests(2, 50)).rejects.toThrow(/timed out/);
    server.assertDone();
  });

  it('loop replays the script forever', async () => {
    const { server, client } = await setup({ loop: true, script: [reply('a'), reply('b')] });
    const out: string[] = [];
    for (let i = 0; i < 5; i++) {
      const m = await client.messages.create(ask(String(i)));
      const b = m.content[0];
      out.push(b?.type === 'text' ? b.text : '?');
    }
    expect(out).toEqual(['a', 'b', 'a', 'b', 'a']);
    server.assertDone();
  });

  it('loadScriptFile validates, and serve.ts serves a script over HTTP', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'msgsrv-'));
    const good = join(dir, 'script.json');
    await writeFile(good, JSON.stringify({ steps: [reply('from file'), { error: { status: 429 } }] }));
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ steps: [{ content: [{ type: 'image' }] }] }));
    await expect(loadScriptFile(bad)).rejects.toThrow(/steps\[0\]/);
    expect(await loadScriptFile(good)).toHaveLength(2);

    const serveTs = fileURLToPath(new URL('../fakes/serve.ts', import.meta.url));
    const tsxCli = fileURLToPath(new URL('../../node_modules/tsx/dist/cli.mjs', import.meta.url));
    const child = spawn(process.execPath, [tsxCli, serveTs, '--script', good, '--port', '0', '--loop'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        const rl = createInterface({ input: child.stdout });
        rl.once('line', resolve);
        child.once('exit', (code) => reject(new Error(`serve.ts exited early (${String(code)})`)));
      });
      const m = /^listening (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      expect(m).not.toBeNull();
      const client = new Anthropic({ apiKey: 'test', baseURL: m![1]!, maxRetries: 0 });
      const msg = await client.messages.stream(ask('hi')).finalMessage();
      expect(msg.content).toEqual([{ type: 'text', text: 'from file' }]);
      await expect(client.messages.create(ask('hi'))).rejects.toBeInstanceOf(Anthropic.RateLimitError);
      const again = await client.messages.create(ask('hi')); // --loop
      expect(again.content).toEqual([{ type: 'text', text: 'from file' }]);
    } finally {
      child.kill('SIGTERM');
    }
  }, 20_000);
});
