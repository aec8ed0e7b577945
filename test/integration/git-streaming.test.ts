/**
 * Pushes stream through the git credential proxy. Git on this host pushes a pack far larger than anything the proxy
 * may hold, to a remote repository (the test git server) and to a local one (`git http-backend` on the worker
 * host), while the proxy reads only the ref updates before the pack; a push to another branch is refused from those
 * alone, for plain and gzip bodies, before the rest of the body has come; bad bodies get 400 or 413; and when either
 * side of a streamed request goes away, the other is torn down. The Gateway runs in this process, as in the worker.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readlinkSync, rmSync, statSync, writeSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gateway, MAX_REF_UPDATE_BYTES } from '../../src/activities/sandbox/gateway.js';
import type { SandboxRef } from '../../src/shared/types.js';
import { Vault } from '../../src/vault/index.js';
import { GIT_ENV, startGitServer, type GitServer } from '../fakes/git-server.js';

const exec = promisify(execFile);
const MiB = 1024 * 1024;
/** Size of the incompressible file the big commit adds. */
const PUSH_BYTES = 160 * MiB;
/**
 * Most bytes that may be between git and the repository at any moment of a push: the proxy's reading of the ref
 * updates plus the kernel's socket buffers (a loopback TCP connection to the git server may take tens of MiB).
 * A proxy that held the body would have all of it there.
 */
const MAX_IN_FLIGHT = 64 * MiB;
const ZERO = '0'.repeat(40);
// A full collection before each big push, so that the memory reported is what the push itself holds.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const git = (...args: string[]) => execFileSync('git', args, { env: GIT_ENV }).toString();

/** Runs git on this host (asynchronously: the proxy answers in this process). */
async function hostGit(...args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const r = await exec('git', args, { env: GIT_ENV, maxBuffer: 16 * MiB });
    return { ok: true, out: r.stdout + r.stderr };
  } catch (err) {
    const e = err as { stdout: string; stderr: string };
    return { ok: false, out: e.stdout + e.stderr };
  }
}

/** Bytes of the packs a repository is receiving (in receive-pack's quarantine directory), 0 when none. */
function incomingPackBytes(objects: string): number {
  let total = 0;
  for (const dir of readdirSync(objects).filter((d) => d.includes('incoming-'))) {
    const pack = join(objects, dir, 'pack');
    if (!existsSync(pack)) continue;
    for (const f of readdirSync(pack)) if (f.startsWith('tmp_pack_')) total += statSync(join(pack, f)).size;
  }
  return total;
}

/** Ids of the processes working in `repo` (receive-pack and index-pack run in its git directory). */
function gitProcessesIn(repo: string): number[] {
  const pids: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readlinkSync(`/proc/${pid}/cwd`).startsWith(repo)) pids.push(Number(pid));
    } catch {
      // gone, or not ours
    }
  }
  return pids;
}

/** Waits until `check` holds, or fails naming `what`. */
async function until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function pkt(s: string): Buffer {
  return Buffer.from((Buffer.byteLength(s) + 4).toString(16).padStart(4, '0') + s);
}

/** The ref updates of a push: one command per ref (new branches), with the capabilities git sends. */
function commands(refs: string[], commit = 'a'.repeat(40)): Buffer {
  return Buffer.concat([
    ...refs.map((r, i) => pkt(`${ZERO} ${commit} ${r}${i === 0 ? '\0report-status side-band-64k agent=test' : ''}\n`)),
    Buffer.from('0000'),
  ]);
}

/**
 * The first `bytes` of a pack holding one blob of `size` zero bytes (stored, not compressed): receive-pack reads it
 * and waits for the rest.
 */
function packStart(size: number, bytes: number): Buffer {
  const header = Buffer.alloc(12);
  header.write('PACK', 0, 'latin1');
  header.writeUInt32BE(2, 4);
  header.writeUInt32BE(1, 8);
  const object = [(3 << 4) | (size & 0x0f) | 0x80]; // type blob, then the size seven bits a byte
  for (let rest = size >>> 4; rest > 0; rest >>>= 7) object.push((rest & 0x7f) | (rest > 0x7f ? 0x80 : 0));
  const data = deflateSync(Buffer.alloc(size), { level: 0 });
  return Buffer.concat([header, Buffer.from(object), data]).subarray(0, bytes);
}

