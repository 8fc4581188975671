// The last stage: one self-contained HTML page per run (report/index.html) with what every stage left in the run
// directory: scores from metrics.json, training curves from the JSON-lines logs, the seed threshold curve, and a
// gallery of images with their CAMs, seeds, refined masks, predictions and ground truth. A stage that did not run
// is named on the page and its parts left out; nothing is recomputed here.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VOC_CLASSES, type DatasetItem } from '../data/index.js';
import type { MiouResult } from '../eval/miou.js';
import { camPath } from '../cams/format.js';
import { type Gallery, type GalleryColumn, galleryRow } from '../report/gallery.js';
import { type ReportModel, type ScoreRow, type ThresholdCurve, type TrainingCurve, renderReport } from '../report/render.js';
import type { Point } from '../report/charts.js';
import { methodDefinition } from '../methods/index.js';
import { GROUND_TRUTH, type WeaksegConfig } from './config.js';
import { type StageHooks, logger, readSplit, recordMetrics } from './common.js';
import { runPaths } from './paths.js';
import { stageNamed, stages } from './stages.js';
import { writeFileAtomic } from '../io/files.js';

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const numberOr = (v: unknown, fallback: number | null = null): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : fallback);

/**
 * A stage's MiouResult from metrics.json: null when the stage scored nothing (`result: null`, no ground truth) or
 * when the value is not a result (then with a warning).
 */
function miouResult(stage: Json, where: string, warnings: string[]): MiouResult | null {
  const r = stage.result;
  if (r === null) return null;
  if (isObject(r) && (typeof r.miou === 'number' || r.miou === null) && Array.isArray(r.classes)) return r as unknown as MiouResult;
  warnings.push(`metrics.json: ${where}.result is not an mIoU result (expected { miou, classes: [...] })`);
  return null;
}

function readJsonFile(path: string, warnings: string[]): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    warnings.push(`${path}: cannot read (${(e as Error).message})`);
    return null;
  }
}

/** Loss per step and per-epoch means from a trainer's JSON-lines log (a resumed run's repeated steps: last wins). */
export function readTrainingLog(path: string, warnings: string[]): { steps: Point[]; epochs: Point[] } {
  const steps = new Map<number, number>();
  const epochs = new Map<number, number>();
  let bad = 0;
  let firstBad = 0;
  readFileSync(path, 'utf8').split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let e: unknown;
    try {
      e = JSON.parse(line);
    } catch {
      if (bad++ === 0) firstBad = i + 1;
      return;
    }
    if (!isObject(e)) return;
    const step = numberOr(e.step);
    if (e.type === 'step' && step !== null && numberOr(e.loss) !== null) steps.set(step, e.loss as number);
    if (e.type === 'epoch' && step !== null && numberOr(e.meanLoss) !== null) epochs.set(step, e.meanLoss as number);
  });
  if (bad) warnings.push(`${path}: ${bad} line(s) are not JSON (first: line ${firstBad}); skipped`);
  const sorted = (m: Map<number, number>): Point[] => [...m.entries()].sort((a, b) => a[0] - b[0]);
  return { steps: sorted(steps), epochs: sorted(epochs) };
}

function trainingCurves(config: WeaksegConfig, metrics: Json, warnings: string[]): TrainingCurve[] {
  const logs = stages().filter((s) => s.trainLog).map((s) => [s.name, s.title, s.trainLog!(config)] as const);
  const curves: TrainingCurve[] = [];
  for (const [stage, title, log] of logs) {
    if (existsSync(log)) {
      const { steps, epochs } = readTrainingLog(log, warnings);
      if (steps.length || epochs.length) curves.push({ title: `${title} loss`, steps, epochs, source: log });
      continue;
    }
    // No log: the per-epoch means metrics.json keeps, placed at the end of each epoch.
    const m = metrics[stage];
    if (isObject(m) && Array.isArray(m.epochLosses) && m.epochLosses.length) {
      const losses = m.epochLosses.filter((v): v is number => typeof v === 'number');
      const perEpoch = (numberOr(m.steps) ?? losses.length) / losses.length;
      curves.push({ title: `${title} loss`, steps: [], epochs: losses.map((l, i) => [(i + 1) * perEpoch, l]),
        source: `per-epoch means from metrics.json (${log} is absent)` });
    }
  }
  return curves;
}

