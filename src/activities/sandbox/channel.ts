/**
 * The host's end of the toolbox channel: a direct, persistent line to each sandbox's toolbox, with no process
 * started per call. This process listens on a unix socket of its own (`ch-<id>.sock`) in the sandbox's control
 * directory, which is bind-mounted read-only into the container; the toolbox dials it and says hello with its
 * container's hostname. The sandbox user can neither replace nor remove that socket.
 *
 * The sandbox user can connect to it, though, and can take over the toolbox process (same user). So nothing that
 * comes over the line is trusted: frames are bounded before they are buffered (sandbox/frames.mjs), every answer
 * must match a request and have the shape its caller checks, and a peer that breaks the protocol is cut off, which
 * gets the sandbox replaced (see docker.ts). The first peer to say hello for a container keeps the line until it
 * closes; later ones are refused.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { encodeFrame, FrameDecoder, FrameError } from '../../../sandbox/frames.mjs';
import { TandemError } from '../../shared/errors.js';

/** Protocol version the toolbox speaks (its hello says which). */
export const PROTOCOL_VERSION = 1;
/** A peer that connected must say hello within this long. */
const HELLO_TIMEOUT_MS = 5000;
/** Connections that have not said hello yet, per socket: the rest are refused (a sandbox dialling in a loop). */
const MAX_UNGREETED = 8;

/** The line broke: the peer closed it, or sent what the protocol does not allow (`violation`). */
export class ChannelClosed extends TandemError {
  constructor(
    message: string,
    readonly violation: boolean,
  ) {
    super(message);
  }
}

interface Waiting {
  resolve(answer: Record<string, unknown>): void;
  reject(err: Error): void;
}

/** One toolbox's line: requests with ids, answers matched to them. */
export class ToolboxLine {
  private nextId = 1;
  private readonly waiting = new Map<number, Waiting>();
  private why: ChannelClosed | undefined;

  constructor(
    private readonly socket: net.Socket,
    /** The container's hostname as the toolbox gave it (Docker's short container id). */
    readonly host: string,
  ) {
    socket.on('close', () => this.fail(new ChannelClosed('the toolbox closed its line', false)));
  }

  /** Why the line is closed, or undefined while it is open. */
  get closed(): ChannelClosed | undefined {
    return this.why;
  }

  /** Takes one message the toolbox sent after its hello. */
  receive(message: unknown): void {
    const rid = (message as { rid?: unknown } | null)?.rid;
    const w = typeof rid === 'number' ? this.waiting.get(rid) : undefined;
    if (!w || typeof message !== 'object' || message === null || Array.isArray(message))
      return this.cut('an answer to no request');
    this.waiting.delete(rid as number);
    w.resolve(message as Record<string, unknown>);
  }

  /**
   * Sends a request and resolves with the toolbox's answer (an object; its shape is the caller's to check).
   * Rejects with `ChannelClosed` when the line breaks first, or with `signal`'s reason when it aborts.
   */
  request(op: string, fields: Record<string, unknown> = {}, signal?: AbortSignal): Promise<Record<string, unknown>> {
    if (this.why) return Promise.reject(this.why);
    const rid = this.nextId++;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.waiting.delete(rid);
        reject(signal!.reason instanceof Error ? signal!.reason : new Error('aborted'));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.set(rid, {
        resolve: (a) => (signal?.removeEventListener('abort', onAbort), resolve(a)),
        reject: (e) => (signal?.removeEventListener('abort', onAbort), reject(e)),
      });
      this.socket.write(encodeFrame({ rid, op, ...fields }));
    });
  }

  /** Cuts the line because the peer broke the protocol. */
  cut(why: string): void {
    this.fail(new ChannelClosed(`the toolbox broke the channel protocol: ${why}`, true));
  }

  /** Closes the line from this side (the sandbox is being replaced or removed). */
  close(): void {
    this.fail(new ChannelClosed('the line was closed by the host', false));
  }

  private fail(err: ChannelClosed): void {
    if (this.why) return;
    this.why = err;
    this.socket.destroy();
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }
}

/** This process's socket in one sandbox's control directory, and the lines of the toolboxes that dialled it. */
class Listener {
  readonly lines = new Map<string, ToolboxLine>();
  private readonly waiters = new Map<string, Set<(line: ToolboxLine) => void>>();
  private ungreeted = 0;

  constructor(
    readonly server: net.Server,
    /** The socket's path (it changes when its directory is renamed: a warm slot taken on by a session). */
    public path: string,
    private readonly maxFrameBytes: number,
  ) {
    server.on('connection', (socket) => this.accept(socket));
  }

  /** The open line of the toolbox on `host`, if it has dialled. */
  line(host: string): ToolboxLine | undefined {
    const line = this.lines.get(host);
    return line && !line.closed ? line : undefined;
  }

