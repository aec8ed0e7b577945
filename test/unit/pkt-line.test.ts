/**
 * The ref updates of a push, read fail-closed: each shape git receive-pack could take a command from, other than one
 * well-formed command per pkt-line, refuses the whole push; the pushes git sends pass.
 */
import { describe, expect, it } from 'vitest';
import {
  BodyError,
  pktLine,
  receivePackRefs,
  RefUpdateReader,
  rejectPush,
  SignedPushError,
} from '../../src/activities/sandbox/pkt-line.js';

const Z = '0'.repeat(40);
const A = 'a'.repeat(40);
const B = 'b'.repeat(40);

function pkt(s: string | Buffer): Buffer {
  return pktLine(s);
}

/** What the reader makes of `parts` followed by a flush and a pack: the refs, or the refusal's status and message. */
function read(...parts: Buffer[]): { refs: string[]; capabilities: string[] } | string {
  try {
    return receivePackRefs(Buffer.concat([...parts, Buffer.from('0000PACK')]));
  } catch (err) {
    if (!(err instanceof BodyError)) throw err;
    return `${err.status}${err instanceof SignedPushError ? ' signed' : ''}`;
  }
}

describe('the ref updates of a push', () => {
  it('refuses a push wrapped in a push certificate, whatever its commands look like', () => {
    const cert = (...commands: Buffer[]) => [
      pkt(`push-cert\0report-status side-band-64k agent=git/2.39\n`),
      pkt('certificate version 0.1\n'),
      pkt('pusher T <t@example.com> 1700000000 +0000\n'),
      pkt('pushee http://127.0.0.1:47011/0/app.git\n'),
      pkt('nonce 1700000000-abc\n'),
      pkt('\n'),
      ...commands,
      pkt('-----BEGIN PGP SIGNATURE-----\n'),
      pkt('-----END PGP SIGNATURE-----\n'),
      pkt('push-cert-end\n'),
    ];
    // The attack of issue 14: each command split over two pkt-lines, which git joins back into one text.
    expect(read(...cert(pkt(`${Z} ${A}`), pkt(' refs/heads/main\n'), pkt(`${Z} ${A}`), pkt(' refs/tags/v1\n')))).toBe(
      '403 signed',
    );
    // ... with a certificate of short header lines only.
    expect(read(pkt('push-cert\0report-status\n'), pkt('nonce x\n'), pkt('\n'), pkt(`${Z} ${A}`), pkt(' refs/heads/main\n'), pkt('push-cert-end\n'))).toBe(
      '403 signed',
    );
    // As git itself sends it: one command per line.
    expect(read(...cert(pkt(`${Z} ${A} refs/heads/agent/x\n`)))).toBe('403 signed');
    // Without capabilities, or after shallow lines.
    expect(read(pkt('push-cert\n'))).toBe('403 signed');
    expect(read(pkt(`shallow ${B}\n`), ...cert(pkt(`${Z} ${A} refs/heads/main\n`)))).toBe('403 signed');
    // The refusal keeps the capabilities, so it can be git's own report on the right side band.
    try {
      receivePackRefs(Buffer.concat([...cert(), Buffer.from('0000')]));
    } catch (err) {
      expect(err).toBeInstanceOf(SignedPushError);
      expect((err as SignedPushError).capabilities).toEqual(['report-status', 'side-band-64k', 'agent=git/2.39']);
      expect((err as Error).message).toContain('signed pushes (git push --signed) are not supported through the tandem proxy');
    }
  });

  it('refuses a command split over pkt-lines, and any line that is not a command or a shallow line', () => {
    const cases: Array<[string, Buffer[]]> = [
      ['a command split after its new oid', [pkt(`${Z} ${A} `), pkt('refs/heads/main\n')]],
      ['a command split before the space of its ref name', [pkt(`${Z} ${A}`), pkt(' refs/heads/main\n')]],
      ['a command split inside its ref name', [pkt(`${Z} ${A} refs/he`), pkt('ads/main\n')]],
      ['a command split after its old oid', [pkt(`${Z} `), pkt(`${A} refs/heads/main\n`)]],
      ['two commands in one pkt-line', [pkt(`${Z} ${A} refs/heads/agent/x\n${Z} ${A} refs/heads/main\n`)]],
      ['garbage', [pkt('hello\n')]],
      ['an error packet', [pkt('ERR nothing to see\n')]],
      ['an empty pkt-line', [Buffer.from('0004')]],
      ['a delimiter packet, which ends git list as a flush would', [Buffer.from('0001'), pkt(`${Z} ${A} refs/heads/main\n`)]],
      ['a response-end packet', [Buffer.from('0002')]],
      ['a short old oid', [pkt(`${Z.slice(1)} ${A} refs/heads/agent/x\n`)]],
      ['an oid of 50 digits', [pkt(`${'0'.repeat(50)} ${A} refs/heads/agent/x\n`)]],
      ['an oid that is not hex', [pkt(`${'g'.repeat(40)} ${A} refs/heads/agent/x\n`)]],
      ['no ref name', [pkt(`${Z} ${A} \n`)]],
      ['no space before the ref name', [pkt(`${Z} ${A}refs/heads/agent/x\n`)]],
      ['two spaces', [pkt(`${Z}  ${A} refs/heads/agent/x\n`)]],
      ['a carriage return in the ref name', [pkt(`${Z} ${A} refs/heads/agent/x\r\n`)]],
      ['a tab in the ref name', [pkt(`${Z} ${A} refs/heads/agent/\tx\n`)]],
      ['a newline inside the ref name', [pkt(`${Z} ${A} refs/heads/agent/x\nrefs/heads/main\n`)]],
      ['a DEL in the ref name', [pkt(`${Z} ${A} refs/heads/agent/\x7fx\n`)]],
      ['a ref name that is not UTF-8', [pkt(Buffer.concat([Buffer.from(`${Z} ${A} refs/heads/agent/`), Buffer.from([0xff, 0x0a])]))]],
      ['capabilities on a later command', [pkt(`${Z} ${A} refs/heads/agent/x\0report-status\n`), pkt(`${Z} ${A} refs/heads/main\0side-band-64k\n`)]],
      ['control characters in the capabilities', [pkt(`${Z} ${A} refs/heads/agent/x\0report-status\x01\n`)]],
      ['a shallow line with capabilities', [pkt(`shallow ${B}\0report-status\n`)]],
      ['a shallow line with a short oid', [pkt(`shallow ${B.slice(2)}\n`)]],
      ['a shallow line followed by more', [pkt(`shallow ${B} refs/heads/main\n`)]],
    ];
    for (const [what, parts] of cases) expect(read(...parts), what).toBe('400');
    const reader = new RefUpdateReader(1024);
    expect(() => reader.push(pkt('hello\n'))).toThrow(
      'malformed ref update: each pkt-line before the flush must be "<old-oid> <new-oid> <refname>" or "shallow <oid>"',
    );
  });

  it('reads the pushes git sends: shallow lines, SHA-1 and SHA-256 oids, with or without a newline, push options after the flush', () => {
    expect(read(pkt(`shallow ${B}\n`), pkt(`${Z} ${A} refs/heads/agent/x\0report-status-v2 side-band-64k quiet\n`))).toEqual({
      refs: ['refs/heads/agent/x'],
      capabilities: ['report-status-v2', 'side-band-64k', 'quiet'],
    });
    const z64 = '0'.repeat(64);
    const a64 = 'A'.repeat(64);
    expect(read(pkt(`${z64} ${a64} refs/heads/agent/x\0object-format=sha256\n`), pkt(`${a64} ${z64} refs/heads/agent/y`))).toEqual({
      refs: ['refs/heads/agent/x', 'refs/heads/agent/y'],
      capabilities: ['object-format=sha256'],
    });
    expect(read(pkt(`${Z} ${A} refs/heads/agent/x\0\n`))).toEqual({ refs: ['refs/heads/agent/x'], capabilities: [] });
    expect(read(pkt(`${Z} ${A} refs/heads/agent/ünïcode and space\n`))).toEqual({
      refs: ['refs/heads/agent/ünïcode and space'],
      capabilities: [],
    });
    expect(read()).toEqual({ refs: [], capabilities: [] });
    // With `push-options`, the options come after the commands' flush: strings for the hooks, never ref updates.
    // The reader stops at the first flush; the options and the pack stream on unread.
    const body = Buffer.concat([
      pkt(`${Z} ${A} refs/heads/agent/x\0report-status push-options\n`),
      Buffer.from('0000'),
      pkt(`${Z} ${A} refs/heads/main\n`),
      Buffer.from('0000PACK'),
    ]);
    const reader = new RefUpdateReader(1024);
    expect(reader.push(body)).toBe(true);
    expect(reader.refs).toEqual(['refs/heads/agent/x']);
  });

  it('refuses with git report: every ref rejected, and an unpack error when there is no ref to name', () => {
    expect(rejectPush([], ['report-status'], 'x', 'tandem: no').toString()).toBe(`${pkt('unpack tandem: no\n')}0000`);
    expect(rejectPush(['refs/heads/main'], [], 'tandem: no').toString()).toBe(
      `${pkt('unpack ok\n')}${pkt('ng refs/heads/main tandem: no\n')}0000`,
    );
  });
});
