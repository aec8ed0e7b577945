/**
 * The PNG of a run: one panel per distribution group (a strip plot with a p25–p75 box, the median and p95 marked,
 * every sample a dot) or per series (points over x). Drawn with @napi-rs/canvas (a prebuilt Skia from npm) and the
 * system's fonts.
 */
import { percentile } from './stats.js';
import type { Panel } from './section.js';

const W = 1400;
const LEFT = 300;
const RIGHT = 210;
const ROW = 56;
const TITLE_H = 40;
const AXIS_H = 44;
const SERIES_H = 300;
const COLORS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2'];

function niceStep(range: number, ticks = 6): number {
  const raw = range / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw || 1));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

function fmt(v: number): string {
  if (v >= 1000 && v % 1000 === 0) return `${v / 1000}k`;
  if (Math.abs(v) >= 100) return String(Math.round(v));
  return String(Math.round(v * 10) / 10);
}

/** Deterministic jitter in [-1, 1] for the i-th dot. */
function jitter(i: number): number {
  const x = Math.sin(i * 12.9898 + 78.233) * 43758.5453;
  return (x - Math.floor(x)) * 2 - 1;
}

function panelHeight(p: Panel): number {
  return p.kind === 'strip' ? TITLE_H + p.distributions.length * ROW + AXIS_H : TITLE_H + SERIES_H + AXIS_H;
}

