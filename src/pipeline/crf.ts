// Stage 'crf': the seeds at a background threshold, refined by a dense CRF (methods-reference.md section 2.5)
// -> crf/<split>/*.png. The threshold is swept through the CRF on the fit split ('fit') or is the eval stage's
// ('seed'). Records { split, result, threshold, ... } in metrics.json under 'crf'.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type LabelMap, decodeImage, readMask } from '../data/index.js';
import { type CamRecord, readCam } from '../cams/format.js';
import { type MiouResult, formatMiouTable } from '../eval/index.js';
import { type CrfParams, crfParams } from '../refine/crf-presets.js';
import { denseCrf, labelMap } from '../refine/crf.js';
import { planeIndexToMaskIds } from '../refine/affinity-labels.js';
import { type WeaksegConfig, thresholdList } from './config.js';
import { type StageHooks, logger, prepareRun, readMetrics, readSplit, recordMetrics, writeJsonAtomic } from './common.js';
import { runPaths } from './paths.js';
import {
  CandidateSweep, ImageShare, type RefineSplitSummary, SplitScore, StageOutputs, camFile, fitItems, fitSplitOf, pct, progress, unique,
} from './per-image.js';

export interface ChosenThreshold {
  threshold: number;
  mode: string;
  thresholdChosenOn: string;
}

/** The seed threshold the eval stage chose (metrics.json eval.threshold). */
export function chosenThreshold(config: WeaksegConfig): ChosenThreshold {
  const evalMetrics = readMetrics(config).eval as { threshold?: unknown; mode?: unknown; thresholdChosenOn?: unknown } | undefined;
  const t = evalMetrics?.threshold;
  if (typeof t !== 'number' || !(t >= 0 && t <= 1)) {
    throw new Error(`${runPaths(config).metrics} has no eval.threshold (the seed threshold chosen by the eval stage); run \`weakseg eval\` first`);
  }
  return { threshold: t, mode: String(evalMetrics?.mode ?? 'unknown'), thresholdChosenOn: String(evalMetrics?.thresholdChosenOn ?? 'unknown') };
}

/** Seeds at background threshold t refined by a dense CRF: unary from [t, cam_1 .. cam_L], argmax -> mask ids. */
export function crfSeedMask(image: { data: Uint8Array; width: number; height: number }, record: CamRecord, threshold: number, crf: CrfParams): LabelMap {
  const { width, height } = record;
  if (image.width !== width || image.height !== height) {
    throw new Error(`${record.id}: CAM is ${width}x${height} but the image ${image.width}x${image.height}`);
  }
  const plane = width * height;
  const L = record.labels.length;
  const prob = new Float32Array((L + 1) * plane);
  prob.fill(threshold, 0, plane);
  prob.set(record.cams, plane);
  const q = denseCrf({ rgb: image.data, width, height }, prob, L + 1, crf);
  return { width, height, data: planeIndexToMaskIds(labelMap(q, L + 1), record.labels) };
}

/** The CRF'd seeds' mIoU per threshold on the split the threshold was fitted on. */
export interface CrfFitCurve {
  split: string;
  thresholds: number[];
  miou: (number | null)[];
  best: { threshold: number; miou: number | null };
}

export interface CrfSummary {
  /** The split scored (eval.split). */
  split: string;
  threshold: number;
  /** How the threshold was chosen (leak-free, oracle; or the eval stage's mode when reused) and on which split. */
  mode: string;
  thresholdChosenOn: string;
  /** 'fit' (swept through the CRF) or 'seed' (the eval stage's threshold). */
  thresholdRule: 'fit' | 'seed';
  /** The sweep, with rule 'fit'. */
  fitCurve: CrfFitCurve | null;
  crf: CrfParams;
  /** null when the split has no ground truth. */
  result: MiouResult | null;
  splits: RefineSplitSummary[];
}

export function crfSettings(config: WeaksegConfig): CrfParams {
  const c = config.refine.crf;
  return crfParams(c.preset, {
    ...(c.iterations !== undefined ? { iterations: c.iterations } : {}), referenceSize: c.referenceSize, workingSize: c.workingSize,
  });
}


/**
 * The CRF'd seeds' threshold chosen by sweeping refine.crf.thresholds through the CRF on eval.fitSplit (leak-free)
 * or, without one, on eval.split (oracle). The sweep is kept in crf/fit.json and reused on resume.
 */
