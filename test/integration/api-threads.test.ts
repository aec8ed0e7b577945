/**
 * Multiagent sessions through the Managed Agents API, with nothing but the official SDK: a sub-agent's call that
 * waits for the user shows on the session's (primary thread's) events with its thread, is answered there by the id
 * of that event, and reaches the sub-agent; an interrupt can name one thread.
 */
import Anthropic from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { hang, readUntil, reply, toolUse, useApiHarness, waitFor, type ApiStreamEvent } from '../helpers/api.js';
import { toolResults } from '../helpers/env.js';
import type { PlainStep, RecordedRequest } from '../fakes/messages-server.js';

/**
 * Scripted replies per agent: a request belongs to the first key its system prompt contains. Parent and child
 * each have their own conversation, so each has its own script.
 */
const scripts = new Map<string, PlainStep[]>();
const seen = new Map<string, RecordedRequest[]>();
function route(req: RecordedRequest): PlainStep | undefined {
  const system = JSON.stringify(req.body.system ?? '');
  for (const [key, steps] of scripts) {
    if (!system.includes(key)) continue;
    seen.set(key, [...(seen.get(key) ?? []), req]);
    const step = steps.shift();
    if (!step) throw new Error(`script "${key}" has no step left`);
    return step;
  }
  return undefined;
}

const h = useApiHarness('api-threads', { responder: route, assertDone: true });

type Event = ApiStreamEvent;

const idle = (reason: string) => (e: Event) =>
  e.type === 'session.status_idle' && (e.stop_reason as { type: string }).type === reason;

type Confirmation = Anthropic.Beta.Sessions.BetaManagedAgentsUserToolConfirmationEventParams;

/** A confirmation that names its thread too: the API takes `session_thread_id`, which this SDK's param type lacks. */
function allowIn(toolUseId: string, thread: string): Confirmation {
  const event = { type: 'user.tool_confirmation' as const, tool_use_id: toolUseId, result: 'allow' as const, session_thread_id: thread };
  return event;
}

/** A lead agent whose roster is `helper`, and an environment: what each test starts its session with. */
async function team(client: Anthropic, helper: Anthropic.Beta.BetaManagedAgentsAgent) {
  const lead = await client.beta.agents.create({
    name: 'lead',
    model: 'claude-sonnet-5-5',
    system: 'You are lead.',
    multiagent: { type: 'coordinator', agents: [{ type: 'agent', id: helper.id }] },
  });
  const env = await client.beta.environments.create({ name: `${helper.name}-env` });
  return { lead, env };
}