/** Renders the panels into one PNG; resolves undefined when there is nothing to draw. */
export async function renderChart(panels: Panel[], title: string): Promise<Buffer | undefined> {
  if (panels.length === 0) return undefined;
  const { createCanvas } = await import('@napi-rs/canvas');
  const H = 60 + panels.reduce((h, p) => h + panelHeight(p) + 24, 0);
  const canvas = createCanvas(W, H);
  const g = canvas.getContext('2d');
  const font = (px: number, bold = false) => `${bold ? 'bold ' : ''}${px}px "DejaVu Sans", sans-serif`;
  g.fillStyle = '#ffffff';
  g.fillRect(0, 0, W, H);
  g.fillStyle = '#111827';
  g.font = font(22, true);
  g.fillText(title, 20, 36);
  let y = 60;

  for (const p of panels) {
    const h = panelHeight(p);
    g.fillStyle = '#f9fafb';
    g.fillRect(10, y, W - 20, h);
    g.fillStyle = '#111827';
    g.font = font(16, true);
    g.fillText(p.title, 20, y + 26);
    const x0 = LEFT;
    const x1 = W - RIGHT;
    const plotTop = y + TITLE_H;

    if (p.kind === 'strip') {
      const all = p.distributions.flatMap((d) => d.samples);
      const max = Math.max(1, ...all);
      const step = niceStep(max);
      const top = Math.ceil((max * 1.02) / step) * step;
      const X = (v: number) => x0 + (v / top) * (x1 - x0);
      const plotBottom = plotTop + p.distributions.length * ROW;
      // grid and axis
      g.font = font(12);
      for (let v = 0; v <= top + 1e-9; v += step) {
        g.strokeStyle = '#e5e7eb';
        g.lineWidth = 1;
        g.beginPath();
        g.moveTo(X(v), plotTop);
        g.lineTo(X(v), plotBottom);
        g.stroke();
        g.fillStyle = '#4b5563';
        const label = fmt(v);
        g.fillText(label, X(v) - g.measureText(label).width / 2, plotBottom + 18);
      }
      g.fillText(p.unit, x1 + 24, plotBottom + 18);
      p.distributions.forEach((d, i) => {
        const cy = plotTop + i * ROW + ROW / 2;
        const color = COLORS[i % COLORS.length]!;
        g.fillStyle = '#111827';
        g.font = font(14);
        g.fillText(d.label, 20, cy + 5);
        if (d.samples.length === 0) return;
        const q1 = percentile(d.samples, 25);
        const q3 = percentile(d.samples, 75);
        const med = percentile(d.samples, 50);
        const p95 = percentile(d.samples, 95);
        g.fillStyle = `${color}33`;
        g.fillRect(X(q1), cy - 16, Math.max(2, X(q3) - X(q1)), 32);
        g.fillStyle = `${color}aa`;
        d.samples.forEach((v, j) => {
          g.beginPath();
          g.arc(X(v), cy + jitter(j) * 12, 3, 0, Math.PI * 2);
          g.fill();
        });
        g.strokeStyle = color;
        g.lineWidth = 3;
        g.beginPath();
        g.moveTo(X(med), cy - 20);
        g.lineTo(X(med), cy + 20);
        g.stroke();
        g.lineWidth = 2;
        g.setLineDash([4, 3]);
        g.beginPath();
        g.moveTo(X(p95), cy - 16);
        g.lineTo(X(p95), cy + 16);
        g.stroke();
        g.setLineDash([]);
        g.fillStyle = '#111827';
        g.font = font(13);
        g.fillText(`p50 ${fmt(med)}  p95 ${fmt(p95)} ${p.unit}`, x1 + 12, cy + 5);
        g.fillStyle = '#6b7280';
        g.font = font(11);
        g.fillText(`n=${d.samples.length}`, 20, cy + 21);
      });
      g.fillStyle = '#6b7280';
      g.font = font(11);
      g.fillText('box: p25–p75   solid: p50   dashed: p95   dots: samples', 20, plotBottom + 36);
    } else {
      const pts = p.points;
      const xMax = Math.max(1, ...pts.map((q) => q.x));
      // The axis fits the ordinary points; a marked point above them is drawn at the top edge with its value.
      const yMax = Math.max(1, ...pts.filter((q) => !q.mark).map((q) => q.y));
      const xs = niceStep(xMax);
      const ys = niceStep(yMax, 5);
      const xTop = Math.ceil(xMax / xs) * xs;
      const yTop = Math.ceil((yMax * 1.1) / ys) * ys;
      const plotBottom = plotTop + SERIES_H;
      const X = (v: number) => x0 + (v / xTop) * (x1 - x0);
      const Y = (v: number) => plotBottom - (v / yTop) * (SERIES_H - 10);
      g.font = font(12);
      for (let v = 0; v <= yTop + 1e-9; v += ys) {
        g.strokeStyle = '#e5e7eb';
        g.beginPath();
        g.moveTo(x0, Y(v));
        g.lineTo(x1, Y(v));
        g.stroke();
        g.fillStyle = '#4b5563';
        const label = fmt(v);
        g.fillText(label, x0 - 10 - g.measureText(label).width, Y(v) + 4);
      }
      for (let v = 0; v <= xTop + 1e-9; v += xs) {
        g.fillStyle = '#4b5563';
        const label = fmt(v);
        g.fillText(label, X(v) - g.measureText(label).width / 2, plotBottom + 18);
      }
      g.fillText(p.xLabel, x1 + 24, plotBottom + 18);
      g.save();
      g.translate(x0 - 70, plotTop + SERIES_H / 2 + 40);
      g.rotate(-Math.PI / 2);
      g.fillText(p.yLabel, 0, 0);
      g.restore();
      for (const q of pts) {
        const clipped = q.y > yTop;
        g.fillStyle = q.mark ? '#dc2626' : '#2563ebaa';
        g.beginPath();
        g.arc(X(q.x), Y(Math.min(q.y, yTop)), q.mark ? 5 : 2.5, 0, Math.PI * 2);
        g.fill();
        if (clipped) {
          g.font = font(12);
          g.fillText(`↑ ${fmt(q.y)}`, X(q.x) + 8, Y(yTop) + 4);
        }
      }
      if (pts.some((q) => q.mark)) {
        g.fillStyle = '#dc2626';
        g.font = font(12);
        g.fillText('● the turn after which the session continued as new', x0 + 10, plotTop - 4);
      }
    }
    y += h + 24;
  }
  return canvas.toBuffer('image/png');
}