  /** Waits until the toolbox on `host` has dialled, or `timeoutMs` has passed (undefined). */
  wait(host: string, timeoutMs: number): Promise<ToolboxLine | undefined> {
    const open = this.line(host);
    if (open) return Promise.resolve(open);
    return new Promise((resolve) => {
      const set = this.waiters.get(host) ?? new Set();
      this.waiters.set(host, set);
      const done = (line?: ToolboxLine) => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0) this.waiters.delete(host);
        resolve(line);
      };
      const timer = setTimeout(done, timeoutMs);
      set.add(done);
    });
  }

  close(): void {
    this.server.close();
    for (const line of this.lines.values()) line.close();
    this.lines.clear();
    rmSync(this.path, { force: true });
  }

  private accept(socket: net.Socket): void {
    socket.on('error', () => undefined);
    if (this.ungreeted >= MAX_UNGREETED) return void socket.destroy();
    this.ungreeted++;
    let line: ToolboxLine | undefined;
    let counted = true;
    const decoder = new FrameDecoder(this.maxFrameBytes);
    const greeted = () => {
      if (!counted) return;
      counted = false;
      this.ungreeted--;
      clearTimeout(timer);
    };
    const timer = setTimeout(() => socket.destroy(), HELLO_TIMEOUT_MS);
    socket.on('close', greeted);
    socket.on('data', (chunk: Buffer) => {
      let messages: unknown[];
      try {
        messages = decoder.push(chunk);
      } catch (err) {
        if (line) return line.cut((err as FrameError).message);
        return void socket.destroy();
      }
      for (const m of messages) {
        if (line) {
          line.receive(m);
          continue;
        }
        const hello = m as { op?: unknown; v?: unknown; host?: unknown } | null;
        const host = hello?.host;
        if (hello?.op !== 'hello' || hello.v !== PROTOCOL_VERSION || typeof host !== 'string' || !/^[\w.-]{1,64}$/.test(host))
          return void socket.destroy();
        greeted();
        if (this.line(host)) return void socket.destroy(); // the first to say hello keeps the line
        line = new ToolboxLine(socket, host);
        this.lines.set(host, line);
        for (const w of [...(this.waiters.get(host) ?? [])]) w(line);
      }
    });
  }
}

/**
 * The toolbox lines of this process: one listening socket per sandbox control directory, named after this process
 * (each hands process on a host has its own, so several can serve one sandbox).
 */
export class ToolboxChannels {
  private readonly listeners = new Map<string, Promise<Listener>>();
  /** This process's name in the control directories. */
  readonly socketName = `ch-${process.pid}-${randomBytes(4).toString('hex')}.sock`;

  /** @param maxFrameBytes the largest frame a toolbox may send (bounded before it is buffered). */
  constructor(private readonly maxFrameBytes: number) {}

  /** Listens in `dir` (idempotent). */
  listen(dir: string): Promise<void> {
    return this.listener(dir).then(() => undefined);
  }

  /** The open line of the toolbox in container `host` (its short id), without waiting. */
  async line(dir: string, host: string): Promise<ToolboxLine | undefined> {
    return (await this.listener(dir)).line(host);
  }

  /** Any open line in `dir`: the toolbox of the sandbox's current container, if it has dialled this process. */
  async anyLine(dir: string): Promise<ToolboxLine | undefined> {
    const l = this.listeners.get(dir);
    if (!l) return undefined;
    for (const line of (await l).lines.values()) if (!line.closed) return line;
    return undefined;
  }

  /** Waits up to `timeoutMs` for the toolbox of container `host` to dial this process. */
  async connect(dir: string, host: string, timeoutMs: number): Promise<ToolboxLine | undefined> {
    return (await this.listener(dir)).wait(host, timeoutMs);
  }

  /** `from` was renamed to `to` (a warm slot became a session's): its socket and lines are found under `to` now. */
  async move(from: string, to: string): Promise<void> {
    const l = this.listeners.get(from);
    if (!l) return;
    this.listeners.delete(from);
    this.listeners.set(to, l);
    (await l).path = join(to, this.socketName);
  }

  /** Stops listening in `dir` and closes its lines. */
  async close(dir: string): Promise<void> {
    const l = this.listeners.get(dir);
    this.listeners.delete(dir);
    (await l?.catch(() => undefined))?.close();
  }

  /** Stops listening everywhere (the process is shutting down). */
  async closeAll(): Promise<void> {
    await Promise.all([...this.listeners.keys()].map((dir) => this.close(dir)));
  }

  private listener(dir: string): Promise<Listener> {
    let l = this.listeners.get(dir);
    if (!l) {
      l = this.open(dir);
      l.catch(() => this.listeners.delete(dir));
      this.listeners.set(dir, l);
    }
    return l;
  }

  private async open(dir: string): Promise<Listener> {
    const path = join(dir, this.socketName);
    rmSync(path, { force: true });
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(path, 0o666); // the toolbox runs as the sandbox user
    return new Listener(server, path, this.maxFrameBytes);
  }
}
