// The run report's layout: what a run produced, gathered into a ReportModel (src/pipeline/report.ts reads it
// from the run directory), rendered as one HTML page of sections: stages, scores, per-class IoU, the seed
// threshold curve, training curves, the galleries and the config.
import type { MiouResult } from '../eval/miou.js';
import { vocColormap } from '../data/mask.js';
import { type Point, barChart, lineChart, thinPoints } from './charts.js';
import type { Gallery, GalleryCell } from './gallery.js';
import { legendEntries } from './gallery.js';
import { details, escapeHtml, jsonBlock, page, paragraph, section, table } from './html.js';

export interface ScoreRow {
  /** Stage key in metrics.json ('eval', 'crf', 'random-walk', 'seg-eval'). */
  stage: string;
  label: string;
  split: string;
  miou: number | null;
  /** How the figure was obtained (threshold mode, CRF preset...). */
  note?: string;
  /** Per-class scores, when known (for the IoU chart). */
  result?: MiouResult;
  /** The row this one is compared with (the previous refinement step on the same split). */
  baseline?: { label: string; miou: number };
  /** mIoU / the supervised ceiling's (run.ceiling), when the run names one. */
  ofCeiling?: number;
}

export interface ThresholdCurve {
  label: string;
  thresholds: number[];
  miou: (number | null)[];
  bestThreshold: number;
  bestMiou: number | null;
}

export interface TrainingCurve {
  title: string;
  /** [global step, loss] of every logged step. */
  steps: Point[];
  /** [global step at the epoch's end, mean loss]. */
  epochs: Point[];
  source: string;
}

export interface ReportModel {
  runDir: string;
  generatedAt: string;
  /** One line under the title: method, backbone, dataset. */
  headline: string;
  /** The run's stages in order, and whether each has results. */
  stages: { name: string; done: boolean }[];
  scores: ScoreRow[];
  threshold: { mode: string; threshold: number; chosenOn: string; curves: ThresholdCurve[] } | null;
  training: TrainingCurve[];
  /** [stage, summary] lines: timings, steps, images. */
  facts: [string, string][];
  galleries: Gallery[];
  galleryNotes: string[];
  /** Foreground class names (mask id = index + 1). */
  classNames: string[];
  config: unknown;
  configSource: string;
  /** Things that could not be read, said on the page rather than failing the report. */
  warnings: string[];
}

/** Series colours (Tableau 10), in the order seeds, CRF, random walk, segmentation... */
export const SERIES_COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1'];

const pct = (v: number | null | undefined, digits = 2) => (v === null || v === undefined ? '–' : (100 * v).toFixed(digits));

function deltaCell(row: ScoreRow): string {
  if (!row.baseline || row.miou === null) return '';
  const d = 100 * (row.miou - row.baseline.miou);
  const cls = d > 0 ? 'up' : d < 0 ? 'down' : '';
  return `<span class="${cls}">${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(2)}</span> <span class="muted">vs ${escapeHtml(row.baseline.label)}</span>`;
}

function stagesSection(m: ReportModel): string {
  const missing = m.stages.filter((s) => !s.done).map((s) => s.name);
  const chips = m.stages.map((s) => `<span class="chip ${s.done ? 'done' : 'missing'}">${escapeHtml(s.name)}</span>`).join('');
  const text = missing.length
    ? paragraph(`Missing stages (no results in metrics.json): ${missing.join(', ')}.`, 'warn')
    : paragraph('Every stage of the run has results.', 'muted');
  const facts = m.facts.length ? table(['stage', 'summary'], m.facts.map(([s, f]) => [escapeHtml(s), escapeHtml(f)])) : '';
  const warnings = m.warnings.length
    ? `<h3>Problems reading the run</h3><ul class="warn">${m.warnings.map((w) => `<li>${escapeHtml(w)}</li>`).join('')}</ul>` : '';
  return section('stages', 'Stages', `<div class="stages">${chips}</div>${text}${facts}${warnings}`);
}

