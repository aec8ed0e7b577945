/**
 * Text the CLI shows on a terminal. Session logs hold text written by the model, by tools in the sandbox and by API
 * clients (messages, tool inputs and results, error messages, titles); printed as it is, an escape sequence in it
 * would act on the operator's terminal: clear it, move the cursor over earlier lines, set the window title, write
 * the clipboard (OSC 52), show a link whose text hides its target (OSC 8), or make a line read backwards (bidi
 * overrides). Every printer of such text goes through {@link forTerminal}; `--json` output through
 * {@link jsonLine}.
 */

/** Colour and style (SGR: `ESC [ params m`), the one kind of sequence that is dropped rather than shown. */
const SGR = /\x1b\[[0-9;:]*m/g;

/** C0 controls, DEL, C1 controls (U+0080-U+009F) and the bidi embedding, override and isolate characters. */
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g;

/** What {@link forTerminal} leaves as it is. */
export interface TerminalKeep {
  /** Keep line feeds (a CR LF pair becomes a line feed). */
  newlines?: boolean;
  /** Keep tabs. */
  tabs?: boolean;
}

function visible(c: string): string {
  const code = c.charCodeAt(0);
  if (code < 0x20) return String.fromCharCode(0x2400 + code); // control pictures: ␛ ␇ ␍ ␈ ␀ ...
  if (code === 0x7f) return '\u2421'; // ␡
  return `<U+${code.toString(16).toUpperCase().padStart(4, '0')}>`;
}

/**
 * `text` made harmless on a terminal: colour sequences are dropped; every other control character is shown
 * instead of acting: C0 controls and DEL as their control pictures (ESC as `␛`, so what followed it is plain text,
 * e.g. `␛]52;c;…`), C1 controls and bidi override or isolate characters as `<U+202E>`. Line feeds and tabs are
 * shown too unless `keep` says the printer keeps them. Idempotent.
 */
export function forTerminal(text: string, keep: TerminalKeep = {}): string {
  let s = text.replace(SGR, '');
  if (keep.newlines) s = s.replace(/\r\n/g, '\n');
  return s.replace(UNSAFE, (c) => ((c === '\n' && keep.newlines) || (c === '\t' && keep.tabs) ? c : visible(c)));
}

/**
 * One line of `--json` output: `JSON.stringify`, which already writes C0 controls (ESC included) as `\u001b`, with
 * DEL, the C1 controls and the bidi characters written as `\u` escapes as well. The value read back is unchanged.
 */
export function jsonLine(value: unknown, replacer?: (key: string, value: unknown) => unknown): string {
  return JSON.stringify(value, replacer).replace(
    /[\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
