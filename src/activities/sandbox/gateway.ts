/**
 * The sandbox's only ways out, run by the worker on the host: a credential proxy for git and an egress proxy that
 * enforces an allow-list. Both listen on unix sockets in a per-session host directory that is bind-mounted
 * read-only into the session's container (which has no network); a forwarder inside the container
 * (sandbox/forward.mjs) relays loopback TCP ports to them. The git proxy checks the session's phantom token, allows
 * only the session's repositories (and, when configured, pushes to some branches only) and adds the real token
 * from the vault on the way out, so the real token never enters the container or the workflow history. Request
 * bodies stream through it: of a push it reads only the ref updates before the pack, to check their branches. A local
 * repository (a `file://` URL on the worker host) is served by `git http-backend`, run here for that one repository.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  appendFileSync,
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lookup } from 'node:dns/promises';
import { lstatSync } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { ApplicationFailure } from '@temporalio/common';
import { Failure } from '../../shared/failures.js';
import { isLocalRepository, repositoryName, secretNames } from '../../shared/repositories.js';
import type { EgressDenial, RepositoryResource, SandboxRef } from '../../shared/types.js';
import { unknownSecretsMessage, type Vault } from '../../vault/index.js';

/** Loopback port of the git credential proxy inside the container. */
export const GIT_PORT = 47011;
/** Loopback port of the egress proxy inside the container. */
export const EGRESS_PORT = 47012;
/** Where the per-session gateway directory is mounted in the container (read-only). */
export const GATEWAY_MOUNT = '/run/tandem-gateway';
/**
 * Most bytes of ref updates (the commands before the pack) the git proxy reads to check a push against
 * `push_branches`; the pack after them streams through unread. A gzip-encoded push inflates only this far (a gzip
 * bomb stops here), and at most twice as many compressed bytes are read for it.
 */
export const MAX_REF_UPDATE_BYTES = 1024 * 1024;

const FORWARDER = fileURLToPath(new URL('../../../sandbox/forward.mjs', import.meta.url));

/** Worker-level settings of the gateway. */
export interface GatewaySettings {
  /** Host directory holding one subdirectory per session (sockets, phantom token, egress denials). */
  root: string;
  /** Names the egress proxy resolves to fixed addresses (`name -> address`), before DNS. */
  hostMap?: Record<string, string>;
}

/** Default host directory of the gateway: `$TMPDIR/tandem-gateway`. */
export function defaultGatewayRoot(): string {
  return join(tmpdir(), 'tandem-gateway');
}

/** Whether a sandbox needs the gateway: it has repositories or limited egress. */
export function needsGateway(ref: SandboxRef): boolean {
  return (ref.resources?.length ?? 0) > 0 || ref.config.network?.policy === 'limited';
}

/** The container side of a session's gateway: its bind mount and the environment of the shell. */
export interface GatewayMount {
  hostDir: string;
  env: string[];
  forwarder: string[];
}

/** URL of a repository's remote inside the sandbox: the forwarded proxy port, with the phantom token. */
export function remoteUrl(token: string, index: number, r: RepositoryResource): string {
  return `http://tandem:${token}@127.0.0.1:${GIT_PORT}/${index}/${encodeURIComponent(repositoryName(r.url))}.git`;
}

/** Whether `host:port` matches an allow-list entry: `host`, `host:port`, or `*.domain` (subdomains only). */
export function hostAllowed(allowed: string[], host: string, port: number): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
  return allowed.some((entry) => {
    const e = entry.toLowerCase().trim();
    const m = /^(.*?)(?::(\d+))?$/.exec(e);
    const pattern = m?.[1] ?? e;
    if (m?.[2] && Number(m[2]) !== port) return false;
    if (pattern.startsWith('*.')) return h.endsWith(pattern.slice(1)) && h.length > pattern.length - 1;
    return h === pattern;
  });
}

/** A request body the git proxy refuses, with the HTTP status to answer. */
export class BodyError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Reads the ref updates of a git receive-pack request (its leading pkt-lines, up to the flush packet) and its
 * capabilities from the body's bytes as they come, and stops at the flush packet: the pack after it is not its
 * business. Throws a `BodyError` on malformed pkt-lines (400) or more than `max` bytes of them (413).
 */
