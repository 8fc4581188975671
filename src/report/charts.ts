// Inline SVG charts for the run report: a line chart (training losses, the seed threshold curve) and a grouped
// horizontal bar chart (per-class IoU). Our own few dozen lines rather than a charting library: the page stays
// one self-contained file that renders offline with no JavaScript, and the output is plain, testable markup.
import { escapeHtml } from './html.js';

export type Point = readonly [number, number];

/** Maps [d0, d1] linearly onto [r0, r1] (a zero-width domain maps to the middle of the range). */
export function linearScale(domain: readonly [number, number], range: readonly [number, number]): (v: number) => number {
  const [d0, d1] = domain;
  const [r0, r1] = range;
  if (d1 === d0) return () => (r0 + r1) / 2;
  const k = (r1 - r0) / (d1 - d0);
  return (v) => r0 + (v - d0) * k;
}

/** The 1/2/5 x 10^n step that cuts [lo, hi] into about `count` intervals. */
function tickStep(lo: number, hi: number, count: number): number {
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw * (1 - 1e-12)) ?? 10 * mag;
}

/** Round tick values covering [lo, hi] with a 1/2/5 x 10^n step, about `count` of them. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step = tickStep(lo, hi, count);
  const ticks: number[] = [];
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  const first = Math.ceil(lo / step - 1e-9);
  for (let i = first; i * step <= hi + step * 1e-9; i++) ticks.push(Number((i * step).toFixed(decimals)));
  return ticks;
}

/** [lo, hi] rounded out to whole multiples of the tick step niceTicks would choose. */
export function niceDomain(lo: number, hi: number, count = 5): [number, number] {
  if (!(hi > lo)) return [lo, lo + 1];
  const step = tickStep(lo, hi, count);
  return [Math.floor(lo / step + 1e-9) * step, Math.ceil(hi / step - 1e-9) * step];
}

/** Coordinates in the markup: two decimals are far below a pixel and keep the page small. */
const fmt = (v: number) => String(Math.round(v * 100) / 100);

/** Tick labels without float noise (0.30000000000000004 -> 0.3). */
const tickLabel = (v: number) => String(Number(v.toPrecision(6)));

export interface LineSeries {
  name: string;
  /** Points in data units; a null y breaks the line (an undefined value, e.g. no class present). */
  points: readonly (readonly [number, number | null])[];
  color: string;
  strokeWidth?: number;
  dashed?: boolean;
  /** Draw a dot at every point (for short series such as per-epoch means). */
  dots?: boolean;
  opacity?: number;
}

export interface LineChartOptions {
  title?: string;
  xLabel: string;
  yLabel: string;
  series: readonly LineSeries[];
  width?: number;
  height?: number;
  /** Axis ranges; default: x the data's extent, y the data's extent rounded out to whole ticks. */
  xDomain?: readonly [number, number];
  yDomain?: readonly [number, number];
  /** Start the default y range at 0 when every value is >= 0 (default true; false zooms in on the data). */
  yFromZero?: boolean;
  /** Vertical marker lines, e.g. the chosen threshold. */
  markers?: readonly { x: number; label: string; color?: string }[];
  /** Highlighted points (a ring; the label is its hover text), e.g. a curve's best value. */
  highlights?: readonly { x: number; y: number; label: string; color?: string }[];
}

/** Plot-area margins in pixels: the title and legend rows above, tick labels and axis titles below and left. */
export const MARGIN = { top: 48, right: 20, bottom: 44, left: 60 } as const;

function extent(values: number[]): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : [0, 1];
}