describe('sub-agent threads through the official SDK', () => {
  it("shows a sub-agent's permission request on the session's events and takes its confirmation there", async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const careful = await client.beta.agents.create({
      name: 'careful',
      model: 'claude-sonnet-5-5',
      system: 'You are careful.',
      tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'bash', permission_policy: { type: 'always_ask' } }] }],
    });
    const { lead, env } = await team(client, careful);
    scripts.set('You are lead.', [reply(toolUse('delegate', { agent: 'careful', task: 'remove the file' }, 'tu_del')), reply('Removed.')]);
    scripts.set('You are careful.', [reply(toolUse('bash', { command: 'echo removed' }, 'tu_rm')), reply('removed it')]);

    const session = await client.beta.sessions.create({ agent: lead.id, environment_id: env.id });
    const stream = await client.beta.sessions.events.stream(session.id);
    await client.beta.sessions.events.send(session.id, {
      events: [{ type: 'user.message', content: [{ type: 'text', text: 'remove it, carefully' }] }],
    });
    const before = await readUntil(stream, idle('requires_action'));

    // The thread, and the blocking event the idle event names: the child's bash call, cross-posted with its thread.
    const thread = before.find((e) => e.type === 'session.thread_created')!;
    expect(thread).toMatchObject({ agent_name: 'careful', session_thread_id: `${session.id}.tu_del` });
    const threadId = thread.session_thread_id as string;
    const waiting = before.at(-1)!.stop_reason as { event_ids: string[] };
    expect(waiting.event_ids).toHaveLength(1);
    const ask = before.find((e) => e.id === waiting.event_ids[0]);
    expect(ask).toMatchObject({ type: 'agent.tool_use', name: 'bash', input: { command: 'echo removed' }, session_thread_id: threadId });
    expect((await client.beta.sessions.retrieve(session.id)).status).toBe('idle');
    // The thread's own stop shows too: it waits on the same event.
    expect(before.find((e) => e.type === 'session.thread_status_idle')).toMatchObject({
      session_thread_id: threadId,
      agent_name: 'careful',
      stop_reason: { type: 'requires_action', event_ids: [ask!.id] },
    });

    // The list has the same event under the same id; ids stay unique though the child's log reuses positions.
    const listed = (await client.beta.sessions.events.list(session.id, { limit: 1000 })).data as unknown as Event[];
    expect(listed.find((e) => e.id === ask!.id)).toEqual(ask);
    expect(new Set(listed.map((e) => e.id)).size).toBe(listed.length);

    // Answers that name no thread of the session, or the wrong one, are refused and change nothing.
    const noThread = await client.beta.sessions.events
      .send(session.id, { events: [allowIn(ask!.id, 'sthr_nope')] })
      .catch((e: unknown) => e);
    expect(noThread).toBeInstanceOf(Anthropic.BadRequestError);
    expect((noThread as Error).message).toContain('events[0].session_thread_id');
    expect((noThread as Error).message).toContain('sthr_nope');
    const wrongKind = await client.beta.sessions.events
      .send(session.id, { events: [{ type: 'user.custom_tool_result', custom_tool_use_id: ask!.id }] })
      .catch((e: unknown) => e);
    expect(wrongKind).toBeInstanceOf(Anthropic.BadRequestError);
    expect((wrongKind as Error).message).toContain('events[0].custom_tool_use_id');

    // The confirmation, sent to the session by the event's id (and, as the thread's, with its thread).
    const sent = await client.beta.sessions.events.send(session.id, { events: [allowIn(ask!.id, threadId)] });
    expect(sent.data?.[0]).toMatchObject({ type: 'user.tool_confirmation', tool_use_id: ask!.id, session_thread_id: threadId });
    const after = await readUntil(stream, idle('end_turn'));
    stream.controller.abort();
    expect(after.find((e) => e.type === 'user.tool_confirmation')).toMatchObject({
      id: sent.data![0]!.id,
      tool_use_id: ask!.id,
      result: 'allow',
      session_thread_id: threadId,
    });
    // Answered, the thread runs again, then stops for good.
    expect(after.filter((e) => e.type.startsWith('session.thread_status_')).map((e) => e.type)).toEqual([
      'session.thread_status_running',
      'session.thread_status_idle',
      'session.thread_status_terminated',
    ]);
    const delegated = after.find((e) => e.type === 'agent.tool_result')!;
    expect(delegated).toMatchObject({ session_thread_id: threadId, is_error: false, content: [{ type: 'text', text: 'removed it' }] });
    expect(after.find((e) => e.type === 'agent.message')).toMatchObject({ content: [{ type: 'text', text: 'Removed.' }] });

    // The child ran the tool; each model saw only its own calls.
    expect(toolResults(seen.get('You are careful.')!.at(-1)!).get('tu_rm')).toMatchObject({ content: 'removed' });
    const leadLast = seen.get('You are lead.')!.at(-1)!;
    expect(toolResults(leadLast).get('tu_del')).toMatchObject({ content: 'removed it' });
    expect(JSON.stringify(leadLast.body.messages)).not.toContain('tu_rm');

    // The thread through the threads endpoints: listed, retrieved, its own log, and an unknown thread named.
    const threads = (await client.beta.sessions.threads.list(session.id)).data;
    expect(threads).toEqual([
      expect.objectContaining({ type: 'session_thread', id: threadId, session_id: session.id, parent_thread_id: session.id, archived_at: null }),
    ]);
    expect(threads[0]!.agent).toMatchObject({ name: 'careful' });
    expect(['idle', 'terminated']).toContain(threads[0]!.status);
    expect(await client.beta.sessions.threads.retrieve(threadId, { session_id: session.id })).toEqual(threads[0]);
    expect((await client.beta.sessions.threads.list(session.id, { statuses: ['running'] })).data).toEqual([]);
    const own = (await client.beta.sessions.threads.events.list(threadId, { session_id: session.id })).data as unknown as Event[];
    expect(own.find((e) => e.type === 'agent.tool_use')).toMatchObject({ name: 'bash', input: { command: 'echo removed' } });
    expect(own.find((e) => e.type === 'agent.tool_result')).toMatchObject({ is_error: false, content: [{ type: 'text', text: 'removed' }] });
    // The thread's live stream opens (as the session's does: at the end of its log, unless Last-Event-ID says where).
    const threadStream = await client.beta.sessions.threads.events.stream(threadId, { session_id: session.id });
    threadStream.controller.abort();
    const unknown = await client.beta.sessions.threads.retrieve('sthr_nope', { session_id: session.id }).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(Anthropic.NotFoundError);
    expect((unknown as Error).message).toContain(`session \\"${session.id}\\" has no thread \\"sthr_nope\\"`);
    await client.beta.sessions.delete(session.id);
  });

  it("takes a sub-agent's custom tool result by the id of the event the session shows", async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const asker = await client.beta.agents.create({
      name: 'asker',
      model: 'claude-sonnet-5-5',
      system: 'You are asker.',
      tools: [{ type: 'custom', name: 'pick_colour', description: 'Ask the user for a colour', input_schema: { type: 'object', properties: {} } }],
    });
    const { lead, env } = await team(client, asker);
    scripts.set('You are lead.', [reply(toolUse('delegate', { agent: 'asker', task: 'find a colour' }, 'tu_del2')), reply('Blue it is.')]);
    scripts.set('You are asker.', [reply(toolUse('pick_colour', {}, 'tu_pick')), reply('blue')]);

    const session = await client.beta.sessions.create({
      agent: lead.id,
      environment_id: env.id,
      initial_events: [{ type: 'user.message', content: [{ type: 'text', text: 'which colour?' }] }],
    });
    const waiting = await waitFor(
      () => client.beta.sessions.events.list(session.id, { types: ['session.status_idle'], order: 'desc', limit: 1 }),
      (p) => (p.data[0] as Event | undefined)?.stop_reason !== undefined && ((p.data[0] as Event).stop_reason as { type: string }).type === 'requires_action',
      60_000,
      'the session to wait for the custom tool',
    );
    const [eventId] = ((waiting.data[0] as Event).stop_reason as { event_ids: string[] }).event_ids;
    const events = (await client.beta.sessions.events.list(session.id, { limit: 1000 })).data as unknown as Event[];
    const custom = events.find((e) => e.id === eventId)!;
    expect(custom).toMatchObject({ type: 'agent.custom_tool_use', name: 'pick_colour', session_thread_id: `${session.id}.tu_del2` });

    // Sent as the SDK types it: by the event id alone; the server finds the thread.
    const stream = await client.beta.sessions.events.stream(session.id);
    const sent = await client.beta.sessions.events.send(session.id, {
      events: [{ type: 'user.custom_tool_result', custom_tool_use_id: eventId!, content: [{ type: 'text', text: 'blue' }] }],
    });
    expect(sent.data?.[0]).toMatchObject({ custom_tool_use_id: eventId, session_thread_id: custom.session_thread_id });
    const after = await readUntil(stream, idle('end_turn'));
    stream.controller.abort();
    expect(after.find((e) => e.type === 'agent.tool_result')).toMatchObject({ is_error: false, content: [{ type: 'text', text: 'blue' }] });
    expect(toolResults(seen.get('You are asker.')!.at(-1)!).get('tu_pick')).toMatchObject({ content: 'blue' });

    // Answered once: the same answer again is refused, as the call no longer waits.
    const again = await client.beta.sessions.events
      .send(session.id, { events: [{ type: 'user.custom_tool_result', custom_tool_use_id: eventId! }] })
      .catch((e: unknown) => e);
    expect(again).toBeInstanceOf(Anthropic.BadRequestError);
    expect((again as Error).message).toContain('not one that session');
    await client.beta.sessions.delete(session.id);
  });

  it('interrupts the one thread a user.interrupt names; the parent reads the interrupted delegation and goes on', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const slow = await client.beta.agents.create({ name: 'slow', model: 'claude-sonnet-5-5', system: 'You are slow.' });
    const { lead, env } = await team(client, slow);
    scripts.set('You are lead.', [reply(toolUse('delegate', { agent: 'slow', task: 'think hard' }, 'tu_del3')), reply('It was stopped.')]);
    scripts.set('You are slow.', [hang()]);

    const session = await client.beta.sessions.create({ agent: lead.id, environment_id: env.id });
    const stream = await client.beta.sessions.events.stream(session.id);
    await client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'go' }] }] });
    const started = await readUntil(stream, (e) => e.type === 'session.thread_created');
    const threadId = started.at(-1)!.session_thread_id as string;
    await waitFor(() => Promise.resolve(seen.get('You are slow.')?.length ?? 0), (n) => n > 0, 60_000, "the child's model call");

    const unknown = await client.beta.sessions.events
      .send(session.id, { events: [{ type: 'user.interrupt', session_thread_id: `${session.id}.tu_other` }] })
      .catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(Anthropic.BadRequestError);
    expect((unknown as Error).message).toContain('events[0].session_thread_id');

    const sent = await client.beta.sessions.events.send(session.id, {
      events: [{ type: 'user.interrupt', session_thread_id: threadId }],
    });
    expect(sent.data?.[0]).toMatchObject({ type: 'user.interrupt', session_thread_id: threadId });
    const after = await readUntil(stream, idle('end_turn'));
    stream.controller.abort();
    const delegated = after.find((e) => e.type === 'agent.tool_result')!;
    expect(delegated).toMatchObject({ session_thread_id: threadId, is_error: true });
    expect(JSON.stringify(delegated.content)).toContain('interrupted');
    // Only the thread stopped: the parent went on to its next model call and answered.
    expect(after.find((e) => e.type === 'agent.message')).toMatchObject({ content: [{ type: 'text', text: 'It was stopped.' }] });
    expect(after.some((e) => e.type === 'user.interrupt')).toBe(false); // the interrupt is in the thread's own log
    expect((await h.tandem.getEvents(threadId)).some((e) => e.type === 'user.interrupt')).toBe(true);

    // The thread has ended: interrupting it again has nothing to stop.
    const ended = await client.beta.sessions.events
      .send(session.id, { events: [{ type: 'user.interrupt', session_thread_id: threadId }] })
      .catch((e: unknown) => e);
    expect(ended).toBeInstanceOf(Anthropic.BadRequestError);
    expect((ended as Error).message).toContain('has ended');
    await client.beta.sessions.delete(session.id);
  });
  it('shows each thread on the session stream: its start, the task sent, the answer received, its stop and its end', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const helper = await client.beta.agents.create({ name: 'summer', model: 'claude-sonnet-5-5', system: 'You are summer.' });
    // The form the SDK recommends, as Tandem runs it: predefined sub-agents, and nothing else.
    const lead = await client.beta.agents.create({
      name: 'lead-20261001',
      model: 'claude-sonnet-5-5',
      system: 'You are lead 20261001.',
      multiagent: {
        type: 'multiagent_20261001',
        subagents: { type: 'enabled', inline_agents: { type: 'disabled' }, predefined_agents: [helper.id] },
        workflows: { type: 'disabled' },
      },
    });
    expect(lead.multiagent).toMatchObject({ type: 'coordinator', agents: [expect.objectContaining({ id: helper.id })] });
    const env = await client.beta.environments.create({ name: 'threads-status-env' });
    scripts.set('You are lead 20261001.', [reply(toolUse('delegate', { agent: 'summer', task: 'add 2 and 3' }, 'tu_sum')), reply('It is 5.')]);
    scripts.set('You are summer.', [reply('5')]);

    const session = await client.beta.sessions.create({ agent: lead.id, environment_id: env.id });
    const stream = await client.beta.sessions.events.stream(session.id);
    await client.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'sum' }] }] });
    const events = await readUntil(stream, idle('end_turn'));
    stream.controller.abort();
    const threadId = `${session.id}.tu_sum`;
    const onThread = events.filter((e) => e.type.startsWith('session.thread_') || e.type.startsWith('agent.thread_') || e.type === 'agent.tool_result');
    expect(onThread.map((e) => e.type)).toEqual([
      'session.thread_created',
      'session.thread_status_running',
      'agent.thread_message_sent',
      'agent.tool_result',
      'agent.thread_message_received',
      'session.thread_status_idle',
      'session.thread_status_terminated',
    ]);
    expect(onThread[1]).toMatchObject({ session_thread_id: threadId, agent_name: 'summer' });
    expect(onThread[2]).toMatchObject({ to_session_thread_id: threadId, to_agent_name: 'summer', content: [{ type: 'text', text: 'add 2 and 3' }] });
    expect(onThread[4]).toMatchObject({ from_session_thread_id: threadId, from_agent_name: 'summer', content: [{ type: 'text', text: '5' }] });
    expect(onThread[5]).toMatchObject({ session_thread_id: threadId, stop_reason: { type: 'end_turn' }, stop_details: null });
    // The list shows the same events under the same ids.
    const listed = (await client.beta.sessions.events.list(session.id, { limit: 1000 })).data as unknown as Event[];
    for (const e of onThread) expect(listed.find((l) => l.id === e.id)).toEqual(e);
    await client.beta.sessions.delete(session.id);
  });

  it('refuses the members of multiagent_20261001 that Tandem does not run, naming each', async () => {
    const client = new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });
    const helper = await client.beta.agents.create({ name: 'plain-helper', model: 'claude-sonnet-5-5' });
    const predefined = { type: 'enabled' as const, inline_agents: { type: 'disabled' as const }, predefined_agents: [helper.id] };
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ subagents: predefined }, /multiagent\.workflows: Tandem runs no workflow runs, which are enabled by default; send \{type: "disabled"\}/],
      [{ subagents: { type: 'enabled', predefined_agents: [helper.id] }, workflows: { type: 'disabled' } }, /multiagent\.subagents\.inline_agents: Tandem runs predefined sub-agents only/],
      [{ subagents: predefined, workflows: { type: 'disabled' }, advisor: { type: 'enabled', model: 'claude-opus-5' } }, /multiagent\.advisor: Tandem has no advisor model/],
      [{ subagents: { ...predefined, predefined_agents: [] }, workflows: { type: 'disabled' } }, /multiagent\.subagents\.predefined_agents: must list 1 to 20 agents/],
    ];
    for (const [members, message] of cases) {
      const params = { name: 'refused', model: 'claude-sonnet-5-5', multiagent: { type: 'multiagent_20261001', ...members } };
      const err = await client.beta.agents.create(params as unknown as Anthropic.Beta.AgentCreateParams).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Anthropic.BadRequestError);
      expect(((err as InstanceType<typeof Anthropic.BadRequestError>).error as { error: { message: string } }).error.message).toMatch(message);
    }
  });
});
