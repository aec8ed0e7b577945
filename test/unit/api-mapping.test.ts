/** Pure parts of the HTTP API: event mapping onto the API's shapes, and versioned record updates. */
import { describe, expect, it } from 'vitest';
import { mapEvents, positionalId } from '../../src/server/events.js';
import { patchMetadata, updatedRecord, type ResourceRecord } from '../../src/shared/resources.js';
import type { SessionEvent } from '../../src/log/events.js';

const at = '2026-11-22T00:00:00.000Z';
const ev = (id: string, type: SessionEvent['type'], fields: Record<string, unknown> = {}): SessionEvent =>
  ({
    id,
    seq: Number(id.split('.')[0]),
    type,
    processed_at: at,
    ...fields,
  }) as SessionEvent;

describe('event mapping', () => {
  it('names events by sevt_ ids and refers to tool calls by the id of their tool-use event', () => {
    const { events, mapper } = mapEvents([
      ev('1.0', 'user.message', { content: [{ type: 'text', text: 'hi' }] }),
      ev('8.0', 'span.model_request_start'),
      ev('10.0', 'agent.tool_use', { model_request_id: '8.0', tool_use_id: 'toolu_1', name: 'bash', input: {} }),
      ev('10.1', 'agent.custom_tool_use', { model_request_id: '8.0', tool_use_id: 'toolu_2', name: 'lookup', input: {} }),
      ev('10.2', 'span.model_request_end', { model_request_start_id: '8.0', is_error: false }),
      ev('11.0', 'session.status_idle', { stop_reason: { type: 'requires_action', event_ids: ['toolu_1', 'toolu_2'] } }),
      ev('12.0', 'user.tool_confirmation', { client_id: 'sevt_abc', tool_use_id: 'toolu_1', result: 'allow' }),
      ev('13.0', 'user.custom_tool_result', { custom_tool_use_id: 'toolu_2', content: 'found' }),
      ev('20.0', 'agent.tool_result', { tool_use_id: 'toolu_1', content: [{ type: 'text', text: 'ok' }], is_error: false }),
    ]);
    expect(events.map((e) => e.id)).toEqual([
      'sevt_1_0',
      'sevt_8_0',
      'sevt_10_0',
      'sevt_10_1',
      'sevt_10_2',
      'sevt_11_0',
      'sevt_abc',
      'sevt_13_0',
      'sevt_20_0',
    ]);
    expect(events[2]).toMatchObject({ model_request_id: 'sevt_8_0' });
    expect(events[4]).toMatchObject({ model_request_start_id: 'sevt_8_0' });
    expect(events[5]).toMatchObject({ stop_reason: { type: 'requires_action', event_ids: ['sevt_10_0', 'sevt_10_1'] }, stop_details: null });
    expect(events[6]).toMatchObject({ tool_use_id: 'sevt_10_0', result: 'allow' });
    expect(events[7]).toMatchObject({ custom_tool_use_id: 'sevt_10_1', content: [{ type: 'text', text: 'found' }] });
    expect(events[8]).toMatchObject({ tool_use_id: 'sevt_10_0' });
    expect(events.every((e) => !('seq' in e) && !('client_id' in e))).toBe(true);
    expect(mapper.calls.get('sevt_10_1')).toEqual({ tool_use_id: 'toolu_2', type: 'agent.custom_tool_use' });
    expect(positionalId('3.2')).toBe('sevt_3_2');
  });

  it("names a sub-agent's cross-posted calls by their place in the parent's log, and routes their answers to its thread", () => {
    const thread = 'sesn_p.toolu_d';
    const { events, mapper } = mapEvents([
      ev('5.0', 'agent.tool_use', { model_request_id: '4.0', tool_use_id: 'toolu_d', name: 'delegate', input: {} }),
      ev('9.0', 'session.thread_created', { session_thread_id: thread, agent_name: 'careful', tool_use_id: 'toolu_d' }),
      // The child's calls sit at positions of the child's own log that the parent's log uses too (12.0, 12.1):
      // cross-posted, they are named by where the parent's log shows them.
      ev('14.0', 'agent.tool_use', { tool_use_id: 'toolu_rm', name: 'bash', input: { command: 'rm x' }, session_thread_id: thread }),
      ev('14.1', 'agent.custom_tool_use', { tool_use_id: 'toolu_ask', name: 'ask', input: {}, session_thread_id: thread }),
      ev('18.0', 'session.status_idle', { stop_reason: { type: 'requires_action', event_ids: ['toolu_rm', 'toolu_ask'] } }),
      ev('19.0', 'user.tool_confirmation', { client_id: 'sevt_yes', tool_use_id: 'toolu_rm', result: 'allow' }),
      ev('20.0', 'user.custom_tool_result', { client_id: 'sevt_ans', custom_tool_use_id: 'toolu_ask', content: 'blue' }),
      ev('31.0', 'agent.tool_result', { tool_use_id: 'toolu_d', content: [{ type: 'text', text: 'done' }], session_thread_id: thread }),
    ]);
    const byId = new Map(events.map((e) => [e.id, e]));
    expect(events.map((e) => e.id)).toEqual(['sevt_5_0', 'sevt_9_0', 'sevt_14_0', 'sevt_14_1', 'sevt_18_0', 'sevt_yes', 'sevt_ans', 'sevt_31_0']);
    expect(byId.get('sevt_9_0')).toMatchObject({ session_thread_id: thread, tool_use_id: 'sevt_5_0', workflow_run_id: null });
    expect(byId.get('sevt_14_0')).toMatchObject({ type: 'agent.tool_use', session_thread_id: thread, name: 'bash' });
    expect(byId.get('sevt_18_0')!.stop_reason).toEqual({ type: 'requires_action', event_ids: ['sevt_14_0', 'sevt_14_1'] });
    expect(byId.get('sevt_yes')).toMatchObject({ tool_use_id: 'sevt_14_0', session_thread_id: thread });
    expect(byId.get('sevt_ans')).toMatchObject({ custom_tool_use_id: 'sevt_14_1', session_thread_id: thread });
    // The delegate call's own result is the parent's: it names the thread it came from, as before.
    expect(byId.get('sevt_31_0')).toMatchObject({ tool_use_id: 'sevt_5_0', session_thread_id: thread });
    expect(mapper.threads).toEqual(new Set([thread]));
    expect(mapper.calls.get('sevt_14_0')).toEqual({ tool_use_id: 'toolu_rm', type: 'agent.tool_use', session_thread_id: thread });
    expect(mapper.calls.get('sevt_5_0')).toEqual({ tool_use_id: 'toolu_d', type: 'agent.tool_use' });
  });

  it('maps session errors onto the API error objects', () => {
    const { events } = mapEvents([
      ev('5.0', 'session.error', { error: { type: 'Model.RateLimit', message: 'slow down', retryable: true } }),
      ev('6.0', 'session.error', { error: { type: 'Model.BadRequest', message: 'bad', retryable: false } }),
      ev('7.0', 'session.error', { error: { type: 'Signal.Invalid', message: 'nope', retryable: false } }),
    ]);
    expect(events.map((e) => e.error)).toEqual([
      { type: 'model_rate_limited_error', message: 'slow down', retry_status: { type: 'exhausted' }, tandem_type: 'Model.RateLimit' },
      { type: 'model_request_failed_error', message: 'bad', retry_status: { type: 'terminal' }, tandem_type: 'Model.BadRequest' },
      { type: 'unknown_error', message: 'nope', retry_status: { type: 'terminal' }, tandem_type: 'Signal.Invalid' },
    ]);
  });
});