/** A line chart as an <svg> element. Points map to x: MARGIN.left..width-MARGIN.right, y: height-MARGIN.bottom..MARGIN.top. */
export function lineChart(o: LineChartOptions): string {
  const width = o.width ?? 600;
  const height = o.height ?? 300;
  const xs = o.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = o.series.flatMap((s) => s.points.flatMap((p) => (p[1] === null ? [] : [p[1]])));
  const xDomain = o.xDomain ?? extent(xs);
  let yDomain = o.yDomain;
  if (!yDomain) {
    const [lo, hi] = extent(ys);
    // 8 % headroom keeps a curve's peak off the top frame, where the marker labels are.
    const from = lo >= 0 && (o.yFromZero ?? true) ? 0 : lo;
    yDomain = niceDomain(from, hi + 0.08 * (hi - from));
  }
  const x = linearScale(xDomain, [MARGIN.left, width - MARGIN.right]);
  const y = linearScale(yDomain, [height - MARGIN.bottom, MARGIN.top]);
  const parts: string[] = [];
  parts.push(`<svg class="chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img"` +
    ` aria-label="${escapeHtml(o.title ?? o.yLabel)}">`);
  if (o.title) parts.push(`<text class="title" x="${MARGIN.left}" y="16">${escapeHtml(o.title)}</text>`);

  // Grid and ticks.
  for (const t of niceTicks(yDomain[0], yDomain[1], 5)) {
    const py = fmt(y(t));
    parts.push(`<line class="grid" x1="${MARGIN.left}" x2="${width - MARGIN.right}" y1="${py}" y2="${py}"/>` +
      `<text x="${MARGIN.left - 6}" y="${py}" text-anchor="end" dominant-baseline="middle">${tickLabel(t)}</text>`);
  }
  for (const t of niceTicks(xDomain[0], xDomain[1], 6)) {
    const px = fmt(x(t));
    parts.push(`<line class="axis" x1="${px}" x2="${px}" y1="${height - MARGIN.bottom}" y2="${height - MARGIN.bottom + 4}"/>` +
      `<text x="${px}" y="${height - MARGIN.bottom + 16}" text-anchor="middle">${tickLabel(t)}</text>`);
  }
  parts.push(`<line class="axis" x1="${MARGIN.left}" x2="${width - MARGIN.right}" y1="${height - MARGIN.bottom}" y2="${height - MARGIN.bottom}"/>` +
    `<line class="axis" x1="${MARGIN.left}" x2="${MARGIN.left}" y1="${MARGIN.top}" y2="${height - MARGIN.bottom}"/>`);
  parts.push(`<text x="${fmt((MARGIN.left + width - MARGIN.right) / 2)}" y="${height - 8}" text-anchor="middle">${escapeHtml(o.xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${fmt((MARGIN.top + height - MARGIN.bottom) / 2)}) rotate(-90)" text-anchor="middle">${escapeHtml(o.yLabel)}</text>`);

  for (const m of o.markers ?? []) {
    const px = fmt(x(m.x));
    const color = escapeHtml(m.color ?? '#888');
    parts.push(`<line x1="${px}" x2="${px}" y1="${MARGIN.top}" y2="${height - MARGIN.bottom}" stroke="${color}" stroke-dasharray="4 3"/>` +
      `<text x="${fmt(x(m.x) + 4)}" y="${MARGIN.top + 12}" fill="${color}">${escapeHtml(m.label)}</text>`);
  }

  for (const s of o.series) {
    const color = escapeHtml(s.color);
    // Each run of defined values is one subpath; a null starts the next one.
    let d = '';
    let pen = false;
    for (const [px, py] of s.points) {
      if (py === null) { pen = false; continue; }
      d += `${pen ? 'L' : 'M'}${fmt(x(px))},${fmt(y(py))}`;
      pen = true;
    }
    if (d) {
      parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="${s.strokeWidth ?? 1.5}"` +
        (s.dashed ? ' stroke-dasharray="5 3"' : '') + (s.opacity !== undefined ? ` stroke-opacity="${s.opacity}"` : '') +
        ' stroke-linejoin="round"/>');
    }
    if (s.dots) {
      for (const [px, py] of s.points) {
        if (py !== null) parts.push(`<circle cx="${fmt(x(px))}" cy="${fmt(y(py))}" r="2.5" fill="${color}"/>`);
      }
    }
  }

  for (const h of o.highlights ?? []) {
    parts.push(`<circle cx="${fmt(x(h.x))}" cy="${fmt(y(h.y))}" r="4" fill="none" stroke="${escapeHtml(h.color ?? '#000')}"` +
      ` stroke-width="1.5"><title>${escapeHtml(h.label)}</title></circle>`);
  }

  // Legend: a row under the title, one entry per series.
  let lx = MARGIN.left;
  const legend: string[] = [];
  for (const s of o.series) {
    legend.push(`<line x1="${fmt(lx)}" x2="${fmt(lx + 16)}" y1="32" y2="32" stroke="${escapeHtml(s.color)}" stroke-width="2"` +
      `${s.dashed ? ' stroke-dasharray="5 3"' : ''}/><text x="${fmt(lx + 20)}" y="32" dominant-baseline="middle">${escapeHtml(s.name)}</text>`);
    lx += 32 + 6 * s.name.length;
  }
  parts.push(...legend, '</svg>');
  return parts.join('');
}

export interface BarSeries {
  name: string;
  color: string;
  /** One value per category; null draws no bar and writes "n/a". */
  values: readonly (number | null)[];
}

export interface BarChartOptions {
  title?: string;
  /** One row (group of bars) per category, top to bottom. */
  categories: readonly string[];
  series: readonly BarSeries[];
  /** Value range of the axis (default [0, max]). */
  domain?: readonly [number, number];
  xLabel: string;
  width?: number;
  /** Thickness of one bar; a category's group is series.length bars. */
  barHeight?: number;
  /** Text written at a bar's end. */
  valueLabel?: (v: number) => string;
}

/** Left margin of the bar chart: room for the category names. */
export const BAR_LABEL_WIDTH = 110;
const BAR_GROUP_GAP = 8;

/** A grouped horizontal bar chart as an <svg>: bar length = linearScale(domain, [BAR_LABEL_WIDTH, width - 50]). */
export function barChart(o: BarChartOptions): string {
  const width = o.width ?? 600;
  const barH = o.barHeight ?? 7;
  const groupH = o.series.length * barH + BAR_GROUP_GAP;
  const top = o.title ? 44 : 24;
  const height = top + o.categories.length * groupH + 36;
  const max = Math.max(0, ...o.series.flatMap((s) => s.values.filter((v): v is number => v !== null)));
  const domain = o.domain ?? [0, max > 0 ? max : 1];
  const x = linearScale(domain, [BAR_LABEL_WIDTH, width - 50]);
  const label = o.valueLabel ?? ((v: number) => tickLabel(v));
  const parts: string[] = [`<svg class="chart" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img"` +
    ` aria-label="${escapeHtml(o.title ?? o.xLabel)}">`];
  if (o.title) parts.push(`<text class="title" x="4" y="16">${escapeHtml(o.title)}</text>`);
  const bottom = height - 36;
  for (const t of niceTicks(domain[0], domain[1], 5)) {
    const px = fmt(x(t));
    parts.push(`<line class="grid" x1="${px}" x2="${px}" y1="${top - 4}" y2="${bottom}"/>` +
      `<text x="${px}" y="${bottom + 14}" text-anchor="middle">${tickLabel(t)}</text>`);
  }
  parts.push(`<text x="${fmt((BAR_LABEL_WIDTH + width - 50) / 2)}" y="${height - 6}" text-anchor="middle">${escapeHtml(o.xLabel)}</text>`);

  // Legend above the bars.
  let lx = BAR_LABEL_WIDTH;
  for (const s of o.series) {
    parts.push(`<rect x="${lx}" y="${top - 18}" width="10" height="10" fill="${escapeHtml(s.color)}"/>` +
      `<text x="${lx + 14}" y="${top - 13}" dominant-baseline="middle">${escapeHtml(s.name)}</text>`);
    lx += 24 + 6.5 * s.name.length;
  }

  o.categories.forEach((cat, ci) => {
    const gy = top + ci * groupH;
    parts.push(`<text x="${BAR_LABEL_WIDTH - 6}" y="${fmt(gy + (o.series.length * barH) / 2)}" text-anchor="end"` +
      ` dominant-baseline="middle">${escapeHtml(cat)}</text>`);
    o.series.forEach((s, si) => {
      const v = s.values[ci] ?? null;
      const by = gy + si * barH;
      if (v === null) {
        parts.push(`<text x="${BAR_LABEL_WIDTH + 3}" y="${fmt(by + barH / 2)}" dominant-baseline="middle" font-size="8" fill="#aaa">n/a</text>`);
        return;
      }
      const x0 = x(domain[0]);
      const w = Math.max(0, x(Math.min(v, domain[1])) - x0);
      parts.push(`<rect x="${fmt(x0)}" y="${fmt(by)}" width="${fmt(w)}" height="${fmt(barH - 1)}" fill="${escapeHtml(s.color)}">` +
        `<title>${escapeHtml(`${cat}, ${s.name}: ${label(v)}`)}</title></rect>` +
        `<text x="${fmt(x0 + w + 3)}" y="${fmt(by + barH / 2)}" dominant-baseline="middle" font-size="8">${escapeHtml(label(v))}</text>`);
    });
  });
  parts.push(`<line class="axis" x1="${BAR_LABEL_WIDTH}" x2="${BAR_LABEL_WIDTH}" y1="${top - 4}" y2="${bottom}"/>`, '</svg>');
  return parts.join('');
}

/** At most `maxPoints` points: consecutive buckets are averaged (x and y), so a long noisy log stays readable and small. */
export function thinPoints(points: readonly Point[], maxPoints: number): Point[] {
  if (points.length <= maxPoints) return [...points];
  const out: Point[] = [];
  const per = points.length / maxPoints;
  for (let b = 0; b < maxPoints; b++) {
    const lo = Math.floor(b * per);
    const hi = Math.floor((b + 1) * per);
    let sx = 0;
    let sy = 0;
    for (let i = lo; i < hi; i++) {
      sx += points[i]![0];
      sy += points[i]![1];
    }
    out.push([sx / (hi - lo), sy / (hi - lo)]);
  }
  return out;
}
