/**
 * A hostile sandbox at the gateway's sockets: what it can send there, byte for byte, is what it can send from inside
 * the container (the forwarder relays bytes unchanged), so these tests speak to the sockets directly, with the
 * Gateway in this process as in the worker. A push that hides its ref updates in a push certificate or splits them
 * over pkt-lines is refused before git sees it; a flood of refusals with enormous host names leaves a bounded record;
 * `git http-backend` processes, connections and tunnels are capped and time out; an upstream answer with an invalid
 * status is a 502, not the end of the worker; an allowed name that is the worker host's own address leads nowhere.
 * Every upstream server here listens on this host.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gateway, relayCgiOutput, type GatewayLimits } from '../../src/activities/sandbox/gateway.js';
import type { SandboxRef } from '../../src/shared/types.js';
import { GIT_ENV } from '../fakes/git-server.js';

const ZERO = '0'.repeat(40);
const git = (dir: string, ...args: string[]) => execFileSync('git', ['-C', dir, ...args], { env: GIT_ENV }).toString().trim();

function pkt(s: string): Buffer {
  return Buffer.from((Buffer.byteLength(s) + 4).toString(16).padStart(4, '0') + s);
}

/** Waits until `check` holds, or fails naming `what`. */
async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A gateway of its own for one part of the file, in a fresh root, with `limits` lowered where the test says. */
function newGateway(hostMap: Record<string, string> = {}, limits: Partial<GatewayLimits> = {}): Gateway {
  return new Gateway({ root: mkdtempSync(join(tmpdir(), 'tandem-gw-')), hostMap, limits }, undefined);
}

/** Sends `bytes` on a new connection to a unix socket and returns everything the server sends until it closes. */
function exchange(socket: string, bytes: Buffer | string, end = true): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(socket);
    let answer = '';
    c.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    c.on('close', () => resolve(answer));
    c.on('error', reject);
    c.write(bytes);
    if (end) c.end();
  });
}

/** An HTTP request on a unix socket; resolves with the status and body. */
function request(
  socketPath: string,
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: Buffer } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path, method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('latin1')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/**
 * The `git http-backend` processes working in `dir` (they enter the repository they serve). A process whose parent is
 * one of them is left out: it is a child (`git upload-pack`) caught between its fork and its exec, when it still
 * bears its parent's command line.
 */
function backendsIn(dir: string): number[] {
  const parents = new Map<number, number>();
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (!readlinkSync(`/proc/${pid}/cwd`).startsWith(dir)) continue;
      if (!readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('http-backend')) continue;
      // stat is "pid (comm) state ppid ...": comm may hold spaces, so read after its closing parenthesis.
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      parents.set(Number(pid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone, or not ours
    }
  }
  return [...parents].filter(([, ppid]) => !parents.has(ppid)).map(([pid]) => pid);
}

/** Resolves when `closed` does; fails naming `what` when it has not after 30 s (a cap that did not act). */
async function closedBy(closed: Promise<void>, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 30_000)));
  await Promise.race([closed, late]).finally(() => clearTimeout(timer));
}

/** Bytes of all files under `dir`. */
function bytesUnder(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += bytesUnder(p);
    else if (e.isFile()) total += statSync(p).size;
  }
  return total;
}

