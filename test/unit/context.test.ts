/** The context builder: session events in, a valid Messages API conversation out. */
import { describe, expect, it } from 'vitest';
import {
  buildMessages,
  buildRequest,
  estimateTokens,
  latestCompaction,
  summaryRequest,
  type ToolDefinition,
} from '../../src/harness/context.js';
import type { SessionEvent, SessionEventType } from '../../src/log/events.js';
import type { AgentDefinition } from '../../src/shared/types.js';

let seq = 0;
function ev(type: SessionEventType, fields: Record<string, unknown> = {}): SessionEvent {
  seq++;
  return { id: `${seq}.0`, seq, type, processed_at: '2026-01-01T00:00:00.000Z', ...fields } as SessionEvent;
}
const user = (text: string) => ev('user.message', { content: [{ type: 'text', text }] });
const say = (req: string, text: string) => ev('agent.message', { model_request_id: req, content: [{ type: 'text', text }] });
const use = (req: string, id: string, name = 'bash', input: Record<string, unknown> = { command: 'ls' }) =>
  ev('agent.tool_use', { model_request_id: req, tool_use_id: id, name, input });
const result = (id: string, text: string, is_error = false) =>
  ev('agent.tool_result', { tool_use_id: id, content: [{ type: 'text', text }], is_error });

describe('buildMessages', () => {
  it('alternates user and assistant turns and merges consecutive user messages', () => {
    const { messages } = buildMessages([user('a'), user('b'), say('r1', 'hi'), user('c')]);
    expect(messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'hi' }] },
      { role: 'user', content: [{ type: 'text', text: 'c' }] },
    ]);
  });

  it('puts tool results right after the tool calls and a steering message after the results', () => {
    const { messages } = buildMessages([
      user('go'),
      say('r1', 'running'),
      use('r1', 't1'),
      use('r1', 't2'),
      user('steer: also check X'), // arrived while the tools ran
      result('t2', 'two'),
      result('t1', 'one'),
    ]);
    expect(messages).toHaveLength(3);
    expect(messages[1]).toEqual({
      role: 'assistant',
      content: [
        { type: 'text', text: 'running' },
        { type: 'tool_use', id: 't1', name: 'bash', input: { command: 'ls' } },
        { type: 'tool_use', id: 't2', name: 'bash', input: { command: 'ls' } },
      ],
    });
    expect(messages[2]!.content).toEqual([
      { type: 'tool_result', tool_use_id: 't1', content: 'one', is_error: false },
      { type: 'tool_result', tool_use_id: 't2', content: 'two', is_error: false },
      { type: 'text', text: 'steer: also check X' },
    ]);
  });

  it('places a message that arrived during a model call after that call\'s answer', () => {
    const { messages } = buildMessages([
      user('go'),
      ev('span.model_request_start'),
      user('steer while it thinks'),
      say('2.0', 'first answer'),
      ev('span.model_request_end', { is_error: false }),
    ]);
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
    expect(messages[2]!.content).toEqual([{ type: 'text', text: 'steer while it thinks' }]);
  });

  it('places a message that arrived during the model call after a tool turn after that call\'s answer', () => {
    const { messages } = buildMessages([
      user('go'),
      ev('span.model_request_start', { id: 'r1' }),
      use('r1', 't1'),
      ev('span.model_request_end', { is_error: false }),
      result('t1', 'one'),
      ev('span.model_request_start'),
      user('steer during the second call'),
      say('r2', 'second answer'),
      ev('span.model_request_end', { is_error: false }),
    ]);
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant', 'user']);
    expect(messages[2]!.content).toEqual([{ type: 'tool_result', tool_use_id: 't1', content: 'one', is_error: false }]);
    expect(messages[3]!.content).toEqual([{ type: 'text', text: 'second answer' }]);
    expect(messages[4]!.content).toEqual([{ type: 'text', text: 'steer during the second call' }]);
  });

  it('keeps a message that arrived during a model call when a compaction keeps that call\'s answer', () => {
    const events = [user('go'), say('r0', 'old answer'), user('next')];
    const start = ev('span.model_request_start');
    events.push(
      start,
      user('steer while it thinks'),
      say(start.id, 'kept answer'),
      ev('span.model_request_end', { is_error: false }),
    );
    const { messages, starts } = buildMessages(events);
    const kept = messages.findIndex((m) => m.role === 'assistant' && JSON.stringify(m).includes('kept answer'));
    expect(starts[kept]).toBe(start.id);
    const compacted = buildMessages(events, { summary: 'the gist', first_kept_id: starts[kept]! }).messages;
    expect(compacted.map((m) => m.role)).toEqual(['user', 'assistant', 'user']);
    expect(compacted[2]!.content).toEqual([{ type: 'text', text: 'steer while it thinks' }]);
    expect(JSON.stringify(compacted)).not.toContain('old answer');
  });

  it('keeps a message that arrived during a failed or cancelled model call', () => {
    const { messages } = buildMessages([
      user('go'),
      ev('span.model_request_start'),
      user('more'),
      ev('span.model_request_end', { is_error: true }),
    ]);
    expect(messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'go' }, { type: 'text', text: 'more' }] }]);
  });

  it('gives an interrupted tool call an error result, so the conversation stays valid', () => {
    const { messages } = buildMessages([user('go'), use('r1', 't1'), user('stop that, do Y')]);
    expect(messages[2]!.content[0]).toMatchObject({ type: 'tool_result', tool_use_id: 't1', is_error: true });
    expect(messages[2]!.content[1]).toEqual({ type: 'text', text: 'stop that, do Y' });
  });

  it('uses custom tool results from the client and ignores results for calls it does not know', () => {
    const { messages } = buildMessages([
      user('go'),
      ev('agent.custom_tool_use', { model_request_id: 'r1', tool_use_id: 'c1', name: 'lookup', input: {} }),
      ev('user.custom_tool_result', { custom_tool_use_id: 'c1', content: 'found it' }),
      ev('user.custom_tool_result', { custom_tool_use_id: 'zzz', content: 'stray' }),
    ]);
    expect(messages[2]!.content).toEqual([{ type: 'tool_result', tool_use_id: 'c1', content: 'found it', is_error: false }]);
  });

  it('keeps thinking blocks with their signatures in the assistant turn', () => {
    const block = { type: 'thinking', thinking: 'hmm', signature: 'sig' };
    const { messages } = buildMessages([user('q'), ev('agent.thinking', { model_request_id: 'r1', block }), say('r1', 'a')]);
    expect(messages[1]!.content).toEqual([block, { type: 'text', text: 'a' }]);
  });

  it('ignores status, span and sandbox events', () => {
    const { messages } = buildMessages([
      ev('session.status_running'),
      user('q'),
      ev('span.model_request_start'),
      ev('sandbox.provisioned', { sandbox: {} }),
      ev('session.error', { error: { type: 'x', message: 'y' } }),
    ]);
    expect(messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'q' }] }]);
  });
});

