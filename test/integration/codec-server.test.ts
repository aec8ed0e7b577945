/**
 * `tandem codec-server` as a process: only callers with its token are served (a bearer header, as the `temporal`
 * CLI's `--codec-auth` sends it, or the token as the endpoint's first path segment, as the Temporal UI calls it), web
 * pages only from the UI's origin, and a request body is refused with a 413 as soon as it passes the cap.
 */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AesGcmCodec, parsePayloadKeys } from '../../src/codec/index.js';
import { freePort } from '../helpers/global-setup.js';
import { repoRoot } from '../helpers/cli.js';

const key = randomBytes(32).toString('base64');
const codec = new AesGcmCodec(parsePayloadKeys(key));
const UI = 'http://localhost:8233';
const MiB = 1024 * 1024;
const children: ChildProcess[] = [];

afterAll(() => {
  for (const c of children) c.kill();
});

/** Starts `tandem codec-server` and resolves with its port and everything it printed once it listens. */
async function startCodecProcess(env: Record<string, string> = {}): Promise<{ port: number; output: string }> {
  const port = await freePort();
  const childEnv: NodeJS.ProcessEnv = { ...process.env, TANDEM_PAYLOAD_KEY: key, ...env };
  if (env.TANDEM_CODEC_TOKEN === undefined) delete childEnv.TANDEM_CODEC_TOKEN;
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'tandem'), 'codec-server', '--port', String(port), '--origin', UI], {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (c: Buffer) => {
      output += c.toString();
      if (output.includes('tandem codec-server:')) resolve(); // one write of under 4 KiB: one chunk
    });
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    child.once('exit', (code) => reject(new Error(`tandem codec-server exited (${code}): ${output}`)));
  });
  return { port, output };
}

/** A body of encrypted payloads, as the UI sends it, and the plaintext they hold. */
async function encryptedBody(): Promise<{ body: string; word: string }> {
  const word = `plain-${randomBytes(6).toString('hex')}`;
  const [p] = await codec.encode([{ metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from(JSON.stringify(word)) }]);
  const b64 = (u: Uint8Array | null | undefined) => Buffer.from(u ?? []).toString('base64');
  const metadata = Object.fromEntries(Object.entries(p!.metadata!).map(([k, v]) => [k, b64(v)]));
  return { body: JSON.stringify({ payloads: [{ metadata, data: b64(p!.data) }] }), word };
}

const decodedText = async (res: Response) =>
  ((await res.json()) as { payloads: Array<{ data: string }> }).payloads.map((p) => Buffer.from(p.data, 'base64').toString()).join();

/** Sends a body in chunks past `bytes` without ever ending the request; resolves with the status of the answer. */
function streamWithoutEnd(port: number, token: string, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path: '/decode',
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, // chunked: no length
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode!);
      req.destroy();
    });
    req.on('error', reject); // no effect once answered
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    let sent = 0;
    const write = (): void => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', write);
      }
    };
    write();
  });
}

/** Announces a body of `length` bytes and sends none of it; resolves with the status of the answer. */
function announceOnly(port: number, token: string, length: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1',
      port,
      path: '/decode',
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'content-length': String(length) },
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode!);
      req.destroy();
    });
    req.on('error', reject);
    req.flushHeaders();
  });
}

describe('tandem codec-server', () => {
  it('serves only callers with its token: bearer header or path segment; prints a generated token once', async () => {
    const { port, output } = await startCodecProcess();
    const token = /token \(shown this once[^)]*\): (\S+)/.exec(output)?.[1];
    expect(token, output).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(output.split(token!).length - 1).toBe(4); // the token line, the UI endpoint (twice), the CLI flags
    expect(output).toContain(`Temporal UI codec endpoint: http://127.0.0.1:${port}/${token}`);
    expect(output).toContain(`--codec-endpoint http://127.0.0.1:${port} --codec-auth "Bearer ${token}"`);
    const { body, word } = await encryptedBody();
    const post = (path: string, headers: Record<string, string> = {}) =>
      fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

    // Any local process without the token gets nothing.
    for (const res of [
      await post('/decode'),
      await post('/decode', { authorization: 'Bearer wrong-token' }),
      await post('/decode', { authorization: token! }), // not a bearer credential
      await post(`/${token!.slice(0, -1)}/decode`),
      await post('/decode', { origin: UI }),
    ]) {
      expect(res.status).toBe(401);
      expect(await res.text()).not.toContain(word);
    }
    // The temporal CLI (--codec-auth "Bearer <token>") and scripts: the header.
    const cli = await post('/decode', { authorization: `Bearer ${token}` });
    expect(cli.status).toBe(200);
    expect(await decodedText(cli)).toContain(word);
    // The Temporal UI: the endpoint http://127.0.0.1:<port>/<token>, to which it appends /decode (and a query).
    const ui = await post(`/${token}/decode?preserveStorageRefs=true`, { origin: UI, 'x-namespace': 'default' });
    expect(ui.status).toBe(200);
    expect(ui.headers.get('access-control-allow-origin')).toBe(UI);
    expect(await decodedText(ui)).toContain(word);
    const preflight = await fetch(`http://127.0.0.1:${port}/${token}/decode`, { method: 'OPTIONS', headers: { origin: UI } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-headers')).toContain('authorization');
    // Another web page, even one that learnt the token, is still refused by origin.
    const foreign = await post(`/${token}/decode`, { origin: 'http://evil.example' });
    expect(foreign.status).toBe(403);
    expect(await foreign.text()).not.toContain(word);
  });

  it('takes its token from TANDEM_CODEC_TOKEN and does not print it', async () => {
    const token = `codec-${randomBytes(12).toString('hex')}`;
    const { port, output } = await startCodecProcess({ TANDEM_CODEC_TOKEN: token });
    expect(output).not.toContain(token);
    expect(output).toContain(`http://127.0.0.1:${port}/$TANDEM_CODEC_TOKEN`);
    const { body, word } = await encryptedBody();
    const res = await fetch(`http://127.0.0.1:${port}/${token}/decode`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(res.status).toBe(200);
    expect(await decodedText(res)).toContain(word);
  });

  it('refuses a body over 4 MiB with a 413 as its bytes arrive, and goes on serving', async () => {
    const token = `codec-${randomBytes(12).toString('hex')}`;
    const { port } = await startCodecProcess({ TANDEM_CODEC_TOKEN: token });
    // Announced too large: refused before a byte of it is sent.
    expect(await announceOnly(port, token, 5 * MiB)).toBe(413);
    // Streamed without a length and never ended: refused once it passes the cap, not after waiting for all of it.
    expect(await streamWithoutEnd(port, token, 4 * MiB + 256 * 1024)).toBe(413);
    // Without the token, not even a small body is read.
    expect(await announceOnly(port, 'not-the-token', 10)).toBe(401);
    const { body, word } = await encryptedBody();
    const res = await fetch(`http://127.0.0.1:${port}/decode`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body,
    });
    expect(res.status).toBe(200);
    expect(await decodedText(res)).toContain(word);
  });
});
