/**
 * The session loop against the real dev server and the real SDK (scripted Messages API): turns, steering, model
 * errors and wake, and that `callModel`'s input does not grow with the conversation.
 */
import { describe, expect, it } from 'vitest';
import Docker from 'dockerode';
import { reply, apiError, hang, type RequestBody } from '../fakes/messages-server.js';
import { readHistory } from '../../src/log/read.js';
import { LABEL_SESSION } from '../../src/activities/sandbox/docker.js';
import { Signals } from '../../src/shared/names.js';
import {
  sendMessage,
  sessionEvents,
  sessionState,
  startSession,
  testAgent,
  waitFor,
  useHarness,
  waitIdle,
} from '../helpers/env.js';

const h = useHarness('model', { assertDone: true, record: 'model' });

function userTexts(body: RequestBody): string[] {
  const out: string[] = [];
  for (const m of body.messages ?? []) {
    if (m.role !== 'user') continue;
    for (const b of m.content as Array<{ type: string; text?: string }>) if (b.type === 'text') out.push(b.text!);
  }
  return out;
}

describe('agentSession with the scripted model', () => {
  it('answers a message, goes idle, and creates no container when no tool is called', async () => {
    h.model.push(reply('Hello there.'));
    const handle = await startSession(h.client, h.queue, {}, 'Hi!');
    const state = await waitIdle(handle);
    expect(state.turn).toBe(1);
    expect(state.sandboxes).toEqual([]);
    const events = await sessionEvents(h.client, handle);
    const types = events.map((e) => e.type);
    expect(types).toContain('user.message');
    expect(types).toContain('agent.message');
    expect(types).toContain('span.model_request_end');
    expect(types.indexOf('user.message')).toBeLessThan(types.indexOf('agent.message'));
    const docker = new Docker();
    const containers = await docker.listContainers({ all: true, filters: { label: [`${LABEL_SESSION}=${handle.workflowId}`] } });
    expect(containers).toHaveLength(0);
    // The request carried the system prompt and the user's text through the real SDK.
    const body = h.model.requests.at(-1)!.body;
    expect(userTexts(body)).toEqual(['Hi!']);
    // The search attributes find the session, as `temporal workflow list --query` would.
    const query = `WorkflowId = "${handle.workflowId}" AND TandemStatus = "idle" AND TandemAgent = "test-agent"`;
    const found = await waitFor(
      async () => {
        const ids: string[] = [];
        for await (const w of h.client.workflow.list({ query })) ids.push(w.workflowId);
        return ids;
      },
      (ids) => ids.length === 1,
      20_000,
      'visibility',
    );
    expect(found).toEqual([handle.workflowId]);
    await handle.cancel();
  });

  it('applies a de-duplicated message once and keeps the conversation in order', async () => {
    h.model.push(reply('first answer'), reply('second answer'));
    const handle = await startSession(h.client, h.queue, {}, 'one');
    await waitIdle(handle, 'end_turn', 1);
    await sendMessage(handle, 'two', 'msg-2');
    await sendMessage(handle, 'two', 'msg-2'); // a retried send with the same id
    await waitIdle(handle, 'end_turn', 2);
    const body = h.model.requests.at(-1)!.body;
    expect(userTexts(body)).toEqual(['one', 'two']);
    expect(body.messages?.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
    const events = await sessionEvents(h.client, handle);
    expect(events.filter((e) => e.type === 'user.message')).toHaveLength(2);
    await handle.cancel();
  });

  it('shows a steering message to the next model call', async () => {
    // The first call is slow; a steering message arrives while it runs and the model is called again.
    h.model.push({ ...reply('working on it'), latencyMs: 1500 }, reply('noted the steering'));
    const handle = await startSession(h.client, h.queue, {}, 'start');
    await h.model.waitForRequests(h.model.requests.length + 1, 10_000);
    await sendMessage(handle, 'also do X');
    const state = await waitIdle(handle, 'end_turn', 2);
    expect(state.turn).toBe(2);
    // The steering message came in while the model answered: it follows that answer.
    const body = h.model.requests.at(-1)!.body;
    expect(body.messages?.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
    expect(userTexts(body)).toEqual(['start', 'also do X']);
    await handle.cancel();
  });

  it('interrupt cancels a model call that never answers; the session goes idle and takes the next message', async () => {
    h.model.push(hang());
    const handle = await startSession(h.client, h.queue, {}, 'think forever');
    await h.model.waitForRequests(h.model.requests.length + 1, 10_000);
    await handle.signal(Signals.interrupt, {});
    const idle = await waitIdle(handle, 'end_turn', 0, 20_000);
    expect(idle.turn).toBe(0);
    const events = await sessionEvents(h.client, handle);
    const end = events.find((e) => e.type === 'span.model_request_end');
    expect(end?.is_error).toBe(true);
    expect((end?.error as { type: string }).type).toBe('Canceled');
    h.model.push(reply('back again'));
    await sendMessage(handle, 'hello?');
    await waitIdle(handle, 'end_turn', 1);
    expect(userTexts(h.model.requests.at(-1)!.body)).toEqual(['think forever', 'hello?']);
    await handle.cancel();
  });

  it('retries a 429 honouring retry-after, then answers', async () => {
    h.model.push(apiError(429, { retryAfterSec: 1 }), reply('after the rate limit'));
    const before = h.model.requests.length;
    const handle = await startSession(h.client, h.queue, {}, 'hello');
    await waitIdle(handle);
    const calls = h.model.requests.slice(before);
    expect(calls).toHaveLength(2);
    expect(calls[1]!.receivedAt - calls[0]!.receivedAt).toBeGreaterThanOrEqual(900);
    await handle.cancel();
  });

  it('reports a 400 as session.error, stays alive, and wake retries', async () => {
    h.model.push(apiError(400, { message: 'bad thing' }));
    const handle = await startSession(h.client, h.queue, {}, 'hello');
    const state = await waitFor(
      () => sessionState(handle),
      (s) => s.stop_reason?.type === 'retries_exhausted',
      30_000,
    );
    expect(state.status).toBe('idle');
    expect(state.last_error?.type).toBe('Model.BadRequest');
    expect(state.last_error?.retryable).toBe(false);
    const events = await sessionEvents(h.client, handle);
    const error = events.find((e) => e.type === 'session.error');
    expect((error?.error as { type: string }).type).toBe('Model.BadRequest');
    // The scripted server answers again; wake retries the call with the same context.
    h.model.push(reply('recovered'));
    await handle.signal(Signals.wake, {});
    const after = await waitIdle(handle, 'end_turn', 1);
    expect(after.last_error).toBeNull();
    expect(userTexts(h.model.requests.at(-1)!.body)).toEqual(['hello']);
    await handle.cancel();
  });

  it('keeps the callModel input the same size from turn 1 to turn 40', async () => {
    const handle = await startSession(h.client, h.queue, {}, 'turn 0');
    h.model.push(reply('answer 0'));
    await waitIdle(handle, 'end_turn', 1);
    for (let i = 1; i < 40; i++) {
      h.model.push(reply(`answer ${i} `.repeat(20)));
      await sendMessage(handle, `turn ${i}`);
      await waitIdle(handle, 'end_turn', i + 1);
    }
    const history = await readHistory(h.client, handle.workflowId);
    const inputs = history
      .filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'callModel')
      .map((e) => e.activityTaskScheduledEventAttributes!.input!.payloads![0]!.data!.length);
    expect(inputs).toHaveLength(40);
    // Only the cursor's digits may differ.
    expect(Math.max(...inputs) - Math.min(...inputs)).toBeLessThanOrEqual(2);
    // ...while the conversation the model saw did grow.
    expect(h.model.requests.at(-1)!.body.messages).toHaveLength(79);
    await handle.cancel();
  });
});
