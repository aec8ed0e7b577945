import { describe, expect, it } from 'vitest';
import { costMicros, dollars, estimateCost, priceOf } from '../../src/shared/pricing.js';
import { withSpinner } from '../../src/cli/spinner.js';
import { uiLink } from '../../src/cli/sessions.js';

const usage = (i: number, o: number, w = 0, r = 0) => ({
  input_tokens: i,
  output_tokens: o,
  cache_creation_input_tokens: w,
  cache_read_input_tokens: r,
});

describe('cost estimate', () => {
  it('matches the longest model prefix, dated ids included', () => {
    expect(priceOf('claude-sonnet-5-5')?.prefix).toBe('claude-sonnet-5-5');
    expect(priceOf('claude-sonnet-5-20260101')?.prefix).toBe('claude-sonnet-5');
    expect(priceOf('claude-opus-4-1-20250805')?.prefix).toBe('claude-opus-4');
    expect(priceOf('claude-opus-4-5-20251101')?.prefix).toBe('claude-opus-4-5');
    expect(priceOf('claude-sonnet-55')).toBeUndefined();
  });

  it('prices input, output, cache writes and reads; an unknown model gets none', () => {
    expect(estimateCost('claude-sonnet-5-5', usage(1_000_000, 100_000, 200_000, 1_000_000))).toBeCloseTo(2 + 1 + 0.5 + 0.1, 9);
    expect(estimateCost('my-own-model', usage(10, 10))).toBeNull();
    expect(estimateCost(null, usage(10, 10))).toBeNull();
  });

  it('meters a budget in whole micro-dollars, rounded up, and says dollars without rounding a small spend to zero', () => {
    // claude-haiku-5-5 reads cache at $0.01 a million tokens: 150 reads are 1.5 micro-dollars, metered as 2.
    expect(costMicros('claude-haiku-5-5', usage(0, 0, 0, 150))).toBe(2);
    expect(costMicros('claude-sonnet-5-5', usage(1000, 1000))).toBe(12_000);
    expect(costMicros('house-model-1', usage(1000, 1000))).toBeUndefined();
    expect(dollars(12_000)).toBe('$0.0120');
    expect(dollars(2)).toBe('$0.000002');
    expect(dollars(0)).toBe('$0.0000');
  });
});

describe('spinner', () => {
  it('writes nothing when the stream is not a terminal', async () => {
    const writes: string[] = [];
    const out = await withSpinner('waiting', () => new Promise((r) => setTimeout(() => r(7), 400)), {
      write: (s: string) => writes.push(s) > 0,
      isTTY: false,
    });
    expect(out).toBe(7);
    expect(writes).toEqual([]);
  });

  it('on a terminal, spins after a moment and clears its line at the end', async () => {
    const writes: string[] = [];
    await withSpinner('waiting', () => new Promise((r) => setTimeout(r, 600)), {
      write: (s: string) => writes.push(s) > 0,
      isTTY: true,
    });
    expect(writes[0]).toMatch(/^\r. waiting$/);
    expect(writes.at(-1)).toBe('\r\x1b[2K');
  });
});

describe('UI link', () => {
  it('joins the UI address, namespace and session id', () => {
    expect(uiLink('sesn_a', 'default', 'http://127.0.0.1:8233/')).toBe('http://127.0.0.1:8233/namespaces/default/workflows/sesn_a');
    expect(uiLink('sesn_a', 'prod ns', 'ui.example:8080')).toBe('http://ui.example:8080/namespaces/prod%20ns/workflows/sesn_a');
  });
});
