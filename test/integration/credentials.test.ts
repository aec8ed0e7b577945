/**
 * Credentials never reach the hands: git repositories cloned and pushed through the worker's credential proxy with
 * a real git HTTP server that requires the real token, a canary token hunted everywhere the sandbox and the history
 * could hold it, and the vault checked before start and at provision.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readHistory } from '../../src/log/read.js';
import { Vault, VaultError } from '../../src/vault/index.js';
import type { RepositoryResource } from '../../src/shared/types.js';
import { startGitServer, type GitServer } from '../fakes/git-server.js';
import { reply, toolUse } from '../fakes/messages-server.js';
import { historyText, runCli, sessionEvents, startSession, testAgent, toolResults, useHarness, waitFor, waitIdle, sandboxName } from '../helpers/env.js';

const docker = new Docker();
// A regular expression that matches the canary without containing it, so a command that searches for it does
// not itself put the canary in the history or in a process's command line.
const canaryBody = randomBytes(16).toString('hex');
const canary = `tdmcanary${canaryBody}`;
const canaryPattern = `tdm[c]anary${canaryBody}`;
const vault = new Vault(join(mkdtempSync(join(tmpdir(), 'tandem-vault-')), 'vault.json'), {});
vault.set('repo-token', canary);
const gatewayDir = mkdtempSync(join(tmpdir(), 'tandem-gw-'));
const h = useHarness('creds', {
  assertDone: true,
  record: 'credentials',
  worker: () => ({ vault, env: { TANDEM_HANDS_DIR: gatewayDir } }),
});
let git: GitServer;

beforeAll(async () => {
  git = await startGitServer(canary);
});
afterAll(async () => {
  await git?.close();
});


describe('git resources through the credential proxy', () => {
  it('clones and pushes with the real token while no trace of it reaches the sandbox or the history', async () => {
    const url = git.createRepo('canary-repo');
    const resource: RepositoryResource = { type: 'git_repository', url, credential: 'repo-token', push_branches: ['main'] };
    const repo = '/workspace/canary-repo';
    h.model.push(
      reply(toolUse('bash', { command: 'env' }, 'tu_env')),
      reply(toolUse('bash', { command: "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do tr '\\0' '\\n' < $f; done 2>/dev/null; echo procs-read" }, 'tu_proc')),
      reply(toolUse('bash', { command: `cd ${repo} && git config --list --show-origin && cat .git/config` }, 'tu_gitconfig')),
      reply(toolUse('bash', { command: 'cat ~/.git-credentials; ls -la ~ /run/tandem-host; cat ~/.gitconfig; true' }, 'tu_creds')),
      reply(
        toolUse(
          'bash',
          {
            // /proc is read above (every process's environment and command line); grep -r cannot walk it.
            command: `grep -r -D skip -s -l -E '${canaryPattern}' / --exclude-dir=proc; echo "grep exit $?"`,
            timeout_ms: 300_000,
          },
          'tu_grep',
        ),
      ),
      reply(
        toolUse(
          'bash',
          {
            command:
              `cd ${repo} && git remote -v && git log --oneline && echo canary > canary.txt && git add canary.txt && ` +
              `git -c user.name=agent -c user.email=agent@example.com commit -qm 'commit from the sandbox' && ` +
              'git push origin HEAD:main 2>&1 && git push origin HEAD:refs/heads/elsewhere 2>&1; git fetch origin 2>&1; echo pushed',
          },
          'tu_push',
        ),
      ),
      reply('Done.'),
    );
    const handle = await startSession(h.client, h.queue, { agent: testAgent(), resources: [resource] }, 'look for secrets');
    await waitIdle(handle, 'end_turn', 7, 400_000);
    const results = toolResults(h.model.requests.at(-1)!);
    expect([...results.keys()]).toHaveLength(6);
    for (const [id, r] of results) expect(r.content, id).not.toContain(canary);
    expect(results.get('tu_env')?.content).toContain('HOME=/home/agent');
    expect(results.get('tu_proc')?.content).toContain('procs-read');
    expect(results.get('tu_gitconfig')?.content).toContain('remote.origin.url=http://tandem:');
    expect(results.get('tu_gitconfig')?.content).toContain('@127.0.0.1:47011/0/canary-repo.git');
    // -l prints the name of every file that matches: none did (exit 2 because some root files are unreadable).
    expect(results.get('tu_grep')?.content.trim()).toMatch(/^grep exit [12]$/);
    const push = results.get('tu_push')?.content ?? '';
    expect(push).toContain('first commit');
    expect(push).toMatch(/HEAD -> main/);
    expect(push).toContain('[remote rejected] HEAD -> elsewhere (tandem: this session may push only to main)');
    expect(push).toContain('pushed');
    // The push reached the real server, which only accepts the real token.
    expect(git.git('canary-repo', 'log', '--format=%s', 'main')).toContain('commit from the sandbox');
    expect(git.git('canary-repo', 'branch', '--list', 'elsewhere').trim()).toBe('');
    expect(git.requests.length).toBeGreaterThan(4);
    expect(git.requests.every((r) => r.authorized)).toBe(true);

    // The container's spec holds no trace: environment, mounts, command.
    const info = await docker.getContainer(sandboxName(handle.workflowId)).inspect();
    expect(JSON.stringify(info)).not.toContain(canary);
    expect(info.Config.Env.join('\n')).not.toMatch(/token|secret/i);
    expect(info.HostConfig.NetworkMode).toBe('none');
    expect(info.Mounts.find((m) => m.Destination === '/run/tandem-host')?.RW).toBe(false);

    // Neither does the history: every payload of every event, as text.
    const history = await readHistory(h.client, handle.workflowId);
    const text = historyText(history);
    expect(text).toContain('commit from the sandbox'); // the payloads were read as text
    expect(text).not.toContain(canary);
    const events = await sessionEvents(h.client, handle);
    expect(JSON.stringify(events)).not.toContain(canary);
    expect(events.filter((e) => e.type === 'agent.tool_result')).toHaveLength(6);

    await handle.cancel();
    await waitFor(
      () => docker.getContainer(info.Id).inspect().then(() => 'exists', () => 'gone'),
      (s) => s === 'gone',
      30_000,
      'container removal',
    );
    // The phantom token died with the session: its gateway directory is removed with the sandbox.
    await waitFor(async () => readdirSync(gatewayDir), (d) => d.length === 0, 30_000, 'gateway directory removal');
  });

  it('refuses to start a session whose secret the vault lacks, and the worker fails provision without retrying', async () => {
    const resource: RepositoryResource = { type: 'github_repository', url: `${git.url}/x.git`, credential: 'no-such-token' };
    const err = await h.tandem.start({ agent: testAgent(), resources: [resource], message: 'hi', vault }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VaultError);
    expect((err as Error).message).toBe(
      'cannot start the session: the vault has no secret "no-such-token"; add it with `tandem vault set no-such-token` or the environment variable TANDEM_SECRET_NO_SUCH_TOKEN',
    );
    // Started anyway (a plain Temporal client does not check): the worker refuses at provision, once.
    h.model.push(reply(toolUse('bash', { command: 'echo hi' }, 'tu_1')), reply('ok'));
    const handle = await startSession(h.client, h.queue, { agent: testAgent(), resources: [resource] }, 'hi');
    await waitIdle(handle, 'end_turn', 2);
    const result = toolResults(h.model.requests.at(-1)!).get('tu_1');
    expect(result?.is_error).toBe(true);
    expect(result?.content).toContain('the vault has no secret "no-such-token"');
    const history = await readHistory(h.client, handle.workflowId);
    const failed = history.filter((e) => e.activityTaskFailedEventAttributes);
    expect(failed).toHaveLength(1);
    const failure = failed[0]!.activityTaskFailedEventAttributes!.failure!;
    expect(failure.cause?.applicationFailureInfo?.type ?? failure.applicationFailureInfo?.type).toBe('Vault.SecretMissing');
    const started = history.filter((e) => e.activityTaskStartedEventAttributes);
    expect(started.map((e) => e.activityTaskStartedEventAttributes!.attempt)).not.toContain(2);
    await handle.cancel();
  });

  it('tandem run refuses an agent file whose repository names a secret the vault lacks, in one sentence', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-agent-'));
    const file = join(dir, 'agent.yaml');
    writeFileSync(
      file,
      `name: repo-agent\nmodel: claude-sonnet-5-5\ntools: [{type: agent_toolset_20260401}]\nresources:\n` +
        `  - {type: git_repository, url: '${git.url}/x.git', credential: absent-token}\n`,
    );
    const run = await runCli(['run', file, 'hi'], h.queue, h.model.url, { TANDEM_VAULT_FILE: vault.path });
    expect(run.code).toBe(1);
    expect(run.stderr.trim()).toBe(
      'tandem: cannot start the session: the vault has no secret "absent-token"; add it with `tandem vault set absent-token` or the environment variable TANDEM_SECRET_ABSENT_TOKEN',
    );
  });
});
