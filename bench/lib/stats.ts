/** Small statistics over latency samples (milliseconds unless named otherwise). */

/** Percentile `p` (0–100) by linear interpolation between closest ranks; NaN for no samples. */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo]!;
  const b = sorted[hi]!;
  return a + (b - a) * (rank - lo);
}

/** The summary the reports use for one distribution. */
export interface Summary {
  n: number;
  min: number;
  p50: number;
  p95: number;
  max: number;
  mean: number;
}

/** Summarises samples (rounded to 0.1). */
export function summarize(samples: number[]): Summary {
  const r = (v: number) => Math.round(v * 10) / 10;
  const mean = samples.reduce((s, v) => s + v, 0) / (samples.length || 1);
  return {
    n: samples.length,
    min: r(Math.min(...samples)),
    p50: r(percentile(samples, 50)),
    p95: r(percentile(samples, 95)),
    max: r(Math.max(...samples)),
    mean: r(mean),
  };
}

/** `1 - after/before` as a percentage, rounded. */
export function reduction(before: number, after: number): number {
  return Math.round((1 - after / before) * 1000) / 10;
}

/**
 * Runs `fn` over `items` with at most `concurrency` in flight; results keep the items' order. With `staggerMs`, lane
 * i starts i × staggerMs late, so that arrivals spread out as in a steady state instead of coming in bursts.
 */
export async function pool<T, R>(
  items: T[],
  concurrency: number,
  fn: (item: T, index: number) => Promise<R>,
  staggerMs = 0,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, items.length) }, async (_, lane) => {
    if (staggerMs > 0) await sleep(lane * staggerMs);
    for (;;) {
      const i = next++;
      if (i >= items.length) return;
      out[i] = await fn(items[i]!, i);
    }
  });
  await Promise.all(lanes);
  return out;
}

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
