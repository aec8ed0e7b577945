/**
 * The API and the rest of Tandem see the same sessions: one created through the API is in `tandem events` and in
 * Temporal; one started with the client library is readable through the API. Vault credentials keep their secret
 * values in the worker-side vault file only.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { describe, expect, inject, it } from 'vitest';
import { Worker } from '@temporalio/worker';
import { readHistory } from '../../src/log/read.js';
import { SA_AGENT_ID } from '../../src/shared/names.js';
import { reply, toolUse, useApiHarness, waitFor } from '../helpers/api.js';
import { runCli, testAgent, workflowBundle, workerEnv } from '../helpers/env.js';
import { freePort } from '../helpers/global-setup.js';
import { startTestMcpServer } from '../fakes/mcp-http-server.js';

// The test MCP server listens on loopback, which API clients may name only when the operator allows it.
const h = useApiHarness('api-interop', { assertDone: true, mcpPrivateHosts: ['127.0.0.1'] });
const root = join(import.meta.dirname, '..', '..');

describe('the API and Tandem share sessions', () => {
  it('a session created through the API is in tandem events and in Temporal; a client-started one reads through the API', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const agent = await client.beta.agents.create({ name: 'interop', model: 'claude-sonnet-5-5' });
    const env = await client.beta.environments.create({ name: 'interop-env' });
    h.model.push(reply('API-born answer.'));
    const session = await client.beta.sessions.create({
      agent: agent.id,
      environment_id: env.id,
      initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'hello from the API' }] }],
    });
    await waitFor(() => client.beta.sessions.retrieve(session.id), (s) => s.status === 'idle' && (s.usage.output_tokens ?? 0) > 0, 60_000, 'idle');

    // The CLI, as a separate process, prints its log.
    const run = await runCli(['events', session.id, '--json'], h.queue, h.model.url);
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; content?: Array<{ text: string }> });
    expect(lines.find((e) => e.type === 'user.message')?.content?.[0]?.text).toBe('hello from the API');
    expect(lines.find((e) => e.type === 'agent.message')?.content?.[0]?.text).toBe('API-born answer.');

    // Temporal: an agentSession workflow, with the agent pinned in its input and the agent id searchable.
    const handle = h.client.workflow.getHandle(session.id);
    const description = await handle.describe();
    expect(description.type).toBe('agentSession');
    expect(description.status.name).toBe('RUNNING');
    const found = await waitFor(
      async () => {
        const ids: string[] = [];
        for await (const w of h.client.workflow.list({ query: `${SA_AGENT_ID} = '${agent.id}'` })) ids.push(w.workflowId);
        return ids;
      },
      (ids) => ids.includes(session.id),
      30_000,
      'the session in visibility',
    );
    expect(found).toEqual([session.id]);
    const started = (await readHistory(h.client, session.id))[0]?.workflowExecutionStartedEventAttributes;
    expect(JSON.stringify(started?.input)).toBeTruthy();

    // A session started with the client library, read through the API.
    h.model.push(reply('Library-born answer.'));
    const libId = await h.tandem.start({ agent: testAgent({ name: 'lib-agent' }), message: 'hello from the library', title: 'lib' });
    await waitFor(() => client.beta.sessions.retrieve(libId), (s) => s.status === 'idle' && (s.usage.output_tokens ?? 0) > 0, 60_000, 'idle');
    const lib = await client.beta.sessions.retrieve(libId);
    expect(lib).toMatchObject({ id: libId, type: 'session', title: 'lib', agent: { name: 'lib-agent' } });
    const events = (await client.beta.sessions.events.list(libId)).data;
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['user.message', 'agent.message', 'session.status_idle']));
    expect(events.find((e) => e.type === 'agent.message')).toMatchObject({ content: [{ type: 'text', text: 'Library-born answer.' }] });

    for (const id of [session.id, libId]) await client.beta.sessions.delete(id);
  });

  it('keeps credential secrets in the vault file only: not in responses, not in the vault workflow history', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const token = `tok-${Math.random().toString(36).slice(2)}-secret`;
    const rotated = `rot-${Math.random().toString(36).slice(2)}-secret`;
    const envValue = `env-${Math.random().toString(36).slice(2)}-secret`;
    const vault = await client.beta.vaults.create({ display_name: 'team vault', metadata: { team: 'infra' } });
    expect(vault.id).toMatch(/^vlt_/);

    const responses: unknown[] = [vault];
    const cred = await client.beta.vaults.credentials.create(vault.id, {
      display_name: 'linear',
      auth: { type: 'static_bearer', token, mcp_server_url: 'https://mcp.example.com/sse' },
    });
    responses.push(cred);
    expect(cred.auth).toEqual({ type: 'static_bearer', mcp_server_url: 'https://mcp.example.com/sse' });
    const envCred = await client.beta.vaults.credentials.create(vault.id, {
      auth: { type: 'environment_variable', secret_name: 'DB_PASSWORD', secret_value: envValue, networking: { type: 'unrestricted' } },
    });
    responses.push(envCred);
    responses.push(await client.beta.vaults.credentials.retrieve(cred.id, { vault_id: vault.id }));
    responses.push(await client.beta.vaults.credentials.list(vault.id));
    responses.push(await client.beta.vaults.credentials.update(cred.id, { vault_id: vault.id, auth: { type: 'static_bearer', token: rotated } }));
    responses.push(await client.beta.vaults.retrieve(vault.id));
    responses.push(await client.beta.vaults.update(vault.id, { display_name: 'renamed vault' }));

    // The values are in the worker-side vault file, under names derived from the vault and credential ids.
    const file = JSON.parse(readFileSync(h.vaultFile, 'utf8')) as { secrets: Record<string, { value: string }> };
    expect(file.secrets[`${vault.id}/${cred.id}/token`]?.value).toBe(rotated);
    expect(file.secrets[`${vault.id}/${envCred.id}/secret_value`]?.value).toBe(envValue);

    // ...and nowhere else.
    const seen = JSON.stringify(responses);
    for (const secret of [token, rotated, envValue]) expect(seen).not.toContain(secret);
    // Every payload of the vault entity's history, decoded (payload data is base64 in the JSON form of history).
    const history = JSON.stringify(await readHistory(h.client, vault.id), (k, v: unknown) =>
      k === 'data' && typeof v === 'string' ? Buffer.from(v, 'base64').toString('utf8') : v,
    );
    expect(history).toContain(cred.id); // the record is there...
    for (const secret of [token, rotated, envValue]) expect(history).not.toContain(secret); // ...its secret is not

    // Deleting a credential, then the vault, removes the values from the file.
    expect(await client.beta.vaults.credentials.delete(cred.id, { vault_id: vault.id })).toEqual({
      id: cred.id,
      type: 'vault_credential_deleted',
    });
    const after = JSON.parse(readFileSync(h.vaultFile, 'utf8')) as { secrets: Record<string, unknown> };
    expect(after.secrets[`${vault.id}/${cred.id}/token`]).toBeUndefined();
    expect((await client.beta.vaults.delete(vault.id)).type).toBe('vault_deleted');
    const last = JSON.parse(readFileSync(h.vaultFile, 'utf8')) as { secrets: Record<string, unknown> };
    expect(Object.keys(last.secrets).filter((k) => k.startsWith(vault.id))).toEqual([]);
    expect(await client.beta.vaults.retrieve(vault.id).catch((e: unknown) => e)).toBeInstanceOf(Anthropic.NotFoundError);
  });

  it('inlines the agents of a multiagent roster at their pinned versions when a session starts', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const helper = await client.beta.agents.create({ name: 'helper', model: 'claude-sonnet-5-5', system: 'v1' });
    await client.beta.agents.update(helper.id, { system: 'v2' });
    const lead = await client.beta.agents.create({
      name: 'lead',
      model: 'claude-sonnet-5-5',
      multiagent: { type: 'coordinator', agents: [{ type: 'agent', id: helper.id, version: 1 }, { type: 'self' }] },
    });
    const env = await client.beta.environments.create({ name: 'team-env' });
    const session = await client.beta.sessions.create({ agent: lead.id, environment_id: env.id });
    const input = (await readHistory(h.client, session.id))[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
    const started = JSON.parse(Buffer.from(input!.data!).toString('utf8')) as {
      agent: { multiagent: { agents: Array<{ type: string; definition?: { name: string; system: string } }> } };
    };
    expect(started.agent.multiagent.agents).toEqual([
      { type: 'agent', definition: expect.objectContaining({ name: 'helper', system: 'v1' }) },
      { type: 'self' },
    ]);
    const bad = await client.beta.agents
      .create({ name: 'x', model: 'claude-sonnet-5-5', multiagent: { type: 'coordinator', agents: [{ type: 'advisor', model: 'm' }] } })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(Anthropic.BadRequestError);
    await client.beta.sessions.delete(session.id);
  });

  it('the histories of entity workflows and of an updated, archived session replay against the current code', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const agent = await client.beta.agents.create({ name: 'replayed', model: 'claude-sonnet-5-5', system: 'one' });
    await client.beta.agents.update(agent.id, { version: 1, system: 'two' });
    await client.beta.agents.update(agent.id, { version: 2, system: 'two' });
    await client.beta.agents.update(agent.id, { version: 1, system: 'three' }).catch(() => undefined); // a 409
    const env = await client.beta.environments.create({ name: 'replayed-env' });
    await client.beta.environments.update(env.id, { metadata: { k: 'v' } });
    await client.beta.environments.archive(env.id);
    const vault = await client.beta.vaults.create({ display_name: 'replayed-vault' });
    const cred = await client.beta.vaults.credentials.create(vault.id, {
      auth: { type: 'static_bearer', token: 'replay-token-secret', mcp_server_url: 'https://mcp.example.com' },
    });
    await client.beta.vaults.credentials.archive(cred.id, { vault_id: vault.id });
    h.model.push(reply('Replayed answer.'));
    const session = await client.beta.sessions.create({
      agent: agent.id,
      environment_id: (await client.beta.environments.create({ name: 'live-env' })).id,
      initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'hi' }] }],
    });
    await waitFor(() => client.beta.sessions.retrieve(session.id), (s) => s.status === 'idle' && (s.usage.output_tokens ?? 0) > 0, 60_000, 'idle');
    await client.beta.sessions.update(session.id, { title: 'replayed', metadata: { a: 'b' } });
    await client.beta.sessions.archive(session.id);
    const events = (await client.beta.sessions.events.list(session.id, { types: ['session.updated'] })).data;
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({ title: 'replayed', metadata: { a: 'b' } });

    const ids = [agent.id, env.id, vault.id, session.id];
    for (const [i, id] of ids.entries()) {
      const json = execFileSync(inject('temporalCli'), ['workflow', 'show', '-w', id, '--address', inject('temporalAddress'), '-o', 'json']);
      await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, JSON.parse(json.toString()) as unknown, id);
      if (process.env.TANDEM_RECORD_HISTORIES === '1')
        writeFileSync(join(root, 'test', 'fixtures', 'histories', `api-${String(i + 1).padStart(2, '0')}.json`), json);
    }
    await client.beta.sessions.delete(session.id);
  });

  it('tandem serve, run as a process, answers the SDK with the keys of TANDEM_API_KEYS', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, ['bin/tandem', 'serve', '--listen', `127.0.0.1:${port}`], {
      cwd: root,
      env: { ...process.env, ...workerEnv(h.queue, h.model.url), TANDEM_API_KEYS: 'k-one, k-two', TANDEM_VAULT_FILE: h.vaultFile },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let output = '';
      await new Promise<void>((resolve, reject) => {
        child.stderr.on('data', (c: Buffer) => {
          output += c.toString();
          if (output.includes('Managed Agents API on')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`tandem serve exited (${code}): ${output}`)));
      });
      expect(output).not.toContain('created an API key');
      const url = `http://127.0.0.1:${port}`;
      const agent = await new Anthropic({ baseURL: url, apiKey: 'k-two', maxRetries: 0 }).beta.agents.create({
        name: 'served',
        model: 'claude-sonnet-5-5',
      });
      // The in-process server of this file sees the same agent: the state is in Temporal, not in a server.
      const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
      expect((await client.beta.agents.retrieve(agent.id)).name).toBe('served');
      const denied = await new Anthropic({ baseURL: url, apiKey: h.apiKey, maxRetries: 0 }).beta.agents.list().catch((e: unknown) => e);
      expect(denied).toBeInstanceOf(Anthropic.AuthenticationError);
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  });

  it('an MCP server of an API agent gets the bearer token of the session vault credential for its URL', async () => {
    const token = `mcp-${Math.random().toString(36).slice(2)}-secret`;
    const mcp = await startTestMcpServer({ token });
    try {
      const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
      const vault = await client.beta.vaults.create({ display_name: 'mcp vault' });
      await client.beta.vaults.credentials.create(vault.id, { auth: { type: 'static_bearer', token, mcp_server_url: mcp.url } });
      const agent = await client.beta.agents.create({
        name: 'searcher',
        model: 'claude-sonnet-5-5',
        mcp_servers: [{ type: 'url', name: 'search', url: mcp.url }],
        tools: [{ type: 'mcp_toolset', mcp_server_name: 'search', default_config: { permission_policy: { type: 'always_allow' } } }],
      });
      const env = await client.beta.environments.create({ name: 'mcp-env' });
      h.model.push(reply(toolUse('lookup', { query: 'temporal' }, 'tu_lookup')), reply('Found.'));
      const session = await client.beta.sessions.create({
        agent: agent.id,
        environment_id: env.id,
        vault_ids: [vault.id],
        initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'look it up' }] }],
      });
      await waitFor(() => client.beta.sessions.retrieve(session.id), (s) => s.status === 'idle' && (s.usage.output_tokens ?? 0) > 0, 60_000, 'idle');
      expect(mcp.calls).toEqual([{ tool: 'lookup', args: { query: 'temporal' } }]);
      expect(mcp.authorizations).toContain(`Bearer ${token}`);
      const events = (await client.beta.sessions.events.list(session.id, { limit: 1000 })).data;
      expect(JSON.stringify(events)).toContain('result for temporal');
      expect(JSON.stringify(events)).not.toContain(token);
      const history = JSON.stringify(await readHistory(h.client, session.id), (k, v: unknown) =>
        k === 'data' && typeof v === 'string' ? Buffer.from(v, 'base64').toString('utf8') : v,
      );
      expect(history).toContain(`\${secret:${vault.id}/`); // the session names the secret...
      expect(history).not.toContain(token); // ...never its value

      // Through the API, MCP servers are URLs only: no commands on the worker, no headers naming vault secrets.
      for (const server of [
        { type: 'stdio', name: 's', command: 'sh' },
        { type: 'url', name: 's', url: 'https://x.example', headers: { Authorization: 'Bearer ${secret:tandem.api_key}' } },
      ]) {
        const refused = await client.beta.agents
          .create({ name: 'bad', model: 'claude-sonnet-5-5', mcp_servers: [server as never], tools: [{ type: 'mcp_toolset', mcp_server_name: 's' }] })
          .catch((e: unknown) => e);
        expect(refused).toBeInstanceOf(Anthropic.BadRequestError);
      }
      await client.beta.sessions.delete(session.id);
    } finally {
      await mcp.close();
    }
  });
});
