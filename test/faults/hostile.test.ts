/**
 * The sandbox as an attacker: a scripted session tries, from inside its sandbox, each hole the hardening issue
 * found, and ends with the session and the worker healthy. Every case ends with the suite's intact-session check.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import * as net from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readHistory } from '../../src/log/read.js';
import { GIT_ENV } from '../fakes/git-server.js';
import { reply, toolUse } from '../fakes/messages-server.js';
import { sandboxName, startWorker, testAgent, toolResults, useHarness } from '../helpers/env.js';
import { expectSessionIntact, idle } from './check.js';

const h = useHarness('fault-hostile');
const docker = new Docker();
const fixture = (name: string) => readFileSync(new URL(`../fixtures/hostile/${name}`, import.meta.url), 'utf8');
const THIEF = fixture('line-thief.py');

async function end(id: string): Promise<void> {
  await h.tandem.temporal.workflow.getHandle(id).cancel();
  await h.tandem.temporal.workflow.getHandle(id).result().catch(() => undefined);
}

/** The content of the result of `toolUseId` in the latest model request. */
function result(toolUseId: string) {
  return toolResults(h.model.requests.at(-1)!).get(toolUseId)!;
}

/** Restarts the in-process worker: its process's channel sockets go away and a new one appears on the next call. */
async function restartWorker(): Promise<void> {
  await h.worker.shutdown();
  await h.worker.done;
  h.worker = await startWorker(h.queue, h.model.url);
}