export class RefUpdateReader {
  readonly refs: string[] = [];
  capabilities: string[] = [];
  private parts: Buffer[] = [];
  /** Bytes in `parts`: the start of a pkt-line not yet complete. */
  private size = 0;
  /** Bytes `parts` must hold before the next pkt-line can be read: its length once its header has come. */
  private need = 4;
  private taken = 0;
  private flushed = false;

  constructor(private readonly max: number) {}

  /** Takes the next bytes of the body; true once the flush packet has come (the rest of `chunk` is the pack). */
  push(chunk: Buffer): boolean {
    if (this.flushed) return true;
    this.parts.push(chunk);
    this.size += chunk.length;
    if (this.size >= this.need) {
      const buf = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.size);
      let at = 0;
      this.need = 4;
      while (buf.length - at >= 4) {
        const header = buf.toString('latin1', at, at + 4);
        if (!/^[0-9a-f]{4}$/i.test(header)) throw new BodyError(400, 'malformed pkt-line');
        const len = parseInt(header, 16);
        if (len === 0) {
          this.flushed = true;
          this.taken += at + 4;
          this.parts = [];
          this.size = 0;
          break;
        }
        if (len < 4) throw new BodyError(400, 'malformed pkt-line');
        if (buf.length - at < len) {
          this.need = len;
          break;
        }
        this.line(buf.subarray(at + 4, at + len));
        at += len;
      }
      if (!this.flushed) {
        this.taken += at;
        this.parts = at < buf.length ? [buf.subarray(at)] : [];
        this.size = buf.length - at;
      }
    }
    if (this.taken + this.size > this.max)
      throw new BodyError(413, `the ref updates of a push may take at most ${this.max} bytes`);
    return this.flushed;
  }

  /** The body has ended before the flush packet: throws why (400). */
  end(): never {
    throw new BodyError(400, this.size > 0 ? 'truncated pkt-line' : 'no flush packet after the ref updates');
  }

  private line(data: Buffer): void {
    const [line, caps] = data.toString('utf8').replace(/\n$/, '').split('\0');
    if (caps !== undefined && this.refs.length === 0) this.capabilities = caps.trim().split(' ');
    if (line!.startsWith('shallow ') || line!.startsWith('push-cert')) return;
    const parts = line!.split(' ');
    if (parts.length >= 3) this.refs.push(parts.slice(2).join(' '));
  }
}

/** The ref updates of a whole git receive-pack request body and its capabilities. */
export function receivePackRefs(body: Buffer): { refs: string[]; capabilities: string[] } {
  const reader = new RefUpdateReader(Infinity);
  if (!reader.push(body)) reader.end();
  return { refs: reader.refs, capabilities: reader.capabilities };
}

function pktLine(text: string | Buffer): Buffer {
  const data = typeof text === 'string' ? Buffer.from(text) : text;
  return Buffer.concat([Buffer.from((data.length + 4).toString(16).padStart(4, '0')), data]);
}

/**
 * A receive-pack answer that rejects every ref with `reason`, so git prints it (`! [remote rejected] ... (reason)`)
 * instead of a bare HTTP error.
 */
export function rejectPush(refs: string[], capabilities: string[], reason: string): Buffer {
  const report = Buffer.concat([
    pktLine('unpack ok\n'),
    ...refs.map((r) => pktLine(`ng ${r} ${reason}\n`)),
    Buffer.from('0000'),
  ]);
  if (!capabilities.includes('side-band-64k') && !capabilities.includes('side-band')) return report;
  const max = capabilities.includes('side-band-64k') ? 65515 : 995;
  const parts: Buffer[] = [];
  for (let i = 0; i < report.length; i += max)
    parts.push(pktLine(Buffer.concat([Buffer.from([1]), report.subarray(i, i + max)])));
  return Buffer.concat([...parts, Buffer.from('0000')]);
}

/** Whether a push may update `ref`: any ref when `branches` is unset, else `refs/heads/<b>` for a listed `b`. */
export function pushAllowed(branches: string[] | null | undefined, ref: string): boolean {
  if (!branches) return true;
  const m = /^refs\/heads\/(.+)$/.exec(ref);
  if (!m) return false;
  return branches.some((b) =>
    b.endsWith('*') ? m[1]!.startsWith(b.slice(0, -1)) : m[1] === b,
  );
}