/** A loopback TCP server that answers every request with `answer` (raw bytes) and counts its connections. */
async function rawServer(answer: string, host = '127.0.0.1'): Promise<{ port: number; connections: () => number; close(): void }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((c) => {
    connections++;
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
    c.on('error', () => undefined);
    c.on('data', () => c.end(answer));
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => connections,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('a push that hides its ref updates', () => {
  const gateway = newGateway();
  const work = mkdtempSync(join(tmpdir(), 'tandem-hostile-push-'));
  const repo = join(work, 'app');
  const ref: SandboxRef = {
    session_id: 'sesn_hostile_push',
    config: {},
    resources: [{ type: 'git_repository', url: pathToFileURL(repo).href, push_branches: ['agent/*'] }],
  };
  let socket = '';
  let authorization = '';
  let base = '';
  let next = '';
  let pack: Buffer;

  beforeAll(async () => {
    // A bare repository: git's own rules would refuse a push to a checked-out branch, and hide the proxy's part.
    git(work, 'init', '--quiet', '--bare', '--initial-branch=main', repo);
    const clone = join(work, 'clone');
    git(work, 'init', '--quiet', '--initial-branch=main', clone);
    git(clone, 'commit', '--quiet', '--allow-empty', '-m', 'first commit');
    git(clone, 'push', '--quiet', repo, 'main');
    base = git(repo, 'rev-parse', 'main');
    // The commit the sandbox would like main to have, and a pack that carries it.
    git(clone, 'commit', '--quiet', '--allow-empty', '-m', 'pushed past the proxy');
    next = git(clone, 'rev-parse', 'HEAD');
    pack = execFileSync('git', ['-C', clone, 'pack-objects', '--stdout', '--revs'], { input: `${next}\n^${base}\n`, env: GIT_ENV });
    const mount = await gateway.ensure(ref);
    socket = join(mount.hostDir, 'git.sock');
    authorization = `Basic ${Buffer.from(`tandem:${await gateway.token(ref)}`).toString('base64')}`;
  });
  afterAll(() => gateway.close(ref.session_id));

  const push = (commands: Buffer[]) =>
    request(socket, '/0/app.git/git-receive-pack', {
      method: 'POST',
      headers: { authorization, 'content-type': 'application/x-git-receive-pack-request' },
      body: Buffer.concat([...commands, Buffer.from('0000'), pack]),
    });

  it('refuses a push-cert block whose commands are split over pkt-lines, and main stays where it was', async () => {
    // Read one pkt-line at a time, no line here names a ref: header lines of one or two words, and each command
    // split in two halves of two words and one. git receive-pack joins the certificate's lines into one text and
    // reads "<base> <next> refs/heads/main" and "<zero> <next> refs/tags/v1" from it.
    const answer = await push([
      pkt('push-cert\0report-status\n'),
      pkt('nonce 1700000000-0\n'),
      pkt('\n'),
      pkt(`${base} ${next}`),
      pkt(' refs/heads/main\n'),
      pkt(`${ZERO} ${next}`),
      pkt(' refs/tags/v1\n'),
      pkt('push-cert-end\n'),
    ]);
    expect(answer.status).toBe(200);
    expect(answer.body).toContain(
      'unpack tandem: signed pushes (git push --signed) are not supported through the tandem proxy; push without --signed',
    );
    expect(answer.body).not.toContain('ok refs/');
    expect(git(repo, 'rev-parse', 'main')).toBe(base);
    expect(git(repo, 'tag', '--list')).toBe('');
  });

  it('refuses a command split over two pkt-lines, and garbage among the commands', async () => {
    for (const commands of [
      [pkt(`${base} ${next} \0report-status\n`), pkt('refs/heads/main\n')],
      [pkt(`${ZERO} ${next} refs/heads/agent/ok\0report-status\n`), pkt('garbage\n'), pkt(`${base} ${next} refs/heads/main\n`)],
    ]) {
      const answer = await push(commands);
      expect(answer.status).toBe(400);
      expect(answer.body).toContain('tandem: malformed ref update');
    }
    expect(git(repo, 'rev-parse', 'main')).toBe(base);
    expect(git(repo, 'branch', '--list', 'agent/*')).toBe('');
  });

  it('still takes a well-formed push to an allowed branch', async () => {
    const answer = await push([pkt(`${ZERO} ${next} refs/heads/agent/ok\0report-status\n`)]);
    expect(answer.status).toBe(200);
    expect(answer.body).toContain('ok refs/heads/agent/ok');
    expect(git(repo, 'rev-parse', 'agent/ok')).toBe(next);
    expect(git(repo, 'rev-parse', 'main')).toBe(base);
  });
});

describe('egress refusals', () => {
  const gateway = newGateway({ 'allowed.test': '127.0.0.1' });
  const limited: SandboxRef = {
    session_id: 'sesn_denial_flood',
    config: { network: { policy: 'limited', allowed_hosts: ['allowed.test'] } },
  };
  afterAll(() => gateway.close(limited.session_id));

  it('gives a session without limited networking no egress proxy at all', async () => {
    const repo = mkdtempSync(join(tmpdir(), 'tandem-noegress-'));
    git(repo, 'init', '--quiet');
    const ref: SandboxRef = {
      session_id: 'sesn_no_egress',
      config: {},
      resources: [{ type: 'git_repository', url: pathToFileURL(repo).href }],
    };
    const mount = await gateway.ensure(ref);
    expect(readdirSync(mount.hostDir).sort()).toEqual(['git.sock']);
    expect(Object.values(mount.ports)).toEqual(['git.sock']);
    gateway.close(ref.session_id);
  });

  it('keeps a bounded record of a flood of refusals with 15 KB host names', async () => {
    const mount = await gateway.ensure(limited);
    const socket = join(mount.hostDir, 'egress.sock');
    const flood = 1000;
    const name = (i: number) => Buffer.from(`h${i}-${'x'.repeat(15_000)}.test`);
    for (let i = 0; i < flood; i += 25) {
      const answers = await Promise.all(
        Array.from({ length: 25 }, (_, j) =>
          exchange(socket, Buffer.concat([Buffer.from('CONNECT '), name(i + j), Buffer.from(':443 HTTP/1.1\r\nHost: x\r\n\r\n')])),
        ),
      );
      for (const a of answers) {
        expect(a).toMatch(/^HTTP\/1\.1 403 Forbidden/);
        expect(a.length).toBeLessThan(1024); // the answer does not echo the whole name either
      }
    }
    // The worker's disk: the session's directory holds at most 100 short denials.
    const sessionDir = join(mount.hostDir, '..');
    expect(bytesUnder(sessionDir)).toBeLessThan(64 * 1024);
    const denials = gateway.drainDenials(limited.session_id);
    expect(denials).toHaveLength(100);
    expect(denials[0]?.host.startsWith('h0-')).toBe(true);
    for (const d of denials) {
      expect(d.host.length).toBeLessThanOrEqual(253);
      expect(d.host).not.toMatch(/[\p{Cc}\p{Cf}]/u);
      expect([d.port, d.method]).toEqual([443, 'CONNECT']);
    }
    expect(denials.at(-1)?.dropped).toBe(flood - 100);
    // What goes into the tool result (and history) is bounded: about 30 KB, not 15 MB.
    expect(JSON.stringify(denials).length).toBeLessThan(40 * 1024);
    expect(gateway.drainDenials(limited.session_id)).toEqual([]);
  });
});

describe('git http-backend processes of local repositories', () => {
  const work = mkdtempSync(join(tmpdir(), 'tandem-cgi-'));
  const repo = join(work, 'app');
  const ref: SandboxRef = {
    session_id: 'sesn_cgi_cap',
    config: {},
    resources: [{ type: 'git_repository', url: pathToFileURL(repo).href }],
  };
  // The default bounds, and a gateway whose CGIs may idle 1.5 s only.
  const gateways = { cap: newGateway(), idle: newGateway({}, { cgiIdleMs: 1500 }) };

  beforeAll(() => {
    git(work, 'init', '--quiet', '--initial-branch=main', repo);
    git(repo, 'commit', '--quiet', '--allow-empty', '-m', 'first commit');
  });
  afterAll(() => {
    for (const g of Object.values(gateways)) g.close(ref.session_id);
  });

  async function socketOf(gateway: Gateway): Promise<{ socket: string; authorization: string }> {
    const mount = await gateway.ensure(ref);
    return {
      socket: join(mount.hostDir, 'git.sock'),
      authorization: `Basic ${Buffer.from(`tandem:${await gateway.token(ref)}`).toString('base64')}`,
    };
  }

  /** A fetch whose body never ends: its CGI waits for the rest, moving no byte. */
  function stalledFetch(to: { socket: string; authorization: string }) {
    const req = http.request({
      socketPath: to.socket,
      path: '/0/app.git/git-upload-pack',
      method: 'POST',
      agent: false,
      headers: {
        authorization: to.authorization,
        'content-type': 'application/x-git-upload-pack-request',
        'transfer-encoding': 'chunked',
      },
    });
    const answer = new Promise<{ status: number; body: string } | { error: string }>((resolve) => {
      req.on('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', (err) => resolve({ error: err.message }));
      });
      req.on('error', (err) => resolve({ error: err.message }));
    });
    req.write(pkt(`want ${'a'.repeat(40)}\n`)); // a start, and then nothing
    return { req, answer };
  }

  it('runs at most 4 at once for a session, answers 503 beyond, and stops those whose client went away', async () => {
    const to = await socketOf(gateways.cap);
    const held = Array.from({ length: 4 }, () => stalledFetch(to));
    try {
      await until(() => backendsIn(repo).length === 4, 'four git http-backend processes');
      const fifth = stalledFetch(to);
      held.push(fifth);
      const refused = await fifth.answer;
      expect(refused).toMatchObject({ status: 503 });
      expect((refused as { body: string }).body).toContain(
        'tandem: this session already runs 4 git requests on its local repositories; retry when they end',
      );
      expect(backendsIn(repo)).toHaveLength(4);
    } finally {
      // Whatever failed above, the next test must not find these still running.
      for (const h of held) h.req.destroy();
    }
    await until(() => backendsIn(repo).length === 0, 'the git http-backend processes to stop');
    // The slots are free again: a fetch of the refs works.
    const refs = await request(to.socket, '/0/app.git/info/refs?service=git-upload-pack', {
      headers: { authorization: to.authorization },
    });
    expect(refs.status).toBe(200);
    expect(refs.body).toContain(git(repo, 'rev-parse', 'main'));
  });

  it('stops one that moves no byte for its idle limit, though its client stays connected', async () => {
    const stalled = stalledFetch(await socketOf(gateways.idle));
    await until(() => backendsIn(repo).length > 0, 'git http-backend to start');
    await until(() => backendsIn(repo).length === 0, 'the idle git http-backend to be stopped');
    // git http-backend had sent its headers (200) before it waited for the body: the answer is cut, not completed.
    expect(await stalled.answer).toHaveProperty('error');
    stalled.req.destroy();
  });
});

