/**
 * Local repositories: a `git_repository` whose URL is a `file://` URL (or, in an agent file, a path relative to the
 * file) is a git repository on the worker host, served to the sandbox by the gateway with `git http-backend`. The
 * sandbox keeps no network and no host mount; it reaches that repository and nothing else on the host; pushes
 * land only on the branches `push_branches` names, and a repository without them is read-only.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { ApplicationFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gateway } from '../../src/activities/sandbox/gateway.js';
import { loadAgentFile } from '../../src/config/agent.js';
import type { RepositoryResource, SandboxRef } from '../../src/shared/types.js';
import { GIT_ENV } from '../fakes/git-server.js';
import { reply, toolUse } from '../fakes/messages-server.js';
import { sessionEvents, startSession, toolResults, useHarness, waitIdle, sandboxName } from '../helpers/env.js';

const exec = promisify(execFile);
const docker = new Docker();
const h = useHarness('localrepo', {
  assertDone: true,
  worker: () => ({ env: { TANDEM_HANDS_DIR: mkdtempSync(join(tmpdir(), 'tandem-gw-')) } }),
});

/** A directory with git repositories on this host, each with one commit on `main`. */
const hostDir = mkdtempSync(join(tmpdir(), 'tandem-local-'));
/** Content of a repository next to the named ones that no session names: it must never reach a sandbox. */
const marker = `unnamed-${randomBytes(8).toString('hex')}`;

function makeRepo(name: string, files: Record<string, string>): string {
  const path = join(hostDir, name);
  mkdirSync(path);
  execFileSync('git', ['init', '--quiet', '--initial-branch=main', path], { env: GIT_ENV });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(path, f), text);
  execFileSync('git', ['-C', path, 'add', '--all'], { env: GIT_ENV });
  execFileSync('git', ['-C', path, 'commit', '--quiet', '-m', `first commit of ${name}`], { env: GIT_ENV });
  return path;
}

const git = (path: string, ...args: string[]) => execFileSync('git', ['-C', path, ...args], { env: GIT_ENV }).toString();

let pushable: string;
let readonly: string;
let unnamed: string;

beforeAll(() => {
  pushable = makeRepo('app', { 'README.md': '# app\n' });
  readonly = makeRepo('docs', { 'README.md': '# docs\n' });
  unnamed = makeRepo('private', { 'SECRET.md': `${marker}\n` });
  mkdirSync(join(hostDir, 'plain'));
});

