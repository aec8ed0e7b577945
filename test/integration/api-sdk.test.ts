/**
 * The Managed Agents API as code written for the hosted product uses it: only the official SDK, pointed at
 * `tandem serve` by `baseURL`. The server, the worker and the scripted model come from the test helpers.
 */
import Anthropic from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { hang, readUntil, reply, toolUse, useApiHarness, waitFor, type ApiStreamEvent } from '../helpers/api.js';

/** Grader requests (told apart by their system prompt) are answered from `graderSteps`; the agent's from the script. */
const graderSteps: Array<ReturnType<typeof reply>> = [];
const h = useApiHarness('api-sdk', {
  assertDone: true,
  responder: (req) => (JSON.stringify(req.body.system ?? '').includes('You are the grader') ? graderSteps.shift() : undefined),
});

type Event = ApiStreamEvent;

const idleEndTurn = (e: Event) => e.type === 'session.status_idle' && (e.stop_reason as { type: string }).type === 'end_turn';

describe('the Managed Agents API through the official SDK', () => {
  it('runs an agent session end to end: create, stream, follow-up, interrupt, list, update, archive', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });

    const agent = await client.beta.agents.create({
      name: 'api-agent',
      model: 'claude-sonnet-5-5',
      system: 'You answer briefly.',
      tools: [{ type: 'agent_toolset_20260401' }],
      metadata: { team: 'infra' },
    });
    expect(agent.id).toMatch(/^agent_/);
    expect(agent.version).toBe(1);
    expect(agent.type).toBe('agent');
    expect(agent.model.id).toBe('claude-sonnet-5-5');

    const env = await client.beta.environments.create({
      name: 'api-env',
      config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: ['pypi.org'] } },
    });
    expect(env.id).toMatch(/^env_/);
    expect(env.config).toMatchObject({ type: 'cloud', networking: { type: 'limited', allowed_hosts: ['pypi.org'] } });

    // First turn, from the initial event.
    h.model.push(reply('Hello from Tandem.'));
    const session = await client.beta.sessions.create({
      agent: agent.id,
      environment_id: env.id,
      title: 'first session',
      metadata: { ticket: 'T-1' },
      initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'say hello' }] }],
    });
    expect(session.id).toMatch(/^sesn_/);
    expect(session.agent).toMatchObject({ id: agent.id, version: 1, name: 'api-agent' });
    expect(session.environment_id).toBe(env.id);

    // Reconnect-safe reading: list what is there, then stream from the first event on (Last-Event-ID).
    const first = (await client.beta.sessions.events.list(session.id, { limit: 1 })).data[0]!;
    expect(first.type).toBe('user.message');
    const stream1 = await client.beta.sessions.events.stream(session.id, {}, { headers: { 'Last-Event-ID': first.id } });
    const turn1 = await readUntil(stream1, idleEndTurn);
    stream1.controller.abort();
    const types1 = turn1.map((e) => e.type);
    expect(types1).toContain('session.status_running');
    expect(types1).toContain('span.model_request_start');
    expect(turn1.find((e) => e.type === 'agent.message')).toMatchObject({ content: [{ type: 'text', text: 'Hello from Tandem.' }] });
    expect(turn1.every((e) => typeof e.processed_at === 'string' && e.id.startsWith('sevt_'))).toBe(true);

    // A follow-up on a live stream opened before sending, as the hosted API expects.
    h.model.push(reply('Second answer.'));
    const stream2 = await client.beta.sessions.events.stream(session.id);
    const sent = await client.beta.sessions.events.send(session.id, {
      events: [{ type: 'user.message', content: [{ type: 'text', text: 'and again' }] }],
    });
    expect(sent.data?.[0]).toMatchObject({ type: 'user.message' });
    const turn2 = await readUntil(stream2, idleEndTurn);
    stream2.controller.abort();
    expect(turn2[0]).toMatchObject({ type: 'user.message', id: sent.data![0]!.id });
    expect(turn2.find((e) => e.type === 'agent.message')).toMatchObject({ content: [{ type: 'text', text: 'Second answer.' }] });
    expect(turn2.some((e) => e.id === first.id)).toBe(false); // a live stream starts at the end of the log
    const lastBody = JSON.stringify(h.model.requests.at(-1)!.body.messages);
    expect(lastBody).toContain('and again');

    // A model call that never answers, interrupted through the API.
    h.model.push(hang());
    const stream3 = await client.beta.sessions.events.stream(session.id);
    await client.beta.sessions.events.send(session.id, {
      events: [{ type: 'user.message', content: [{ type: 'text', text: 'think forever' }] }],
    });
    const turn3 = await readUntil(stream3, (e) => e.type === 'span.model_request_start');
    await client.beta.sessions.events.send(session.id, { events: [{ type: 'user.interrupt' }] });
    await readUntil(stream3, idleEndTurn, turn3);
    stream3.controller.abort();
    const interruptedEnd = turn3.find((e) => e.type === 'span.model_request_end');
    expect(interruptedEnd).toMatchObject({ is_error: true });
    expect(turn3.map((e) => e.type)).toContain('user.interrupt');

    // The whole log, paginated by the SDK (5 a page), equals one big page; ids are unique and in order.
    const paged: string[] = [];
    for await (const e of client.beta.sessions.events.list(session.id, { limit: 5 })) paged.push(e.id);
    const whole = (await client.beta.sessions.events.list(session.id, { limit: 1000 })).data;
    expect(paged).toEqual(whole.map((e) => e.id));
    expect(new Set(paged).size).toBe(paged.length);
    expect(whole.filter((e) => e.type === 'user.message')).toHaveLength(3);
    const onlyIdle = (await client.beta.sessions.events.list(session.id, { types: ['session.status_idle'] })).data;
    expect(onlyIdle.length).toBe(3);
    expect(onlyIdle.every((e) => e.type === 'session.status_idle')).toBe(true);

    // Retrieve: status, usage, the pinned agent version; list finds it by agent.
    const got = await client.beta.sessions.retrieve(session.id);
    expect(got.status).toBe('idle');
    expect(got.title).toBe('first session');
    expect(got.metadata).toEqual({ ticket: 'T-1' });
    expect(got.usage.input_tokens).toBeGreaterThan(0);
    expect(got.usage.output_tokens).toBeGreaterThan(0);
    const listed = await waitFor(
      () => client.beta.sessions.list({ agent_id: agent.id }),
      (p) => p.data.some((s) => s.id === session.id),
      30_000,
      'the session in the list',
    );
    expect(listed.data.every((s) => s.agent.id === agent.id)).toBe(true);
    const updatedSession = await client.beta.sessions.update(session.id, { title: 'renamed', metadata: { ticket: null, owner: 'ana' } });
    expect(updatedSession).toMatchObject({ title: 'renamed', metadata: { owner: 'ana' } });

    // Versioned agent updates: a change makes version 2, the same change again makes none, a stale version is a 409.
    const v2 = await client.beta.agents.update(agent.id, { version: 1, system: 'You answer in one word.' });
    expect(v2.version).toBe(2);
    expect(v2.system).toBe('You answer in one word.');
    const same = await client.beta.agents.update(agent.id, { version: 2, system: 'You answer in one word.' });
    expect(same.version).toBe(2);
    expect(same.updated_at).toBe(v2.updated_at);
    const stale = await client.beta.agents.update(agent.id, { version: 1, system: 'x' }).catch((e: unknown) => e);
    expect(stale).toBeInstanceOf(Anthropic.ConflictError);
    expect((stale as InstanceType<typeof Anthropic.ConflictError>).error).toMatchObject({ type: 'error', error: { type: 'conflict_error' } });
    const versions: number[] = [];
    for await (const v of client.beta.agents.versions.list(agent.id)) versions.push(v.version);
    expect(versions).toEqual([2, 1]);
    expect((await client.beta.agents.retrieve(agent.id, { version: 1 })).system).toBe('You answer briefly.');
    // The running session stays pinned at version 1.
    expect((await client.beta.sessions.retrieve(session.id)).agent.version).toBe(1);

    const agentsListed = await waitFor(
      () => client.beta.agents.list(),
      (p) => p.data.some((a) => a.id === agent.id),
      30_000,
      'the agent in the list',
    );
    expect(agentsListed.data.find((a) => a.id === agent.id)?.version).toBe(2);

    // Archive everything; archived resources leave the default lists; an idle session can be deleted.
    expect((await client.beta.sessions.archive(session.id)).archived_at).toBeTruthy();
    const refused = await client.beta.sessions.events
      .send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'late' }] }] })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(Anthropic.BadRequestError);
    expect((await client.beta.agents.archive(agent.id)).archived_at).toBeTruthy();
    expect((await client.beta.environments.archive(env.id)).archived_at).toBeTruthy();
    await waitFor(
      () => client.beta.agents.list(),
      (p) => !p.data.some((a) => a.id === agent.id),
      30_000,
      'the archived agent to leave the list',
    );
    const withArchived = await client.beta.agents.list({ include_archived: true });
    expect(withArchived.data.some((a) => a.id === agent.id)).toBe(true);
    const noSession = await client.beta.sessions
      .create({ agent: agent.id, environment_id: env.id })
      .catch((e: unknown) => e);
    expect(noSession).toBeInstanceOf(Anthropic.BadRequestError);

    expect(await client.beta.sessions.delete(session.id)).toEqual({ id: session.id, type: 'session_deleted' });
    expect(await client.beta.sessions.retrieve(session.id).catch((e: unknown) => e)).toBeInstanceOf(Anthropic.NotFoundError);
    expect(await client.beta.environments.delete(env.id)).toEqual({ id: env.id, type: 'environment_deleted' });
    expect(await client.beta.environments.retrieve(env.id).catch((e: unknown) => e)).toBeInstanceOf(Anthropic.NotFoundError);
  });

  it('answers errors in the API shape: wrong key, unknown ids, invalid fields, a running session', async () => {
    const wrong = new Anthropic({ baseURL: h.url, apiKey: 'sk-wrong', maxRetries: 0 });
    const auth = await wrong.beta.agents.list().catch((e: unknown) => e);
    expect(auth).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((auth as InstanceType<typeof Anthropic.AuthenticationError>).status).toBe(401);
    expect((auth as InstanceType<typeof Anthropic.AuthenticationError>).error).toMatchObject({
      type: 'error',
      error: { type: 'authentication_error' },
    });

    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const missing = await client.beta.agents.retrieve('agent_doesnotexist').catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(Anthropic.NotFoundError);
    expect((missing as InstanceType<typeof Anthropic.NotFoundError>).error).toMatchObject({ error: { type: 'not_found_error' } });

    const bad = await client.beta.agents
      .create({ name: 'x', model: 'claude-sonnet-5-5', tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'bsh' as 'bash' }] }] })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(Anthropic.BadRequestError);
    expect((bad as Error).message).toContain('tools.0.configs.0.name');

    // Repositories are agent-file and client-library features: an API client names no repository, least of all a
    // path on a worker host (a local repository), neither for a session nor in a stored agent.
    for (const url of ['file:///etc', '/etc', '../tandem', 'https://github.com/acme/widgets']) {
      const repo = { type: 'git_repository', url };
      const session = await client.beta.sessions
        .create({ agent: 'agent_x', environment_id: 'env_x', resources: [{ ...repo, authorization_token: 't' } as never] })
        .catch((e: unknown) => e);
      expect(session, url).toBeInstanceOf(Anthropic.BadRequestError);
      expect((session as Error).message).toContain('resources');
      const stored = await client.beta.agents
        .create({ name: 'repo-agent', model: 'claude-sonnet-5-5', resources: [repo] } as never)
        .catch((e: unknown) => e);
      expect(stored, url).toBeInstanceOf(Anthropic.BadRequestError);
      expect((stored as Error).message).toContain('resources');
    }

    const noName = await client.beta.environments.create({ name: '' }).catch((e: unknown) => e);
    expect(noName).toBeInstanceOf(Anthropic.BadRequestError);
    expect((noName as Error).message).toContain('name');

    // Delete is refused while the session runs (here: a model call that never answers), then allowed when idle.
    const agent = await client.beta.agents.create({ name: 'busy', model: 'claude-sonnet-5-5' });
    const env = await client.beta.environments.create({ name: 'busy-env' });
    h.model.push(hang());
    const session = await client.beta.sessions.create({
      agent: { type: 'agent', id: agent.id, version: 1 },
      environment_id: env.id,
      initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'work' }] }],
    });
    await waitFor(() => client.beta.sessions.retrieve(session.id), (s) => s.status === 'running', 30_000, 'running');
    const refused = await client.beta.sessions.delete(session.id).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(Anthropic.BadRequestError);
    await client.beta.sessions.events.send(session.id, { events: [{ type: 'user.interrupt' }] });
    await waitFor(() => client.beta.sessions.retrieve(session.id), (s) => s.status === 'idle', 30_000, 'idle');
    expect((await client.beta.sessions.delete(session.id)).type).toBe('session_deleted');
    await client.beta.agents.archive(agent.id);
    await client.beta.environments.delete(env.id);
  });

  it('answers tool confirmations and custom tools by the ids of their events', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const agent = await client.beta.agents.create({
      name: 'asker',
      model: 'claude-sonnet-5-5',
      tools: [
        { type: 'agent_toolset_20260401', configs: [{ name: 'bash', permission_policy: { type: 'always_ask' } }] },
        { type: 'custom', name: 'lookup', description: 'Look something up', input_schema: { type: 'object', properties: {} } },
      ],
    });
    const env = await client.beta.environments.create({ name: 'asker-env' });
    h.model.push(
      reply(toolUse('bash', { command: 'rm -rf /workspace' }, 'toolu_ask'), toolUse('lookup', { q: 'x' }, 'toolu_custom')),
      reply('Understood.'),
    );
    const session = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const stream = await client.beta.sessions.events.stream(session.id);
    await client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'clean up' }] }] });
    const seen = await readUntil(stream, (e) => e.type === 'session.status_idle' && (e.stop_reason as { type: string }).type === 'requires_action');
    const ask = seen.find((e) => e.type === 'agent.tool_use')!;
    const custom = seen.find((e) => e.type === 'agent.custom_tool_use')!;
    expect(seen.at(-1)!.stop_reason).toEqual({ type: 'requires_action', event_ids: [ask.id, custom.id] });
    await client.beta.sessions.events.send(session.id, {
      events: [
        { type: 'user.tool_confirmation', tool_use_id: ask.id, result: 'deny', deny_message: 'not that' },
        { type: 'user.custom_tool_result', custom_tool_use_id: custom.id, content: [{ type: 'text', text: 'found it' }] },
      ],
    });
    const rest = await readUntil(stream, idleEndTurn);
    stream.controller.abort();
    expect(rest.find((e) => e.type === 'user.tool_confirmation')).toMatchObject({ tool_use_id: ask.id, result: 'deny' });
    expect(rest.find((e) => e.type === 'user.custom_tool_result')).toMatchObject({ custom_tool_use_id: custom.id });
    expect(rest.find((e) => e.type === 'agent.tool_result')).toMatchObject({ tool_use_id: ask.id, is_error: true });
    // The model saw the denial and the custom result under its own tool-use ids.
    const results = JSON.stringify(h.model.requests.at(-1)!.body.messages);
    expect(results).toContain('not that');
    expect(results).toContain('found it');
    const unknown = await client.beta.sessions.events
      .send(session.id, { events: [{ type: 'user.tool_confirmation', tool_use_id: 'sevt_999_0', result: 'allow' }] })
      .catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(Anthropic.BadRequestError);
    expect((unknown as Error).message).toContain('events[0].tool_use_id');
    await client.beta.sessions.delete(session.id);
  });

  it('resumes a dropped stream with Last-Event-ID: no event lost, none twice', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const agent = await client.beta.agents.create({ name: 'resumer', model: 'claude-sonnet-5-5' });
    const env = await client.beta.environments.create({ name: 'resumer-env' });
    const session = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    h.model.push({ ...reply('Slow answer.'), latencyMs: 500 });
    const first = await client.beta.sessions.events.stream(session.id);
    await client.beta.sessions.events.send(session.id, {
      events: [{ type: 'user.message', content: [{ type: 'text', text: 'take your time' }] }],
    });
    const before = await readUntil(first, (e) => e.type === 'span.model_request_start');
    first.controller.abort(); // the connection drops mid-turn
    const resumed = await client.beta.sessions.events.stream(session.id, {}, { headers: { 'Last-Event-ID': before.at(-1)!.id } });
    const after = await readUntil(resumed, idleEndTurn);
    expect(after.find((e) => e.type === 'agent.message')).toMatchObject({ content: [{ type: 'text', text: 'Slow answer.' }] });
    resumed.controller.abort();
    const ids = [...before, ...after].map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    const log = (await client.beta.sessions.events.list(session.id, { limit: 1000 })).data.map((e) => e.id);
    const start = log.indexOf(ids[0]!);
    expect(log.slice(start, start + ids.length)).toEqual(ids);
    await client.beta.sessions.delete(session.id);
  });

  it('takes user.define_outcome among the initial events and reports the evaluation', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const agent = await client.beta.agents.create({ name: 'graded', model: 'claude-sonnet-5-5' });
    const env = await client.beta.environments.create({ name: 'graded-env' });
    h.model.push(reply('The answer is 4.'));
    graderSteps.push(reply(toolUse('submit_verdict', { result: 'satisfied', explanation: 'It says 4.' }, 'gr_v1')));
    const bad = await client.beta.sessions
      .create({
        agent: agent.id,
        environment_id: env.id,
        initial_events: [{ type: 'user.define_outcome', description: 'x', rubric: { type: 'file', file_id: 'file_1' } }],
      })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(Anthropic.BadRequestError);
    expect((bad as Error).message).toContain('initial_events[0]');
    const session = await client.beta.sessions.create({
      agent: agent.id,
      environment_id: env.id,
      initial_events: [
        { type: 'user.message', content: [{ type: 'text', text: 'What is 2 + 2?' }] },
        { type: 'user.define_outcome', description: 'Answer 2 + 2.', rubric: { type: 'text', content: 'The answer is 4.' }, max_iterations: 2 },
      ],
    });
    const done = await waitFor(
      () => client.beta.sessions.retrieve(session.id),
      (s) => s.outcome_evaluations[0]?.result === 'satisfied' && s.status === 'idle',
      60_000,
      'a satisfied outcome',
    );
    expect(done.outcome_evaluations[0]).toMatchObject({ type: 'outcome_evaluation', description: 'Answer 2 + 2.', explanation: 'It says 4.' });
    const events = (await client.beta.sessions.events.list(session.id, { limit: 1000 })).data as unknown as Event[];
    const defined = events.find((e) => e.type === 'user.define_outcome')!;
    const start = events.find((e) => e.type === 'span.outcome_evaluation_start')!;
    const end = events.find((e) => e.type === 'span.outcome_evaluation_end')!;
    expect(defined.outcome_id).toBe(done.outcome_evaluations[0]!.outcome_id);
    expect(end).toMatchObject({ result: 'satisfied', outcome_evaluation_start_id: start.id });
    await client.beta.sessions.delete(session.id);
  });

  it('forks a session at an event through Tandem\'s extension route', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const agent = await client.beta.agents.create({ name: 'fork-agent', model: 'claude-sonnet-5-5', system: 'You answer briefly.' });
    const env = await client.beta.environments.create({ name: 'fork-env', config: { type: 'cloud' } });
    h.model.push(reply('first answer'));
    const session = await client.beta.sessions.create({
      agent: agent.id,
      environment_id: env.id,
      title: 'origin',
      initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'question one' }] }],
    });
    await readUntil(await client.beta.sessions.events.stream(session.id), idleEndTurn);
    const message = (await client.beta.sessions.events.list(session.id)).data.find((e) => e.type === 'user.message')!;
    h.model.push(reply('another first answer'));
    // The hosted API has no fork: the SDK's own request method reaches Tandem's route.
    const fork = (await client.post(`/v1/sessions/${session.id}/fork`, { body: { event_id: message.id } })) as { id: string; title: string };
    expect(fork.id).toMatch(/^sesn_/);
    expect(fork.id).not.toBe(session.id);
    expect(fork.title).toBe('origin (fork)');
    const all = await waitFor(
      async () => (await client.beta.sessions.events.list(fork.id)).data,
      (events) => events.some((e) => e.type === 'agent.message'),
      60_000,
      'the fork to answer',
    );
    expect(JSON.stringify(all.filter((e) => e.type === 'agent.message'))).toContain('another first answer');
    expect(all[0]).toMatchObject({ type: 'user.message', id: message.id }); // the origin's, up to the fork point
    expect(all.some((e) => e.type === ('session.forked' as string))).toBe(true);
    expect((await client.beta.sessions.retrieve(fork.id)).agent).toMatchObject({ id: agent.id });
    await expect(client.post(`/v1/sessions/${session.id}/fork`, { body: { event_id: 'sevt_nope' } })).rejects.toMatchObject({
      status: 400,
    });
  });
});