/** Whether a URL's host is this machine (the only place plain http may carry a credential). */
export function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || (net.isIPv4(hostname) && hostname.startsWith('127.')) || hostname === '[::1]' || hostname === '::1';
}

/**
 * Whether an address is this host, a private network, link-local (cloud metadata) or otherwise not the internet:
 * an allowed name that resolves there would lead the sandbox to the worker's own services.
 */
export function isInternalAddress(address: string): boolean {
  const v4 = net.isIPv4(address) ? address : /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (v4) {
    const [a, b] = v4.split('.').map(Number) as [number, number];
    return a === 0 || a === 10 || a === 127 || a >= 224 || (a === 100 && b >= 64 && b < 128) ||
      (a === 169 && b === 254) || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168);
  }
  const h = address.toLowerCase();
  return h === '::' || h === '::1' || /^f[cd]/.test(h) || /^fe[89ab]/.test(h) || /^ff/.test(h);
}

/**
 * The gateway root must be this process's own directory that nobody else can write: in a shared /tmp, another
 * user could otherwise have made it first and planted sockets or phantom tokens.
 */
function checkOwnRoot(root: string): void {
  const st = lstatSync(root);
  const uid = process.getuid?.();
  if (!st.isDirectory() || st.isSymbolicLink() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) {
    throw ApplicationFailure.nonRetryable(
      `the gateway directory ${root} is not a directory of this user that only it can write; remove it or set TANDEM_GATEWAY_DIR`,
      Failure.SandboxProvisionFailed,
    );
  }
}

function sessionKey(sessionId: string): string {
  return `s-${createHash('sha256').update(sessionId).digest('hex').slice(0, 16)}`;
}

/** The ref updates at the start of a push and the raw bytes of the body read to find them (to send on first). */
interface PushStart {
  refs: string[];
  capabilities: string[];
  head: Buffer[];
}

/**
 * Reads a receive-pack request body only as far as its ref updates, inflating a gzip body just that far, and leaves
 * the rest (the pack) unread and paused in `req`. Rejects with a `BodyError` for a body the proxy refuses, or an
 * Error when the sandbox goes away first.
 */
function readRefUpdates(req: http.IncomingMessage, gzip: boolean): Promise<PushStart> {
  return new Promise((resolve, reject) => {
    const head: Buffer[] = [];
    const reader = new RefUpdateReader(MAX_REF_UPDATE_BYTES);
    const inflate = gzip ? createGunzip() : undefined;
    let raw = 0;
    let done = false;
    const finish = (err?: unknown): void => {
      if (done) return;
      done = true;
      req.pause();
      req.off('data', onData).off('end', onEnd).off('close', onClose).off('error', finish);
      inflate?.destroy();
      if (err) reject(err as Error);
      else resolve({ refs: reader.refs, capabilities: reader.capabilities, head });
    };
    const take = (plain: Buffer): void => {
      try {
        if (reader.push(plain)) finish();
      } catch (err) {
        finish(err);
      }
    };
    const ended = (): void => {
      try {
        reader.end();
      } catch (err) {
        finish(err);
      }
    };
    const onData = (chunk: Buffer): void => {
      head.push(chunk);
      raw += chunk.length;
      if (!inflate) return take(chunk);
      // A gzip header or empty deflate blocks can take bytes without giving any: the compressed bytes are capped too.
      if (raw > 2 * MAX_REF_UPDATE_BYTES)
        return finish(new BodyError(413, `the ref updates of a compressed push must come in its first ${2 * MAX_REF_UPDATE_BYTES} bytes`));
      if (!inflate.write(chunk)) req.pause(); // read on as fast as it inflates
    };
    const onEnd = (): void => (inflate ? void inflate.end() : ended());
    const onClose = (): void => {
      if (!req.complete) finish(new Error('the sandbox closed the request'));
    };
    inflate
      ?.on('data', take)
      .on('drain', () => {
        if (!done) req.resume();
      })
      .on('end', ended)
      .on('error', () => finish(new BodyError(400, 'the gzip body of the push is malformed')));
    req.on('data', onData).on('end', onEnd).on('close', onClose).on('error', finish);
  });
}

