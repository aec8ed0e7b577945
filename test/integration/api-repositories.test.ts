/**
 * Repositories named through the API with the official SDK: a `github_repository` resource with a canary
 * `authorization_token` is cloned and pushed through the credential proxy, the token goes to the worker-side vault
 * only (nowhere in history, responses, the container's spec or the sandbox), a rotated token is what the next push
 * sends, and a repository on an internal address is refused. The git server is on loopback, which this server's
 * operator allows (`TANDEM_MCP_PRIVATE_HOSTS`), as a self-hosted git server on a private network would be.
 */
import { randomBytes } from 'node:crypto';
import Anthropic from '@anthropic-ai/sdk';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGitServer, type GitServer } from '../fakes/git-server.js';
import { readUntil, reply, toolUse, useApiHarness, type ApiStreamEvent } from '../helpers/api.js';
import { sandboxName } from '../helpers/env.js';

const canaryBody = randomBytes(16).toString('hex');
const canary = `tdmcanary${canaryBody}`;
// Matches the canary without containing it, so the command that searches for it does not carry it.
const canaryPattern = `tdm[c]anary${canaryBody}`;
const h = useApiHarness('api-repos', { assertDone: true, mcpPrivateHosts: ['127.0.0.1'] });
const client = () => new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
const message = (err: unknown) => ((err as InstanceType<typeof Anthropic.APIError>).error as { error: { message: string } }).error.message;
let git: GitServer;

beforeAll(async () => {
  git = await startGitServer(canary);
});
afterAll(async () => {
  await git?.close();
});

/** Sends `text` and reads the stream to the session's next idle; returns the tool results' texts by tool_use_id. */
async function turn(c: Anthropic, sessionId: string, text: string): Promise<{ events: ApiStreamEvent[]; results: Map<string, string> }> {
  const stream = await c.beta.sessions.events.stream(sessionId);
  await c.beta.sessions.events.send(sessionId, { events: [{ type: 'user.message', content: [{ type: 'text', text }] }] });
  const events = await readUntil(stream, (e) => e.type === 'session.status_idle');
  stream.controller.abort();
  const results = new Map<string, string>();
  for (const use of events.filter((e) => e.type === 'agent.tool_use')) {
    const result = events.find((e) => e.type === 'agent.tool_result' && e.tool_use_id === use.id);
    results.set(use.tool_use_id as string, ((result?.content ?? []) as Array<{ text?: string }>).map((b) => b.text ?? '').join(''));
  }
  return { events, results };
}

