/** What each measurement hands back to the runner: table rows, raw data, and distributions for the chart. */

/** One distribution of samples, drawn as a strip plot. */
export interface Distribution {
  label: string;
  samples: number[];
}

/** A chart panel: distributions on one axis, or a series over x. */
export type Panel =
  | { kind: 'strip'; title: string; unit: string; distributions: Distribution[] }
  | { kind: 'series'; title: string; xLabel: string; yLabel: string; points: Array<{ x: number; y: number; mark?: boolean }> };

/** One measurement's outcome. */
export interface Section {
  key: string;
  title: string;
  /** What was measured and how, in one or two sentences (printed and written to the Markdown file). */
  method: string;
  rows: Array<{ metric: string; value: string }>;
  /** Everything for the JSON file: summaries and raw samples. */
  data: Record<string, unknown>;
  panels: Panel[];
}

/** Formats milliseconds for tables. */
export function ms(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  if (Math.abs(v) < 10) return `${v.toFixed(1)} ms`;
  return v >= 10_000 ? `${(v / 1000).toFixed(1)} s` : `${Math.round(v)} ms`;
}

/** `p50 / p95` of a summary. */
export function p50p95(s: { p50: number; p95: number }): string {
  return `${ms(s.p50)} / ${ms(s.p95)}`;
}

/** A ratio for tables: `0.12×`. */
export function ratio(v: number): string {
  return Number.isFinite(v) ? `${v.toFixed(2)}×` : 'n/a';
}

/** The verdict on an issue's goal, for tables: `(goal ≤ 10 ms: met)`. */
export function goal(what: string, met: boolean): string {
  return `(goal ${what}: ${met ? 'met' : 'missed'})`;
}

/** Bytes for tables: `12.3 KiB`, `200.0 MiB`. */
export function bytes(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  if (v < 1024) return `${Math.round(v)} B`;
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(1)} KiB`;
  if (v < 1024 ** 3) return `${(v / 1024 ** 2).toFixed(1)} MiB`;
  return `${(v / 1024 ** 3).toFixed(2)} GiB`;
}
