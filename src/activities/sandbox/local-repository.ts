/**
 * Local repositories: a `git_repository` whose URL is a `file://` URL on the worker host is served to the sandbox
 * by the git proxy with `git http-backend` (CGI), run on the host for that one repository.
 *
 * These processes run outside the container's limits, so they are bounded here: at most a few at once per session
 * (then a 503 the sandbox's git prints), each killed with its children when its client goes away, when it has moved
 * no byte for a while (a client that never reads its answer), or when it has run for very long. Its output reaches
 * the sandbox only as fast as the sandbox reads it, so the worker holds a few chunks of it at a time.
 */
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import type * as http from 'node:http';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GatewayLimits, Allowance } from './gateway-limits.js';
import { refuse, upstreamStatus } from './http-answer.js';

/** Most bytes of CGI header lines read before the blank line that ends them. */
const MAX_CGI_HEADER_BYTES = 64 * 1024;

/** Why a local repository's `file://` URL cannot be served on this host, or undefined when it can. */
export function localProblem(url: string): string | undefined {
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
 * Relays what a CGI program writes (header lines, a blank line, then the body) as the HTTP response, as fast as the
 * client takes it (the CGI's output is paused while the response's buffer is full). A `Status:` that is no HTTP
 * status, header lines Node cannot send, or a header block past 64 KiB become a 502, never an exception. Returns
 * whether the CGI's headers have come (and the response has started).
 */
export function relayCgiOutput(stdout: NodeJS.ReadableStream, res: http.ServerResponse): () => boolean {
  let head = Buffer.alloc(0);
  let headersDone = false;
  let failed = false;
  const write = (chunk: Buffer) => {
    if (res.destroyed || res.writableEnded) return;
    if (!res.write(chunk)) {
      stdout.pause();
      res.once('drain', () => stdout.resume());
    }
  };
  stdout.on('data', (chunk: Buffer) => {
    if (failed) return;
    if (headersDone) return write(chunk);
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) {
      if (head.length > MAX_CGI_HEADER_BYTES) {
        failed = true;
        refuse(res, 502, 'the git backend sent no end of its header lines');
      }
      return;
    }
    let status: number | undefined = 200;
    const headers: Record<string, string> = {};
    for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
      const i = line.indexOf(':');
      if (i < 0) continue;
      const k = line.slice(0, i).trim();
      const v = line.slice(i + 1).trim();
      if (k.toLowerCase() === 'status') status = upstreamStatus(parseInt(v, 10));
      else headers[k] = v;
    }
    if (status === undefined) {
      failed = true;
      return refuse(res, 502, 'the git backend answered with an invalid HTTP status');
    }
    try {
      res.writeHead(status, headers);
    } catch (err) {
      failed = true;
      return refuse(res, 502, `the git backend's answer could not be passed on: ${(err as Error).message}`);
    }
    headersDone = true;
    write(head.subarray(end + 4));
  });
  return () => headersDone || failed;
}

/** What `serveLocal` needs of its session: the bounds and the session's count of running CGIs. */
export interface LocalServing {
  limits: GatewayLimits;
  cgis: Allowance;
}

/**
 * Answers one smart-protocol request for the local repository at `path` with `git http-backend` (CGI). The
 * repository and the endpoint are fixed by the caller, never taken from the request's path; pushes are enabled
 * only when `push` (the resource names `push_branches`, already checked against the request's refs). The body
 * streams to the CGI's stdin (`head`, the bytes already read, first). The CGI gets a minimal environment: no worker
 * secret reaches git or the repository's hooks. Beyond `limits.cgiProcesses` running for the session, a 503.
 * `relay(dest, abort)` streams the request body into the CGI's stdin and ties both sides' lives together.
 */
export function serveLocal(
  serving: LocalServing,
  path: string,
  endpoint: string,
  search: string,
  req: http.IncomingMessage,
  head: Buffer[] | undefined,
  res: http.ServerResponse,
  push: boolean,
  relay: (dest: NodeJS.WritableStream, abort: () => void) => void,
): void {
  if (!serving.cgis.take()) {
    refuse(
      res,
      503,
      `this session already runs ${serving.cgis.max} git requests on its local repositories; retry when they end`,
      { 'retry-after': '5', connection: 'close' },
    );
    return void req.resume();
  }
  const release = serving.cgis.releaser();
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
    // Its own process group, so that stopping it stops upload-pack, receive-pack and index-pack with it.
    detached: true,
  });
  let exited = false;
  /** Kills the CGI and its children (its process group) while it runs; with `why`, answers that (504). */
  const stop = (why?: string) => {
    if (!exited && cgi.pid !== undefined) {
      try {
        process.kill(-cgi.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (why) refuse(res, 504, why);
  };
  const { cgiIdleMs, cgiMaxMs } = serving.limits;
  // Moving bytes either way keeps it alive; a client that stops reading stops its output, and then it is idle.
  const idle = setTimeout(() => stop(`git http-backend moved no data for ${cgiIdleMs / 1000} s, and was stopped`), cgiIdleMs);
  const deadline = setTimeout(() => stop(`git http-backend ran for ${cgiMaxMs / 1000} s, and was stopped`), cgiMaxMs);
  const moved = () => void idle.refresh();
  let stderr = '';
  cgi.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
  cgi.stdin.on('error', () => undefined); // the CGI may exit before reading all of a refused request
  relay(cgi.stdin, () => stop());
  req.on('data', moved); // after the relay has its own reader on `req`: no byte goes past it
  cgi.stdout.on('data', moved);
  const started = relayCgiOutput(cgi.stdout, res);
  const done = () => {
    exited = true;
    clearTimeout(idle);
    clearTimeout(deadline);
    req.off('data', moved);
    release();
  };
  cgi.on('error', (err) => {
    done();
    refuse(res, 502, `git http-backend could not run on the worker: ${err.message}`);
  });
  cgi.on('exit', () => (exited = true));
  cgi.on('close', () => {
    done();
    if (started()) {
      if (!res.writableEnded && !res.destroyed) res.end();
      return;
    }
    const why = stderr.trim().split('\n').slice(-2).join(' ') || 'no answer';
    refuse(res, 502, `the local repository could not be served: ${why}`);
  });
}