describe('buildRequest', () => {
  const builtins = new Map<string, ToolDefinition>(
    ['bash', 'read', 'write', 'edit', 'glob', 'grep'].map((n) => [n, { name: n, description: n, input_schema: { type: 'object' } }]),
  );
  const agent: AgentDefinition = {
    name: 'a',
    model: { id: 'claude-x', max_tokens: 1234 },
    system: 'be brief',
    tools: [
      { type: 'agent_toolset_20260401', configs: [{ name: 'grep', enabled: false }] },
      { type: 'custom', name: 'lookup', description: 'look', input_schema: { type: 'object' } },
    ],
  };

  it('offers enabled built-ins and custom tools, stable content first, with cache breakpoints', () => {
    const { request: req } = buildRequest(agent, [user('q1'), say('r1', 'a1'), user('q2')], builtins);
    expect(req.model).toBe('claude-x');
    expect(req.max_tokens).toBe(1234);
    expect(req.tools!.map((t) => t.name)).toEqual(['bash', 'read', 'write', 'edit', 'glob', 'lookup']);
    expect(req.tools!.at(-1)!.cache_control).toEqual({ type: 'ephemeral' });
    expect(req.system).toEqual([{ type: 'text', text: 'be brief', cache_control: { type: 'ephemeral' } }]);
    expect(req.messages.at(-1)!.content.at(-1)).toEqual({ type: 'text', text: 'q2', cache_control: { type: 'ephemeral' } });
    // Only the newest user turn carries a message breakpoint.
    expect(JSON.stringify(req.messages[0])).not.toContain('cache_control');
  });

  it("never changes the log's events: a worker shares them between calls of a session", () => {
    const freeze = <T>(v: T): T => {
      if (v && typeof v === 'object') {
        Object.freeze(v);
        Object.values(v).forEach(freeze);
      }
      return v;
    };
    // A message that arrived while the tool ran ends the conversation: its block gets the breakpoint.
    const events = freeze([user('go'), say('r1', 'running'), use('r1', 't1'), user('steer'), result('t1', 'out')]);
    const first = buildRequest(agent, events, builtins).request;
    expect(first.messages.at(-1)!.content.at(-1)).toEqual({ type: 'text', text: 'steer', cache_control: { type: 'ephemeral' } });
    // The next call, one answer later: the breakpoint has moved on and the old block is as it was.
    const later = buildRequest(agent, [...events, say('r2', 'ok'), user('next')], builtins).request;
    expect(JSON.stringify(later.messages.slice(0, -1))).not.toContain('cache_control');
  });

  it('offers no tools when the agent has none', () => {
    const { request: req } = buildRequest({ name: 'b', model: 'm' }, [user('q')], builtins);
    expect(req.tools).toBeUndefined();
    expect(req.system).toBeUndefined();
    expect(req.max_tokens).toBe(8192);
  });
});