function scoresSection(m: ReportModel): string {
  if (m.scores.length === 0) return section('scores', 'Scores', paragraph('No stage has been scored yet.', 'muted'));
  const ceiling = m.scores.some((r) => r.ofCeiling !== undefined);
  const rows = m.scores.map((r) => [escapeHtml(r.label), escapeHtml(r.split), pct(r.miou), deltaCell(r),
    ...(ceiling ? [r.ofCeiling === undefined ? '' : pct(r.ofCeiling, 1)] : []), escapeHtml(r.note ?? '')]);
  const head = ['stage', 'split', 'mIoU %', 'change', ...(ceiling ? ['% of ceiling'] : []), 'how'];
  return section('scores', 'Scores', table(head, rows, { numeric: ceiling ? [2, 4] : [2] }) +
    paragraph('mIoU over the classes present (ground-truth or predicted pixels); changes in percentage points against the ' +
      `previous step scored on the same split${ceiling ? '; "% of ceiling": the mIoU as a share of the supervised ceiling\'s ' +
        '(the same segmenter trained on ground-truth masks, run.ceiling)' : ''}.`, 'muted'));
}

function perClassSection(m: ReportModel): string {
  const scored = m.scores.filter((r) => r.result);
  if (scored.length === 0) return '';
  const K = Math.max(...scored.map((r) => r.result!.classes.length));
  const categories: string[] = [];
  const values: (number | null)[][] = scored.map(() => []);
  for (let c = 0; c < K; c++) {
    const scores = scored.map((r) => r.result!.classes[c]?.iou ?? null);
    if (scores.every((v) => v === null)) continue; // absent from every scored split
    const name = scored.map((r) => r.result!.classes[c]?.name).find((n) => n) ?? `class ${c}`;
    categories.push(name);
    scores.forEach((v, i) => values[i]!.push(v === null ? null : 100 * v));
  }
  const chart = barChart({
    categories,
    series: scored.map((r, i) => ({ name: `${r.label} (${r.split})`, color: SERIES_COLORS[i % SERIES_COLORS.length]!, values: values[i]! })),
    domain: [0, 100],
    xLabel: 'IoU %',
    width: 760,
    barHeight: scored.length > 2 ? 9 : 10,
    valueLabel: (v) => v.toFixed(1),
  });
  return section('per-class', 'Per-class IoU', chart +
    paragraph('Classes with neither ground-truth nor predicted pixels in any scored split are left out; n/a: absent from that split.', 'muted'));
}

function thresholdSection(m: ReportModel): string {
  const t = m.threshold;
  if (!t) return '';
  const color = (i: number) => SERIES_COLORS[i % SERIES_COLORS.length]!;
  const series = t.curves.map((c, i) => ({
    name: `${c.label}: best ${pct(c.bestMiou)} % at t = ${c.bestThreshold}`,
    color: color(i),
    points: c.thresholds.map((x, j) => [x, c.miou[j] === null || c.miou[j] === undefined ? null : 100 * c.miou[j]!] as const),
  }));
  const highlights = t.curves.flatMap((c, i) => (c.bestMiou === null ? [] : [{
    x: c.bestThreshold, y: 100 * c.bestMiou, label: `${c.label}: best ${pct(c.bestMiou)} % at t = ${c.bestThreshold}`, color: color(i),
  }]));
  const chart = lineChart({
    title: 'Seed mIoU against the background threshold t',
    xLabel: 'background threshold t', yLabel: 'mIoU %', series, highlights, width: 760, height: 320, yFromZero: false,
    markers: [{ x: t.threshold, label: `t = ${t.threshold} (${t.mode}, chosen on ${t.chosenOn})`, color: '#c4320a' }],
  });
  return section('threshold', 'Seed threshold', chart +
    paragraph(`Mode ${t.mode}: the reported seeds use t = ${t.threshold}, chosen on ${t.chosenOn}. A curve's own best ` +
      'is an oracle figure for that split (its labels chose t).', 'muted'));
}

