import { describe, it, expect } from 'vitest';
import * as fs from 'node:fs';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { truncateFile, truncateOutput as truncate } from '../../sandbox/truncate.mjs';

function numberedLines(n: number): string {
  let s = '';
  for (let i = 1; i <= n; i++) s += `line${String(i).padStart(6, '0')}\n`;
  return s;
}

describe('truncateOutput', () => {
  it('returns text under or at the cap unchanged', () => {
    expect(truncate('hello', 30000)).toEqual({ text: 'hello', truncated: false, omitted: 0 });
    const exact = 'x'.repeat(1000);
    expect(truncate(exact, 1000)).toEqual({ text: exact, truncated: false, omitted: 0 });
    expect(truncate('', 100)).toEqual({ text: '', truncated: false, omitted: 0 });
  });

  it('keeps head and tail within the cap and says how much was omitted and where the rest is', () => {
    const text = numberedLines(20000); // 240000 characters
    const outputPath = '/tmp/tandem/outputs/toolu_123.txt';
    const r = truncate(text, 30000, { outputPath });
    expect(r.truncated).toBe(true);
    expect(r.text.length).toBeLessThanOrEqual(30000);
    expect(r.text.startsWith('line000001\nline000002\n')).toBe(true);
    expect(r.text.endsWith('line019999\nline020000\n')).toBe(true);
    expect(r.text).toContain(`[... ${r.omitted} characters omitted; full output in ${outputPath} ...]`);

    // Cut at line breaks here, so the marker sits on its own line between whole lines.
    const at = r.text.indexOf('[... ');
    const head = r.text.slice(0, at);
    const tail = r.text.slice(r.text.indexOf('\n', at) + 1);
    expect(head.endsWith('\n')).toBe(true);
    expect(head.length + tail.length + r.omitted).toBe(text.length);
    expect(text.startsWith(head)).toBe(true);
    expect(text.endsWith(tail)).toBe(true);
    // roughly 40% head, 60% tail
    expect(head.length).toBeGreaterThan(0.3 * 30000);
    expect(head.length).toBeLessThan(0.45 * 30000);
    expect(tail.length).toBeGreaterThan(0.5 * 30000);
  });

  it('works without line breaks and without an output path', () => {
    const text = 'a'.repeat(5000) + 'b'.repeat(5000);
    const r = truncate(text, 1000);
    expect(r.truncated).toBe(true);
    expect(r.text.length).toBeLessThanOrEqual(1000);
    expect(r.omitted).toBeGreaterThan(9000);
    expect(r.text).toMatch(/^a+\n\[\.\.\. \d+ characters omitted \.\.\.\]\nb+$/);
    const kept = r.text.replace(/\n\[\.\.\..*\.\.\.\]\n/, '');
    expect(kept.length + r.omitted).toBe(text.length);
  });

  it('never splits a surrogate pair', () => {
    const text = '😀'.repeat(5000); // 10000 UTF-16 code units
    const r = truncate(text, 500);
    expect(r.truncated).toBe(true);
    expect(r.text.length).toBeLessThanOrEqual(500);
    expect(r.text).not.toMatch(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/);
  });
});

describe('truncateFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-trunc-'));

  it('reads a small file whole and leaves it alone under the cap', () => {
    const f = join(dir, 'small.txt');
    writeFileSync(f, 'a\nb\n');
    expect(truncateFile(f, 1000, fs)).toEqual({ text: 'a\nb\n', truncated: false, omitted: 0 });
  });

  it('keeps the first and last lines of a huge file within the cap and names the file', () => {
    const f = join(dir, 'huge.txt');
    writeFileSync(f, numberedLines(200_000)); // 2.2 MB
    const r = truncateFile(f, 30_000, fs);
    expect(r.truncated).toBe(true);
    expect(r.text.length).toBeLessThanOrEqual(30_000);
    expect(r.text.startsWith('line000001\nline000002\n')).toBe(true);
    expect(r.text.endsWith('line200000\n')).toBe(true);
    expect(r.text).toContain(`bytes omitted; full output in ${f}`);
    expect(r.omitted).toBeGreaterThan(2_100_000);
    // The count is exact: what is shown plus what is omitted is the whole file.
    const shown = r.text.replace(/\[\.\.\. \d+ bytes omitted; full output in [^\]]+ \.\.\.\]\n/, '');
    expect(Buffer.byteLength(shown) + r.omitted).toBe(fs.statSync(f).size);
  });
});
