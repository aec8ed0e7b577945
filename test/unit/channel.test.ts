/**
 * The toolbox channel against hostile peers on a real unix socket: whatever dials the host's socket is bounded,
 * checked, and cut off when it breaks the protocol, before the host buffers what it announces.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, FrameDecoder, FrameError } from '../../sandbox/frames.mjs';
import { ChannelClosed, PROTOCOL_VERSION, ToolboxChannels } from '../../src/activities/sandbox/channel.js';

const LIMIT = 64 * 1024;
let dir: string;
let channels: ToolboxChannels;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tandem-channel-'));
  channels = new ToolboxChannels(LIMIT);
  await channels.listen(dir);
});

afterAll(async () => {
  await channels.closeAll();
  rmSync(dir, { recursive: true, force: true });
});

/** A peer that dials the host's socket, as the toolbox (or something pretending to be it) does. */
async function peer(): Promise<{ socket: net.Socket; requests: Array<Record<string, unknown>>; closed: Promise<void> }> {
  const socket = net.createConnection(join(dir, channels.socketName));
  await new Promise((r) => socket.once('connect', r));
  const requests: Array<Record<string, unknown>> = [];
  const decoder = new FrameDecoder(1024 * 1024);
  socket.on('data', (c: Buffer) => requests.push(...(decoder.push(c) as Array<Record<string, unknown>>)));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  return { socket, requests, closed };
}

async function greeted(host: string) {
  const p = await peer();
  p.socket.write(encodeFrame({ op: 'hello', v: PROTOCOL_VERSION, host }));
  const line = await channels.connect(dir, host, 5000);
  expect(line?.host).toBe(host);
  return { ...p, line: line! };
}

async function until(pred: () => boolean): Promise<void> {
  while (!pred()) await new Promise((r) => setTimeout(r, 5));
}

describe('frames', () => {
  it('reads frames split across chunks and several frames in one chunk', () => {
    const a = encodeFrame({ a: 1 });
    const b = encodeFrame({ b: 'two' });
    const d = new FrameDecoder(1024);
    const all = Buffer.concat([a, b]);
    const out: unknown[] = [];
    for (let i = 0; i < all.length; i += 3) out.push(...d.push(all.subarray(i, i + 3)));
    expect(out).toEqual([{ a: 1 }, { b: 'two' }]);
    expect(new FrameDecoder(1024).push(all)).toEqual([{ a: 1 }, { b: 'two' }]);
  });

  it('refuses a frame over the limit from its header alone, and frames that are not JSON', () => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(60 * 1024 * 1024);
    expect(() => new FrameDecoder(LIMIT).push(header)).toThrow(FrameError);
    const bad = Buffer.concat([Buffer.from([0, 0, 0, 4, 1]), Buffer.from('{x}')]);
    expect(() => new FrameDecoder(LIMIT).push(bad)).toThrow(/not JSON/);
    expect(() => new FrameDecoder(LIMIT).push(Buffer.from([0, 0, 0, 1, 7]))).toThrow(/unknown kind/);
  });
});

describe('the toolbox channel', () => {
  it('matches answers to requests on a greeted line', async () => {
    const p = await greeted('good1');
    const answer = p.line.request('ping');
    await until(() => p.requests.length === 1);
    expect(p.requests[0]).toMatchObject({ op: 'ping', rid: 1 });
    p.socket.write(encodeFrame({ rid: 1, ok: true }));
    await expect(answer).resolves.toEqual({ rid: 1, ok: true });
    p.socket.destroy();
  });

  it('cuts a line that announces a 60 MB answer, after its header, without reading it', async () => {
    const p = await greeted('big');
    const answer = p.line.request('call', { call: { id: 'x', name: 'bash', input: {} } });
    await until(() => p.requests.length === 1);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(60 * 1024 * 1024);
    p.socket.write(header);
    const err = await answer.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ChannelClosed);
    expect((err as ChannelClosed).violation).toBe(true);
    expect((err as Error).message).toMatch(/62914560 bytes/);
    await p.closed; // the host hung up: the 60 MB are never read
    expect(p.line.closed?.violation).toBe(true);
  });

  it('cuts a line whose answer is not JSON, or answers no request', async () => {
    const a = await greeted('notjson');
    const pending = a.line.request('ping');
    await until(() => a.requests.length === 1);
    a.socket.write(Buffer.concat([Buffer.from([0, 0, 0, 6, 1]), Buffer.from('hello')]));
    await expect(pending).rejects.toMatchObject({ violation: true });

    const b = await greeted('norequest');
    const other = b.line.request('ping');
    await until(() => b.requests.length === 1);
    b.socket.write(encodeFrame({ rid: 999, ok: true }));
    await expect(other).rejects.toThrow(/an answer to no request/);
    await b.closed;
  });

  it('keeps the first line of a host and refuses a second peer claiming it', async () => {
    const first = await greeted('claimed');
    const impostor = await peer();
    impostor.socket.write(encodeFrame({ op: 'hello', v: PROTOCOL_VERSION, host: 'claimed' }));
    await impostor.closed;
    expect((await channels.line(dir, 'claimed')) === first.line).toBe(true);
    first.socket.destroy();
    await until(() => first.line.closed !== undefined);
    expect(first.line.closed?.violation).toBe(false);
  });

  it('rejects a request whose signal aborts, and keeps the line', async () => {
    const p = await greeted('abort');
    const ac = new AbortController();
    const pending = p.line.request('call', {}, ac.signal);
    ac.abort(new Error('gave up'));
    await expect(pending).rejects.toThrow('gave up');
    expect(p.line.closed).toBeUndefined();
    p.socket.destroy();
  });
  it('refuses peers that do not say a proper hello, and more than a few unannounced ones at once', async () => {
    const wrong = await peer();
    wrong.socket.write(encodeFrame({ op: 'hello', v: 999, host: 'x' }));
    await wrong.closed;
    const garbage = await peer();
    garbage.socket.write('GET / HTTP/1.1\r\n\r\n');
    await garbage.closed;
    const silent = await Promise.all(Array.from({ length: 8 }, () => peer()));
    const extra = await peer();
    await extra.closed; // the ninth silent peer is refused at once
    for (const s of silent) s.socket.destroy(); // last: the host counts them until it sees them close
  });

});
