/** Output of a bench run: the table on stdout, and the JSON, Markdown and PNG files under bench/results/. */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { renderChart } from './chart.js';
import type { Section } from './section.js';

/** What describes one run (the head of the JSON and Markdown files). */
export interface RunInfo {
  date: string;
  started_at: string;
  finished_at?: string;
  quick: boolean;
  scripted_model: { latency_ms: number; ttft_ms: number };
  machine: { cpus: number; cpu_model: string; memory_gb: number; node: string };
  git: { commit: string; dirty: boolean };
  docker: string;
  benchmarks: string[];
  /** The results' file name without extension (default `<date>`, `<date>-quick` for a quick run). */
  name?: string;
  /** 1, 5 and 15 minute load averages when the run started and ended (other work on the machine shows here). */
  load_average: { start: number[]; end?: number[] };
}

/** Prints one section as an aligned table. */
export function printSection(s: Section): void {
  const width = Math.max(...s.rows.map((r) => r.metric.length));
  const lines = [``, `== ${s.title}`, `   ${s.method}`, ...s.rows.map((r) => `   ${r.metric.padEnd(width)}  ${r.value}`), ``];
  process.stdout.write(lines.join('\n') + '\n');
}

/** The Markdown report. */
export function markdown(info: RunInfo, sections: Section[], chartFile?: string): string {
  const out: string[] = [];
  out.push(`# Tandem benchmarks, ${info.date}${info.quick ? ' (quick)' : ''}`, '');
  out.push(
    `Machine: ${info.machine.cpus} cores (${info.machine.cpu_model}), ${info.machine.memory_gb} GB, Node ${info.machine.node}, ` +
      `Docker ${info.docker}. Commit ${info.git.commit}${info.git.dirty ? ' (with uncommitted changes)' : ''}. ` +
      `Scripted model: ${info.scripted_model.latency_ms} ms latency + ${info.scripted_model.ttft_ms} ms time to first token. ` +
      `Load average ${info.load_average.start.join(' / ')} at the start, ${info.load_average.end?.join(' / ') ?? '?'} at the end. ` +
      `Reproduce with \`npm run bench${info.quick ? ' -- --quick' : ''}\`.`,
    '',
  );
  if (chartFile) out.push(`![distributions](${chartFile})`, '');
  for (const s of sections) {
    out.push(`## ${s.title}`, '', s.method, '', '| metric | value |', '| --- | --- |');
    for (const r of s.rows) out.push(`| ${r.metric} | ${r.value.replace(/\|/g, '\\|')} |`);
    out.push('');
  }
  return out.join('\n');
}

/** Reads a results JSON file back into its run info and sections (to draw its chart and tables again). */
export function readResults(file: string): { info: RunInfo; sections: Section[] } {
  const { results, ...info } = JSON.parse(readFileSync(file, 'utf8')) as RunInfo & {
    results: Record<string, { title: string; method: string; rows: Section['rows']; panels?: Section['panels'] } & Record<string, unknown>>;
  };
  const sections = Object.entries(results).map(([key, r]) => {
    const { title, method, rows, panels, ...data } = r;
    return { key, title, method, rows, data, panels: panels ?? [] };
  });
  return { info, sections };
}

/** Writes `<date>[-quick].json|md|png` into `dir` (the JSON unless `json` is false); returns the paths written. */
export async function writeResults(dir: string, info: RunInfo, sections: Section[], json = true): Promise<string[]> {
  mkdirSync(dir, { recursive: true });
  // The run order suits the machine; the reports follow the numbering of the measurements.
  sections = [...sections].sort((a, b) => parseInt(a.title, 10) - parseInt(b.title, 10));
  const name = info.name ?? `${info.date}${info.quick ? '-quick' : ''}`;
  const base = join(dir, name);
  const written: string[] = [];
  const data = {
    ...info,
    results: Object.fromEntries(sections.map((s) => [s.key, { title: s.title, method: s.method, rows: s.rows, ...s.data, panels: s.panels }])),
  };
  if (json) {
    writeFileSync(`${base}.json`, JSON.stringify(data, null, 1) + '\n');
    written.push(`${base}.json`);
  }
  let chart: string | undefined;
  try {
    const png = await renderChart(sections.flatMap((s) => s.panels), `Tandem benchmarks ${info.date}${info.quick ? ' (quick)' : ''}`);
    if (png) {
      writeFileSync(`${base}.png`, png);
      written.push(`${base}.png`);
      chart = `${name}.png`;
    }
  } catch (err) {
    process.stdout.write(`chart: not drawn: ${(err as Error).message}\n`);
  }
  writeFileSync(`${base}.md`, markdown(info, sections, chart));
  written.push(`${base}.md`);
  return written.map((p) => relative(process.cwd(), p));
}
