/**
 * Many brains, many hands: delegations as child sessions with their own logs, parallel children, a sandbox handed
 * to a child and back, interrupts that reach children, the depth limit, and a child whose container dies.
 */
import Docker from 'dockerode';
import proto from '@temporalio/proto';
import type { WorkflowHandle } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { apiError, reply, text, toolUse, type PlainStep, type RecordedRequest } from '../fakes/messages-server.js';
import { readHistory } from '../../src/log/read.js';
import type { SessionEvent } from '../../src/log/events.js';
import type { AgentDefinition } from '../../src/shared/types.js';
import {
  sessionState,
  startSession,
  testAgent,
  toolResults,
  useHarness,
  waitFor,
  runCli,
  recordSession,
  waitIdle,
  sandboxName,
} from '../helpers/env.js';

const docker = new Docker();

/**
 * Scripted replies per conversation: a request belongs to the first key that its system prompt or first user
 * message contains. Children run in parallel, so one global script order would not do.
 */
const scripts = new Map<string, PlainStep[]>();
const seen = new Map<string, RecordedRequest[]>();
function route(req: RecordedRequest): PlainStep | undefined {
  const first = JSON.stringify(req.body.messages?.[0]?.content ?? '');
  const system = JSON.stringify(req.body.system ?? '');
  for (const [key, steps] of scripts) {
    if (!first.includes(key) && !system.includes(key)) continue;
    seen.set(key, [...(seen.get(key) ?? []), req]);
    const step = steps.shift();
    if (!step) throw new Error(`script "${key}" has no step left`);
    return step;
  }
  return undefined;
}

const h = useHarness('delegation', { responder: route, assertDone: true, record: 'delegation' });

const worker = (name: string, overrides: Partial<AgentDefinition> = {}): AgentDefinition =>
  testAgent({ name, description: `the ${name}`, system: `You are ${name}.`, ...overrides });

function lead(subAgents: AgentDefinition[], extra: Partial<NonNullable<AgentDefinition['multiagent']>> = {}): AgentDefinition {
  return testAgent({
    name: 'lead',
    system: 'You are lead.',
    multiagent: { type: 'coordinator', agents: subAgents.map((definition) => ({ type: 'agent' as const, definition })), ...extra },
  });
}

/** The history events of one session, every run. */
function historyOf(id: string) {
  return readHistory(h.client, id);
}

const ET = proto.temporal.api.enums.v1.EventType;
const seconds = (t: proto.google.protobuf.ITimestamp | null | undefined) => Number(t?.seconds ?? 0) + (t?.nanos ?? 0) / 1e9;

/** [start, end] of each `execute` activity of a session, from its history. */
async function executeSpans(id: string): Promise<Array<[number, number]>> {
  const events = await historyOf(id);
  const spans: Array<[number, number]> = [];
  const started = new Map<number, number>();
  for (const e of events) {
    if (e.eventType === ET.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED && e.activityTaskScheduledEventAttributes?.activityType?.name === 'execute')
      started.set(Number(e.eventId), seconds(e.eventTime));
    if (e.eventType === ET.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) {
      const s = started.get(Number(e.activityTaskCompletedEventAttributes?.scheduledEventId));
      if (s !== undefined) spans.push([s, seconds(e.eventTime)]);
    }
  }
  return spans;
}

/** The ID of the first child session a session runs, once it runs one. */
function firstChild(handle: WorkflowHandle): Promise<string | undefined> {
  return waitFor(async () => (await sessionState(handle)).children?.[0], (id) => id !== undefined, 60_000, 'child session');
}

function threads(events: SessionEvent[]): SessionEvent[] {
  return events.filter((e) => e.type === 'session.thread_created');
}