describe('versioned records', () => {
  const v1: ResourceRecord = {
    id: 'agent_x',
    name: 'a',
    system: 'one',
    version: 1,
    metadata: { team: 'infra', keep: 'yes' },
    created_at: at,
    updated_at: at,
    archived_at: null,
  };

  it('makes a new version for a change and none for a no-op, whatever the key order', () => {
    const later = '2026-11-22T01:00:00.000Z';
    const v2 = updatedRecord(v1, { set: { system: 'two' } }, later, { versioned: true });
    expect(v2).toMatchObject({ version: 2, system: 'two', updated_at: later });
    expect(updatedRecord(v2, { set: { system: 'two', name: 'a' } }, later, { versioned: true })).toBe(v2);
    expect(updatedRecord(v2, { set: {}, metadata: { keep: 'yes', team: 'infra' } }, later, { versioned: true })).toBe(v2);
    expect(updatedRecord(v2, { set: {}, metadata: { team: null } }, later, { versioned: true })).toMatchObject({
      version: 3,
      metadata: { keep: 'yes' },
    });
  });

  it('patches metadata: strings upsert, null deletes, an empty string deletes where the API says so', () => {
    expect(patchMetadata({ a: '1', b: '2' }, { a: null, c: '3' })).toEqual({ b: '2', c: '3' });
    expect(patchMetadata({ a: '1' }, { a: '' })).toEqual({ a: '' });
    expect(patchMetadata({ a: '1' }, { a: '' }, true)).toEqual({});
    expect(patchMetadata({ a: '1' }, null)).toEqual({});
    expect(patchMetadata({ a: '1' }, undefined)).toEqual({ a: '1' });
  });
});

describe('API keys of tandem serve', () => {
  it('takes TANDEM_API_KEYS when set; otherwise creates one key in the vault once and reuses it', async () => {
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { Vault } = await import('../../src/vault/index.js');
    const { resolveApiKeys, API_KEY_SECRET } = await import('../../src/server/index.js');
    const vault = new Vault(join(mkdtempSync(join(tmpdir(), 'tandem-keys-')), 'vault.json'), {});
    expect(resolveApiKeys({ TANDEM_API_KEYS: 'a, b,' }, vault)).toEqual({ keys: ['a', 'b'] });
    expect(vault.has(API_KEY_SECRET)).toBe(false);
    const first = resolveApiKeys({}, vault);
    expect(first.created).toMatch(/^sk-tandem-/);
    expect(first.keys).toEqual([first.created]);
    expect(resolveApiKeys({}, vault)).toEqual({ keys: [first.created] });
  });
});

describe('credential updates', () => {
  it('will not send a stored token to a new MCP server URL unless the token is given again', async () => {
    const { splitAuth } = await import('../../src/server/resources.js');
    const current = { type: 'static_bearer', mcp_server_url: 'https://mcp.example/mcp' };
    expect(() => splitAuth({ type: 'static_bearer', mcp_server_url: 'https://evil.example/mcp' }, current)).toThrow(/auth\.token/);
    expect(splitAuth({ type: 'static_bearer', mcp_server_url: 'https://new.example/mcp', token: 't' }, current)).toMatchObject({
      auth: { mcp_server_url: 'https://new.example/mcp' },
      secrets: { token: 't' },
    });
    // Same URL, no token: the stored token stays, nothing new to store.
    expect(splitAuth({ type: 'static_bearer' }, current).secrets).toEqual({});
  });
});