describe('an upstream answer with an invalid status', () => {
  let odd: Awaited<ReturnType<typeof rawServer>>;
  const gateway = newGateway({ 'odd.test': '127.0.0.1' });
  let ref: SandboxRef;

  beforeAll(async () => {
    odd = await rawServer('HTTP/1.1 099 Odd\r\ncontent-length: 0\r\n\r\n');
    ref = {
      session_id: 'sesn_odd_status',
      config: { network: { policy: 'limited', allowed_hosts: ['odd.test'] } },
      resources: [{ type: 'git_repository', url: `http://127.0.0.1:${odd.port}/odd.git` }],
    };
  });
  afterAll(() => {
    gateway.close(ref.session_id);
    odd?.close();
  });

  it('is a 502 from the egress proxy and from the git proxy, and both go on answering', async () => {
    const mount = await gateway.ensure(ref);
    const egress = join(mount.hostDir, 'egress.sock');
    const url = `http://odd.test:${odd.port}/`;
    for (let i = 0; i < 2; i++) {
      const r = await request(egress, url, { headers: { host: `odd.test:${odd.port}` } });
      expect(r.status).toBe(502);
      expect(r.body).toContain('tandem: the upstream server answered with an invalid HTTP status (99)');
    }
    const authorization = `Basic ${Buffer.from(`tandem:${await gateway.token(ref)}`).toString('base64')}`;
    for (let i = 0; i < 2; i++) {
      const r = await request(join(mount.hostDir, 'git.sock'), '/0/odd.git/info/refs?service=git-upload-pack', {
        headers: { authorization },
      });
      expect(r.status).toBe(502);
      expect(r.body).toContain('invalid HTTP status (99)');
    }
    expect(odd.connections()).toBeGreaterThanOrEqual(4);
  });

  it('is a 502 when a CGI says it, as a status or in a header Node cannot send', async () => {
    const outputs = ['Status: 099 Odd\r\n\r\n', 'Status: 1000\r\n\r\n', 'Status: x\r\n\r\n', 'X-Odd: a\u0001b\r\n\r\nbody'];
    const server = http.createServer((req, res) => {
      const cgi = spawn('printf', ['%s', outputs[Number(req.url?.slice(1))]!]);
      const started = relayCgiOutput(cgi.stdout, res);
      cgi.on('close', () => {
        if (started() && !res.writableEnded) res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    for (let i = 0; i < outputs.length; i++) {
      const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: `/${i}`, agent: false }, (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          })
          .on('error', reject);
      });
      expect(r.status, outputs[i]).toBe(502);
      expect(r.body, outputs[i]).toMatch(/tandem: the git backend('s answer could not be passed on| answered with an invalid HTTP status)/);
    }
    server.close();
  });
});

describe('connections and tunnels', () => {
  let echo: net.Server;
  let echoPort = 0;
  let upstreamOpen = 0;
  // A gateway with 6 connections per proxy (and the default idle limits), and one with 1 s idle limits.
  const gateways = {
    cap: newGateway({}, { egressConnections: 6, gitConnections: 6 }),
    idle: newGateway({ 'echo.test': '127.0.0.1' }, { tunnelIdleMs: 1000, idleMs: 1000 }),
  };
  const ref: SandboxRef = {
    session_id: 'sesn_connection_caps',
    config: { network: { policy: 'limited', allowed_hosts: ['echo.test'] } },
  };

  beforeAll(async () => {
    echo = net.createServer((c) => {
      upstreamOpen++;
      c.on('close', () => upstreamOpen--);
      c.on('error', () => undefined);
      c.pipe(c);
    });
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as net.AddressInfo).port;
    const repo = mkdtempSync(join(tmpdir(), 'tandem-caps-'));
    git(repo, 'init', '--quiet');
    ref.resources = [{ type: 'git_repository', url: pathToFileURL(repo).href }];
  });
  afterAll(() => {
    for (const g of Object.values(gateways)) g.close(ref.session_id);
    echo?.close();
  });

  async function sockets(gateway: Gateway): Promise<{ egress: string; git: string }> {
    const mount = await gateway.ensure(ref);
    return { egress: join(mount.hostDir, 'egress.sock'), git: join(mount.hostDir, 'git.sock') };
  }

  /** Opens a connection and resolves once it is connected; `closed` resolves when it closes. */
  async function open(path: string): Promise<{ socket: net.Socket; closed: Promise<void> }> {
    const socket = net.createConnection(path);
    socket.on('error', () => undefined);
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    await new Promise((r) => socket.once('connect', r));
    return { socket, closed };
  }

  it('closes connections past the cap of each proxy at once, and the held ones still answer', async () => {
    const { egress, git: gitSocket } = await sockets(gateways.cap);
    for (const path of [egress, gitSocket]) {
      const held = [];
      for (let i = 0; i < 6; i++) held.push(await open(path));
      const extra = await open(path);
      await closedBy(extra.closed, `the connection past the cap of ${path} to be closed`);
      // A held connection is served: it gets an answer to a request.
      let answer = '';
      held[0]!.socket.on('data', (d: Buffer) => (answer += d.toString()));
      held[0]!.socket.write('GET http://not-allowed.test/ HTTP/1.1\r\nHost: not-allowed.test\r\n\r\n');
      await until(() => /^HTTP\/1\.1 \d{3} /.test(answer), 'an answer on a held connection');
      for (const h of held) h.socket.destroy();
      await Promise.all(held.map((h) => h.closed));
    }
    gateways.cap.drainDenials(ref.session_id);
  });

  it('closes an idle tunnel and its upstream connection, and an idle connection that never sent a request', async () => {
    const { egress, git: gitSocket } = await sockets(gateways.idle);
    const tunnel = await open(egress);
    let answer = '';
    tunnel.socket.on('data', (d: Buffer) => (answer += d.toString()));
    tunnel.socket.write(`CONNECT echo.test:${echoPort} HTTP/1.1\r\nHost: echo.test\r\n\r\n`);
    await until(() => answer.startsWith('HTTP/1.1 200'), 'the tunnel to open');
    tunnel.socket.write('ping');
    await until(() => answer.endsWith('ping'), 'the echo through the tunnel');
    expect(upstreamOpen).toBe(1);
    await closedBy(tunnel.closed, 'the idle tunnel to be closed');
    await until(() => upstreamOpen === 0, 'the upstream side of the tunnel to close');
    for (const path of [egress, gitSocket]) await closedBy((await open(path)).closed, `an idle connection to ${path} to be closed`);
  });
});

describe('an allowed name that is the worker host', () => {
  const own = Object.values(networkInterfaces())
    .flatMap((l) => l ?? [])
    .filter((i) => i.family === 'IPv4' && !i.internal)
    .map((i) => i.address);
  let server: http.Server;
  let port = 0;
  let reached = 0;
  const gateway = newGateway();
  const ref: SandboxRef = { session_id: 'sesn_own_address', config: { network: { policy: 'limited', allowed_hosts: own } } };

  beforeAll(async () => {
    // A service of the worker host on every address, as a Temporal frontend or a codec server could be.
    server = http.createServer((_req, res) => {
      reached++;
      res.end('a service of the worker host\n');
    });
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(() => {
    gateway.close(ref.session_id);
    server?.close();
  });

  it('is refused, whatever range its address is in', async () => {
    expect(own.length).toBeGreaterThan(0);
    const mount = await gateway.ensure(ref);
    const egress = join(mount.hostDir, 'egress.sock');
    for (const address of own) {
      const tunnel = await exchange(egress, `CONNECT ${address}:${port} HTTP/1.1\r\nHost: ${address}\r\n\r\n`, false);
      expect(tunnel, address).toContain(`403 Forbidden`);
      expect(tunnel, address).toContain(`tandem: ${address} does not lead to the internet`);
      const plain = await request(egress, `http://${address}:${port}/`, { headers: { host: `${address}:${port}` } });
      expect(plain.status, address).toBe(403);
    }
    expect(reached).toBe(0);
    expect(gateway.drainDenials(ref.session_id).map((d) => d.host)).toEqual(own.flatMap((a) => [a, a]));
  });
});

describe('a repository an API client named', () => {
  const gateway = newGateway();
  let server: Awaited<ReturnType<typeof rawServer>>;
  const refs: SandboxRef[] = [];
  beforeAll(async () => {
    server = await rawServer('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 7\r\n\r\nreached');
    // The same repository by a name that resolves to loopback: marked public-only (as the API marks what its
    // clients name), and not (as an agent file's is).
    for (const [i, public_only] of [true, false].entries())
      refs.push({
        session_id: `sesn_public_only_${i}`,
        config: {},
        resources: [{ type: 'git_repository', url: `http://localhost:${server.port}/app.git`, ...(public_only ? { public_only } : {}) }],
      });
  });
  afterAll(() => {
    for (const ref of refs) gateway.close(ref.session_id);
    server?.close();
  });

  it('is reached on public addresses only, checked on the connection itself', async () => {
    const answers = [];
    for (const ref of refs) {
      const mount = await gateway.ensure(ref);
      const authorization = `Basic ${Buffer.from(`tandem:${await gateway.token(ref)}`).toString('base64')}`;
      answers.push(await request(join(mount.hostDir, 'git.sock'), '/0/app.git/info/refs?service=git-upload-pack', { headers: { authorization } }));
    }
    expect(answers[0]!.status).toBe(502);
    expect(answers[0]!.body).toMatch(/the repository could not be reached: localhost resolves to (127\.0\.0\.1|::1), .*named through the API/);
    expect(answers[1]).toMatchObject({ status: 200, body: 'reached' });
    expect(server.connections()).toBe(1); // the refused one never connected
  });
});