describe('delegation to sub-agents', () => {
  it('runs two delegations of one turn at once; each child has its own log; only answers come back', async () => {
    scripts.set('You are lead.', [
      reply(
        text('Splitting the work.'),
        toolUse('delegate', { agent: 'counter', task: 'count-alpha: count the letters' }, 'tu_d1'),
        toolUse('delegate', { agent: 'counter', task: 'count-beta: count the words' }, 'tu_d2'),
      ),
      reply('Both answered.'),
    ]);
    scripts.set('count-alpha', [reply(toolUse('bash', { command: 'sleep 8; echo alpha-done' }, 'tu_a')), reply('alpha: 5 letters')]);
    scripts.set('count-beta', [reply(toolUse('bash', { command: 'sleep 8; echo beta-done' }, 'tu_b')), reply('beta: 2 words')]);

    const handle = await startSession(h.client, h.queue, { agent: lead([worker('counter')]) }, 'count things');
    await waitIdle(handle, 'end_turn', 2, 120_000);
    const parentEvents = await h.tandem.getEvents(handle.workflowId);
    const created = threads(parentEvents);
    expect(created.map((e) => e.agent_name)).toEqual(['counter', 'counter']);
    // Children start in either order; take them in the order of the calls.
    const childIds = ['tu_d1', 'tu_d2'].map((t) => created.find((e) => e.tool_use_id === t)!.session_thread_id as string);
    expect(new Set(childIds).size).toBe(2);

    // Only the children's final answers reach the parent's model, as the delegate calls' results.
    const last = seen.get('You are lead.')!.at(-1)!;
    const results = toolResults(last);
    expect(results.get('tu_d1')).toMatchObject({ content: 'alpha: 5 letters' });
    expect(results.get('tu_d2')).toMatchObject({ content: 'beta: 2 words' });
    expect(JSON.stringify(last.body.messages)).not.toContain('alpha-done');

    // Each child has its own readable log with its own tool call.
    for (const [id, marker] of [[childIds[0]!, 'alpha-done'], [childIds[1]!, 'beta-done']] as const) {
      const events = await h.tandem.getEvents(id);
      expect(events.find((e) => e.type === 'user.message')?.content).toEqual([{ type: 'text', text: expect.stringContaining('count-') }]);
      expect(JSON.stringify(events.filter((e) => e.type === 'agent.tool_result'))).toContain(marker);
      expect(events.at(-1)?.type).toBe('session.status_terminated');
    }
    // The two children's tool calls overlapped in time (each sleeps 8 s: room for a slow provision of the other).
    const [a] = await executeSpans(childIds[0]!);
    const [b] = await executeSpans(childIds[1]!);
    expect(a![0]).toBeLessThan(b![1]);
    expect(b![0]).toBeLessThan(a![1]);
    // Fresh sandboxes are removed with the child that used them.
    for (const id of childIds) {
      await waitFor(
        () => docker.getContainer(sandboxName(id)).inspect().then(() => 'exists', () => 'gone'),
        (s) => s === 'gone',
        30_000,
        'child container removal',
      );
    }

    // `tandem events --tree` prints the children's logs under the parent's.
    const { stdout: out, code } = await runCli(['events', handle.workflowId, '--tree'], h.queue, h.model.url);
    expect(code).toBe(0);
    expect(out).toMatch(/\n {4}\s*\S+\s+agent\.tool_result\s+ok alpha-done/);
    expect(out).toMatch(/session\.thread_created\s+counter /);
    await handle.cancel();
  });

  it('hands its sandbox to a child, which sees and changes the files; the parent gets it back', async () => {
    scripts.set('You are lead.', [
      reply(toolUse('write', { file_path: '/workspace/shared.txt', content: 'from lead\n' }, 'tu_w')),
      reply(toolUse('delegate', { agent: 'editor', task: 'append-task: append a line', sandbox: 'share' }, 'tu_share')),
      reply(toolUse('bash', { command: 'cat /workspace/shared.txt' }, 'tu_cat')),
      reply('The file has both lines.'),
    ]);
    scripts.set('append-task', [
      reply(toolUse('bash', { command: 'cat /workspace/shared.txt && echo "from editor" >> /workspace/shared.txt' }, 'tu_app')),
      reply('Appended.'),
    ]);
    const handle = await startSession(h.client, h.queue, { agent: lead([worker('editor')]) }, 'share the workspace');
    await waitIdle(handle, 'end_turn', 4, 120_000);
    const childId = threads(await h.tandem.getEvents(handle.workflowId))[0]!.session_thread_id as string;
    const childResults = toolResults(seen.get('append-task')!.at(-1)!);
    expect(childResults.get('tu_app')?.content).toContain('from lead');
    const results = toolResults(seen.get('You are lead.')!.at(-1)!);
    expect(results.get('tu_share')).toMatchObject({ content: 'Appended.' });
    expect(results.get('tu_cat')?.content).toMatch(/from lead\s+from editor/);

    // One container served both sessions, and the child left it running for the parent.
    const parentRuns = (await h.tandem.getEvents(handle.workflowId)).filter((e) => e.type === 'agent.tool_result' && e.container_id);
    const childRuns = (await h.tandem.getEvents(childId)).filter((e) => e.type === 'agent.tool_result' && e.container_id);
    expect(new Set([...parentRuns, ...childRuns].map((e) => e.container_id)).size).toBe(1);
    const info = await docker.getContainer(sandboxName(handle.workflowId)).inspect();
    expect(info.State.Running).toBe(true);
    await expect(docker.getContainer(sandboxName(childId)).inspect()).rejects.toThrow();
    // The parent's own tool call ran only after the child had ended.
    const [childSpan] = await executeSpans(childId);
    const parentSpans = await executeSpans(handle.workflowId);
    expect(parentSpans.at(-1)![0]).toBeGreaterThanOrEqual(childSpan![1]);
    await handle.cancel();
  });

  it('two delegations that share the sandbox take turns in it', async () => {
    scripts.set('You are lead.', [
      reply(
        toolUse('delegate', { agent: 'editor', task: 'turn-one: append one', sandbox: 'share' }, 'tu_s1'),
        toolUse('delegate', { agent: 'editor', task: 'turn-two: append two', sandbox: 'share' }, 'tu_s2'),
      ),
      reply('Both done.'),
    ]);
    scripts.set('turn-one', [reply(toolUse('bash', { command: 'sleep 2; echo one >> /workspace/turns.txt' }, 'tu_1')), reply('one')]);
    scripts.set('turn-two', [reply(toolUse('bash', { command: 'sleep 2; echo two >> /workspace/turns.txt' }, 'tu_2')), reply('two')]);
    const handle = await startSession(h.client, h.queue, { agent: lead([worker('editor')]) }, 'take turns');
    await waitIdle(handle, 'end_turn', 2, 120_000);
    const created = threads(await h.tandem.getEvents(handle.workflowId));
    const [one, two] = ['tu_s1', 'tu_s2'].map((t) => created.find((e) => e.tool_use_id === t)!.session_thread_id as string);
    const [a] = await executeSpans(one!);
    const [b] = await executeSpans(two!);
    expect(b![0]).toBeGreaterThanOrEqual(a![1]); // the second child started its tool after the first had ended
    expect(toolResults(seen.get('You are lead.')!.at(-1)!).get('tu_s2')).toMatchObject({ content: 'two' });
    await handle.cancel();
  });

  it('interrupting the parent cancels its running child', async () => {
    scripts.set('You are lead.', [reply(toolUse('delegate', { agent: 'sleeper', task: 'sleep-task: wait a while' }, 'tu_sl'))]);
    scripts.set('sleep-task', [reply(toolUse('bash', { command: 'sleep 120' }, 'tu_sleep'))]);
    const handle = await startSession(h.client, h.queue, { agent: lead([worker('sleeper')]) }, 'start a long job');
    const childId = await firstChild(handle);
    await waitFor(
      () => docker.getContainer(sandboxName(childId!)).top().then((t) => JSON.stringify(t.Processes), () => ''),
      (ps) => ps.includes('sleep 120'),
      60_000,
      "the child's tool call",
    );
    await h.tandem.interrupt(handle.workflowId);
    const state = await waitIdle(handle, 'end_turn', 1, 60_000);
    expect(state.children ?? []).toEqual([]);
    const child = await h.client.workflow.getHandle(childId!).describe();
    expect(child.status.name).toBe('COMPLETED');
    const childEvents = await h.tandem.getEvents(childId!);
    expect(childEvents.find((e) => e.type === 'agent.tool_result')).toMatchObject({ is_error: true });
    expect(childEvents.at(-1)?.type).toBe('session.status_terminated');
    const result = (await h.tandem.getEvents(handle.workflowId)).find((e) => e.type === 'agent.tool_result');
    expect(result).toMatchObject({ tool_use_id: 'tu_sl', is_error: true });
    expect(JSON.stringify(result!.content)).toContain('interrupted');
    await handle.cancel();
  });

  it('a child stopped on a model error waits; waking the parent wakes it', async () => {
    scripts.set('You are lead.', [reply(toolUse('delegate', { agent: 'flaky', task: 'flaky-task: try' }, 'tu_fl')), reply('Got it.')]);
    scripts.set('flaky-task', [apiError(400, { message: 'bad request for now' }), reply('flaky answered')]);
    const handle = await startSession(h.client, h.queue, { agent: lead([worker('flaky')]) }, 'try the flaky one');
    const childId = await firstChild(handle);
    const child = h.client.workflow.getHandle(childId!);
    await waitIdle(child, 'retries_exhausted', 0);
    expect((await sessionState(handle)).status).toBe('running');
    await h.tandem.wake(handle.workflowId);
    await waitIdle(handle, 'end_turn', 2, 60_000);
    expect(toolResults(seen.get('You are lead.')!.at(-1)!).get('tu_fl')).toMatchObject({ content: 'flaky answered' });
    await handle.cancel();
  });

  it("a sub-agent's call that waits for the user shows on the parent, and an answer sent to the parent reaches it", async () => {
    const careful = worker('careful', {
      tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'bash', permission_policy: { type: 'always_ask' } }] }],
    });
    scripts.set('You are lead.', [reply(toolUse('delegate', { agent: 'careful', task: 'ask-task: delete it' }, 'tu_ca')), reply('Deleted.')]);
    scripts.set('ask-task', [reply(toolUse('bash', { command: 'echo removed' }, 'tu_rm')), reply('removed it')]);
    const handle = await startSession(h.client, h.queue, { agent: lead([careful]) }, 'delete it carefully');
    const waiting = await waitIdle(handle, 'requires_action', 1);
    const childId = waiting.children?.[0];
    expect(waiting.pending).toEqual([
      { tool_use_id: 'tu_rm', name: 'bash', kind: 'confirmation', input: { command: 'echo removed' }, session_id: childId },
    ]);
    await h.tandem.confirmTool(handle.workflowId, 'tu_rm', true);
    const done = await waitIdle(handle, 'end_turn', 2);
    expect(done.pending).toEqual([]);
    expect(toolResults(seen.get('ask-task')!.at(-1)!).get('tu_rm')).toMatchObject({ content: 'removed' });
    expect(toolResults(seen.get('You are lead.')!.at(-1)!).get('tu_ca')).toMatchObject({ content: 'removed it' });
    await handle.cancel();
  });

  it("a sub-agent's sub-agent's waiting call reaches the session at the top, and its answer goes back down", async () => {
    const careful = worker('careful', {
      tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'bash', permission_policy: { type: 'always_ask' } }] }],
    });
    const middle = worker('middle', { multiagent: { type: 'coordinator', agents: [{ type: 'agent', definition: careful }] } });
    scripts.set('You are lead.', [reply(toolUse('delegate', { agent: 'middle', task: 'middle-task: get it removed' }, 'tu_mid')), reply('All removed.')]);
    scripts.set('middle-task', [reply(toolUse('delegate', { agent: 'careful', task: 'deep-task: remove it' }, 'tu_deep')), reply('careful removed it')]);
    scripts.set('deep-task', [reply(toolUse('bash', { command: 'echo deep-removed' }, 'tu_deep_rm')), reply('deep-removed')]);
    const handle = await startSession(h.client, h.queue, { agent: lead([middle]) }, 'remove it through two levels');
    const waiting = await waitIdle(handle, 'requires_action', 1);
    const middleId = waiting.children?.[0];
    // The call waits two levels down; the top shows it, naming its own child as the session to forward to.
    expect(waiting.pending).toEqual([
      { tool_use_id: 'tu_deep_rm', name: 'bash', kind: 'confirmation', input: { command: 'echo deep-removed' }, session_id: middleId },
    ]);
    const middleHandle = h.client.workflow.getHandle(middleId!);
    recordSession(middleHandle);
    const deepId = (await sessionState(middleHandle)).children?.[0];
    expect(deepId).toBe(`${middleId}.tu_deep`);
    await h.tandem.confirmTool(handle.workflowId, 'tu_deep_rm', true);
    const done = await waitIdle(handle, 'end_turn', 2);
    expect(done.pending).toEqual([]);
    expect(toolResults(seen.get('deep-task')!.at(-1)!).get('tu_deep_rm')).toMatchObject({ content: 'deep-removed' });
    expect(toolResults(seen.get('middle-task')!.at(-1)!).get('tu_deep')).toMatchObject({ content: 'deep-removed' });
    expect(toolResults(seen.get('You are lead.')!.at(-1)!).get('tu_mid')).toMatchObject({ content: 'careful removed it' });
    await handle.cancel();
  });

  it('refuses a delegation past the depth limit as a tool error the model sees', async () => {
    const self = testAgent({
      name: 'recursive',
      system: 'You are recursive.',
      multiagent: { type: 'coordinator', agents: [{ type: 'self' }], max_depth: 1 },
    });
    scripts.set('level-0', [
      reply(toolUse('delegate', { agent: 'recursive', task: 'level-1: go one deeper' }, 'tu_l1')),
      reply('Done at level 0.'),
    ]);
    scripts.set('level-1', [
      reply(toolUse('delegate', { agent: 'recursive', task: 'level-2: deeper still' }, 'tu_l2')),
      reply('Did it myself at level 1.'),
    ]);
    const handle = await startSession(h.client, h.queue, { agent: self }, 'level-0: start');
    await waitIdle(handle, 'end_turn', 2, 120_000);
    const l1 = toolResults(seen.get('level-1')!.at(-1)!);
    expect(l1.get('tu_l2')).toMatchObject({ is_error: true, content: expect.stringContaining('at most 1 deep') });
    const l0 = toolResults(seen.get('level-0')!.at(-1)!);
    expect(l0.get('tu_l1')).toMatchObject({ content: 'Did it myself at level 1.' });
    await handle.cancel();
  });

  it('a child whose container is killed mid-task recovers; the parent is unaffected', async () => {
    scripts.set('You are lead.', [
      reply(toolUse('delegate', { agent: 'builder', task: 'build-task: build it' }, 'tu_build')),
      reply('Built.'),
    ]);
    scripts.set('build-task', [reply(toolUse('bash', { command: 'sleep 4; echo build-ok' }, 'tu_make')), reply('build-ok reported')]);
    const handle = await startSession(h.client, h.queue, { agent: lead([worker('builder')]) }, 'build');
    const childId = await firstChild(handle);
    const container = docker.getContainer(sandboxName(childId!));
    // Kill it while the tool call runs in it.
    await waitFor(
      () => container.top().then((t) => JSON.stringify(t.Processes), () => ''),
      (ps) => ps.includes('sleep 4'),
      60_000,
      "the child's tool call",
    );
    await container.kill();
    await waitIdle(handle, 'end_turn', 2, 120_000);
    const childEvents = await h.tandem.getEvents(childId!);
    expect(childEvents.some((e) => e.type === 'sandbox.lost')).toBe(true);
    expect(childEvents.find((e) => e.type === 'agent.tool_result')).toMatchObject({ is_error: false });
    const parentEvents = await h.tandem.getEvents(handle.workflowId);
    expect(parentEvents.filter((e) => e.type === 'session.error' || e.type === 'sandbox.lost')).toEqual([]);
    expect(toolResults(seen.get('You are lead.')!.at(-1)!).get('tu_build')).toMatchObject({ content: 'build-ok reported' });
    await handle.cancel();
  });
});
