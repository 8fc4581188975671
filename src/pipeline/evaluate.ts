// Stage 3: score CAM seeds against ground-truth masks (methods-reference.md sections 1.2-1.4).
//
// Modes, named in every report:
//   leak-free  t chosen on eval.fitSplit (a labelled held-out split, e.g. val) and reported on eval.split
//   fixed      t given (eval.threshold)
//   oracle     t chosen on the reported split itself: leaks its pixel labels into the number (as SEAM's curve does);
//              only used when there is neither a fit split nor a fixed t
// In every mode the reported split's own best-t curve is saved too, marked as the oracle figure.
// A reported split without ground truth (a folder of tagged photos) gets its seeds at the t given or chosen on the
// fit split, unscored; with no masks anywhere to choose t on, eval.threshold must be given (an error says so).
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Dataset, readMask } from '../data/index.js';
import { type CamSample, type MiouResult, type SweepResult, ThresholdSweep, formatMiouTable, withBackground } from '../eval/index.js';
import { camPath, readCam } from '../cams/format.js';
import { writeSeeds } from '../cams/seeds.js';
import { thresholdList, type WeaksegConfig } from './config.js';
import { type StageHooks, logger, prepareRun, readSplit, recordMetrics } from './common.js';
import { runPaths } from './paths.js';
import { camFile, pct } from './per-image.js';
import { writingTo } from '../io/files.js';

export type EvalMode = 'leak-free' | 'fixed' | 'oracle';

export interface EvalReport {
  mode: EvalMode;
  /** The split whose seeds are scored. */
  split: string;
  /** Where t came from: a split name, or 'given'. */
  thresholdChosenOn: string;
  threshold: number;
  /** Scores of `split` at `threshold` (fractions in [0, 1]); null when `split` has no ground truth. */
  result: MiouResult | null;
  /** `split`'s own curve (its best is the oracle, leaky figure); null when `split` has no ground truth. */
  curve: { thresholds: number[]; miou: (number | null)[]; bestThreshold: number; bestMiou: number | null } | null;
  /** The fit split's curve, and its scores at the threshold chosen on it (leak-free mode). */
  fitCurve?: { split: string; thresholds: number[]; miou: (number | null)[]; bestThreshold: number; bestMiou: number | null; result: MiouResult };
  seedsDir: string | null;
}

/** An EvalReport of a split with ground truth: what benchmarks and tests read. */
export interface ScoredEvalReport extends EvalReport {
  result: MiouResult;
  curve: NonNullable<EvalReport['curve']>;
}

/** The report itself, typed as scored; an error naming the split when it was not (no ground truth). */
export function scoredEval(report: EvalReport): ScoredEvalReport {
  if (!report.result || !report.curve) throw new Error(`eval: '${report.split}' has no ground-truth masks, so its seeds were not scored`);
  return report as ScoredEvalReport;
}

const withMasks = (dataset: Dataset): Dataset['items'] => dataset.items.filter((i) => i.maskPath);

/** Without ground truth to choose t on: what to set instead. */
function noThresholdError(splits: string[]): Error {
  return new Error(`eval: no ground-truth masks to choose the seed threshold on (${splits.map((s) => `'${s}'`).join(', ')} ` +
    `${splits.length > 1 ? 'have' : 'has'} none); set eval.threshold (a fraction, e.g. 0.3; configs/seam-mobilenetv2-folder.json ` +
    'gives the one chosen on voc-mini) or give the split masks');
}

async function* camSamples(config: WeaksegConfig, dataset: Dataset, split: string): AsyncGenerator<CamSample> {
  for (const item of withMasks(dataset)) {
    const cam = readCam(camFile(config, split, item));
    const gt = await readMask(item.maskPath!);
    if (gt.width !== cam.width || gt.height !== cam.height) {
      throw new Error(`${item.id}: CAM is ${cam.width}x${cam.height} but its mask ${gt.width}x${gt.height}`);
    }
    yield { labels: cam.labels, cams: cam.cams, width: cam.width, height: cam.height, gt: gt.data, id: item.id };
  }
}

function curveOf(r: SweepResult) {
  return { thresholds: r.thresholds, miou: r.miou, bestThreshold: r.best.threshold, bestMiou: r.best.result.miou };
}

