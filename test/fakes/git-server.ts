/**
 * A real git HTTP server on loopback for tests: `git http-backend` (CGI) behind a small Node server that requires
 * `Authorization: Basic x-access-token:<token>`, like a git host with a personal access token.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { relayCgiOutput } from '../../src/activities/sandbox/gateway.js';

/** A running git server. */
export interface GitServer {
  /** Base URL; repositories are `${url}/<name>.git`. */
  url: string;
  /** Directory holding the bare repositories. */
  root: string;
  /**
   * Per request, to check what the proxy sent: whether it carried the token, the body's framing (its
   * `content-length` or `transfer-encoding` header) and the body bytes received so far.
   */
  requests: Array<{ method: string; path: string; authorized: boolean; framing: string; bytes: number }>;
  /** Creates a bare repository with one commit on `main` (a README) and returns its URL. */
  createRepo(name: string): string;
  /** `git` run in the bare repository (for example `log --format=%s main`). */
  git(name: string, ...args: string[]): string;
  close(): Promise<void>;
}

/** The environment of the tests' own git commands: a fixed author, none of the user's git configuration. */
export const GIT_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_AUTHOR_NAME: 't',
  GIT_AUTHOR_EMAIL: 't@example.com',
  GIT_COMMITTER_NAME: 't',
  GIT_COMMITTER_EMAIL: 't@example.com',
};

/** Starts the server; requests without the token get 401. */
export async function startGitServer(token: string): Promise<GitServer> {
  const root = mkdtempSync(join(tmpdir(), 'tandem-git-'));
  const expected = `Basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}`;
  const requests: GitServer['requests'] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://git');
    const authorized = req.headers.authorization === expected;
    const length = req.headers['content-length'];
    const framing = length !== undefined ? `length ${length}` : (req.headers['transfer-encoding'] ?? 'none');
    const seen = { method: req.method ?? '', path: url.pathname, authorized, framing, bytes: 0 };
    requests.push(seen);
    req.on('data', (c: Buffer) => (seen.bytes += c.length));
    if (!authorized) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' });
      res.end('unauthorized\n');
      return;
    }
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        REMOTE_USER: 'x-access-token',
        REQUEST_METHOD: req.method,
        PATH_INFO: url.pathname,
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
        GIT_PROTOCOL: String(req.headers['git-protocol'] ?? ''),
      },
    });
    req.pipe(cgi.stdin);
    relayCgiOutput(cgi.stdout, res);
    cgi.stdout.on('end', () => res.end());
    cgi.stderr.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const git = (name: string, ...args: string[]) =>
    execFileSync('git', ['-C', join(root, `${name}.git`), ...args], { env: GIT_ENV }).toString();
  return {
    url,
    root,
    requests,
    git,
    createRepo(name) {
      const bare = join(root, `${name}.git`);
      execFileSync('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
      execFileSync('git', ['-C', bare, 'config', 'http.receivepack', 'true']);
      const work = mkdtempSync(join(tmpdir(), 'tandem-git-work-'));
      const env = GIT_ENV;
      execFileSync('git', ['init', '--quiet', '--initial-branch=main', work], { env });
      writeFileSync(join(work, 'README.md'), `# ${name}\n`);
      execFileSync('git', ['-C', work, 'add', 'README.md'], { env });
      execFileSync('git', ['-C', work, 'commit', '--quiet', '-m', 'first commit'], { env });
      execFileSync('git', ['-C', work, 'push', '--quiet', bare, 'main'], { env });
      rmSync(work, { recursive: true, force: true });
      return `${url}/${name}.git`;
    },
    close: () =>
      new Promise<void>((r) => server.close(() => r())).then(() => rmSync(root, { recursive: true, force: true })),
  };
}