describe('github_repository resources through the official SDK', () => {
  it('clones and pushes with the token in the vault only, and a rotated token is the one the next push sends', async () => {
    const c = client();
    const url = git.createRepo('api-app');
    const agent = await c.beta.agents.create({ name: 'pusher', model: 'claude-sonnet-5-5', tools: [{ type: 'agent_toolset_20260401' }] });
    const env = await c.beta.environments.create({ name: 'repos-env' });
    const session = await c.beta.sessions.create({
      agent: agent.id,
      environment_id: env.id,
      resources: [{ type: 'github_repository', url, authorization_token: canary, mount_path: '/workspace/app' }],
    });
    const repo = session.resources[0] as Anthropic.Beta.Sessions.BetaManagedAgentsGitHubRepositoryResource;
    expect(repo).toMatchObject({ type: 'github_repository', url, mount_path: '/workspace/app' });
    expect(repo.id).toMatch(/^sesrsc_/);

    const push = (id: string, file: string) =>
      toolUse(
        'bash',
        {
          command:
            `cd /workspace/app && echo ${file} > ${file} && git add ${file} && ` +
            `git -c user.name=agent -c user.email=agent@example.com commit -qm 'add ${file}' && git push origin HEAD:main 2>&1; echo "push exit $?"`,
        },
        id,
      );
    h.model.push(
      reply(
        toolUse('bash', { command: 'cd /workspace/app && git log --oneline | wc -l && git remote -v' }, 'tu_clone'),
        toolUse('bash', { command: `env; grep -r -s -l -E '${canaryPattern}' /workspace /tmp /home /etc 2>/dev/null | sed 's/^/FOUND /'; echo "grep done"` }, 'tu_hunt'),
        push('tu_push1', 'one.txt'),
      ),
      reply('Pushed.'),
    );
    const first = await turn(c, session.id, 'push a change');
    expect(first.results.get('tu_clone')).toMatch(/^1\n/); // the clone has the server's one commit
    expect(first.results.get('tu_hunt')).toMatch(/grep done\s*$/);
    expect(first.results.get('tu_hunt')).not.toContain('FOUND ');
    expect(first.results.get('tu_hunt')).not.toContain(canary);
    expect(first.results.get('tu_push1')).toContain('push exit 0');
    expect(git.git('api-app', 'log', '--format=%s', 'main')).toContain('add one.txt');

    // A wrong token: the next push is refused; the right one again: it goes through.
    const rotated = await c.beta.sessions.resources.update(repo.id, { session_id: session.id, authorization_token: 'not-the-token' });
    expect(rotated).toEqual(repo);
    h.model.push(reply(push('tu_push2', 'two.txt')), reply('Refused.'));
    expect((await turn(c, session.id, 'push again')).results.get('tu_push2')).toMatch(/refused the credential of this session[\s\S]*push exit 1/);
    await c.beta.sessions.resources.update(repo.id, { session_id: session.id, authorization_token: canary });
    h.model.push(reply(toolUse('bash', { command: 'cd /workspace/app && git push origin HEAD:main 2>&1; echo "push exit $?"' }, 'tu_push3')), reply('Pushed.'));
    expect((await turn(c, session.id, 'and again')).results.get('tu_push3')).toContain('push exit 0');
    expect(git.git('api-app', 'log', '--format=%s', 'main')).toContain('add two.txt');

    // The token is in none of what the API answers, the history, or the container's spec.
    const answers = JSON.stringify([
      await c.beta.sessions.retrieve(session.id),
      (await c.beta.sessions.resources.list(session.id)).data,
      (await c.beta.sessions.events.list(session.id, { limit: 1000 })).data,
    ]);
    expect(answers).not.toContain(canary);
    const raw = JSON.stringify(await h.client.workflow.getHandle(session.id).fetchHistory());
    const history = [...raw.matchAll(/"data":"([A-Za-z0-9+/=]+)"/g)].map((m) => Buffer.from(m[1]!, 'base64').toString('utf8')).join('\n');
    expect(history).toContain(repo.id);
    expect(history).not.toContain(canary);
    const inspect = JSON.stringify(await new Docker().getContainer(sandboxName(session.id)).inspect());
    expect(inspect).not.toContain(canary);

    // A repository stays for the session's life.
    const removal = await c.beta.sessions.resources.delete(repo.id, { session_id: session.id }).catch((e: unknown) => e);
    expect(message(removal)).toMatch(/is a repository, cloned into the workspace when the sandbox was made; it stays for the session's life/);
    await c.beta.sessions.delete(session.id);
  });

  it('refuses a repository on an internal address, or over plain http, naming the field', async () => {
    const c = client();
    const agent = await c.beta.agents.create({ name: 'refused-repos', model: 'claude-sonnet-5-5' });
    const env = await c.beta.environments.create({ name: 'repos-refusals' });
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ type: 'github_repository', url: 'https://169.254.169.254/latest.git' }, /^resources\[0\]\.url: 169\.254\.169\.254 is .*: the worker would request it from its own network \(the operator can allow a host with TANDEM_MCP_PRIVATE_HOSTS\)/],
      [{ type: 'github_repository', url: 'http://github.com/acme/widgets.git' }, /^resources\[0\]\.url: must be an https URL/],
      [{ type: 'github_repository', url: 'https://github.com/acme/widgets.git', branch: 'main' }, /^resources\[0\]\.branch: is not a field of a repository resource/],
    ];
    for (const [resource, text] of cases) {
      const params = { agent: agent.id, environment_id: env.id, resources: [resource] } as unknown as Anthropic.Beta.Sessions.SessionCreateParams;
      const err = await c.beta.sessions.create(params).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Anthropic.BadRequestError);
      expect(message(err)).toMatch(text);
    }
  });
});
