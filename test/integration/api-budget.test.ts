/**
 * Cost budgets through the Managed Agents API, with nothing but the official SDK: a session stops at its budget
 * before the next model call, with `budget_reached` and a `session.error` that says so; its spend shows in
 * `usage.list_cost`; a raised budget resumes it; and what the API cannot take is a 400 with its reason.
 */
import Anthropic from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { readUntil, reply, toolUse, useApiHarness, type ApiStreamEvent } from '../helpers/api.js';
import { recordSession, workerEnv } from '../helpers/env.js';
import { runTandemHere } from '../helpers/cli.js';

const h = useApiHarness('api-budget', { assertDone: true, record: 'budget' });

const idle = (reason: string) => (e: ApiStreamEvent) =>
  e.type === 'session.status_idle' && (e.stop_reason as { type: string }).type === reason;

/** A 400's message, as the API sent it (the SDK's error message quotes the body as JSON). */
async function refusal(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Anthropic.BadRequestError);
  return ((err as InstanceType<typeof Anthropic.BadRequestError>).error as { error: { message: string } }).error.message;
}

/** `budget` of `cents` US cents. */
const cents = (n: number | string) => ({ type: 'limit' as const, max_list_cost: { amount: String(n), currency: 'USD' as const } });

describe('session budgets through the official SDK', () => {
  const client = () => new Anthropic({ baseURL: h.url, apiKey: h.apiKey, maxRetries: 0 });

  it('stops a session at its budget before the next model call, and a raised budget resumes it', async () => {
    const c = client();
    // claude-sonnet-5-5 lists at $2 a million input tokens and $10 a million output tokens.
    const agent = await c.beta.agents.create({
      name: 'spender',
      model: 'claude-sonnet-5-5',
      tools: [{ type: 'agent_toolset_20260401' }],
    });
    const env = await c.beta.environments.create({ name: 'budget-env' });
    const session = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id, budget: cents(1) });
    recordSession(h.client.workflow.getHandle(session.id));
    expect(session.budget).toEqual(cents(1));

    const calls = h.model.requests.length;
    // The first call costs 1000 × $2/M + 1000 × $10/M = $0.012: past the one-cent budget once it is made.
    h.model.push({ ...reply(toolUse('bash', { command: 'echo counted' }, 'tu_1')), usage: { input_tokens: 1000, output_tokens: 1000 } });
    const stream = await c.beta.sessions.events.stream(session.id);
    await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'spend' }] }] });
    const events = await readUntil(stream, idle('budget_reached'));
    expect(h.model.requests.length - calls).toBe(1); // the call after the tool's result was never made
    const result = events.find((e) => e.type === 'agent.tool_result');
    expect(JSON.stringify(result?.content)).toContain('counted');
    const error = events.find((e) => e.type === 'session.error');
    expect(error?.error).toMatchObject({ tandem_type: 'Budget.Reached', retry_status: { type: 'terminal' } });
    expect((error?.error as { message: string }).message).toMatch(/spent \$0\.0120 of its \$0\.0100 budget; raise the budget to go on/);

    const stopped = await c.beta.sessions.retrieve(session.id);
    expect(stopped.status).toBe('idle');
    expect(stopped.usage.list_cost).toEqual({ amount: '2', currency: 'USD' }); // 1.2 cents, never shown as less
    expect(stopped.budget).toEqual(cents(1));
    const show = await runTandemHere(['show', session.id], workerEnv(h.queue, h.model.url));
    expect(show.stdout).toContain('budget      $0.0120 spent of $0.0100');

    // A budget at or below what was spent is no raise.
    expect(await refusal(c.beta.sessions.update(session.id, { budget: cents(1) }))).toMatch(/budget: budget_not_raised: the session already spent \$0\.0120/);

    // A raised budget takes the session on from where it stopped: the model reads the tool's result next.
    h.model.push({ ...reply('Done within budget.'), usage: { input_tokens: 1000, output_tokens: 100 } });
    const raised = await c.beta.sessions.update(session.id, { budget: cents(5) });
    expect(raised.budget).toEqual(cents(5));
    const after = await readUntil(stream, idle('end_turn'));
    expect(after.find((e) => e.type === 'session.updated')).toMatchObject({ budget: cents(5) });
    expect(after.find((e) => e.type === 'agent.message')?.content).toEqual([{ type: 'text', text: 'Done within budget.' }]);
    expect(JSON.stringify(h.model.requests[calls + 1]!.body.messages)).toContain('counted');

    // $0.012 + 1000 × $2/M + 100 × $10/M = $0.015.
    const done = await c.beta.sessions.retrieve(session.id);
    expect(done.usage.list_cost).toEqual({ amount: '2', currency: 'USD' });
    expect(done.budget).toEqual(cents(5));

    // Removed, the budget is gone for good.
    expect((await c.beta.sessions.update(session.id, { budget: null })).budget).toBeNull();
    expect((await c.beta.sessions.retrieve(session.id)).budget).toBeNull();
    expect(await refusal(c.beta.sessions.update(session.id, { budget: cents(9) }))).toMatch(/budget_create_only: .*removed/);
    await c.beta.sessions.delete(session.id);
  });

  it("counts a sub-agent's spend as its parent's, and stops the parent once the two pass the budget", async () => {
    const c = client();
    const helper = await c.beta.agents.create({ name: 'costly-helper', model: 'claude-sonnet-5-5' });
    const lead = await c.beta.agents.create({
      name: 'frugal-lead',
      model: 'claude-sonnet-5-5',
      multiagent: { type: 'coordinator', agents: [{ type: 'agent', id: helper.id }] },
    });
    const env = await c.beta.environments.create({ name: 'budget-team' });
    const session = await c.beta.sessions.create({ agent: lead.id, environment_id: env.id, budget: cents(1) });
    recordSession(h.client.workflow.getHandle(session.id));
    // The lead's call: 100 × $2/M + 100 × $10/M = $0.0012. The helper's: $0.012, within what the lead had left when
    // it started, so it answers; together they are past the one-cent budget.
    h.model.push({ ...reply(toolUse('delegate', { agent: 'costly-helper', task: 'work' }, 'tu_work')), usage: { input_tokens: 100, output_tokens: 100 } });
    h.model.push({ ...reply('worked'), usage: { input_tokens: 1000, output_tokens: 1000 } });
    const stream = await c.beta.sessions.events.stream(session.id);
    await c.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'delegate' }] }] });
    const events = await readUntil(stream, idle('budget_reached'));
    stream.controller.abort();
    expect(events.find((e) => e.type === 'agent.tool_result')).toMatchObject({ is_error: false, content: [{ type: 'text', text: 'worked' }] });
    expect((events.find((e) => e.type === 'session.error')?.error as { message: string }).message).toContain('spent $0.0132 of its $0.0100 budget');
    expect((await c.beta.sessions.retrieve(session.id)).usage.list_cost).toEqual({ amount: '2', currency: 'USD' });
    await c.beta.sessions.delete(session.id);
  });

  it('refuses a malformed budget, a model without a list price, and a budget added to a session made without one', async () => {
    const c = client();
    const env = await c.beta.environments.create({ name: 'budget-refusals' });
    const priced = await c.beta.agents.create({ name: 'priced', model: 'claude-sonnet-5-5' });
    const unpriced = await c.beta.agents.create({ name: 'unpriced', model: 'house-model-1' });

    const bad: Array<[unknown, RegExp]> = [
      [{ type: 'cap', max_list_cost: { amount: '100', currency: 'USD' } }, /budget\.type: must be "limit"/],
      [cents('1.50'), /budget\.max_list_cost\.amount: must be a whole number of cents above 0/],
      [cents('0'), /budget\.max_list_cost\.amount/],
      [{ type: 'limit', max_list_cost: { amount: '100', currency: 'EUR' } }, /budget\.max_list_cost\.currency: must be "USD"/],
      [{ type: 'limit', max_list_cost: { amount: '100', currency: 'USD' }, period: 'day' }, /budget\.period: is not a field of a budget/],
    ];
    for (const [budget, message] of bad) {
      const params = { agent: priced.id, environment_id: env.id, budget } as unknown as Anthropic.Beta.Sessions.SessionCreateParams;
      expect(await refusal(c.beta.sessions.create(params))).toMatch(message);
    }
    expect(await refusal(c.beta.sessions.create({ agent: unpriced.id, environment_id: env.id, budget: cents(100) }))).toMatch(
      /budget: model_not_budgetable: Tandem has no list price for house-model-1/,
    );

    // Without a budget at creation, none can be added later.
    const plain = await c.beta.sessions.create({ agent: priced.id, environment_id: env.id });
    expect(plain.budget).toBeNull();
    expect(await refusal(c.beta.sessions.update(plain.id, { budget: cents(100) }))).toMatch(
      /budget: budget_create_only: this session was created without a budget/,
    );
    expect((await c.beta.sessions.retrieve(plain.id)).budget).toBeNull();
    await c.beta.sessions.delete(plain.id);
  });
});
