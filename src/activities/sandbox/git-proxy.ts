/**
 * The git credential proxy of one session: an HTTP server on a unix socket that the sandbox reaches through its
 * forwarder. It checks the session's phantom token, allows only the session's repositories and the smart git
 * protocol, checks the ref updates of a push against `push_branches` before any of the pack goes on, and adds the
 * real token from the vault on the way out, so the real token never enters the container or the workflow history.
 * Request bodies stream through: of a push it reads only the ref updates. Local repositories are answered by
 * `git http-backend` (local-repository.ts). Connections, requests and idle time are bounded (gateway-limits.ts).
 */
import { timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import { fileURLToPath } from 'node:url';
import { createGunzip } from 'node:zlib';
import { isLocalRepository, repositoryName } from '../../shared/repositories.js';
import type { SandboxRef } from '../../shared/types.js';
import type { Vault } from '../../vault/index.js';
import { isLoopback } from './address-policy.js';
import { publicOnlyLookup } from '../mcp-address.js';

const publicLookup = publicOnlyLookup();
import { bound, Allowance, type GatewayLimits } from './gateway-limits.js';
import { refuse, startAnswer } from './http-answer.js';
import { serveLocal } from './local-repository.js';
import { BodyError, MAX_REF_UPDATE_BYTES, pushAllowed, RefUpdateReader, rejectPush, SignedPushError } from './pkt-line.js';

/** What the git proxy reads of its session at each request (the ref is replaced when the session is ensured again). */
export interface GitProxySession {
  readonly ref: SandboxRef;
  readonly token: string;
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
        return finish(
          new BodyError(413, `the ref updates of a compressed push must come in its first ${2 * MAX_REF_UPDATE_BYTES} bytes`),
        );
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

/** Answers a push with git's own report, so git prints the refusal; the rest of the body is read and dropped. */
function answerReport(req: http.IncomingMessage, res: http.ServerResponse, report: Buffer): void {
  res.writeHead(200, { 'content-type': 'application/x-git-receive-pack-result', 'cache-control': 'no-cache' });
  res.end(report);
  req.resume(); // git sends the whole pack before it reads the answer: read it and drop it
}

/**
 * Creates the git proxy server of a session (not yet listening), with its bounds: connections, requests at once,
 * local-repository CGIs at once, idle and request timeouts.
 */
export function createGitProxy(session: GitProxySession, vault: Vault | undefined, limits: GatewayLimits): http.Server {
  const requests = new Allowance(limits.gitRequests);
  const cgis = new Allowance(limits.cgiProcesses);
  const server = http.createServer((req, res) => {
    res.on('error', () => res.destroy());
    if (!requests.take()) {
      refuse(res, 503, `this session already has ${requests.max} git requests in progress; retry when they end`, {
        'retry-after': '5',
        connection: 'close',
      });
      return void req.resume();
    }
    const release = requests.releaser();
    res.on('close', release);
    void handle(session, vault, { limits, cgis }, req, res).catch(() => res.destroy());
  });
  bound(server, limits, limits.gitConnections);
  return server;
}

async function handle(
  s: GitProxySession,
  vault: Vault | undefined,
  serving: { limits: GatewayLimits; cgis: Allowance },
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
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
      if (encoding !== 'gzip' && encoding !== 'identity')
        return refuse(res, 415, `content-encoding ${encoding} is not accepted`);
      const start = await readRefUpdates(req, encoding === 'gzip');
      head = start.head;
      const refused = start.refs.filter((r) => !pushAllowed(repo.push_branches, r));
      if (refused.length > 0) {
        const reason = `tandem: this session may push only to ${repo.push_branches.join(', ')}`;
        return answerReport(req, res, rejectPush(start.refs, start.capabilities, reason));
      }
    }
    const body = req.method === 'POST' ? head : undefined;
    if (local)
      return serveLocal(
        serving,
        fileURLToPath(repo.url),
        endpoint,
        url.search,
        req,
        body,
        res,
        Boolean(repo.push_branches),
        (dest, abort) => relayBody(req, res, body, dest, abort),
      );
    const secret = repo.credential ? vault?.get(repo.credential) : undefined;
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
    // A repository an API client named is reached on public addresses only, checked on each connection's lookup.
    const lookup = repo.public_only ? { lookup: publicLookup } : {};
    const up = client.request(target, { method: req.method, headers, ...lookup }, (upRes) => {
      answer = upRes;
      if (upRes.statusCode === 401 || upRes.statusCode === 403) {
        upRes.resume();
        return refuse(res, 403, `the repository refused the credential of this session (HTTP ${upRes.statusCode})`);
      }
      const out: http.OutgoingHttpHeaders = {};
      for (const h of ['content-type', 'cache-control', 'content-encoding', 'expires', 'pragma'])
        if (upRes.headers[h]) out[h] = upRes.headers[h];
      if (!startAnswer(res, upRes.statusCode, out)) return void upRes.destroy();
      upRes.on('close', () => {
        if (!upRes.complete) res.destroy(); // the repository went away mid-answer: so does the sandbox's request
      });
      upRes.pipe(res);
    });
    up.on('error', (err) => {
      req.unpipe(up);
      if (res.destroyed || res.writableFinished || answer?.complete) return;
      if (!res.headersSent) refuse(res, 502, `the repository could not be reached: ${err.message}`, { connection: 'close' });
      else res.destroy();
    });
    relayBody(req, res, body, up, () => up.destroy());
  } catch (err) {
    if (res.headersSent || res.destroyed) return void res.destroy();
    if (err instanceof SignedPushError) {
      // git prints the report's sentence (`error: remote unpack failed: ...`); a bare 403 it would not.
      const reason = `tandem: ${err.message}`;
      return answerReport(req, res, rejectPush([], err.capabilities, reason, reason));
    }
    refuse(res, err instanceof BodyError ? err.status : 400, (err as Error).message);
    req.resume(); // the rest of the body is read and dropped, so the sandbox gets to read the answer
  }
}
