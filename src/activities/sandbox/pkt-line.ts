/**
 * Git's pkt-line framing, as far as the credential proxy needs it to check a push against `push_branches`: reading
 * the ref updates at the start of a receive-pack request, and writing git's own report to refuse them.
 *
 * The reader fails closed. git receive-pack has more ways to take a command than one pkt-line each: a `push-cert`
 * block, whose lines it joins into one text and splits by newline, and any pkt-line it does not expect ends the list
 * or the process. So the reader accepts only what it fully understands (a well-formed command per pkt-line, or a
 * `shallow` line) and refuses the whole push on anything else: a command the proxy did not see must never reach git.
 * See git's Documentation/gitprotocol-pack.txt ("Reference Update Request") and builtin/receive-pack.c.
 */
import { TandemError } from '../../shared/errors.js';

/**
 * Most bytes of ref updates (the commands before the pack) the git proxy reads to check a push against
 * `push_branches`; the pack after them streams through unread. A gzip-encoded push inflates only this far (a gzip
 * bomb stops here), and at most twice as many compressed bytes are read for it.
 */
export const MAX_REF_UPDATE_BYTES = 1024 * 1024;

/** Longest pkt-line git reads (LARGE_PACKET_MAX, its 4 header bytes included). */
export const MAX_PKT_LINE = 65520;

/** A request body the git proxy refuses, with the HTTP status to answer. */
export class BodyError extends TandemError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A signed push (`git push --signed`): its commands are inside a push certificate, which the proxy does not read,
 * so it refuses the push. Carries the capabilities of the request, so the refusal can be git's own report.
 */
export class SignedPushError extends BodyError {
  constructor(readonly capabilities: string[]) {
    super(403, 'signed pushes (git push --signed) are not supported through the tandem proxy; push without --signed');
  }
}

/** An object id: SHA-1 (40 hex digits) or SHA-256 (64). */
const OID = '(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64})';
/** `<old-oid> SP <new-oid> SP <refname>`: the refname is non-empty and holds no control character. */
const COMMAND = new RegExp(`^${OID} ${OID} ([^\\x00-\\x1f\\x7f]+)$`);
const SHALLOW = new RegExp(`^shallow ${OID}$`);
const CAPABILITIES = /^[\x20-\x7e]*$/;

/**
 * Reads the ref updates of a git receive-pack request (its leading pkt-lines, up to the flush packet) and its
 * capabilities from the body's bytes as they come, and stops at the flush packet: the pack after it (and the push
 * options before the pack, which name no ref) are not its business. Every pkt-line before the flush must be a
 * command (`<old-oid> <new-oid> <refname>`, the first one may carry NUL and the capabilities) or `shallow <oid>`.
 * Throws a `BodyError`: 400 for malformed pkt-lines or a line that is neither, 413 for more than `max` bytes of
 * them, and a `SignedPushError` (403) for a push certificate.
 */
export class RefUpdateReader {
  readonly refs: string[] = [];
  capabilities: string[] = [];
  private parts: Buffer[] = [];
  /** Bytes in `parts`: the start of a pkt-line not yet complete. */
  private size = 0;
  /** Bytes `parts` must hold before the next pkt-line can be read: its length once its header has come. */
  private need = 4;
  private taken = 0;
  private flushed = false;

  constructor(private readonly max: number) {}