/** The sandbox's side of one hand-made request: write its body in parts, then see how it ended. */
interface RawRequest {
  req: http.ClientRequest;
  /** The answer: status and body, or the error that ended the request without one. */
  answer: Promise<{ status: number; body: string } | { error: string }>;
  /** Writes `bytes` in 64 KiB parts as the proxy takes them; stops early when the connection has closed. */
  send(bytes: Buffer): Promise<void>;
}

describe('pushes stream through the git credential proxy', () => {
  const token = randomBytes(16).toString('hex');
  const vault = new Vault(join(mkdtempSync(join(tmpdir(), 'tandem-vault-')), 'vault.json'), {});
  vault.set('repo-token', token);
  const gateway = new Gateway({ root: mkdtempSync(join(tmpdir(), 'tandem-gw-')) }, vault);
  const work = mkdtempSync(join(tmpdir(), 'tandem-push-'));
  const local = join(work, 'local');
  let server: GitServer;
  let ref: SandboxRef;
  let forwarder: net.Server;
  let socket = '';
  let base = '';
  let authorization = '';
  /** Bytes git has sent to the proxy (what the in-container forwarder relays). */
  let sent = 0;
  let onSent = (): void => undefined;
  /** A repository host that can drop a request mid-body: what it saw of each request. */
  let flaky: http.Server;
  const flakySeen: Array<{ path: string; bytes: number; aborted: boolean }> = [];
  let flakyDropAfter = Infinity;

  beforeAll(async () => {
    server = await startGitServer(token);
    const remote = server.createRepo('remote');
    // index-pack (not unpack-objects) takes the pack, writing it to disk as it comes.
    server.git('remote', 'config', 'receive.unpackLimit', '1');
    git('init', '--quiet', '--initial-branch=main', local);
    git('-C', local, 'commit', '--quiet', '--allow-empty', '-m', 'first commit');
    git('-C', local, 'config', 'receive.unpackLimit', '1');
    flaky = http.createServer((req, res) => {
      const seen = { path: req.url ?? '', bytes: 0, aborted: false };
      flakySeen.push(seen);
      req.on('data', (c: Buffer) => {
        seen.bytes += c.length;
        if (seen.bytes > flakyDropAfter) req.socket.destroy();
      });
      req.on('close', () => (seen.aborted = !req.complete));
      req.on('end', () => res.end());
    });
    await new Promise<void>((r) => flaky.listen(0, '127.0.0.1', r));
    ref = {
      session_id: 'sesn_push_streaming',
      config: {},
      resources: [
        { type: 'git_repository', url: remote, credential: 'repo-token', push_branches: ['agent/*'] },
        { type: 'git_repository', url: pathToFileURL(local).href, push_branches: ['agent/*'] },
        {
          type: 'git_repository',
          url: `http://127.0.0.1:${(flaky.address() as net.AddressInfo).port}/flaky.git`,
          credential: 'repo-token',
          push_branches: ['agent/*'],
        },
      ],
    };
    const mount = await gateway.ensure(ref);
    socket = join(mount.hostDir, 'git.sock');
    // What the in-container forwarder does: a loopback TCP port relayed to the gateway's socket.
    forwarder = net.createServer((c) => {
      c.on('data', (d: Buffer) => {
        sent += d.length;
        onSent();
      });
      c.pipe(net.connect(socket)).pipe(c);
    });
    await new Promise<void>((r) => forwarder.listen(0, '127.0.0.1', r));
    const phantom = await gateway.token(ref);
    base = `http://tandem:${phantom}@127.0.0.1:${(forwarder.address() as net.AddressInfo).port}`;
    authorization = `Basic ${Buffer.from(`tandem:${phantom}`).toString('base64')}`;
  });
  afterAll(async () => {
    forwarder?.close();
    gateway.close(ref.session_id);
    await server?.close();
    await new Promise((r) => flaky?.close(r));
    rmSync(work, { recursive: true, force: true });
  });

  /** Opens a POST to the proxy as the sandbox could send it (chunked when written in parts). */
  function open(path: string, headers: Record<string, string> = {}): RawRequest {
    const req = http.request({
      socketPath: socket,
      path,
      method: 'POST',
      agent: false,
      headers: { authorization, 'content-type': 'application/x-git-receive-pack-request', ...headers },
    });
    const answer = new Promise<{ status: number; body: string } | { error: string }>((resolve) => {
      req.on('response', (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString('latin1')));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', (err) => resolve({ error: err.message }));
      });
      req.on('error', (err) => resolve({ error: err.message }));
    });
    const closed = new Promise((r) => req.once('close', r));
    const send = async (bytes: Buffer) => {
      for (let at = 0; at < bytes.length && !req.destroyed; at += 64 * 1024) {
        if (!req.write(bytes.subarray(at, at + 64 * 1024))) await Promise.race([new Promise((r) => req.once('drain', r)), closed]);
      }
    };
    return { req, answer, send };
  }

  describe('a push larger than the proxy may hold', () => {
    const big = join(work, 'big');
    let head = '';

    beforeAll(() => {
      // One commit that adds an incompressible file, stored (not deflated) so git spends its time sending it.
      git('init', '--quiet', '--initial-branch=main', big);
      const fd = openSync(join(big, 'random.bin'), 'w');
      for (let n = 0; n < PUSH_BYTES; n += 8 * MiB) writeSync(fd, randomBytes(8 * MiB));
      closeSync(fd);
      git('-C', big, '-c', 'core.compression=0', 'add', 'random.bin');
      git('-C', big, 'commit', '--quiet', '-m', 'a big commit');
      head = git('-C', big, 'rev-parse', 'HEAD').trim();
    }, 120_000);

    /**
     * Pushes the big commit to `dest` through the proxy while watching how many bytes git has sent and how many
     * the repository has received (`received`): the most in between at any moment, and the process's memory growth.
     */
    async function push(index: number, name: string, dest: string, received: () => number) {
      const sent0 = sent;
      const received0 = received();
      gc();
      await sleep(100); // buffers are released after the collection
      const memory0 = process.memoryUsage();
      let inFlight = 0;
      let arrayBuffers = 0;
      let rss = 0;
      onSent = () => {
        inFlight = Math.max(inFlight, sent - sent0 - (received() - received0));
        const m = process.memoryUsage();
        arrayBuffers = Math.max(arrayBuffers, m.arrayBuffers - memory0.arrayBuffers);
        rss = Math.max(rss, m.rss - memory0.rss);
      };
      const url = `${base}/${index}/${name}.git`;
      const r = await hostGit('-C', big, '-c', 'pack.compression=0', 'push', url, `+HEAD:${dest}`);
      onSent = () => undefined;
      return { ...r, sent: sent - sent0, received: received() - received0, inFlight, arrayBuffers, rss };
    }

    const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
    const report = (where: string, p: Awaited<ReturnType<typeof push>>) =>
      `${where} push of ${mib(p.sent)}: at most ${mib(p.inFlight)} between git and the repository; ` +
      `peak growth of arrayBuffers ${mib(p.arrayBuffers)}, rss ${mib(p.rss)}`;

    it('streams to a remote repository, and another branch is refused from the ref updates alone', async () => {
      const receivedUpstream = () => server.requests.reduce((sum, r) => sum + r.bytes, 0);
      const refused = await push(0, 'remote', 'main', receivedUpstream);
      expect(refused.ok).toBe(false);
      expect(refused.out).toContain('[remote rejected] HEAD -> main (tandem: this session may push only to agent/*)');
      // The refused pack never left the proxy (git's probe before a large push is 4 bytes).
      expect(server.requests.filter((r) => r.method === 'POST').every((r) => r.bytes <= 4)).toBe(true);

      const allowed = await push(0, 'remote', 'agent/big', receivedUpstream);
      console.log(report('remote', allowed));
      expect(allowed.ok, allowed.out).toBe(true);
      expect(server.git('remote', 'rev-parse', 'agent/big').trim()).toBe(head);
      expect(allowed.sent).toBeGreaterThan(PUSH_BYTES);
      expect(allowed.received).toBeGreaterThan(PUSH_BYTES);
      // git sent the pack chunked, and so did the proxy.
      expect(server.requests.filter((r) => r.bytes > PUSH_BYTES).map((r) => r.framing)).toEqual(['chunked']);
      expect(allowed.inFlight).toBeLessThan(MAX_IN_FLIGHT);
    });

    it('streams to a local repository, and another branch is refused', async () => {
      const objects = join(local, '.git', 'objects');
      let received = 0;
      // Monotonic: the pack leaves the quarantine directory once it is complete.
      const receivedLocal = () => (received = Math.max(received, incomingPackBytes(objects)));
      const refused = await push(1, 'local', 'main', receivedLocal);
      expect(refused.ok).toBe(false);
      expect(refused.out).toContain('[remote rejected] HEAD -> main (tandem: this session may push only to agent/*)');
      expect(refused.received).toBe(0);
      expect(git('-C', local, 'log', '--format=%s', 'main')).toBe('first commit\n');

      const allowed = await push(1, 'local', 'agent/big', receivedLocal);
      console.log(report('local', allowed));
      expect(allowed.ok, allowed.out).toBe(true);
      expect(git('-C', local, 'rev-parse', 'agent/big').trim()).toBe(head);
      expect(allowed.sent).toBeGreaterThan(PUSH_BYTES);
      expect(allowed.inFlight).toBeLessThan(MAX_IN_FLIGHT);
    });
  });

  describe('the ref updates of a streamed push', () => {
    it('refuses another branch, plain or gzip, before the rest of the body has come', async () => {
      const pack = randomBytes(8 * MiB);
      const body = Buffer.concat([commands(['refs/heads/agent/ok', 'refs/heads/main']), Buffer.from('PACK'), pack]);
      const posts = () => server.requests.filter((r) => r.method === 'POST').length;
      const before = posts();
      for (const [encoding, bytes] of [
        ['identity', body],
        ['gzip', gzipSync(body)],
      ] as const) {
        const r = open('/0/remote.git/git-receive-pack', encoding === 'gzip' ? { 'content-encoding': 'gzip' } : {});
        await r.send(bytes.subarray(0, MiB));
        // The answer comes while the sandbox still holds most of the body back.
        const answer = await Promise.race([r.answer, sleep(15_000).then(() => ({ error: 'no answer before the body ended' }))]);
        expect(answer, encoding).toMatchObject({ status: 200 });
        const text = (answer as { body: string }).body;
        expect(text, encoding).toContain('ng refs/heads/main tandem: this session may push only to agent/*');
        expect(text, encoding).toContain('ng refs/heads/agent/ok tandem: this session may push only to agent/*');
        r.req.destroy();
      }
      expect(posts()).toBe(before);
    });

    it('passes an allowed gzip push on unchanged, chunked or with its length, to a remote and a local repository', async () => {
      const scratch = join(work, 'scratch');
      git('init', '--quiet', '--initial-branch=main', scratch);
      git('-C', scratch, 'commit', '--quiet', '--allow-empty', '-m', 'pushed by hand');
      const commit = git('-C', scratch, 'rev-parse', 'HEAD').trim();
      const pack = execFileSync('git', ['-C', scratch, 'pack-objects', '--stdout', '--revs'], { input: 'HEAD\n', env: GIT_ENV });
      const remote = (b: string) => server.git('remote', 'rev-parse', b);
      const local_ = (b: string) => git('-C', local, 'rev-parse', b);
      for (const [path, target] of [
        ['/0/remote.git/git-receive-pack', remote],
        ['/1/local.git/git-receive-pack', local_],
      ] as const) {
        for (const length of [false, true]) {
          const branch = `agent/gzip-${length ? 'length' : 'chunked'}`;
          const body = gzipSync(Buffer.concat([commands([`refs/heads/${branch}`], commit), pack]));
          const framing: Record<string, string> = length ? { 'content-length': String(body.length) } : { 'transfer-encoding': 'chunked' };
          const r = open(path, { 'content-encoding': 'gzip', ...framing });
          r.req.end(body);
          const answer = await r.answer;
          expect(answer, `${path} ${branch}`).toMatchObject({ status: 200 });
          expect((answer as { body: string }).body, `${path} ${branch}`).toContain(`ok refs/heads/${branch}`);
          expect(target(branch).trim(), `${path} ${branch}`).toBe(commit);
          if (target === remote) expect(server.requests.at(-1)?.framing).toBe(length ? `length ${body.length}` : 'chunked');
        }
      }
    });

    it('answers 400 for a malformed body, 413 for ref updates past the cap and 415 for another encoding', async () => {
      const line = pkt(`${ZERO} ${'a'.repeat(40)} refs/heads/agent/${'x'.repeat(60_000)}\n`);
      const tooMany = Buffer.concat(Array.from({ length: Math.ceil((2 * MAX_REF_UPDATE_BYTES) / line.length) }, () => line));
      // A gzip header whose file name never ends: no inflated byte comes out of it.
      const endlessName = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 8, 0, 0, 0, 0, 0, 3]), Buffer.alloc(3 * MAX_REF_UPDATE_BYTES, 'a')]);
      const cases: Array<[string, Buffer, Record<string, string>, number, string]> = [
        ['not a pkt-line', Buffer.from('zzzz0000'), {}, 400, 'malformed pkt-line'],
        ['no flush packet', pkt(`${ZERO} ${'a'.repeat(40)} refs/heads/agent/x\n`), {}, 400, 'no flush packet after the ref updates'],
        ['a cut pkt-line', Buffer.from('00ff0000'), {}, 400, 'truncated pkt-line'],
        ['too many ref updates', tooMany, {}, 413, `at most ${MAX_REF_UPDATE_BYTES} bytes`],
        ['a gzip bomb of ref updates', gzipSync(Buffer.concat(Array(64).fill(tooMany))), { 'content-encoding': 'gzip' }, 413, `at most ${MAX_REF_UPDATE_BYTES} bytes`],
        ['an endless gzip header', endlessName, { 'content-encoding': 'gzip' }, 413, 'must come in its first'],
        ['not gzip', Buffer.from('plain text, not gzip'), { 'content-encoding': 'gzip' }, 400, 'the gzip body of the push is malformed'],
        ['another encoding', Buffer.from('0000'), { 'content-encoding': 'br' }, 415, 'content-encoding br is not accepted'],
      ];
      for (const [what, body, headers, status, message] of cases) {
        const r = open('/0/remote.git/git-receive-pack', headers);
        await r.send(body);
        r.req.end();
        const answer = await r.answer;
        expect(answer, what).toMatchObject({ status });
        expect((answer as { body: string }).body, what).toContain(message);
      }
    });

    it('tears down the far side when either side of a streamed request goes away, and the worker lives on', async () => {
      // The sandbox goes away while the proxy reads its ref updates, plain or gzip.
      for (const headers of [{}, { 'content-encoding': 'gzip' }] as Array<Record<string, string>>) {
        const r = open('/2/flaky.git/git-receive-pack', headers);
        const start = commands(['refs/heads/agent/x']);
        await r.send(headers['content-encoding'] ? gzipSync(start).subarray(0, 20) : start.subarray(0, 20));
        await sleep(50);
        r.req.destroy();
      }
      // The sandbox goes away mid-push (and mid-fetch): the repository's request is aborted.
      for (const [path, head] of [
        ['/2/flaky.git/git-receive-pack', commands(['refs/heads/agent/x'])],
        ['/2/flaky.git/git-upload-pack', Buffer.alloc(0)],
      ] as const) {
        const r = open(path);
        await r.send(Buffer.concat([head, randomBytes(2 * MiB)]));
        await until(() => (flakySeen.at(-1)?.bytes ?? 0) > MiB, `the repository receiving ${path}`);
        r.req.destroy();
        await until(() => flakySeen.at(-1)!.aborted, `the repository's request for ${path} to be aborted`);
      }

      // The repository goes away mid-push: so does the sandbox's request, with a 502 when no answer had started.
      flakyDropAfter = MiB;
      const r = open('/2/flaky.git/git-receive-pack');
      await r.send(Buffer.concat([commands(['refs/heads/agent/x']), randomBytes(2 * MiB)]));
      const answer = await r.answer;
      expect(answer).toMatchObject({ status: 502 });
      expect((answer as { body: string }).body).toContain('the repository could not be reached');
      flakyDropAfter = Infinity;

      // The sandbox goes away mid-push to a local repository: git http-backend is stopped, and receive-pack with it.
      const l = open('/1/local.git/git-receive-pack');
      await l.send(Buffer.concat([commands(['refs/heads/agent/cut']), packStart(64 * MiB, 4 * MiB)]));
      await until(() => gitProcessesIn(local).length > 0, 'receive-pack to start');
      l.req.destroy();
      await until(() => gitProcessesIn(local).length === 0, 'receive-pack to stop');
      expect(git('-C', local, 'branch', '--list', 'agent/cut')).toBe('');
      expect(flakySeen.filter((f) => f.path.endsWith('receive-pack'))).toHaveLength(2); // none for the cut ref updates

      // The proxy (in this process) still answers.
      const lsRemote = await hostGit('ls-remote', `${base}/0/remote.git`);
      expect(lsRemote.ok, lsRemote.out).toBe(true);
      expect(lsRemote.out).toContain('refs/heads/main');
    });
  });
});
