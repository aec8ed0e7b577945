/**
 * What an environment made through the official SDK gives its sessions: `networking: {type: 'unrestricted'}` is a
 * way out to public hosts through the egress proxy (a test host in a network namespace stands in for one), and
 * never to the worker host. The mapping of every networking form is in test/unit/network.test.ts.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { toolResults } from '../helpers/env.js';
import { readUntil, reply, toolUse, useApiHarness, type ApiStreamEvent } from '../helpers/api.js';
import { startTestHost } from '../helpers/netns.js';

const h = useApiHarness('api-env', {
  assertDone: true,
  worker: () => ({ env: { TANDEM_HANDS_DIR: mkdtempSync(join(tmpdir(), 'tandem-api-env-')) } }),
});

const idle = (e: ApiStreamEvent) => e.type === 'session.status_idle';

describe('environments through the official SDK', () => {
  it('refuses packages at once, naming the list, instead of storing them and leaving them uninstalled', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const err = await client.beta.environments
      .create({ name: 'pkg-env', config: { type: 'cloud', packages: { pip: ['six'] } } })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    const body = (err as InstanceType<typeof Anthropic.BadRequestError>).error as { error: { message: string } };
    expect(body.error.message).toMatch(/^config\.packages\.pip: Tandem does not install packages into sandboxes yet, so "six" would be missing; /);
    // Nothing was stored; empty lists (what the SDK sends by default) are fine.
    const names = (await client.beta.environments.list()).data.map((e) => e.name);
    expect(names).not.toContain('pkg-env');
    const env = await client.beta.environments.create({ name: 'no-pkg-env', config: { type: 'cloud', packages: { pip: [], npm: [] } } });
    const refused = await client.beta.environments.update(env.id, { config: { type: 'cloud', packages: { apt: ['cowsay'] } } }).catch((e: unknown) => e);
    expect((refused as Error).message).toContain('config.packages.apt: ');
  });

  it('an unrestricted environment reaches a public host and nothing of the worker host', async () => {
    const host = await startTestHost();
    try {
      const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
      const env = await client.beta.environments.create({ name: 'open-env', config: { type: 'cloud', networking: { type: 'unrestricted' } } });
      expect(env.config).toMatchObject({ networking: { type: 'unrestricted' } });
      const agent = await client.beta.agents.create({ name: 'fetcher', model: 'claude-sonnet-5-5', tools: [{ type: 'agent_toolset_20260401' }] });
      h.model.push(
        reply(toolUse('bash', { command: `curl -sS -m 10 http://${host.address}:${host.port}/from-api` }, 'tu_public')),
        reply(toolUse('bash', { command: `curl -sS -m 10 http://${host.hostSide}:${host.port}/; echo " exit $?"` }, 'tu_own')),
        reply('Fetched.'),
      );
      const session = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
      const stream = await client.beta.sessions.events.stream(session.id);
      await client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'fetch it' }] }] });
      const events = await readUntil(stream, idle);
      stream.controller.abort();
      const results = toolResults(h.model.requests.at(-1)!);
      expect(results.get('tu_public')?.content).toBe(`hello from test host ${host.address}:${host.port} /from-api`);
      expect(results.get('tu_own')?.content).toContain(`${host.hostSide} does not lead to the internet`);
      expect(events.filter((e) => e.type === 'agent.tool_result')).toHaveLength(2);
    } finally {
      await host.close();
    }
  });
});