  /** Takes the next bytes of the body; true once the flush packet has come (the rest of `chunk` is the pack). */
  push(chunk: Buffer): boolean {
    if (this.flushed) return true;
    this.parts.push(chunk);
    this.size += chunk.length;
    if (this.size >= this.need) {
      const buf = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.size);
      let at = 0;
      this.need = 4;
      while (buf.length - at >= 4) {
        const header = buf.toString('latin1', at, at + 4);
        if (!/^[0-9a-f]{4}$/i.test(header)) throw new BodyError(400, 'malformed pkt-line');
        const len = parseInt(header, 16);
        if (len === 0) {
          this.flushed = true;
          this.taken += at + 4;
          this.parts = [];
          this.size = 0;
          break;
        }
        // 0001 (delim) and 0002 (response end) end git's list of commands as a flush would: refused, not skipped.
        if (len < 4 || len > MAX_PKT_LINE) throw new BodyError(400, 'malformed pkt-line');
        if (buf.length - at < len) {
          this.need = len;
          break;
        }
        this.line(buf.subarray(at + 4, at + len));
        at += len;
      }
      if (!this.flushed) {
        this.taken += at;
        this.parts = at < buf.length ? [buf.subarray(at)] : [];
        this.size = buf.length - at;
      }
    }
    if (this.taken + this.size > this.max)
      throw new BodyError(413, `the ref updates of a push may take at most ${this.max} bytes`);
    return this.flushed;
  }

  /** The body has ended before the flush packet: throws why (400). */
  end(): never {
    throw new BodyError(400, this.size > 0 ? 'truncated pkt-line' : 'no flush packet after the ref updates');
  }

  private line(data: Buffer): void {
    // git drops one trailing newline of a pkt-line (after the capabilities, when there are some).
    const bytes = data.at(-1) === 0x0a ? data.subarray(0, -1) : data;
    const text = bytes.toString('utf8');
    // A ref name git would read differently from the proxy (bytes that are not UTF-8) is refused too.
    if (!Buffer.from(text, 'utf8').equals(bytes)) throw malformed();
    const nul = text.indexOf('\0');
    const line = nul < 0 ? text : text.slice(0, nul);
    const caps = nul < 0 ? undefined : text.slice(nul + 1);
    if (caps !== undefined && !CAPABILITIES.test(caps)) throw malformed();
    if (line === 'push-cert') throw new SignedPushError(words(caps));
    if (SHALLOW.test(line) && caps === undefined) return;
    const command = COMMAND.exec(line);
    // Capabilities come once, on the first command.
    if (!command || (caps !== undefined && this.refs.length > 0)) throw malformed();
    if (caps !== undefined) this.capabilities = words(caps);
    this.refs.push(command[1]!);
  }
}

function words(text: string | undefined): string[] {
  return (text ?? '').split(' ').filter(Boolean);
}

function malformed(): BodyError {
  return new BodyError(
    400,
    'malformed ref update: each pkt-line before the flush must be "<old-oid> <new-oid> <refname>" or "shallow <oid>"',
  );
}

/** The ref updates of a whole git receive-pack request body and its capabilities. */
export function receivePackRefs(body: Buffer): { refs: string[]; capabilities: string[] } {
  const reader = new RefUpdateReader(Infinity);
  if (!reader.push(body)) reader.end();
  return { refs: reader.refs, capabilities: reader.capabilities };
}

/** One pkt-line holding `text`: its length (4 hex digits, the header included), then the bytes. */
export function pktLine(text: string | Buffer): Buffer {
  const data = typeof text === 'string' ? Buffer.from(text) : text;
  return Buffer.concat([Buffer.from((data.length + 4).toString(16).padStart(4, '0')), data]);
}

/**
 * A receive-pack answer that rejects every ref with `reason`, so git prints it (`! [remote rejected] ... (reason)`)
 * instead of a bare HTTP error. With `unpackError`, the report says the pack was not taken either, and git prints
 * that sentence (`error: remote unpack failed: ...`) even when `refs` is empty.
 */
export function rejectPush(refs: string[], capabilities: string[], reason: string, unpackError?: string): Buffer {
  const report = Buffer.concat([
    pktLine(`unpack ${unpackError ?? 'ok'}\n`),
    ...refs.map((r) => pktLine(`ng ${r} ${reason}\n`)),
    Buffer.from('0000'),
  ]);
  if (!capabilities.includes('side-band-64k') && !capabilities.includes('side-band')) return report;
  const max = capabilities.includes('side-band-64k') ? 65515 : 995;
  const parts: Buffer[] = [];
  for (let i = 0; i < report.length; i += max)
    parts.push(pktLine(Buffer.concat([Buffer.from([1]), report.subarray(i, i + max)])));
  return Buffer.concat([...parts, Buffer.from('0000')]);
}

/** Whether a push may update `ref`: any ref when `branches` is unset, else `refs/heads/<b>` for a listed `b`. */
export function pushAllowed(branches: string[] | null | undefined, ref: string): boolean {
  if (!branches) return true;
  const m = /^refs\/heads\/(.+)$/.exec(ref);
  if (!m) return false;
  return branches.some((b) => (b.endsWith('*') ? m[1]!.startsWith(b.slice(0, -1)) : m[1] === b));
}
