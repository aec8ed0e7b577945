/**
 * The record of egress refusals is bounded wherever it is held: a flood of refusals with enormous host names leaves
 * at most 100 short denials and a count, in the worker's memory, in the session's handoff files, and in what a tool
 * call reports; denials reach another worker through the files, and none is reported twice.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import {
  boundDenial,
  DenialLog,
  joinBatches,
  MAX_DENIAL_HOST,
  MAX_DENIALS,
  takeHandoff,
} from '../../src/activities/sandbox/egress-denials.js';
import type { EgressDenial } from '../../src/shared/types.js';

/** A session's handoff directory, in a `state/` directory that exists (as the gateway makes it). */
function handoffDir(): string {
  const state = join(mkdtempSync(join(tmpdir(), 'tandem-denials-')), 'state');
  mkdirSync(state, { mode: 0o700 });
  return join(state, 'denials');
}

/** Bytes of the files in `dir` (0 when it does not exist). */
function bytesIn(dir: string): number {
  try {
    return readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
  } catch {
    return 0;
  }
}

/** Waits until `check` holds, or fails naming `what`. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; !check(); i++) {
    if (i > 1500) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const hostile = (i: number): EgressDenial => ({
  // 15 KB names, with C0 and C1 control characters and a bidi override in them.
  host: `h${i}\u0001\u0085\u202e${'x'.repeat(15_000)}.test`,
  port: 443,
  method: 'CONNECT',
  at: new Date(0).toISOString(),
});

describe('egress denials', () => {
  it('cuts host names to 253 characters and removes control characters', () => {
    const d = boundDenial(hostile(7));
    expect(d.host).toHaveLength(MAX_DENIAL_HOST);
    expect(d.host.startsWith('h7xxx')).toBe(true);
    expect(boundDenial({ host: 'a\r\nb\u0000c\u200bd', port: 70000, method: 'GET\u0007\u0007', at: 'x' })).toEqual({
      host: 'abcd',
      port: 0,
      method: 'GET',
      at: 'x',
    });
  });

  it('holds at most 100 denials of a flood, in memory and on disk, and reports the rest as a count', async () => {
    const dir = handoffDir();
    const log = new DenialLog(dir);
    for (let i = 0; i < 5000; i++) {
      log.record(hostile(i));
      if (i % 500 === 0) await log.settled(); // handovers happen during the flood too
    }
    await log.settled();
    // What the handoff files hold is bounded too: 100 short denials at most, whatever the flood.
    expect(bytesIn(dir)).toBeLessThan(MAX_DENIALS * 400);
    const reported = joinBatches(log.drain());
    expect(reported).toHaveLength(MAX_DENIALS);
    expect(reported.map((d) => d.host.slice(0, 4))).toEqual(Array.from({ length: 100 }, (_, i) => `h${i}xxx`.slice(0, 4)));
    for (const d of reported) {
      expect(d.host.length).toBeLessThanOrEqual(MAX_DENIAL_HOST);
      expect(d.host).not.toMatch(/[\p{Cc}\p{Cf}]/u);
    }
    expect(reported.at(-1)?.dropped).toBe(4900);
    expect(reported.slice(0, -1).every((d) => d.dropped === undefined)).toBe(true);
    expect(JSON.stringify(reported).length).toBeLessThan(MAX_DENIALS * 400);
    // Drained: nothing is reported twice, and the next tool call starts afresh.
    await log.settled();
    expect(joinBatches(log.drain())).toEqual([]);
    expect(readdirSync(dir)).toEqual([]);
    log.record(hostile(1));
    expect(joinBatches(log.drain()).map((d) => d.host.slice(0, 2))).toEqual(['h1']);
    log.close();
  });

  it('hands denials over to another worker through the files, each once', async () => {
    const dir = handoffDir();
    const log = new DenialLog(dir);
    log.record({ host: 'first.test', port: 80, method: 'GET', at: 'a' });
    log.record({ host: 'second.test', port: 443, method: 'CONNECT', at: 'b' });
    // Another worker runs the tool call: it sees the denials once their file is in place.
    await until(() => existsSync(dir) && readdirSync(dir).some((n) => !n.startsWith('.')), 'the handoff file');
    const taken = joinBatches(takeHandoff(dir));
    expect(taken.map((d) => d.host)).toEqual(['first.test', 'second.test']);
    log.record({ host: 'third.test', port: 80, method: 'GET', at: 'c' });
    // The proxy's own worker drains what is left: the third only.
    expect(joinBatches(log.drain()).map((d) => d.host)).toEqual(['third.test']);
    await log.settled();
    expect(joinBatches(takeHandoff(dir))).toEqual([]);
    log.close();
  });

  it('takes a batch being written when its own worker drains, and its file never appears', async () => {
    const dir = handoffDir();
    const log = new DenialLog(dir);
    log.record({ host: 'racing.test', port: 80, method: 'GET', at: 'a' });
    await new Promise((r) => setImmediate(r)); // the handover has begun: its file is being written
    expect(joinBatches(log.drain()).map((d) => d.host)).toEqual(['racing.test']);
    await log.settled();
    expect(readdirSync(dir)).toEqual([]);
    expect(joinBatches(log.drain())).toEqual([]);
    log.close();
  });

  it('hands nothing over once the session has ended and its directory is gone', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'tandem-denials-')), 'state', 'denials');
    const log = new DenialLog(dir);
    log.record({ host: 'late.test', port: 80, method: 'GET', at: 'a' });
    await log.settled();
    expect(() => readdirSync(join(dir, '..'))).toThrow(/ENOENT/);
    log.close();
  });
});