/** The scored stages in pipeline order; each compared with the latest earlier row on its split among `against`. */
function scoreRows(config: WeaksegConfig, metrics: Json, warnings: string[]): ScoreRow[] {
  const rows: ScoreRow[] = [];
  const compare = (row: ScoreRow, against: string[]) => {
    const base = [...rows].reverse().find((r) => r.split === row.split && against.includes(r.stage) && r.miou !== null);
    if (base) row.baseline = { label: `${base.label}${base.stage === 'eval-fit' ? ' (fit split)' : ''}`, miou: base.miou! };
    rows.push(row);
  };
  const e = metrics.eval;
  if (isObject(e)) {
    const result = miouResult(e, 'eval', warnings);
    const mode = String(e.mode ?? '?');
    const t = numberOr(e.threshold);
    rows.push({
      stage: 'eval', label: `${methodDefinition(config.method.name).title} seeds`, split: String(e.split ?? '?'), miou: result?.miou ?? null,
      note: `t = ${t ?? '?'} (${mode}${e.thresholdChosenOn ? `, chosen on ${String(e.thresholdChosenOn)}` : ''})`,
      ...(result ? { result } : {}),
    });
    // The split t was fitted on: its score at t is its curve's best (useful next to the segmentation net's val score).
    const fit = e.fitCurve;
    if (isObject(fit) && typeof fit.split === 'string' && fit.split !== e.split) {
      rows.push({ stage: 'eval-fit', label: `${methodDefinition(config.method.name).title} seeds`, split: fit.split,
        miou: numberOr(fit.bestMiou), note: `t = ${t ?? '?'} chosen on this split (optimistic for it)` });
    }
  }
  const stageRow = (stage: string, note: (s: Json) => string, against: string[]) => {
    const s = metrics[stage];
    if (!isObject(s)) return;
    const result = miouResult(s, stage, warnings);
    compare({
      stage, label: stageNamed(stage).title, split: String(s.split ?? '?'), miou: result?.miou ?? null,
      note: s.result === null ? 'not scored: no ground truth' : note(s), ...(result ? { result } : {}),
    }, against);
  };
  // Settings as the stage recorded them, else as the config says.
  stageRow('crf', (s) => {
    const iterations = isObject(s.crf) ? numberOr(s.crf.iterations) : null;
    return `${config.refine.crf.preset} preset${iterations !== null ? `, ${iterations} iterations` : ''}` +
      `${numberOr(s.threshold) !== null ? ` on the seeds at t = ${String(s.threshold)}` : ''}`;
  }, ['eval', 'eval-fit']);
  stageRow('random-walk', (s) => {
    const uncertain = numberOr(s.uncertainShare);
    return `beta ${String(s.beta ?? config.refine.randomWalk.beta)}, 2^${String(s.logt ?? config.refine.randomWalk.logt)} steps` +
      `${uncertain !== null ? `, ${(100 * uncertain).toFixed(1)} % of scored pixels uncertain` : ''}`;
  }, ['eval', 'eval-fit', 'crf']);
  stageRow('irn-walk', (s) => `IRN: beta ${String(s.beta ?? config.refine.irn.walk.beta)}, 2^${String(s.expTimes ?? config.refine.irn.walk.expTimes)} steps, ` +
    `background score ${String(s.bgThreshold ?? '?')}`, ['eval', 'eval-fit', 'crf', 'random-walk']);
  stageRow('saliency', (s) => `gen_gt.py's rules on the saliency maps of ${String(s.dir ?? config.refine.saliency.dir)}` +
    `${numberOr(s.ignoredShare) !== null ? `, ${(100 * numberOr(s.ignoredShare)!).toFixed(1)} % of pixels ignored` : ''}`, ['eval', 'eval-fit']);
  stageRow('seg-eval', (s) => {
    const scales = Array.isArray(s.scales) ? s.scales.join('/') : config.seg.scales.join('/');
    const flip = typeof s.flip === 'boolean' ? s.flip : config.seg.testFlip;
    const crf = s.crf === undefined ? config.seg.crf : s.crf;
    const seg = metrics['seg-train'];
    const trained = isObject(seg) && typeof seg.pseudoMasks === 'string' ? seg.pseudoMasks : config.seg.pseudoMasks;
    return `${config.seg.head}, trained on ${trained}; scales ${scales}${flip ? ' + flip' : ''}${crf ? ` + CRF (${String(crf)})` : ''}`;
  }, ['eval', 'eval-fit']);
  const segEval = metrics['seg-eval'];
  if (isObject(segEval) && isObject(segEval.resultWithTags)) {
    const result = miouResult({ result: segEval.resultWithTags }, 'seg-eval.resultWithTags', warnings);
    compare({
      stage: 'seg-eval-tags', label: `${stageNamed('seg-eval').title}, told the tags`, split: String(segEval.split ?? '?'),
      miou: result?.miou ?? null, note: "a diagnostic: each image's labels limited to background and its tags, as the seeds' are",
      ...(result ? { result } : {}),
    }, ['eval', 'eval-fit']);
  }
  return rows;
}