function trainingSection(m: ReportModel): string {
  if (m.training.length === 0) return '';
  const charts = m.training.map((c) => {
    const thin = thinPoints(c.steps, 600);
    const series = [];
    if (thin.length) {
      series.push({ name: thin.length < c.steps.length ? `step loss (mean of ~${Math.round(c.steps.length / thin.length)})` : 'step loss',
        color: '#9db7d9', points: thin, strokeWidth: 1 });
    }
    if (c.epochs.length) series.push({ name: 'epoch mean', color: '#c4320a', points: c.epochs, dots: true, strokeWidth: 2 });
    return `<div>${lineChart({ title: c.title, xLabel: 'step', yLabel: 'loss', series, width: 560, height: 280 })}` +
      `<div class="muted">${escapeHtml(c.source)}</div></div>`;
  });
  return section('training', 'Training curves', `<div class="charts">${charts.join('')}</div>`);
}

function cellHtml(c: GalleryCell): string {
  if (c.kind === 'missing') return `<div class="missing">${escapeHtml(c.text)}</div>`;
  return `<img src="${escapeHtml(c.src)}" alt="${escapeHtml(c.alt)}">` + (c.caption ? `<div class="cap">${escapeHtml(c.caption)}</div>` : '');
}

function gallerySection(m: ReportModel): string {
  const notes = m.galleryNotes.map((n) => paragraph(n, 'muted')).join('');
  if (m.galleries.length === 0) return section('gallery', 'Gallery', notes || paragraph('No gallery.', 'muted'));
  const palette = vocColormap();
  const body = m.galleries.map((g) => {
    const head = `<tr><th></th>${g.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('')}</tr>`;
    const rows = g.rows.map((r) => `<tr><td><div class="id">${escapeHtml(r.id)}</div></td>${r.cells.map((c) => `<td>${cellHtml(c)}</td>`).join('')}</tr>`);
    const legend = legendEntries(g.labels, m.classNames, palette)
      .map((e) => `<span><span class="sw" style="background: rgb(${e.rgb.join(',')})"></span>${escapeHtml(e.name)}</span>`).join('');
    // Five columns or more would overflow at full thumbnail size: the table then takes the page width and the
    // thumbnails shrink to fit their columns.
    const wide = g.columns.length >= 5;
    const table = `<table class="gallery${wide ? ' wide' : ''}">${wide ? '<colgroup><col class="idcol"></colgroup>' : ''}` +
      `${head}${rows.join('')}</table>`;
    return `<h3>${escapeHtml(g.title)}</h3>` + (legend ? `<div class="legend">${legend}</div>` : '') +
      (g.rows.length ? table : paragraph('No images.', 'muted'));
  });
  return section('gallery', 'Gallery', notes + body.join(''));
}

export function renderReport(m: ReportModel): string {
  const name = m.runDir.split('/').filter(Boolean).pop() ?? m.runDir;
  const sections = [
    ['stages', 'Stages', stagesSection(m)],
    ['scores', 'Scores', scoresSection(m)],
    ['per-class', 'Per-class IoU', perClassSection(m)],
    ['threshold', 'Threshold', thresholdSection(m)],
    ['training', 'Training', trainingSection(m)],
    ['gallery', 'Gallery', gallerySection(m)],
    ['config', 'Config', section('config', 'Config', details(`${m.configSource} (click to expand)`, jsonBlock(m.config)))],
  ].filter(([, , html]) => html);
  return page({
    title: `weakseg run: ${name}`,
    subtitle: `${m.runDir} · report generated ${m.generatedAt}`,
    headline: m.headline,
    nav: sections.map(([id, label]) => [id!, label!] as const),
    body: sections.map(([, , html]) => html).join('\n'),
    footer: 'Self-contained page written by weakseg: no scripts and no external resources.',
  });
}