/**
 * Streams the body of `req` into `dest` (the upstream request or the CGI's stdin): the bytes already read (`head`),
 * then the rest as it comes, with backpressure, so the proxy holds a few chunks of it at a time; no `head` means
 * no body. Ties the two sides together: when the sandbox goes away before its answer is complete, or the answer is
 * complete before the body is (a refusal), `abort` stops the far side, and the rest of the body is read and dropped.
 */
function relayBody(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  head: Buffer[] | undefined,
  dest: NodeJS.WritableStream,
  abort: () => void,
): void {
  res.on('close', () => {
    if (!res.writableFinished) abort();
  });
  res.on('finish', () => {
    if (req.complete) return;
    req.unpipe(dest);
    req.resume();
    abort();
  });
  if (!head) return void dest.end();
  for (const chunk of head) dest.write(chunk);
  if (req.readableEnded) dest.end();
  else req.pipe(dest);
}

function refuse(res: http.ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers });
  res.end(`tandem: ${message}\n`);
}

/** Listens on a unix socket, taking it over when no live process answers on it. */
async function listenOn(server: net.Server, path: string): Promise<boolean> {
  const alive = await new Promise<boolean>((resolve) => {
    const s = net.createConnection(path);
    s.on('connect', () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });
  if (alive) return false; // another worker on this host serves it
  rmSync(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o666); // the sandbox user (uid 1000) connects through the read-only mount
  return true;
}

/** Why a local repository's `file://` URL cannot be served on this host, or undefined when it can. */
function localProblem(url: string): string | undefined {
  let path: string;
  try {
    path = fileURLToPath(url);
  } catch {
    return 'is not a file:// URL of a path on this host';
  }
  if (!isAbsolute(path) || !existsSync(path) || !statSync(path).isDirectory())
    return 'names no directory on this worker host (workers serve local repositories from their own filesystem)';
  const bare = existsSync(join(path, 'HEAD')) && existsSync(join(path, 'objects')) && existsSync(join(path, 'refs'));
  if (!bare && !existsSync(join(path, '.git'))) return 'is not a git repository (run `git init` there and commit)';
  return undefined;
}

/**
 * Relays what a CGI program writes (header lines, a blank line, then the body) as the HTTP response. Returns
 * whether the CGI's headers have come (and the response has started).
 */
export function relayCgiOutput(stdout: NodeJS.ReadableStream, res: http.ServerResponse): () => boolean {
  let head = Buffer.alloc(0);
  let headersDone = false;
  stdout.on('data', (chunk: Buffer) => {
    if (headersDone) return void res.write(chunk);
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    headersDone = true;
    let status = 200;
    const headers: Record<string, string> = {};
    for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
      const i = line.indexOf(':');
      if (i < 0) continue;
      const k = line.slice(0, i).trim();
      const v = line.slice(i + 1).trim();
      if (k.toLowerCase() === 'status') status = parseInt(v, 10) || 502;
      else headers[k] = v;
    }
    res.writeHead(status, headers);
    res.write(head.subarray(end + 4));
  });
  return () => headersDone;
}

/**
 * Answers one smart-protocol request for the local repository at `path` with `git http-backend` (CGI). The
 * repository and the endpoint are fixed by the caller, never taken from the request's path; pushes are enabled
 * only when `push` (the resource names `push_branches`, already checked against the request's refs). The body
 * streams to the CGI's stdin (`head`, the bytes already read, first). The CGI gets a minimal environment: no worker
 * secret reaches git or the repository's hooks.
 */