/** The supervised ceiling's row (run.ceiling: its segmenter's mIoU), and every weak row as a fraction of it. */
function withCeiling(config: WeaksegConfig, rows: ScoreRow[], warnings: string[]): ScoreRow[] {
  const dir = config.run.ceiling;
  if (!dir) return rows;
  const file = join(dir, 'metrics.json');
  if (!existsSync(file)) {
    warnings.push(`run.ceiling: ${file} does not exist (run the supervised ceiling, seg.pseudoMasks 'groundTruth', there)`);
    return rows;
  }
  const m = readJsonFile(file, warnings);
  const seg = isObject(m) ? m['seg-eval'] : null;
  const train = isObject(m) ? m['seg-train'] : null;
  const result = isObject(seg) ? miouResult(seg, `${file} seg-eval`, warnings) : null;
  if (!result || result.miou === null) {
    warnings.push(`run.ceiling: ${file} has no scored seg-eval stage`);
    return rows;
  }
  if (!isObject(train) || train.pseudoMasks !== GROUND_TRUTH) {
    warnings.push(`run.ceiling: the segmenter of ${dir} was not trained on ground truth (seg.pseudoMasks '${String(isObject(train) ? train.pseudoMasks : '?')}')`);
  }
  const ceiling = result.miou;
  const images = isObject(train) && typeof train.images === 'number' ? `${train.images} images, ` : '';
  return [
    ...rows.map((r) => (r.miou === null ? r : { ...r, ofCeiling: r.miou / ceiling })),
    { stage: 'ceiling', label: 'Supervised ceiling', split: String(isObject(seg) ? seg.split ?? '?' : '?'), miou: ceiling,
      note: `the segmenter on ground-truth masks (${images}${dir})`, result, ofCeiling: 1 },
  ];
}

function curveOf(label: string, c: unknown): ThresholdCurve | null {
  if (!isObject(c) || !Array.isArray(c.thresholds) || !Array.isArray(c.miou)) return null;
  return {
    label,
    thresholds: c.thresholds.map(Number),
    miou: c.miou.map((v) => numberOr(v)),
    bestThreshold: numberOr(c.bestThreshold, 0)!,
    bestMiou: numberOr(c.bestMiou),
  };
}

function thresholdModel(metrics: Json): ReportModel['threshold'] {
  const e = metrics.eval;
  if (!isObject(e) || numberOr(e.threshold) === null) return null;
  const curves: ThresholdCurve[] = [];
  const fit = isObject(e.fitCurve) ? curveOf(`${String(e.fitCurve.split)} (fit split)`, e.fitCurve) : null;
  if (fit) curves.push(fit);
  const own = curveOf(`${String(e.split)} (reported split)`, e.curve);
  if (own) curves.push(own);
  return { mode: String(e.mode ?? '?'), threshold: e.threshold as number, chosenOn: String(e.thresholdChosenOn ?? '?'), curves };
}