describe('the gateway serves local repositories', () => {
  const gatewayRoot = mkdtempSync(join(tmpdir(), 'tandem-gw-'));
  const gateway = new Gateway({ root: gatewayRoot }, undefined);
  const canary = `tdmcanary${randomBytes(8).toString('hex')}`;
  let ref: SandboxRef;
  let forwarder: net.Server;
  let socket = '';
  let base = '';

  beforeAll(async () => {
    // A worker secret in the environment must not reach git or the repository's hooks.
    process.env.TANDEM_SECRET_LOCAL_CANARY = canary;
    const hook = join(pushable, '.git', 'hooks', 'pre-receive');
    writeFileSync(hook, `#!/bin/sh\nenv > ${join(hostDir, 'hook-env.txt')}\n`);
    chmodSync(hook, 0o755);
    ref = {
      session_id: 'sesn_local_gateway',
      config: {},
      resources: [
        { type: 'git_repository', url: pathToFileURL(pushable).href, push_branches: ['agent/*'] },
        { type: 'git_repository', url: pathToFileURL(readonly).href },
      ],
    };
    const mount = await gateway.ensure(ref);
    socket = join(mount.hostDir, 'git.sock');
    // What the in-container forwarder does: a loopback TCP port relayed to the gateway's socket.
    forwarder = net.createServer((c) => c.pipe(net.connect(socket)).pipe(c));
    await new Promise<void>((r) => forwarder.listen(0, '127.0.0.1', r));
    base = `http://tandem:${await gateway.token(ref)}@127.0.0.1:${(forwarder.address() as net.AddressInfo).port}`;
  });
  afterAll(() => {
    delete process.env.TANDEM_SECRET_LOCAL_CANARY;
    forwarder?.close();
    gateway.close(ref.session_id);
  });

  /** Runs git on this host (asynchronously: the gateway answers in this process). */
  async function hostGit(...args: string[]): Promise<{ ok: boolean; out: string }> {
    try {
      const r = await exec('git', args, { env: GIT_ENV });
      return { ok: true, out: r.stdout + r.stderr };
    } catch (err) {
      const e = err as { stdout: string; stderr: string };
      return { ok: false, out: e.stdout + e.stderr };
    }
  }

  /** One raw request on the gateway's socket, as the sandbox could send it. */
  function raw(path: string, method = 'GET'): Promise<{ status: number; body: string }> {
    const token = base.slice('http://tandem:'.length, base.indexOf('@'));
    return new Promise((resolve, reject) => {
      const req = http.request(
        { socketPath: socket, path, method, headers: { authorization: `Basic ${Buffer.from(`tandem:${token}`).toString('base64')}` } },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString('latin1')));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('clones the named repository, pushes only to push_branches, and keeps a repository without them read-only', async () => {
    const work = mkdtempSync(join(tmpdir(), 'tandem-clone-'));
    const clone = await hostGit('clone', `${base}/0/app.git`, join(work, 'app'));
    expect(clone.ok, clone.out).toBe(true);
    expect(git(join(work, 'app'), 'log', '--format=%s')).toBe('first commit of app\n');
    git(join(work, 'app'), 'commit', '--quiet', '--allow-empty', '-m', 'from the clone');
    const allowed = await hostGit('-C', join(work, 'app'), 'push', 'origin', 'HEAD:agent/fix');
    expect(allowed.ok, allowed.out).toBe(true);
    expect(git(pushable, 'log', '--format=%s', 'agent/fix')).toBe('from the clone\nfirst commit of app\n');
    const refused = await hostGit('-C', join(work, 'app'), 'push', 'origin', 'HEAD:main', 'HEAD:refs/tags/v1');
    expect(refused.ok).toBe(false);
    expect(refused.out).toContain('[remote rejected] HEAD -> main (tandem: this session may push only to agent/*)');
    expect(git(pushable, 'log', '--format=%s', 'main')).toBe('first commit of app\n');
    expect(git(pushable, 'tag', '--list')).toBe('');
    // The repository's own hook ran for the allowed push, without the worker's environment.
    const hookEnv = readFileSync(join(hostDir, 'hook-env.txt'), 'utf8');
    expect(hookEnv).toContain('GIT_DIR=');
    expect(hookEnv).not.toContain(canary);
    expect(hookEnv).not.toContain('TANDEM_SECRET_');

    const docs = await hostGit('clone', `${base}/1/docs.git`, join(work, 'docs'));
    expect(docs.ok, docs.out).toBe(true);
    git(join(work, 'docs'), 'commit', '--quiet', '--allow-empty', '-m', 'from the clone');
    const readOnly = await hostGit('-C', join(work, 'docs'), 'push', 'origin', 'HEAD:main', 'HEAD:agent/fix');
    expect(readOnly.ok).toBe(false);
    expect(readOnly.out).toContain('docs is a local repository this session may only read (its resource names no push_branches)');
    expect(git(readonly, 'branch', '--list', '--format=%(refname:short)')).toBe('main\n');
  });

  it('reaches nothing on the host but the named repositories, whatever the request names', async () => {
    const secretHead = git(unnamed, 'rev-parse', 'HEAD').trim();
    const service = 'info/refs?service=git-upload-pack';
    const probes = [
      `/2/private.git/${service}`,
      `/0/private.git/${service}`,
      `/0/..%2Fprivate.git/${service}`,
      `/0/%2E%2E%2Fprivate.git/${service}`,
      `/0/app.git/../../private.git/${service}`,
      `/0/app.git/%2E%2E/%2E%2E/private.git/${service}`,
      `/0/app.git/HEAD`,
      `/0/app.git/objects/info/packs`,
      `/0/app.git/config`,
      `/private.git/${service}`,
      `/0/app.git/info/refs?service=git-upload-archive`,
      `/-1/app.git/${service}`,
      `/00/app.git/${service}x`,
    ];
    for (const p of probes) {
      const r = await raw(p);
      expect([403, 404], `${p}: ${r.status} ${r.body}`).toContain(r.status);
      expect(r.body).not.toContain(secretHead);
      expect(r.body).not.toContain(marker);
    }
    // A path the sandbox could have guessed: the gateway answers only by index, never by a host path.
    const byPath = await hostGit('ls-remote', `${base}/0/${encodeURIComponent(unnamed)}.git`);
    expect(byPath.ok).toBe(false);
    expect(byPath.out).toContain('not a repository of this session');
    // The named one answers, for comparison.
    expect((await raw(`/0/app.git/${service}`)).body).toContain(git(pushable, 'rev-parse', 'main').trim());
  });

  it('refuses, without retrying, a local repository that is missing or not a git repository', () => {
    const check = (url: string) => {
      try {
        gateway.checkRepositories({ ...ref, resources: [{ type: 'git_repository', url } as RepositoryResource] });
      } catch (err) {
        return err as ApplicationFailure;
      }
      return undefined;
    };
    const missing = check(pathToFileURL(join(hostDir, 'nope')).href);
    expect(missing).toBeInstanceOf(ApplicationFailure);
    expect(missing?.type).toBe('Sandbox.ResourceFailed');
    expect(missing?.nonRetryable).toBe(true);
    expect(missing?.message).toContain('names no directory on this worker host');
    expect(check(pathToFileURL(join(hostDir, 'plain')).href)?.message).toContain('is not a git repository');
    expect(check('ssh://git@x.test/r.git')?.message).toContain('is not an http(s) or file:// URL');
    expect(check(pathToFileURL(pushable).href)).toBeUndefined();
  });
});

describe('a session with a local repository in its agent file', () => {
  it('clones it into a sandbox with no network and no host mount, pushes to its allowed branch, and reaches nothing else', async () => {
    const agentDir = mkdtempSync(join(tmpdir(), 'tandem-agentdir-'));
    const file = join(agentDir, 'agent.yaml');
    // The agent file names the repository by a path relative to itself.
    writeFileSync(
      file,
      'name: local-repo-agent\nmodel: claude-sonnet-5-5\ntools: [{type: agent_toolset_20260401}]\n' +
        'sandbox: {memory_mb: 256}\n' +
        `resources:\n  - {type: git_repository, url: ../${hostDir.split('/').pop()}/app, push_branches: [agent/*]}\n`,
    );
    const agent = await loadAgentFile(file);
    expect(agent.resources?.[0]?.url).toBe(pathToFileURL(pushable).href);
    const repo = '/workspace/app';
    h.model.push(
      reply(toolUse('bash', { command: `cd ${repo} && git log --format=%s && cat README.md` }, 'tu_clone')),
      reply(
        toolUse(
          'bash',
          {
            command:
              `base=$(git -C ${repo} remote get-url origin | sed 's#/0/app.git$##'); ` +
              `for p in 1/private.git 0/private.git 0/..%2Fprivate.git; do git ls-remote "$base/$p" 2>&1; done; ` +
              `cat ${unnamed}/SECRET.md 2>&1; ls ${hostDir} 2>&1; ls /run/tandem-host; echo probes-done`,
          },
          'tu_probe',
        ),
      ),
      reply(
        toolUse(
          'bash',
          {
            command:
              `cd ${repo} && git checkout -q -b agent/session-fix && echo fixed >> README.md && ` +
              `git -c user.name=agent -c user.email=agent@example.com commit -qam 'fix from the sandbox' && ` +
              'git push origin agent/session-fix 2>&1; git push origin HEAD:main 2>&1; echo pushed',
          },
          'tu_push',
        ),
      ),
      reply('Done.'),
    );
    const handle = await startSession(h.client, h.queue, { agent }, 'work on the repository');
    await waitIdle(handle, 'end_turn', 4, 120_000);
    const results = toolResults(h.model.requests.at(-1)!);
    expect(results.get('tu_clone')).toMatchObject({ content: 'first commit of app\n# app' });
    const probe = results.get('tu_probe')?.content ?? '';
    expect(probe.match(/remote: tandem: not a repository of this session/g)).toHaveLength(3);
    expect(probe.match(/fatal: repository '.*' not found/g)).toHaveLength(3);
    expect(probe).toContain(`cat: ${unnamed}/SECRET.md: No such file or directory`);
    expect(probe).toContain(`ls: cannot access '${hostDir}': No such file or directory`);
    expect(probe).toContain('probes-done');
    const push = results.get('tu_push')?.content ?? '';
    expect(push).toContain('* [new branch]      agent/session-fix -> agent/session-fix');
    expect(push).toContain('[remote rejected] HEAD -> main (tandem: this session may push only to agent/*)');
    expect(git(pushable, 'log', '--format=%s', 'agent/session-fix')).toContain('fix from the sandbox');
    expect(git(pushable, 'show', 'agent/session-fix:README.md')).toBe('# app\nfixed\n');
    expect(git(pushable, 'log', '--format=%s', 'main')).toBe('first commit of app\n');
    const events = await sessionEvents(h.client, handle);
    expect(JSON.stringify(events)).not.toContain(marker);

    const info = await docker.getContainer(sandboxName(handle.workflowId)).inspect();
    expect(info.HostConfig.NetworkMode).toBe('none');
    // The slot's own directories only: no mount of the repository or of anything else of the host.
    expect(info.Mounts.map((m) => m.Destination).sort()).toEqual(['/mnt/session/outputs', '/mnt/session/uploads', '/mnt/skills', '/run/tandem-host', '/workspace']);
    expect(info.Mounts.find((m) => m.Destination === '/run/tandem-host')?.RW).toBe(false);
    for (const ro of ['/mnt/session/uploads', '/mnt/skills']) expect(info.Mounts.find((m) => m.Destination === ro)?.RW).toBe(false);
    expect(JSON.stringify(info)).not.toContain(hostDir);
    await handle.cancel();
  });
});
