/**
 * A coordinator talked into delegating far too much: one turn may ask for a bounded number of delegations (the rest
 * are tool errors the model reads), and they run a bounded number at a time.
 */
import proto from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { readHistory } from '../../src/log/read.js';
import type { AgentDefinition } from '../../src/shared/types.js';
import { reply, toolUse, type RecordedRequest } from '../fakes/messages-server.js';
import { startSession, testAgent, toolResults, useHarness, waitIdle } from '../helpers/env.js';

const ASKED = 14;

/** The coordinator asks for ASKED delegations in one reply; each helper answers at once with its task's number. */
function respond(req: RecordedRequest) {
  const system = JSON.stringify(req.body.system ?? '');
  if (system.includes('You are helper.')) {
    const task = JSON.stringify(req.body.messages?.[0]?.content ?? '');
    return reply(`done ${/task-(\d+)/.exec(task)?.[1]}`);
  }
  if ((req.body.messages ?? []).length > 1) return reply('all answered');
  return reply(...Array.from({ length: ASKED }, (_, i) => toolUse('delegate', { agent: 'helper', task: `task-${i}` }, `tu_d${i}`)));
}

const h = useHarness('delegation-bounded', { responder: respond, record: 'delegation-bounded' });

describe('bounded delegations', () => {
  it('refuses delegations past the per-turn cap and runs the rest a few at a time', async () => {
    const helper: AgentDefinition = testAgent({ name: 'helper', description: 'helps', system: 'You are helper.' });
    const lead = testAgent({
      name: 'lead',
      system: 'You are lead.',
      multiagent: {
        type: 'coordinator',
        agents: [{ type: 'agent', definition: helper }],
        max_concurrent: 3,
        max_delegations_per_turn: 10,
      },
    });
    const handle = await startSession(h.client, h.queue, { agent: lead }, 'delegate everything');
    await waitIdle(handle, 'end_turn', 2, 120_000);

    const leadRequests = h.model.requests.filter((r) => JSON.stringify(r.body.system ?? '').includes('You are lead.'));
    const results = toolResults(leadRequests.at(-1)!);
    for (let i = 0; i < ASKED; i++) {
      const r = results.get(`tu_d${i}`)!;
      if (i < 10) expect(r).toMatchObject({ content: `done ${i}` });
      else expect(r).toMatchObject({ is_error: true, content: expect.stringContaining('at most 10 tasks') });
    }

    // From the parent's history: at most max_concurrent children were open at any point, and all of them ran.
    const ET = proto.temporal.api.enums.v1.EventType;
    let open = 0;
    let most = 0;
    let started = 0;
    for (const e of await readHistory(h.client, handle.workflowId)) {
      if (e.eventType === ET.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED) {
        started++;
        most = Math.max(most, ++open);
      }
      if (e.eventType === ET.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED) open--;
    }
    expect(started).toBe(10);
    expect(most).toBe(3);
    await handle.cancel();
  });
});