/** One line per stage of what metrics.json says besides the scores (timings, sizes, steps). */
function stageFacts(metrics: Json): [string, string][] {
  const facts: [string, string][] = [];
  const fixed = (v: unknown, d: number) => (numberOr(v) === null ? '?' : (v as number).toFixed(d));
  for (const [stage, value] of Object.entries(metrics)) {
    if (!isObject(value) || stage === 'report') continue;
    if (Array.isArray(value.splits) && value.splits.length) {
      // Per-split image stages (cams, crf, random-walk): images and time per image.
      facts.push([stage, value.splits.filter(isObject).map((s) =>
        `${String(s.split)}: ${String(s.images)} images, ${fixed(s.msPerImage, 0)} ms/image`).join('; ')]);
      continue;
    }
    const parts: string[] = [];
    if (numberOr(value.epochs) !== null) parts.push(`${String(value.epochs)} epochs`);
    if (numberOr(value.steps) !== null) parts.push(`${String(value.steps)} steps`);
    if (numberOr(value.secondsPerEpoch) !== null) parts.push(`${fixed(value.secondsPerEpoch, 1)} s/epoch`);
    if (numberOr(value.msPerStep) !== null) parts.push(`${fixed(value.msPerStep, 0)} ms/step`);
    if (numberOr(value.dataWaitShare) !== null) parts.push(`data wait ${fixed(100 * (value.dataWaitShare as number), 1)} %`);
    if (Array.isArray(value.epochLosses) && value.epochLosses.length) parts.push(`last epoch loss ${fixed(value.epochLosses.at(-1), 4)}`);
    if (typeof value.split === 'string') parts.push(`split ${value.split}`);
    if (numberOr(value.images) !== null) parts.push(`${String(value.images)} images`);
    if (numberOr(value.seconds) !== null) parts.push(`${fixed(value.seconds, 1)} s`);
    if (numberOr(value.msPerImage) !== null) parts.push(`${fixed(value.msPerImage, 0)} ms/image`);
    if (parts.length) facts.push([stage, parts.join(', ')]);
  }
  return facts;
}

/** The first `n` ids (sorted) of a split that have ground truth: the same images in every report of the run. */
/** The first n images by id among those with ground truth, or among all when none has any (a folder of tagged photos). */
export function galleryItems(items: readonly DatasetItem[], n: number): DatasetItem[] {
  const withMasks = items.filter((i) => i.maskPath);
  return (withMasks.length ? withMasks : [...items]).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).slice(0, n);
}

async function buildGallery(title: string, items: readonly DatasetItem[], columns: GalleryColumn[], classNames: string[]): Promise<Gallery> {
  const labels = new Set<number>();
  const truth = items.every((i) => i.maskPath);
  const all: GalleryColumn[] = truth ? [...columns, { title: 'Ground truth', kind: 'mask', path: (id) => items.find((i) => i.id === id)!.maskPath! }] : columns;
  const rows = [];
  for (const item of items) rows.push(await galleryRow(item.id, item.imagePath, all, labels, classNames));
  return { title, columns: ['Image', ...all.map((c) => c.title)], rows, labels: [...labels] };
}

async function galleries(config: WeaksegConfig, metrics: Json, model: Pick<ReportModel, 'galleries' | 'galleryNotes' | 'classNames'>): Promise<void> {
  const paths = runPaths(config);
  const n = config.run.galleryImages;
  if (n === 0) {
    model.galleryNotes.push('run.galleryImages is 0: no gallery.');
    return;
  }
  const e = metrics.eval;
  const seedSplit = isObject(e) && typeof e.split === 'string' ? e.split : config.eval.split;
  const segEval = metrics['seg-eval'];
  const segSplit = isObject(segEval) && typeof segEval.split === 'string' ? segEval.split : config.seg.evalSplit;
  const png = (dir: string) => (id: string) => join(dir, `${id}.png`);
  const candidates: [GalleryColumn, string][] = [
    [{ title: 'CAM', kind: 'cam', path: (id) => camPath(paths.cams(seedSplit), id) }, paths.cams(seedSplit)],
    [{ title: 'Seeds', kind: 'mask', path: png(paths.seeds(seedSplit)) }, paths.seeds(seedSplit)],
    [{ title: 'CRF', kind: 'mask', path: png(paths.crf(seedSplit)) }, paths.crf(seedSplit)],
    [{ title: 'Random walk', kind: 'mask', path: png(paths.pseudo(seedSplit)) }, paths.pseudo(seedSplit)],
    [{ title: 'IRN', kind: 'mask', path: png(paths.irn.pseudo(seedSplit)) }, paths.irn.pseudo(seedSplit)],
  ];
  // Columns whose folder does not exist are left out (and said), rather than a column of empty cells.
  const columns = candidates.filter(([, dir]) => existsSync(dir)).map(([c]) => c);
  const absent = candidates.filter(([, dir]) => !existsSync(dir)).map(([c, dir]) => `${c.title} (${dir})`);
  if (absent.length) model.galleryNotes.push(`Not in the run directory, so not shown: ${absent.join(', ')}.`);

  const jobs: { split: string; title: string; columns: GalleryColumn[] }[] = [
    { split: seedSplit, title: `Pseudo-labels on '${seedSplit}'`, columns },
  ];
  const predDir = paths.seg.predictions(segSplit);
  if (existsSync(predDir)) {
    jobs.push({ split: segSplit, title: `Segmentation net on '${segSplit}'`, columns: [{ title: 'Prediction', kind: 'mask', path: png(predDir) }] });
  } else {
    model.galleryNotes.push(`No segmentation predictions (${predDir}): no prediction gallery.`);
  }
  for (const job of jobs) {
    let items: DatasetItem[];
    try {
      const dataset = await readSplit(config, job.split);
      model.classNames = dataset.classes;
      items = galleryItems(dataset.items, n);
    } catch (err) {
      model.galleryNotes.push(`Gallery of '${job.split}' left out: cannot read the dataset (${(err as Error).message}).`);
      continue;
    }
    if (items.length === 0) {
      model.galleryNotes.push(`Split '${job.split}' has no image: no gallery.`);
      continue;
    }
    if (!items[0]!.maskPath) model.galleryNotes.push(`Split '${job.split}' has no ground truth: its gallery shows the first ${items.length} images without it.`);
    model.galleries.push(await buildGallery(job.title, items, job.columns, model.classNames));
  }
}