async function fitCrfThreshold(config: WeaksegConfig, crf: CrfParams, share: ImageShare): Promise<{ chosen: ChosenThreshold; curve: CrfFitCurve }> {
  const hooks = share.hooks;
  const log = logger(hooks);
  const { split, mode } = fitSplitOf(config);
  const thresholds = thresholdList(config.refine.crf.thresholds);
  const file = join(runPaths(config).root, 'crf', 'fit.json');
  const key = JSON.stringify({ split, thresholds, crf });
  if (hooks.resume && existsSync(file)) {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as { key?: string; curve?: CrfFitCurve };
    if (saved.key === key && saved.curve) {
      log(`CRF threshold: reusing the sweep on '${split}' (${file})`);
      return { chosen: { threshold: saved.curve.best.threshold, mode, thresholdChosenOn: split }, curve: saved.curve };
    }
  }
  const { dataset, scored } = await fitItems(config, split, "refine.crf.threshold 'fit'");
  log(`CRF threshold: sweeping ${thresholds.length} thresholds (${thresholds[0]} to ${thresholds.at(-1)}) through the CRF ` +
    `on '${split}' (${scored.length} images with masks, ${mode})`);
  const mine = share.mine(scored);
  const camPaths = mine.map((item) => camFile(config, split, item));
  const sweep = new CandidateSweep(thresholds.length, dataset.classes);
  const bar = progress(hooks, `CRF threshold sweep ${split}`, mine.length);
  for (const [i, item] of mine.entries()) {
    hooks.signal?.throwIfAborted();
    const record = readCam(camPaths[i]!);
    const image = await decodeImage(item.imagePath);
    const gt = await readMask(item.maskPath!);
    thresholds.forEach((t, k) => sweep.add(k, crfSeedMask(image, record, t, crf).data, gt.data, item.id));
    bar.tick();
  }
  bar.stop();
  const { miou, bestIndex } = sweep.sumOver(share).result();
  const curve: CrfFitCurve = { split, thresholds, miou, best: { threshold: thresholds[bestIndex]!, miou: miou[bestIndex] ?? null } };
  if (share.isMain) {
    mkdirSync(dirname(file), { recursive: true });
    writeJsonAtomic(file, { key, curve });
  }
  log(`CRF threshold on '${split}' (t: mIoU %): ${thresholds.map((t, k) => `${t}: ${pct(miou[k] ?? null)}`).join(', ')}`);
  return { chosen: { threshold: curve.best.threshold, mode, thresholdChosenOn: split }, curve };
}

export async function crfSeeds(config: WeaksegConfig, hooksIn: StageHooks = {}): Promise<CrfSummary> {
  const paths = prepareRun(config);
  // Distributed: each rank refines its share of every split (ImageShare).
  const share = ImageShare.of(config, hooksIn);
  const hooks = share.hooks;
  const log = logger(hooks);
  const crf = crfSettings(config);
  const rule = config.refine.crf.threshold;
  const fitted = rule === 'fit' ? await fitCrfThreshold(config, crf, share) : null;
  const chosen = fitted?.chosen ?? chosenThreshold(config);
  const scoredSplit = config.eval.split;
  const trainSplit = config.data.trainSplit;
  const splits = unique([scoredSplit, ...(existsSync(paths.cams(trainSplit)) ? [trainSplit] : [])]);
  const where = chosen.thresholdChosenOn === 'given' ? 'given' : `on '${chosen.thresholdChosenOn}'`;
  log(`CRF seeds at t = ${chosen.threshold} (${chosen.mode}, ${rule === 'fit' ? 'swept through the CRF' : 'the seed threshold'} ${where}), ` +
    `${config.refine.crf.preset} CRF with ${crf.iterations} iterations: ${splits.join(', ')}`);
  const outputs = new StageOutputs(hooks.resume ?? false);
  const summaries: RefineSplitSummary[] = [];
  let result: MiouResult | null = null;
  for (const split of splits) {
    const dataset = await readSplit(config, split);
    const mine = share.mine(dataset.items);
    const camPaths = mine.map((item) => camFile(config, split, item));
    const dir = paths.crf(split);
    const score = split === scoredSplit ? new SplitScore(dataset) : null;
    const bar = progress(hooks, `CRF ${split}`, mine.length);
    const tally = { computed: 0, computeMs: 0 };
    for (const [i, item] of mine.entries()) {
      hooks.signal?.throwIfAborted();
      const mask = await outputs.maskAt(item.id, join(dir, `${item.id}.png`), tally,
        async () => crfSeedMask(await decodeImage(item.imagePath), readCam(camPaths[i]!), chosen.threshold, crf));
      await score?.add(item, mask);
      bar.tick();
    }
    const seconds = bar.stop();
    share.joinSplit(outputs, dataset.items, (item) => join(dir, `${item.id}.png`));
    score?.sumOver(share);
    const [computed, computeMs] = share.total(tally.computed, tally.computeMs) as [number, number];
    if (share.isMain) {
      writeFileSync(join(dir, 'info.json'), `${JSON.stringify({ split, ...chosen, crf,
        format: 'VOC palette PNG: 0 background, class index + 1 for objects' }, null, 2)}\n`);
    }
    summaries.push({ split, dir, images: dataset.items.length, computed, seconds, msPerImage: computed ? computeMs / computed : 0 });
    log(`CRF ${split}: ${dataset.items.length} images (${computed} computed) in ${seconds.toFixed(1)} s -> ${dir}`);
    if (score) {
      result = score.result();
      if (result) log(`${formatMiouTable(result)}\n[${chosen.mode}] CRF'd seed mIoU on '${split}' at t = ${chosen.threshold}: ${pct(result.miou)} %`);
      else log(`CRF ${split}: no ground-truth masks, not scored`);
    }
  }
  const summary: CrfSummary = { split: scoredSplit, threshold: chosen.threshold, mode: chosen.mode,
    thresholdChosenOn: chosen.thresholdChosenOn, thresholdRule: rule, fitCurve: fitted?.curve ?? null, crf, result, splits: summaries };
  recordMetrics(config, 'crf', summary);
  return summary;
}
