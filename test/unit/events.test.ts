/**
 * Session event types against the official SDK's beta event types: where both define a field, Tandem's type of it
 * must be one the SDK's type accepts, so code written against the SDK reads Tandem's events. The type assertions are
 * checked by `tsc` (which `npm test` runs first); the runtime assertions check the event type names.
 */
import type * as Sdk from '@anthropic-ai/sdk/resources/beta/sessions/events';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { checkSignal, contentBlocks, EVENT_TYPES, isEvent, type SessionEvent, type SessionEventOf } from '../../src/log/events.js';
import { Signals } from '../../src/shared/names.js';

/** The fields `Ours` and `Theirs` both define, as `Ours` types them. */
type Shared<Ours, Theirs> = Pick<Ours, Extract<keyof Ours, keyof Theirs>>;

type SdkEvents = {
  'user.message': Sdk.BetaManagedAgentsUserMessageEvent;
  'user.interrupt': Sdk.BetaManagedAgentsUserInterruptEvent;
  'user.tool_confirmation': Sdk.BetaManagedAgentsUserToolConfirmationEvent;
  'user.custom_tool_result': Sdk.BetaManagedAgentsUserCustomToolResultEvent;
  'agent.message': Sdk.BetaManagedAgentsAgentMessageEvent;
  'agent.tool_use': Sdk.BetaManagedAgentsAgentToolUseEvent;
  'agent.tool_result': Sdk.BetaManagedAgentsAgentToolResultEvent;
  'agent.mcp_tool_use': Sdk.BetaManagedAgentsAgentMCPToolUseEvent;
  'agent.mcp_tool_result': Sdk.BetaManagedAgentsAgentMCPToolResultEvent;
  'agent.custom_tool_use': Sdk.BetaManagedAgentsAgentCustomToolUseEvent;
  'session.status_running': Sdk.BetaManagedAgentsSessionStatusRunningEvent;
  'session.status_rescheduled': Sdk.BetaManagedAgentsSessionStatusRescheduledEvent;
  'session.status_terminated': Sdk.BetaManagedAgentsSessionStatusTerminatedEvent;
  'session.thread_created': Sdk.BetaManagedAgentsSessionThreadCreatedEvent;
  'span.model_request_start': Sdk.BetaManagedAgentsSpanModelRequestStartEvent;
  'span.outcome_evaluation_start': Sdk.BetaManagedAgentsSpanOutcomeEvaluationStartEvent;
};

describe('session event types', () => {
  it('agree with the SDK on the fields both define', () => {
    type Check<K extends keyof SdkEvents> = Shared<SessionEventOf<K>, SdkEvents[K]>;
    expectTypeOf<Check<'user.message'>>().toExtend<Shared<SdkEvents['user.message'], SessionEventOf<'user.message'>>>();
    expectTypeOf<Check<'user.interrupt'>>().toExtend<Shared<SdkEvents['user.interrupt'], SessionEventOf<'user.interrupt'>>>();
    expectTypeOf<Check<'user.tool_confirmation'>>().toExtend<Shared<SdkEvents['user.tool_confirmation'], SessionEventOf<'user.tool_confirmation'>>>();
    // A custom tool result's content is kept as the client sent it (a string, or text blocks); the API answers it as
    // blocks (src/server/events.ts).
    expectTypeOf<Omit<Check<'user.custom_tool_result'>, 'content'>>().toExtend<
      Omit<Shared<SdkEvents['user.custom_tool_result'], SessionEventOf<'user.custom_tool_result'>>, 'content'>
    >();
    expectTypeOf<Check<'agent.message'>>().toExtend<Shared<SdkEvents['agent.message'], SessionEventOf<'agent.message'>>>();
    expectTypeOf<Check<'agent.tool_use'>>().toExtend<Shared<SdkEvents['agent.tool_use'], SessionEventOf<'agent.tool_use'>>>();
    expectTypeOf<Check<'agent.tool_result'>>().toExtend<Shared<SdkEvents['agent.tool_result'], SessionEventOf<'agent.tool_result'>>>();
    expectTypeOf<Check<'agent.mcp_tool_use'>>().toExtend<Shared<SdkEvents['agent.mcp_tool_use'], SessionEventOf<'agent.mcp_tool_use'>>>();
    expectTypeOf<Check<'agent.mcp_tool_result'>>().toExtend<Shared<SdkEvents['agent.mcp_tool_result'], SessionEventOf<'agent.mcp_tool_result'>>>();
    expectTypeOf<Check<'agent.custom_tool_use'>>().toExtend<Shared<SdkEvents['agent.custom_tool_use'], SessionEventOf<'agent.custom_tool_use'>>>();
    expectTypeOf<Check<'session.status_running'>>().toExtend<Shared<SdkEvents['session.status_running'], SessionEventOf<'session.status_running'>>>();
    expectTypeOf<Check<'session.thread_created'>>().toExtend<Shared<SdkEvents['session.thread_created'], SessionEventOf<'session.thread_created'>>>();
    expectTypeOf<Check<'span.model_request_start'>>().toExtend<Shared<SdkEvents['span.model_request_start'], SessionEventOf<'span.model_request_start'>>>();
    expectTypeOf<Check<'span.outcome_evaluation_start'>>().toExtend<Shared<SdkEvents['span.outcome_evaluation_start'], SessionEventOf<'span.outcome_evaluation_start'>>>();
    const sdkTypes: Array<keyof SdkEvents> = ['user.message', 'agent.tool_result', 'session.thread_created', 'span.outcome_evaluation_start'];
    for (const t of sdkTypes) expect(EVENT_TYPES).toContain(t);
  });

  it('narrow by type', () => {
    const e = { id: '3.0', seq: 3, processed_at: 'x', type: 'agent.tool_result', tool_use_id: 'tu_1', content: [], is_error: false } as SessionEvent;
    expect(isEvent(e, 'agent.tool_result', 'agent.mcp_tool_result')).toBe(true);
    expect(isEvent(e, 'agent.message')).toBe(false);
    if (isEvent(e, 'agent.tool_result')) expectTypeOf(e.tool_use_id).toEqualTypeOf<string>();
  });
});

describe('user message content', () => {
  it('takes text, images and documents and names the first bad block', () => {
    const png = { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } };
    const doc = { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'notes' }, title: 'Notes', extra: 1 };
    const url = { type: 'image', source: { type: 'url', url: 'https://example.com/a.png' } };
    const file = { type: 'document', source: { type: 'file', file_id: 'file_0123456789abcdef01234567' } };
    expect(contentBlocks([{ type: 'text', text: 'look' }, png, doc, url, file])).toEqual({
      blocks: [
        { type: 'text', text: 'look' },
        png,
        { type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'notes' }, title: 'Notes' },
        url,
        file,
      ],
    });
    expect(contentBlocks([])).toEqual({ problem: 'content: must be a non-empty list of content blocks' });
    expect(contentBlocks([{ type: 'image', source: { type: 'text', media_type: 'text/plain', data: 'x' } }])).toEqual({
      problem: 'content[0].source.type: must be base64, url or file',
    });
    expect(contentBlocks([{ type: 'text', text: 'a' }, { type: 'image', source: { type: 'file', file_id: '../etc' } }])).toEqual({
      problem: 'content[1].source.file_id: must be a file id',
    });
    // The session's signal check is the same: a bad block is refused there too, never logged as a message.
    const check = checkSignal(Signals.message, { content: [png, { type: 'video' }] });
    expect(check).toEqual({ ok: false, error: `${Signals.message}: content[1].type: must be text, image or document` });
  });
});