describe('images in the context budget', () => {
  it('counts an inline image as about 1600 tokens, whatever the length of its base64', () => {
    const image = (n: number) => ({ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'A'.repeat(n) } });
    const small = estimateTokens({ content: [image(100)] });
    const large = estimateTokens({ content: [image(4_000_000)] });
    expect(small).toBe(large);
    expect(small).toBeGreaterThanOrEqual(1600);
    expect(small).toBeLessThan(1700);
  });
});

describe('context budget', () => {
  const builtins = new Map<string, ToolDefinition>([['bash', { name: 'bash', description: 'bash', input_schema: { type: 'object' } }]]);
  const agent: AgentDefinition = { name: 'a', model: 'm', tools: [{ type: 'agent_toolset_20260401' }] };
  /** A session of `turns` tool calls, each returning `size` characters, then a user question. */
  function toolSession(turns: number, size: number): SessionEvent[] {
    const events = [user('start')];
    for (let i = 0; i < turns; i++) {
      events.push(use(`r${i}`, `t${i}`), result(`t${i}`, `${i}:`.padEnd(size, 'x')));
    }
    events.push(say('rz', 'done'), user('next question'));
    return events;
  }

  it('leaves a request under budget alone', () => {
    const built = buildRequest(agent, toolSession(3, 100), builtins, { budgetTokens: 10_000 });
    expect(built.trimmed).toBe(0);
    expect(built.compact).toBeUndefined();
  });

  it('trims the oldest tool results first and keeps the newest turn whole', () => {
    const events = toolSession(10, 4000); // ~10k tokens of tool output
    const built = buildRequest(agent, events, builtins, { budgetTokens: 6000 });
    expect(built.compact).toBeUndefined();
    expect(estimateTokens(built.request)).toBeLessThanOrEqual(6000);
    const results = built.request.messages.flatMap((m) => m.content).filter((b) => b.type === 'tool_result') as Array<{ content: string }>;
    expect(results[0]!.content).toMatch(/^\[tool output removed from the context/);
    expect(results.at(-1)!.content.startsWith('9:')).toBe(true);
    expect(built.trimmed).toBeGreaterThan(0);
    expect(built.trimmed).toBeLessThan(10);
  });

  it('asks for a compaction at an assistant turn when trimming is not enough, and applies a summary', () => {
    const events: SessionEvent[] = [];
    for (let i = 0; i < 12; i++) events.push(user(`question ${i} `.padEnd(2000, '?')), say(`r${i}`, `answer ${i} `.padEnd(2000, '!')));
    events.push(user('latest question'));
    const built = buildRequest(agent, events, builtins, { budgetTokens: 4000 });
    expect(built.compact).toBeDefined();
    const firstKept = events.find((e) => e.id === built.compact!.first_kept_id)!;
    expect(firstKept.type).toBe('agent.message');
    expect(built.compact!.head.at(-1)!.role).toBe('user');

    const summarised = buildRequest(agent, events, builtins, {
      budgetTokens: 4000,
      compaction: { summary: 'the gist', first_kept_id: built.compact!.first_kept_id },
    });
    expect(summarised.compact).toBeUndefined();
    expect(estimateTokens(summarised.request)).toBeLessThanOrEqual(4000);
    const [first, second] = summarised.request.messages;
    expect(first!.role).toBe('user');
    expect((first!.content[0] as { text: string }).text).toContain('the gist');
    expect(second!.role).toBe('assistant');
    expect(JSON.stringify(summarised.request.messages)).toContain('latest question');
    expect(JSON.stringify(summarised.request.messages)).not.toContain('question 0 ');

    // Once the compaction is in the log, later builds apply it by themselves.
    const logged = [...events, ev('agent.thread_context_compacted', { summary: 'the gist', first_kept_id: built.compact!.first_kept_id })];
    expect(latestCompaction(logged)).toEqual({ summary: 'the gist', first_kept_id: built.compact!.first_kept_id });
    expect(buildRequest(agent, logged, builtins, { budgetTokens: 4000 }).request.messages).toEqual(summarised.request.messages);
  });

  it('builds a summary request that ends with the instruction in a user turn', () => {
    const head = buildMessages([user('a'), use('r1', 't1'), result('t1', 'out')]).messages;
    const req = summaryRequest(agent, head);
    expect(req.messages.at(-1)!.role).toBe('user');
    expect(JSON.stringify(req.messages.at(-1))).toContain('Summarise the conversation above');
    expect(req.tools).toBeUndefined();
    // The head itself is not modified.
    expect(JSON.stringify(head)).not.toContain('Summarise');
  });
});
