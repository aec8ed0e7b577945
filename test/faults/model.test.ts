/**
 * Faults on the model's side: error storms, a stream cut half-way, a response that never ends, invalid tool input,
 * unknown tools, enormous replies. Each case ends with the same check (expectSessionIntact).
 */
import { describe, expect, it } from 'vitest';
import { readHistory } from '../../src/log/read.js';
import {
  apiError,
  cutStream,
  hang,
  reply,
  toolUse,
} from '../fakes/messages-server.js';
import { testAgent, toolResults, useHarness } from '../helpers/env.js';
import { expectSessionIntact, idle } from './check.js';

const h = useHarness('fault-model');
// For the stream that never ends only: a worker of its own that gives a silent stream up after 5 s (90 s by default).
// Every other case keeps the default, so a slow machine streaming a large reply is never taken for a stall.
const stall = useHarness('fault-model-stall', { worker: () => ({ env: { TANDEM_MODEL_STALL_S: '5' } }) });
const results = toolResults;

async function end(id: string): Promise<void> {
  await h.tandem.temporal.workflow.getHandle(id).cancel();
}

/** The attempt numbers of the session's callModel activities. */
async function modelAttempts(id: string): Promise<number[]> {
  const history = await readHistory(h.tandem.temporal, id);
  const scheduled = new Set(
    history.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'callModel').map((e) => String(e.eventId)),
  );
  return history
    .filter((e) => scheduled.has(String(e.activityTaskStartedEventAttributes?.scheduledEventId)))
    .map((e) => e.activityTaskStartedEventAttributes!.attempt!);
}

describe('model faults', () => {
  it('a storm of 429, 500 and 529 answers is retried within the budget', async () => {
    h.model.push(
      apiError(429, { retryAfterSec: 1 }),
      apiError(500),
      apiError(529),
      apiError(503),
      reply('through the storm'),
    );
    const id = await h.tandem.start({ agent: testAgent(), message: 'storm' });
    const state = await idle(h.tandem, id, 1, 120_000);
    expect(state.last_error).toBeNull();
    expect(await modelAttempts(id)).toEqual([5]);
    await expectSessionIntact(h.tandem, h.model, id, ['storm']);
    await end(id);
  });

  it('a stream cut half-way is retried', async () => {
    h.model.push(cutStream(6, reply('this answer is cut off in the middle of its text')), reply('whole answer'));
    const id = await h.tandem.start({ agent: testAgent(), message: 'cut' });
    await idle(h.tandem, id, 1);
    const events = await h.tandem.getEvents(id, { types: ['agent.message'] });
    expect(JSON.stringify(events)).toContain('whole answer');
    expect(JSON.stringify(events)).not.toContain('cut off');
    await expectSessionIntact(h.tandem, h.model, id, ['cut']);
    await end(id);
  });

  it('a response that never ends is given up and retried', async () => {
    stall.model.push(hang(), reply('answered the second time'));
    const id = await stall.tandem.start({ agent: testAgent(), message: 'hang' });
    await idle(stall.tandem, id, 1, 60_000);
    expect(await modelAttempts(id)).toEqual([2]);
    await expectSessionIntact(stall.tandem, stall.model, id, ['hang']);
    await end(id);
  });

  it('invalid JSON in a tool input is a retryable bad reply; a tool that does not exist is a tool error', async () => {
    h.model.push(
      { content: [{ type: 'tool_use', id: 'tu_badjson', name: 'write', input: {}, rawInput: '{"file_path": "/workspace/x", "content": oops' }] },
      reply(toolUse('teleport', { where: 'moon' }, 'tu_nosuch')),
      reply('understood'),
    );
    const id = await h.tandem.start({ agent: testAgent(), message: 'bad tools' });
    await idle(h.tandem, id, 2);
    expect(await modelAttempts(id)).toEqual([2, 1]);
    const history = await readHistory(h.tandem.temporal, id);
    const lastFailure = history.find((e) => e.activityTaskStartedEventAttributes?.attempt === 2)!.activityTaskStartedEventAttributes!.lastFailure;
    expect(lastFailure?.applicationFailureInfo?.type).toBe('Model.InvalidResponse');
    const r = results(h.model.requests.at(-1)!);
    expect(r.get('tu_nosuch')!.is_error).toBe(true);
    expect(r.get('tu_nosuch')!.content).toMatch(/Unknown tool "teleport"/);
    await expectSessionIntact(h.tandem, h.model, id, ['bad tools']);
    await end(id);
  });

  it('an enormous reply and an enormous tool input are bounded; history events stay small', async () => {
    h.model.push(reply('A'.repeat(3_000_000)), reply(toolUse('write', { file_path: '/workspace/huge', content: 'B'.repeat(600_000) }, 'tu_huge')), reply('ok'));
    const id = await h.tandem.start({ agent: testAgent(), message: 'flood me' });
    await idle(h.tandem, id, 1, 120_000);
    await h.tandem.sendMessage(id, 'now write it');
    await idle(h.tandem, id, 3, 120_000);
    const r = results(h.model.requests.at(-1)!);
    expect(r.get('tu_huge')!.is_error).toBe(true);
    expect(r.get('tu_huge')!.content).toMatch(/tool input was \d+ bytes/);
    const history = await readHistory(h.tandem.temporal, id);
    expect(Math.max(...history.map((e) => JSON.stringify(e).length))).toBeLessThan(600_000);
    const text = (await h.tandem.getEvents(id, { types: ['agent.message'] }))[0]!;
    expect(JSON.stringify(text.content)).toContain('characters of this reply omitted');
    await expectSessionIntact(h.tandem, h.model, id, ['flood me', 'now write it']);
    await end(id);
  });
});
