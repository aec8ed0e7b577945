/** Decoding recorded session histories into session events, and building a valid conversation from them. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultPayloadConverter } from '@temporalio/common';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils.js';
import { temporal } from '@temporalio/proto';
import { decodeJsonPayload } from '../../src/log/read.js';
import { buildMessages } from '../../src/harness/context.js';
import { LogDecoder } from '../../src/log/decode.js';
import type { SessionEvent } from '../../src/log/events.js';
import type { SessionInput } from '../../src/shared/types.js';
import { Signals } from '../../src/shared/names.js';

const dir = join(import.meta.dirname, '..', 'fixtures', 'histories');
const historyOf = (file: string) => historyFromJSON(JSON.parse(readFileSync(join(dir, file), 'utf8'))).events ?? [];
const startOf = (file: string) => historyOf(file)[0]?.workflowExecutionStartedEventAttributes;

/** A recorded session's log; a fork's begins with its origin's (another fixture) up to the fork point, as `readLog` reads it. */
function decode(file: string, offset = 0): SessionEvent[] {
  const events = historyOf(file);
  const input = events[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  const fork = input ? (decodeJsonPayload(input) as SessionInput).fork : undefined;
  const decoder = new LogDecoder(decodeJsonPayload);
  const out: SessionEvent[] = [];
  if (fork) {
    const origin = readdirSync(dir).find((f) => f.endsWith('.json') && startOf(f)?.firstExecutionRunId === fork.run_id);
    if (!origin) throw new Error(`${file} is a fork of run ${fork.run_id}, which no fixture holds`);
    for (const e of historyOf(origin)) if (Number(e.eventId) <= fork.seq) out.push(...decoder.decode(e, 0));
  }
  for (const e of events) out.push(...decoder.decode(e, fork ? fork.seq : offset));
  return out;
}

describe('LogDecoder on recorded histories', () => {
  // Session histories only: the entity workflows of the HTTP API (tandemResource) keep records, not a session log.
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .filter((f) => {
      const h = JSON.parse(readFileSync(join(dir, f), 'utf8')) as {
        events: Array<{ workflowExecutionStartedEventAttributes?: { workflowType?: { name?: string } } }>;
      };
      return h.events[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name === 'agentSession';
    });

  it.each(files)('%s decodes into ordered events with unique positional ids', (file) => {
    const events = decode(file);
    expect(events.length).toBeGreaterThan(0);
    // A session starts with what the user sent, or idle when it was started without a message.
    expect(events[0]!.type).toMatch(/^user\.(message|define_outcome)$|^session\.status_idle$/);
    const ids = events.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < events.length; i++) expect(events[i]!.seq).toBeGreaterThanOrEqual(events[i - 1]!.seq);
    expect(events.every((e) => !Number.isNaN(Date.parse(e.processed_at)))).toBe(true);
  });

  it.each(files)('%s builds a conversation the Messages API accepts', (file) => {
    const events = decode(file);
    const { messages } = buildMessages(events);
    if (!events.some((e) => e.type.startsWith('agent.'))) return expect(messages).toEqual([]); // nothing was said
    expect(messages[0]!.role).toBe('user');
    for (let i = 1; i < messages.length; i++) expect(messages[i]!.role).not.toBe(messages[i - 1]!.role);
    // Every tool_use is answered by a tool_result in the very next message.
    messages.forEach((m, i) => {
      const uses = m.content.filter((b) => b.type === 'tool_use').map((b) => (b as { id: string }).id);
      if (uses.length === 0) return;
      const next = messages[i + 1];
      if (!next) return; // the log ends in the middle of a tool call (cancelled session)
      const answered = next.content.filter((b) => b.type === 'tool_result').map((b) => (b as { tool_use_id: string }).tool_use_id);
      expect(answered).toEqual(uses);
    });
  });

  it('drops a repeated signal id exactly when the workflow does, across continue-as-new', () => {
    const T = temporal.api.enums.v1.EventType;
    const payloads = (v: unknown) => ({ payloads: [defaultPayloadConverter.toPayload(v)] });
    const started = (input: unknown) => ({ eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, workflowExecutionStartedEventAttributes: { input: payloads(input) } });
    const message = (id: string, text: string) => ({
      eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
      workflowExecutionSignaledEventAttributes: { signalName: Signals.message, input: payloads({ id, content: [{ type: 'text', text }] }) },
    });
    const agent = { name: 'a', model: 'claude-sonnet-4-5' };
    const decoder = new LogDecoder(decodeJsonPayload);
    const texts = (events: Array<Record<string, unknown>>, offset: number) =>
      events
        .map((e, i) => ({ eventId: i + 1, eventTime: { seconds: 1 }, ...e }))
        .flatMap((e) => decoder.decode(e as never, offset))
        .filter((e) => e.type === 'user.message')
        .map((e) => (e.content as Array<{ text: string }>)[0]!.text);
    // The first run sees m1 and m2, and drops the second m1.
    expect(texts([started({ agent }), message('m1', 'one'), message('m2', 'two'), message('m1', 'one again')], 0)).toEqual(['one', 'two']);
    // The next run carries only m2 (the workflow keeps the newest ids): m1 sent again is taken, m2 is not.
    const carry = { seen_ids: ['m2'] };
    expect(texts([started({ agent, carry }), message('m1', 'one, later'), message('m2', 'two again')], 4)).toEqual(['one, later']);
  });

  it("cross-posts a running child's waiting calls once each, as its thread's, and leaves them out of the context", () => {
    const T = temporal.api.enums.v1.EventType;
    const payloads = (v: unknown) => ({ payloads: [defaultPayloadConverter.toPayload(v)] });
    const lead = { name: 'lead', model: 'claude-sonnet-4-5' };
    const child = 'sesn_p.tu_d';
    const pending = (session_id: string, calls: unknown[]) => ({
      eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
      workflowExecutionSignaledEventAttributes: { signalName: Signals.childPending, input: payloads({ session_id, pending: calls }) },
    });
    const rm = { tool_use_id: 'tu_rm', name: 'bash', kind: 'confirmation', input: { command: 'rm x' } };
    const ask = { tool_use_id: 'tu_ask', name: 'ask', kind: 'custom_tool', input: { q: 'colour?' } };
    const mcp = { tool_use_id: 'tu_mcp', name: 'docs_search', kind: 'confirmation', input: {}, mcp: { server: 'docs', tool: 'search' } };
    const history = [
      {
        eventType: T.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED,
        workflowExecutionStartedEventAttributes: {
          input: payloads({ agent: lead, initial_events: [{ content: [{ type: 'text', text: 'go' }] }] }),
        },
      },
      {
        eventType: T.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
        activityTaskScheduledEventAttributes: { activityType: { name: 'callModel' }, input: payloads({}) },
      },
      {
        eventType: T.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        activityTaskCompletedEventAttributes: {
          scheduledEventId: 2,
          result: payloads({
            content: [{ type: 'tool_use', id: 'tu_d', name: 'delegate', input: { agent: 'careful', task: 't' } }],
            stop_reason: 'tool_use',
            model: 'm',
            usage: { input_tokens: 1, output_tokens: 1, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
          }),
        },
      },
      pending('sesn_p.tu_other', [rm]), // not a child of this session: the workflow ignores it, and so does the log
      {
        eventType: T.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
        startChildWorkflowExecutionInitiatedEventAttributes: {
          workflowId: child,
          input: payloads({
            agent: { name: 'careful', model: 'm' },
            delegation: { parent_session_id: 'sesn_p', tool_use_id: 'tu_d', depth: 1, max_depth: 2 },
          }),
        },
      },
      { eventType: T.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED, childWorkflowExecutionStartedEventAttributes: { initiatedEventId: 5 } },
      pending(child, [rm, ask]),
      pending(child, [rm, ask, mcp]), // the list again, with one more: only the new call is shown
      pending(child, []),
      pending(child, [rm]), // waiting again on a call of the same id after an answer: shown again
      {
        eventType: T.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED,
        childWorkflowExecutionCompletedEventAttributes: {
          initiatedEventId: 5,
          result: payloads({ final_message: 'done', stop_reason: { type: 'end_turn' }, turns: 2, usage: {} }),
        },
      },
      pending(child, [ask]), // the child has ended
    ];
    const decoder = new LogDecoder(decodeJsonPayload);
    const events = history
      .map((e, i) => ({ eventId: i + 1, eventTime: { seconds: 1 }, ...e }))
      .flatMap((e) => decoder.decode(e as never));
    const posted = events.filter((e) => e.type.endsWith('_use') && e.session_thread_id !== undefined);
    expect(posted.map((e) => [e.id, e.type, e.tool_use_id])).toEqual([
      ['7.0', 'agent.tool_use', 'tu_rm'],
      ['7.1', 'agent.custom_tool_use', 'tu_ask'],
      ['8.0', 'agent.mcp_tool_use', 'tu_mcp'],
      ['10.0', 'agent.tool_use', 'tu_rm'],
    ]);
    expect(posted.every((e) => e.session_thread_id === child)).toBe(true);
    expect(posted[0]).toMatchObject({ name: 'bash', input: { command: 'rm x' } });
    expect(posted[2]).toMatchObject({ mcp_server_name: 'docs', name: 'search', called_as: 'docs_search' });
    // The parent's model sees its own delegate call and its result, nothing of the child's calls.
    const { messages } = buildMessages(events);
    const blocks = JSON.stringify(messages);
    expect(blocks).toContain('tu_d');
    expect(blocks).not.toContain('tu_rm');
    expect(blocks).not.toContain('tu_ask');
  });

  it('shifts positions by the offset of a later run', () => {
    const plain = decode('tools-01.json');
    const shifted = decode('tools-01.json', 1000);
    expect(shifted.map((e) => e.seq)).toEqual(plain.map((e) => e.seq + 1000));
    expect(shifted[0]!.id).toBe(`${plain[0]!.seq + 1000}.0`);
  });

  it('reads tool calls, their results, the sandbox and the model spans of a tool session', () => {
    const events = decode('tools-01.json'); // the session that used all six tools
    const uses = events.filter((e) => e.type === 'agent.tool_use');
    const results = events.filter((e) => e.type === 'agent.tool_result');
    expect(uses.map((e) => e.name)).toEqual(['write', 'bash', 'bash', 'edit', 'read', 'glob', 'grep']);
    expect(results.map((e) => e.tool_use_id)).toEqual(uses.map((e) => e.tool_use_id));
    expect(events.filter((e) => e.type === 'sandbox.provisioned')).toHaveLength(1);
    const starts = events.filter((e) => e.type === 'span.model_request_start').length;
    expect(events.filter((e) => e.type === 'span.model_request_end')).toHaveLength(starts);
    expect(events.at(-1)!.type).toBe('session.status_terminated');
  });
});