export async function evaluateSeeds(config: WeaksegConfig, hooks: StageHooks = {}): Promise<EvalReport> {
  const paths = prepareRun(config);
  const log = logger(hooks);
  const e = config.eval;
  const thresholds = thresholdList(e.thresholds);
  const dataset = await readSplit(config, e.split);
  const K = dataset.classes.length + 1;
  const names = withBackground(dataset.classes);

  const scored = withMasks(dataset).length > 0;
  const sweep = new ThresholdSweep(K, thresholds);
  if (scored) for await (const s of camSamples(config, dataset, e.split)) sweep.add(s);
  const curve = scored ? sweep.result(names) : null;

  let mode: EvalMode;
  let threshold: number;
  let chosenOn: string;
  let result: MiouResult | null = null;
  let fitCurve: EvalReport['fitCurve'];
  if (e.threshold !== null) {
    mode = 'fixed';
    threshold = e.threshold;
    chosenOn = 'given';
    if (scored) {
      const exact = new ThresholdSweep(K, [threshold]);
      for await (const s of camSamples(config, dataset, e.split)) exact.add(s);
      result = exact.confusionAt(0).score(names);
    }
  } else if (e.fitSplit) {
    mode = 'leak-free';
    const fitSet = await readSplit(config, e.fitSplit);
    if (withMasks(fitSet).length === 0) throw noThresholdError([...new Set([e.fitSplit, ...(scored ? [] : [e.split])])]);
    const fit = new ThresholdSweep(K, thresholds);
    for await (const s of camSamples(config, fitSet, e.fitSplit)) fit.add(s);
    const fitResult = fit.result(names);
    fitCurve = { split: e.fitSplit, ...curveOf(fitResult), result: fitResult.best.result };
    threshold = fitResult.best.threshold;
    chosenOn = e.fitSplit;
    if (scored) result = sweep.confusionAt(fitResult.best.index).score(names);
  } else {
    if (!curve) throw noThresholdError([e.split]);
    mode = 'oracle';
    threshold = curve.best.threshold;
    chosenOn = e.split;
    result = curve.best.result;
  }

  let seedsDir: string | null = null;
  if (e.writeSeeds) {
    seedsDir = paths.seeds(e.split);
    const dir = runPaths(config).cams(e.split);
    for (const item of dataset.items) {
      const p = camPath(dir, item.id);
      if (existsSync(p)) await writeSeeds(seedsDir, readCam(p), threshold);
    }
    writeFileSync(join(seedsDir, 'info.json'), `${JSON.stringify({ split: e.split, threshold, mode, thresholdChosenOn: chosenOn,
      format: 'VOC palette PNG: 0 background, class index + 1 for objects' }, null, 2)}\n`);
  }

  const report: EvalReport = { mode, split: e.split, thresholdChosenOn: chosenOn, threshold, result, curve: curve ? curveOf(curve) : null, fitCurve, seedsDir };
  const lines = [
    `seed evaluation of '${e.split}' [mode: ${mode}]: t = ${threshold} ` +
      (mode === 'leak-free' ? `(chosen on '${chosenOn}', whose best mIoU is ${pct(fitCurve!.bestMiou)} %)` :
        mode === 'fixed' ? '(given)' : `(chosen on '${e.split}' itself: oracle, leaks pixel labels)`),
    ...(result && curve ? [
      formatMiouTable(result),
      `[${mode}] seed mIoU on '${e.split}' at t = ${threshold}: ${pct(result.miou)} %`,
      `[oracle, leaky] best t on '${e.split}' itself: ${curve.best.threshold} -> ${pct(curve.best.result.miou)} %`,
      `curve on '${e.split}' (t: mIoU %): ` + curve.thresholds.map((t, i) => `${t.toFixed(2)}: ${pct(curve.miou[i] ?? null)}`).join(', '),
    ] : [`'${e.split}' has no ground-truth masks: its seeds are written${seedsDir ? ` to ${seedsDir}` : ''}, not scored`]),
  ];
  for (const l of lines) log(l);
  writingTo(paths.evalLog, () => writeFileSync(paths.evalLog, `${lines.join('\n')}\n`));
  recordMetrics(config, 'eval', report);
  return report;
}