function serveLocal(
  path: string,
  endpoint: string,
  search: string,
  req: http.IncomingMessage,
  head: Buffer[] | undefined,
  res: http.ServerResponse,
  push: boolean,
): void {
  const cgi = spawn('git', ['http-backend'], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      ...(process.env.HOME ? { HOME: process.env.HOME } : {}),
      GIT_PROJECT_ROOT: path,
      GIT_HTTP_EXPORT_ALL: '1',
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'http.receivepack',
      GIT_CONFIG_VALUE_0: String(push),
      ...(push ? { REMOTE_USER: 'tandem' } : {}),
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: endpoint,
      QUERY_STRING: search.replace(/^\?/, ''),
      CONTENT_TYPE: String(req.headers['content-type'] ?? ''),
      // Without a length (a chunked body) http-backend reads the body to its end.
      ...(head && req.headers['content-length'] ? { CONTENT_LENGTH: req.headers['content-length'] } : {}),
      HTTP_CONTENT_ENCODING: String(req.headers['content-encoding'] ?? ''),
      GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  cgi.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
  cgi.stdin.on('error', () => undefined); // the CGI may exit before reading all of a refused request
  relayBody(req, res, head, cgi.stdin, () => cgi.kill());
  const started = relayCgiOutput(cgi.stdout, res);
  cgi.on('error', (err) => {
    if (!res.headersSent) refuse(res, 502, `git http-backend could not run on the worker: ${err.message}`);
    else res.destroy();
  });
  cgi.on('close', () => {
    if (started()) return void res.end();
    const why = stderr.trim().split('\n').slice(-2).join(' ') || 'no answer';
    if (!res.headersSent) refuse(res, 502, `the local repository could not be served: ${why}`);
  });
}

interface SessionProxies {
  ref: SandboxRef;
  token: string;
  dir: string;
  servers: net.Server[];
}

/** The gateway of one worker: the proxies of the sessions whose sandboxes it provisions or runs tools in. */
export class Gateway {
  private readonly sessions = new Map<string, SessionProxies>();
  private readonly starting = new Map<string, Promise<SessionProxies>>();

  constructor(
    private readonly settings: GatewaySettings,
    private readonly vault: Vault | undefined,
  ) {}

  /** Fails with `Vault.SecretMissing` (not retryable) when the vault lacks a secret the sandbox names. */
  checkSecrets(ref: SandboxRef): void {
    const names = secretNames({ agent: {}, resources: ref.resources ?? [] });
    if (names.length === 0) return;
    const missing = this.vault ? this.vault.missing(names) : names;
    if (missing.length > 0)
      throw ApplicationFailure.create({
        type: Failure.VaultSecretMissing,
        message: this.vault
          ? unknownSecretsMessage(missing)
          : `this worker has no vault, so it cannot supply secret "${missing[0]}"; start the worker with a vault`,
        nonRetryable: true,
      });
  }

  /**
   * Fails with `Sandbox.ResourceFailed` (not retryable) when a repository's URL is neither http(s) nor a local git
   * repository that exists on this host. Checked before a container is created (and its repositories cloned).
   */
  checkRepositories(ref: SandboxRef): void {
    for (const repo of ref.resources ?? []) {
      const problem = isLocalRepository(repo.url)
        ? localProblem(repo.url)
        : /^https?:\/\//.test(repo.url)
          ? undefined
          : 'is not an http(s) or file:// URL';
      if (problem)
        throw ApplicationFailure.create({
          type: Failure.SandboxResourceFailed,
          message: `repository ${repo.url} ${problem}`,
          nonRetryable: true,
        });
    }
  }

  /**
   * Starts (or finds) the session's proxies and returns what the container needs: the host directory to mount
   * and the environment. Idempotent; any worker on the host can take over a session whose proxy process died.
   */
  async ensure(ref: SandboxRef): Promise<GatewayMount> {
    this.checkSecrets(ref);
    const s = await this.start(ref);
    s.ref = ref;
    const env = ['TANDEM_SHELL_ENV_GIT_TERMINAL_PROMPT=0'];
    const ports = [];
    if ((ref.resources?.length ?? 0) > 0) ports.push(`${GIT_PORT}=${GATEWAY_MOUNT}/git.sock`);
    if (ref.config.network?.policy === 'limited') {
      const proxy = `http://127.0.0.1:${EGRESS_PORT}`;
      for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'])
        env.push(`TANDEM_SHELL_ENV_${k}=${proxy}`);
      for (const k of ['NO_PROXY', 'no_proxy']) env.push(`TANDEM_SHELL_ENV_${k}=127.0.0.1,localhost`);
      ports.push(`${EGRESS_PORT}=${GATEWAY_MOUNT}/egress.sock`);
    }
    return { hostDir: join(s.dir, 'sock'), env, forwarder: ['node', `${GATEWAY_MOUNT}/forward.mjs`, ...ports] };
  }

  /** The session's phantom token (random, worker-side; forgotten when the session's sandbox is removed). */
  async token(ref: SandboxRef): Promise<string> {
    return (await this.start(ref)).token;
  }

  private start(ref: SandboxRef): Promise<SessionProxies> {
    const id = ref.session_id;
    const existing = this.sessions.get(id);
    if (existing && existing.servers.length === 2 && existing.servers.every((s) => s.listening))
      return Promise.resolve(existing);
    let p = this.starting.get(id);
    if (!p) {
      p = this.open(ref).finally(() => this.starting.delete(id));
      this.starting.set(id, p);
    }
    return p;
  }

  private async open(ref: SandboxRef): Promise<SessionProxies> {
    const dir = join(this.settings.root, sessionKey(ref.session_id));
    mkdirSync(this.settings.root, { recursive: true, mode: 0o711 });
    checkOwnRoot(this.settings.root);
    mkdirSync(join(dir, 'state'), { recursive: true, mode: 0o700 });
    mkdirSync(join(dir, 'sock'), { recursive: true, mode: 0o755 });
    chmodSync(dir, 0o711);
    const tokenFile = join(dir, 'state', 'token');
    let token: string;
    try {
      token = readFileSync(tokenFile, 'utf8').trim();
    } catch {
      token = randomBytes(24).toString('hex');
      writeFileSync(tokenFile, token, { mode: 0o600 });
    }
    copyFileSync(FORWARDER, join(dir, 'sock', 'forward.mjs'));
    chmodSync(join(dir, 'sock', 'forward.mjs'), 0o644);
    const old = this.sessions.get(ref.session_id);
    for (const srv of old?.servers ?? []) srv.close();
    const s: SessionProxies = { ref, token, dir, servers: [] };
    const git = http.createServer((req, res) => void this.git(s, req, res).catch(() => res.destroy()));
    const egress = http.createServer((req, res) =>
      this.egressRequest(s, req, res).catch((err: unknown) => {
        if (!res.headersSent) refuse(res, 400, (err as Error).message);
        else res.destroy();
      }),
    );
    egress.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) =>
      this.egressConnect(s, req, socket, head),
    );
    for (const [server, name] of [
      [git, 'git.sock'],
      [egress, 'egress.sock'],
    ] as const) {
      if (await listenOn(server, join(dir, 'sock', name))) s.servers.push(server);
    }
    this.sessions.set(ref.session_id, s);
    return s;
  }

  /** Requests the egress proxy refused since the last call, oldest first (and forgets them). */
  drainDenials(sessionId: string): EgressDenial[] {
    const file = join(this.settings.root, sessionKey(sessionId), 'state', 'denials.jsonl');
    const taken = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    try {
      renameSync(file, taken);
    } catch {
      return [];
    }
    try {
      return readFileSync(taken, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as EgressDenial);
    } finally {
      rmSync(taken, { force: true });
    }
  }

  /** Stops the session's proxies and forgets its phantom token. */
  close(sessionId: string): void {
    const s = this.sessions.get(sessionId);
    this.sessions.delete(sessionId);
    for (const srv of s?.servers ?? []) srv.close();
    rmSync(join(this.settings.root, sessionKey(sessionId)), { recursive: true, force: true });
  }

  /** Stops every proxy of this worker (its sessions' directories stay for another worker to take over). */
  shutdown(): void {
    for (const s of this.sessions.values()) for (const srv of s.servers) srv.close();
    this.sessions.clear();
  }

  // -- git credential proxy ------------------------------------------------------------------------------------

  private async git(s: SessionProxies, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const auth = req.headers.authorization ?? '';
      const given = auth.startsWith('Basic ')
        ? Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':').slice(1).join(':')
        : '';
      const ok = given.length === s.token.length && timingSafeEqual(Buffer.from(given), Buffer.from(s.token));
      if (!ok) return refuse(res, 401, 'this proxy needs the session token', { 'www-authenticate': 'Basic realm="tandem"' });
      const url = new URL(req.url ?? '/', 'http://proxy');
      const m = /^\/(\d+)\/([^/]+)\.git(\/info\/refs|\/git-upload-pack|\/git-receive-pack)$/.exec(url.pathname);
      const repos = s.ref.resources ?? [];
      const repo = m ? repos[Number(m[1])] : undefined;
      // The index picks the repository; the name must be its own, so a URL never reads as naming another one.
      if (!m || !repo || decodeURIComponent(m[2]!) !== repositoryName(repo.url))
        return refuse(res, 404, 'not a repository of this session');
      const endpoint = m[3]!;
      const service = endpoint === '/info/refs' ? url.searchParams.get('service') : endpoint.slice(1);
      if (service !== 'git-upload-pack' && service !== 'git-receive-pack')
        return refuse(res, 403, 'only the smart git protocol (fetch, push) goes through this proxy');
      if (endpoint !== '/info/refs' && req.method !== 'POST') return refuse(res, 405, 'expected POST');
      const local = isLocalRepository(repo.url);
      if (local && service === 'git-receive-pack' && !repo.push_branches)
        return refuse(
          res,
          403,
          `${repositoryName(repo.url)} is a local repository this session may only read (its resource names no push_branches)`,
        );
      let head: Buffer[] = [];
      if (req.method === 'POST' && service === 'git-receive-pack' && repo.push_branches) {
        const encoding = req.headers['content-encoding'] ?? 'identity';
        if (encoding !== 'gzip' && encoding !== 'identity') return refuse(res, 415, `content-encoding ${encoding} is not accepted`);
        const start = await readRefUpdates(req, encoding === 'gzip');
        head = start.head;
        const refused = start.refs.filter((r) => !pushAllowed(repo.push_branches, r));
        if (refused.length > 0) {
          const reason = `tandem: this session may push only to ${repo.push_branches.join(', ')}`;
          res.writeHead(200, { 'content-type': 'application/x-git-receive-pack-result', 'cache-control': 'no-cache' });
          res.end(rejectPush(start.refs, start.capabilities, reason));
          return void req.resume(); // git sends the whole pack before it reads the answer: read it and drop it
        }
      }
      const body = req.method === 'POST' ? head : undefined;
      if (local)
        return serveLocal(fileURLToPath(repo.url), endpoint, url.search, req, body, res, Boolean(repo.push_branches));
      const secret = repo.credential ? this.vault?.get(repo.credential) : undefined;
      if (repo.credential && secret === undefined)
        return refuse(res, 502, `the vault no longer holds secret "${repo.credential}"`);
      const target = new URL(repo.url.replace(/\/+$/, '') + endpoint + url.search);
      if (secret !== undefined && target.protocol === 'http:' && !isLoopback(target.hostname))
        return refuse(res, 502, `will not send the credential of ${repo.url} over plain http; use https`);
      const headers: http.OutgoingHttpHeaders = {};
      for (const h of ['content-type', 'accept', 'content-encoding', 'git-protocol', 'accept-encoding', 'user-agent'])
        if (req.headers[h]) headers[h] = req.headers[h];
      // The body goes on as it came: the same length, or chunked (git's own framing of a large push).
      if (body) {
        if (req.headers['content-length'] !== undefined) headers['content-length'] = req.headers['content-length'];
        else headers['transfer-encoding'] = 'chunked';
      }
      if (secret !== undefined) {
        const basic = secret.includes(':') ? secret : `x-access-token:${secret}`;
        headers.authorization = `Basic ${Buffer.from(basic).toString('base64')}`;
      }
      const client = target.protocol === 'https:' ? https : http;
      let answer: http.IncomingMessage | undefined;
      const up = client.request(target, { method: req.method, headers }, (upRes) => {
        answer = upRes;
        if (upRes.statusCode === 401 || upRes.statusCode === 403) {
          upRes.resume();
          return refuse(res, 403, `the repository refused the credential of this session (HTTP ${upRes.statusCode})`);
        }
        const out: http.OutgoingHttpHeaders = {};
        for (const h of ['content-type', 'cache-control', 'content-encoding', 'expires', 'pragma'])
          if (upRes.headers[h]) out[h] = upRes.headers[h];
        res.writeHead(upRes.statusCode ?? 502, out);
        upRes.on('close', () => {
          if (!upRes.complete) res.destroy(); // the repository went away mid-answer: so does the sandbox's request
        });
        upRes.pipe(res);
      });
      up.on('error', (err) => {
        req.unpipe(up);
        if (res.destroyed || res.writableFinished || answer?.complete) return;
        if (!res.headersSent)
          refuse(res, 502, `the repository could not be reached: ${err.message}`, { connection: 'close' });
        else res.destroy();
      });
      relayBody(req, res, body, up, () => up.destroy());
    } catch (err) {
      if (res.headersSent || res.destroyed) return void res.destroy();
      refuse(res, err instanceof BodyError ? err.status : 400, (err as Error).message);
      req.resume(); // the rest of the body is read and dropped, so the sandbox gets to read the answer
    }
  }

  // -- egress proxy --------------------------------------------------------------------------------------------

  private allowed(s: SessionProxies, host: string, port: number, method: string): boolean {
    const net = s.ref.config.network;
    if (net?.policy === 'limited' && hostAllowed(net.allowed_hosts ?? [], host, port)) return true;
    this.logDenial(s, { host, port, method, at: new Date().toISOString() });
    return false;
  }

  private logDenial(s: SessionProxies, denial: EgressDenial): void {
    try {
      appendFileSync(join(s.dir, 'state', 'denials.jsonl'), JSON.stringify(denial) + '\n', { mode: 0o600 });
    } catch {
      // the session's directory was removed: the session has ended
    }
  }

  /**
   * Where an allowed name leads: the host map's fixed address, else the name's DNS answer, which must not be the
   * worker's host or a private network (a name under someone else's control could point there). Undefined: refused,
   * and the refusal logged as a denial.
   */
  private async resolve(s: SessionProxies, host: string, port: number, method: string): Promise<string | undefined> {
    const mapped = this.settings.hostMap?.[host.toLowerCase()];
    if (mapped) return mapped;
    const addresses = await lookup(host, { all: true }).catch(() => []);
    if (addresses.length > 0 && !addresses.some((a) => isInternalAddress(a.address))) return addresses[0]!.address;
    this.logDenial(s, { host, port, method, at: new Date().toISOString() });
    return undefined;
  }

  private egressConnect(s: SessionProxies, req: http.IncomingMessage, socket: net.Socket, head: Buffer): void {
    socket.on('error', () => undefined);
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(req.url ?? '');
    if (!m) return void socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    const host = m[1]!;
    const port = Number(m[2]);
    if (!(port >= 1 && port <= 65535)) return void socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
    if (!this.allowed(s, host, port, 'CONNECT'))
      return void socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n\r\ntandem: ${host} is not in this sandbox's allowed hosts\n`);
    void this.resolve(s, host, port, 'CONNECT').then((address) => {
      if (!address)
        return void socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\n\r\ntandem: ${host} does not lead to the internet\n`);
      try {
        const up = net.createConnection({ host: address, port }, () => {
          socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
          if (head.length) up.write(head);
          up.pipe(socket).pipe(up);
        });
        up.on('error', () => socket.end('HTTP/1.1 502 Bad Gateway\r\n\r\n'));
      } catch {
        socket.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
      }
    });
  }

  private async egressRequest(s: SessionProxies, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let target: URL;
    try {
      target = new URL(req.url ?? '');
      if (target.protocol !== 'http:') throw new Error('not http');
    } catch {
      return refuse(res, 400, 'this is a proxy: send absolute http:// URLs, or CONNECT for https');
    }
    const port = Number(target.port || 80);
    if (!this.allowed(s, target.hostname, port, req.method ?? 'GET'))
      return refuse(res, 403, `${target.hostname} is not in this sandbox's allowed hosts`);
    const address = await this.resolve(s, target.hostname, port, req.method ?? 'GET');
    if (!address) return refuse(res, 403, `${target.hostname} does not lead to the internet`);
    const headers = { ...req.headers };
    for (const h of Object.keys(headers)) if (h.startsWith('proxy-')) delete headers[h];
    const up = http.request(
      { host: address, port, path: target.pathname + target.search, method: req.method, headers },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    up.on('error', (err) => {
      if (!res.headersSent) refuse(res, 502, `${target.hostname} could not be reached: ${err.message}`);
      else res.destroy();
    });
    req.pipe(up);
  }
}