describe('the toolbox line against a thief inside the sandbox', () => {
  // Each mode: the thief takes the line across a worker restart and answers the next call wrongly. The host cuts it
  // (bounded before it buffers anything), replaces the sandbox, and runs the call again for real.
  for (const [mode, why] of [
    ['huge', /broke the channel protocol: a frame of 62914560 bytes/],
    ['notjson', /broke the channel protocol: a frame that is not JSON/],
    ['shape', /broke the channel protocol: a result whose content is not a string/],
    ['silent', /stopped answering/],
  ] as const) {
    it(`${mode}: the sandbox is replaced and the call runs again`, async () => {
      h.model.push(
        reply(toolUse('write', { file_path: '/tmp/thief.py', content: THIEF }, `tu_w_${mode}`)),
        reply(toolUse('bash', { command: `nohup python3 /tmp/thief.py ${mode} > /tmp/thief.log 2>&1 &\nsleep 1; cat /tmp/thief.log` }, `tu_arm_${mode}`)),
        reply('armed'),
      );
      const id = await h.tandem.start({ agent: testAgent(), message: `steal the line (${mode})` });
      await idle(h.tandem, id, 3);
      expect(result(`tu_arm_${mode}`).content).toMatch(/^known \['ch-/);
      const first = (await h.tandem.getSession(id)).sandboxes[0]!.container_id;

      await restartWorker();
      h.model.push(reply(toolUse('bash', { command: `echo after-${mode}` }, `tu_after_${mode}`)), reply('done'));
      await h.tandem.sendMessage(id, 'go on');
      await idle(h.tandem, id, 5, 180_000);
      expect(result(`tu_after_${mode}`)).toMatchObject({ content: `after-${mode}`, is_error: false });
      const events = await expectSessionIntact(h.tandem, h.model, id, [`steal the line (${mode})`, 'go on']);
      const lost = events.filter((e) => e.type === 'sandbox.lost');
      expect(lost.map((e) => JSON.stringify(e.error)).join('\n')).toMatch(why);
      expect((await h.tandem.getSession(id)).sandboxes[0]!.container_id).not.toBe(first);
      // Nothing of what the thief sent reached history.
      const history = await readHistory(h.tandem.temporal, id);
      expect(Math.max(...history.map((e) => JSON.stringify(e).length))).toBeLessThan(256 * 1024);
      await end(id);
    }, 300_000);
  }
});

describe('limits the sandbox cannot lift', () => {
  it('cannot replace the host sockets, and has no toolbox socket of its own to replace', async () => {
    h.model.push(
      reply(
        toolUse(
          'bash',
          {
            command:
              'ls /run/tandem-host; rm -f /run/tandem-host/ch-*.sock; touch /run/tandem-host/ch-x.sock; ' +
              'ls /run/tandem/toolbox.sock; echo done',
          },
          'tu_sock',
        ),
      ),
      reply(toolUse('bash', { command: 'echo still-answering' }, 'tu_next')),
      reply('ok'),
    );
    const id = await h.tandem.start({ agent: testAgent(), message: 'replace the socket' });
    await idle(h.tandem, id, 3);
    const out = toolResults(h.model.requests.at(-1)!);
    expect(out.get('tu_sock')!.content).toMatch(/Read-only file system/);
    expect(out.get('tu_sock')!.content).toMatch(/toolbox\.sock'?: No such file/);
    expect(out.get('tu_next')!.content).toBe('still-answering');
    await expectSessionIntact(h.tandem, h.model, id, ['replace the socket']);
    await end(id);
  });

  it('a flood on the container output stays within the log limit', async () => {
    h.model.push(reply(toolUse('bash', { command: 'timeout 8 yes > /proc/1/fd/1; echo flooded' }, 'tu_flood')), reply('ok'));
    const id = await h.tandem.start({ agent: testAgent(), message: 'flood the log' });
    await idle(h.tandem, id, 2);
    expect(result('tu_flood').content).toContain('flooded');
    const { LogPath } = await docker.getContainer(sandboxName(id)).inspect();
    const size = (p: string) => {
      try {
        return statSync(p).size;
      } catch {
        return 0;
      }
    };
    // json-file, max-size 1m, max-file 2: the current file and one rotated one.
    expect(size(LogPath) + size(`${LogPath}.1`)).toBeLessThan(2.5 * 1024 * 1024);
    await expectSessionIntact(h.tandem, h.model, id, ['flood the log']);
    await end(id);
  });

  it('a workspace fills up at its disk_mb and says so; freeing space lets writes go on', async (ctx) => {
    if (h.worker.hands.slots.mode !== 'quota') ctx.skip(); // a host without root or loop devices has no quota
    h.model.push(
      reply(
        toolUse(
          'bash',
          { command: 'dd if=/dev/zero of=/workspace/fill bs=1M count=100 2>&1 | head -1; df -m /workspace | tail -1' },
          'tu_fill',
        ),
      ),
      reply(toolUse('bash', { command: 'rm /workspace/fill && echo kept > /workspace/after && cat /workspace/after' }, 'tu_free')),
      reply('ok'),
    );
    const id = await h.tandem.start({ agent: testAgent({ sandbox: { memory_mb: 256, disk_mb: 48 } }), message: 'fill the disk' });
    await idle(h.tandem, id, 3);
    const out = toolResults(h.model.requests.at(-1)!);
    expect(out.get('tu_fill')!.content).toMatch(/No space left on device/);
    const size = Number(/\s(\d+)\s+\d+\s+\d+\s+\d+%/.exec(out.get('tu_fill')!.content)?.[1]);
    expect(size).toBeGreaterThan(30);
    expect(size).toBeLessThanOrEqual(48);
    expect(out.get('tu_free')!.content).toBe('kept');
    await expectSessionIntact(h.tandem, h.model, id, ['fill the disk']);
    await end(id);
  });
});

describe('every row of the hardening table, from inside one sandbox', () => {
  // An upstream that answers with a status no HTTP client may send, reached as an allowed host.
  const odd = net.createServer((c) => c.once('data', () => c.end('HTTP/1.1 099 Odd\r\ncontent-length: 0\r\n\r\n')));
  beforeAll(() => new Promise<void>((r) => odd.listen(0, '127.0.0.1', () => r())));
  afterAll(() => new Promise<void>((r) => odd.close(() => r())));
  const rows = useHarness('fault-rows', {
    worker: () => ({ env: { TANDEM_EGRESS_HOST_MAP: `odd.test=127.0.0.1` } }),
  });
  const git = (dir: string, ...args: string[]) => execFileSync('git', ['-C', dir, ...args], { env: GIT_ENV }).toString().trim();

  it('each attempt is refused or bounded, and the session and the worker go on', async () => {
    const port = (odd.address() as net.AddressInfo).port;
    // A bare repository the session may push to only on agent/*.
    const host = mkdtempSync(join(tmpdir(), 'tandem-rows-'));
    const repo = join(host, 'app');
    mkdirSync(repo);
    git(repo, 'init', '--quiet', '--bare', '--initial-branch=main');
    const seed = join(host, 'seed');
    git(host, 'init', '--quiet', '--initial-branch=main', seed);
    git(seed, 'commit', '--quiet', '--allow-empty', '-m', 'first commit');
    git(seed, 'push', '--quiet', repo, 'main');
    const before = git(repo, 'rev-parse', 'main');
    // Allowed names that lead to internal addresses: NAT64 and 6to4 forms of loopback, the benchmarking range, and
    // this host's own (non-loopback) address.
    const own = Object.values(networkInterfaces()).flat().find((a) => a && !a.internal && a.family === 'IPv4')?.address;
    const internal = ['64:ff9b::7f00:1', '2002:7f00:1::1', '198.18.0.1', ...(own ? [own] : [])];
    const agent = testAgent({
      sandbox: { memory_mb: 512, network: { policy: 'limited', allowed_hosts: [`odd.test:${port}`, ...internal] } },
    });
    const commit = `git -c user.name=agent -c user.email=agent@example.com commit -q --allow-empty -m 'from the sandbox'`;
    const write = (name: string) => toolUse('write', { file_path: `/tmp/${name}`, content: fixture(name) }, `tu_w_${name}`);
    const bash = (id: string, command: string) => toolUse('bash', { command, timeout_ms: 120_000 }, id);
    rows.model.push(
      reply(write('hidden-push.py')),
      reply(write('floods.py')),
      reply(
        bash(
          'tu_push',
          `cd /workspace/app && ${commit} && base=$(git rev-parse HEAD~1) && new=$(git rev-parse HEAD) && ` +
            `printf '%s\\n^%s\\n' "$new" "$base" | git pack-objects -q --stdout --revs > /tmp/pack && ` +
            'python3 /tmp/hidden-push.py "$(git remote get-url origin)" "$base" "$new"',
        ),
      ),
      reply(bash('tu_cgi', 'python3 /tmp/floods.py cgi "$(git -C /workspace/app remote get-url origin)"')),
      reply(bash('tu_denials', 'python3 /tmp/floods.py denials')),
      reply(bash('tu_conns', 'python3 /tmp/floods.py connections')),
      reply(bash('tu_odd', `curl -sS -m 20 -o /dev/null -w '%{http_code}' http://odd.test:${port}/; echo`)),
      reply(
        bash(
          'tu_internal',
          internal.map((a) => `curl -sS -m 20 -o /dev/null -w '%{http_code}' -p -x http://127.0.0.1:47012 https://${a.includes(':') ? `[${a}]` : a}:443/ 2>&1; echo ' ${a}'`).join('; '),
        ),
      ),
      reply(bash('tu_alive', 'echo alive')),
      reply('done'),
    );
    const id = await rows.tandem.start({ agent, resources: [{ type: 'git_repository', url: pathToFileURL(repo).href, push_branches: ['agent/*'] }], message: 'try everything' });
    await idle(rows.tandem, id, 10, 300_000);
    const out = toolResults(rows.model.requests.at(-1)!);
    const text = (k: string) => out.get(k)!.content;
    // A push hidden in a push certificate, commands split over pkt-lines: refused; main did not move.
    expect(text('tu_push')).toContain('signed pushes (git push --signed) are not supported through the tandem proxy');
    expect(text('tu_push')).not.toContain('ok refs/heads/main');
    expect(git(repo, 'rev-parse', 'main')).toBe(before);
    // git http-backend processes on the host: at most 4 for the session, the rest refused at once.
    expect(text('tu_cgi')).toMatch(/cgi: 12 held, (8|9|10|11|12) refused with 503/);
    // A flood of refusals with 15 KB names: each refused, and the record of them bounded.
    expect(text('tu_denials')).toBe("denials: [('403', 1000)]");
    const events = await rows.tandem.getEvents(id);
    const denied = events.filter((e) => e.type === 'sandbox.egress_denied' && e.tool_use_id === 'tu_denials');
    expect(denied).toHaveLength(100);
    expect(denied.at(-1)?.dropped).toBe(900);
    expect(Math.max(...denied.map((e) => String(e.host).length))).toBeLessThanOrEqual(253);
    // Connections held open: the proxy keeps its cap and closes the rest.
    expect(Number(/(\d+) closed by the proxy/.exec(text('tu_conns'))?.[1])).toBeGreaterThanOrEqual(600 - 256);
    // An upstream answering HTTP/1.1 099: a 502 for the sandbox; the worker lives (it answered every call since).
    expect(text('tu_odd')).toBe('502');
    // Allowed names that lead to internal addresses: refused.
    for (const a of internal) expect(text('tu_internal')).toContain(`CONNECT tunnel failed, response 403\n000 ${a}`);
    expect(text('tu_alive')).toBe('alive');
    const history = await readHistory(rows.tandem.temporal, id);
    expect(Math.max(...history.map((e) => JSON.stringify(e).length))).toBeLessThan(256 * 1024);
    await expectSessionIntact(rows.tandem, rows.model, id, ['try everything']);
    await rows.tandem.temporal.workflow.getHandle(id).cancel();
  }, 400_000);
});