/** Everything the page shows, read from the run directory (nothing recomputed). */
export async function collectReport(config: WeaksegConfig): Promise<ReportModel> {
  const paths = runPaths(config);
  if (!existsSync(paths.root)) throw new Error(`run directory ${paths.root} does not exist; nothing to report`);
  const warnings: string[] = [];
  let metrics: Json = {};
  if (existsSync(paths.metrics)) {
    const m = readJsonFile(paths.metrics, warnings);
    if (isObject(m)) metrics = m;
    else if (m !== null) warnings.push(`${paths.metrics}: expected a JSON object keyed by stage`);
  } else {
    warnings.push(`${paths.metrics} does not exist: no stage has recorded results`);
  }
  if (existsSync(paths.skipped)) {
    const lines = readFileSync(paths.skipped, 'utf8').split('\n').filter((l) => l.trim());
    const files = new Set(lines.map((l) => { try { return String((JSON.parse(l) as { path?: unknown }).path); } catch { return l; } }));
    warnings.push(`${files.size} file(s) were skipped as bad (data.onBadFile 'skip'); each is listed with its reason in ${paths.skipped}`);
  }
  const saved = existsSync(paths.config) ? readJsonFile(paths.config, warnings) : null;

  // Class names for the legend: the dataset's (set by the gallery), else those of a scored result.
  const scored = [metrics.eval, metrics.crf, metrics['random-walk'], metrics['irn-walk'], metrics['seg-eval']].find((s) => isObject(s) && isObject(s.result));
  const resultClasses = scored && isObject(scored) && isObject(scored.result) && Array.isArray(scored.result.classes)
    ? scored.result.classes.slice(1).map((c) => (isObject(c) ? String(c.name) : '?')) : null;

  const model: ReportModel = {
    runDir: paths.root,
    generatedAt: new Date().toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC'),
    headline: `method ${methodDefinition(config.method.name).title} · backbone ${config.model.backbone} · data ${config.data.root}` +
      ` (trained on '${config.data.trainSplit}') · device ${config.runtime.device}`,
    stages: stages().filter((s) => !s.always && config.run.stages.includes(s.name)).map((s) => ({ name: s.name, done: isObject(metrics[s.name]) })),
    scores: withCeiling(config, scoreRows(config, metrics, warnings), warnings),
    threshold: thresholdModel(metrics),
    training: trainingCurves(config, metrics, warnings),
    facts: stageFacts(metrics),
    galleries: [],
    galleryNotes: [],
    classNames: resultClasses ?? [...(config.data.classes ?? VOC_CLASSES)],
    config: isObject(saved) ? saved : config,
    configSource: isObject(saved) ? paths.config : 'resolved config (the run has no config.json)',
    warnings,
  };
  await galleries(config, metrics, model);
  return model;
}

/** Writes runPaths(config).report (atomically) and records its path in metrics.json under 'report'. */
export async function writeReport(config: WeaksegConfig, hooks: StageHooks = {}): Promise<{ path: string }> {
  const log = logger(hooks);
  const path = runPaths(config).report;
  const html = renderReport(await collectReport(config));
  writeFileAtomic(path, html);
  recordMetrics(config, 'report', { path });
  log(`report: ${path} (${(Buffer.byteLength(html) / 1024).toFixed(0)} KiB)`);
  return { path };
}
