// Stages 'irn' and 'irn-walk' (methods-reference.md section 2.7): IRN's inter-pixel relation labels from the CAMs
// of data.trainSplit and IRNet trained on them (-> irn/), then the CAMs walked on the affinities of IRNet's class
// boundary map into pseudo-masks of data.trainSplit and eval.split (-> irn/pseudo/<split>), the background score
// and the walk's length and CAM exponent chosen on the fit split ('fit'). Records their figures in metrics.json under
// 'irn' and 'irn-walk'.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { emptyCache, manualSeed, tidy } from '../engine/index.js';
import { type Batch, BatchLoader, type Dataset, type DatasetItem, type LabelMap, decodeImage, evalTransform, readMask, writeMask } from '../data/index.js';
import { createBackbone } from '../backbones/index.js';
import { readSafetensorsHeader } from '../engine/serialize/index.js';
import { readCam } from '../cams/format.js';
import { type MiouResult, formatMiouTable } from '../eval/index.js';
import { crfParams } from '../refine/crf-presets.js';
import { irLabelMap, irnMasks, irnWalkSnapshots } from '../refine/irn.js';
import { IrNet } from '../refine/irn-net.js';
import { MODEL_FORMAT, loadModelWeights } from '../train/checkpoint.js';
import { IRN_CAM_EXPONENTS, type WeaksegConfig } from './config.js';
import { type StageHooks, imageCount, logger, prepareRun, readSplit, recordMetrics, skippedFilesLog } from './common.js';
import { type AffinityLabelScore, logLabelScore, scoreAffinityLabels } from './affinity.js';
import { runPaths } from './paths.js';
import { type FitSummary, fitAndSave, fitFigures, fitTransform, refuseExistingCheckpoints, requireOneBatch } from './fit.js';
import {
  CandidateSweep, ImageShare, type LabelMapsSummary, type RefineSplitSummary, SplitScore, StageOutputs, camFile, fitItems, fitSplitOf, inferenceModel, paddedDeviceImage, pct, progress, unique, writeLabelMaps,
} from './per-image.js';

/** The IR-label CRF (IRN's crf_inference_label), its widths scaled as the other refinement CRFs (refine.crf.referenceSize). */
function irLabelCrf(config: WeaksegConfig) {
  return crfParams('irn', { referenceSize: config.refine.crf.referenceSize, workingSize: config.refine.crf.workingSize });
}

/** A model file `weakseg train` wrote (a whole classifier, its backbone under 'backbone.'), not a backbone's weights. */
function isClassifierModel(path: string): boolean {
  return path.endsWith('.safetensors') && existsSync(path) && readSafetensorsHeader(path).metadata.format === MODEL_FORMAT;
}

/**
 * IRNet on the run's backbone: refine.irn.weights, else model.weights (IRN: the ImageNet ResNet-50, frozen).
 * refine.irn.weights may be a classifier's model file: the backbone is then built as the classifier's was (from
 * model.weights, whose metadata gives its padding and input normalisation) and takes the classifier's weights.
 */
export function buildIrNet(config: WeaksegConfig, numClasses: number, hooks: StageHooks): IrNet {
  const m = config.model;
  const i = config.refine.irn;
  const fromClassifier = i.weights !== undefined && isClassifierModel(i.weights);
  const backbone = hooks.backboneFactory ? hooks.backboneFactory(config) : createBackbone(m.backbone, {
    weights: fromClassifier ? m.weights : i.weights ?? m.weights, outputStride: m.outputStride, ...(m.padding ? { padding: m.padding } : {}),
    ...(m.dilate !== undefined ? { dilate: m.dilate } : {}),
  });
  if (fromClassifier) {
    try {
      loadModelWeights(i.weights!, backbone, { prefix: 'backbone.' });
    } catch (e) {
      backbone.dispose();
      throw new Error(`refine.irn.weights: ${(e as Error).message}`);
    }
  }
  return new IrNet(backbone, { numClasses, radius: i.radius, displacementLrMult: i.headLrMult });
}

/** IR labels for every image of data.trainSplit (needs its CAMs); kept on resume. */
async function makeIrLabels(config: WeaksegConfig, dataset: Dataset, hooks: StageHooks): Promise<LabelMapsSummary> {
  const log = logger(hooks);
  const i = config.refine.irn;
  const split = config.data.trainSplit;
  const dir = runPaths(config).irn.labels;
  const crf = irLabelCrf(config);
  log(`IR labels of '${split}': confident foreground above ${i.confFg}, background below ${i.confBg}, IRN's label CRF -> ${dir}`);
  return writeLabelMaps(dataset.items, split, dir, hooks, 'IR labels', async (item) => {
    const image = await decodeImage(item.imagePath);
    return irLabelMap({ rgb: image.data, width: image.width, height: image.height }, readCam(camFile(config, split, item)),
      { confFg: i.confFg, confBg: i.confBg, crf });
  }, { confFg: i.confFg, confBg: i.confBg, crf });
}

/** Stage 'irn': makes the IR labels (kept on resume) and trains IRNet on them with the shared trainer. */
export async function trainIrn(config: WeaksegConfig, hooks: StageHooks = {}): Promise<FitSummary & { labels: LabelMapsSummary & { score: AffinityLabelScore | null } }> {
  const p = prepareRun(config).irn;
  refuseExistingCheckpoints(p.checkpoints, hooks);
  const i = config.refine.irn;
  const split = config.data.trainSplit;
  const dataset = await readSplit(config, split);
  const labels = await makeIrLabels(config, dataset, hooks);
  requireOneBatch(dataset, split, i.batchSize, 'refine.irn.batchSize');
  const labelled: Dataset = { ...dataset, items: dataset.items.map((item) => ({ ...item, maskPath: join(p.labels, `${item.id}.png`) })) };
  manualSeed(i.seed);
  const net = buildIrNet(config, dataset.classes.length, hooks);
  // IRNet learns its boundaries from pairs of these labels, as AffinityNet does from its own: score them the same way.
  const labelScore = await scoreAffinityLabels(config, dataset, { stride: net.stride, radius: net.radius, labelPath: (id) => join(p.labels, `${id}.png`) });
  logLabelScore(hooks, 'IR labels', labelScore);
  const fit = await fitAndSave(config, hooks, {
    net,
    dataset: labelled,
    split,
    transform: fitTransform(i, net.backbone.inputNorm, true),
    settings: i,
    files: p,
    headline: `IRNet on ${net.backbone.name} (frozen; boundary grid stride ${net.stride}, taps ${net.model.taps.map((t) => t.name).join(', ')}), ` +
      `radius ${net.radius}; ${imageCount(config, split, dataset)}, crop ${i.cropSize}, batch ${i.batchSize}, ${i.epochs} epochs, ` +
      `lr ${i.lr} (displacement x${i.headLrMult})`,
    checkpointMetadata: { backbone: net.backbone.name, config: JSON.stringify(config) },
    modelMetadata: (result) => ({
      format: 'weakseg-irn/1', backbone: net.backbone.name, stride: String(net.stride), radius: String(net.radius),
      num_classes: String(net.numClasses), classes: JSON.stringify(dataset.classes),
      epochs_completed: String(result.epochsCompleted), steps: String(result.steps),
    }),
  });
  recordMetrics(config, 'irn', {
    model: p.model, ...fitFigures(fit), radius: net.radius, stride: net.stride,
    labels: { split: labels.split, images: labels.images, seconds: labels.seconds, msPerImage: labels.msPerImage, shares: labels.shares, score: labelScore },
  });
  return { ...fit, labels: { ...labels, score: labelScore } };
}

/** The class boundary map of one image (a batch of 1), padded to a multiple of the stride as the walk needs. */
function boundaryOf(net: IrNet, batch: Batch, config: WeaksegConfig) {
  return tidy(() => net.boundaryMap(paddedDeviceImage(batch, config, net.stride)));
}

/**
 * One image's masks for every setting (CAM exponent-major, then walk length, then background threshold): one walk
 * per exponent passes through every shorter length (expTimes non-decreasing).
 */
function walkedMasks(config: WeaksegConfig, net: IrNet, batch: Batch, camPath: string, s: WalkSettings): LabelMap[] {
  const w = config.refine.irn.walk;
  const { boundary, height, width } = boundaryOf(net, batch, config);
  const record = readCam(camPath);
  const grid = { height, width };
  return s.camExponents.flatMap((camExponent) =>
    irnWalkSnapshots(record, boundary, grid, { radius: w.radius, beta: w.beta, stride: net.stride, camExponent }, s.expTimes)
      .flatMap((walked) => irnMasks(record, walked, grid, net.stride, s.bgThresholds)));
}

/** The values each of the walk's settings takes: one when fixed, its candidates when 'fit'. */
interface WalkSettings {
  camExponents: number[];
  expTimes: number[];
  bgThresholds: number[];
}

function walkSettings(w: WeaksegConfig['refine']['irn']['walk']): WalkSettings {
  return {
    camExponents: w.camExponent === 'fit' ? [...new Set(w.camExponents ?? IRN_CAM_EXPONENTS)] : [w.camExponent ?? 1],
    expTimes: w.expTimes === 'fit' ? [...new Set(w.expTimesCandidates)].sort((a, b) => a - b) : [w.expTimes],
    bgThresholds: w.bgThreshold === 'fit' ? [...w.bgThresholds] : [w.bgThreshold],
  };
}

function loaderOf(config: WeaksegConfig, net: IrNet, dataset: Dataset, items: DatasetItem[], split: string) {
  return new BatchLoader({ ...dataset, items }, evalTransform({ norm: net.backbone.inputNorm, withMask: false }), {
    batchSize: 1, shuffle: false, prefetch: 4, onBadFile: config.data.onBadFile, badFiles: skippedFilesLog(config, split, items.length),
  });
}

/** One setting of IRN's walk the fit tries: the CAMs' power, 2^expTimes steps, the background score. */
export interface IrnWalkSetting {
  camExponent: number;
  expTimes: number;
  bgThreshold: number;
}

export interface IrnWalkFitCurve {
  split: string;
  mode: 'leak-free' | 'oracle';
  /** Every combination tried (exponent-major, then length) and its mIoU on the fit split. */
  candidates: IrnWalkSetting[];
  miou: (number | null)[];
  best: IrnWalkSetting & { miou: number | null };
}

/**
 * The walk's CAM exponent, length and background score, each fixed or 'fit': every combination of the candidates
 * walked on the fit split (one walk per exponent and image passes through every shorter length) and the best kept.
 */
async function fitWalk(config: WeaksegConfig, net: IrNet, share: ImageShare): Promise<IrnWalkFitCurve> {
  const hooks = share.hooks;
  const log = logger(hooks);
  const w = config.refine.irn.walk;
  const { split, mode } = fitSplitOf(config);
  const { dataset, scored } = await fitItems(config, split, "refine.irn.walk's 'fit' settings");
  const settings = walkSettings(w);
  const candidates = settings.camExponents.flatMap((p) => settings.expTimes.flatMap((e) =>
    settings.bgThresholds.map((t) => ({ camExponent: p, expTimes: e, bgThreshold: t }))));
  log(`IRN walk: choosing among ${candidates.length} settings (CAMs^(${settings.camExponents.join('/')}), ` +
    `2^(${settings.expTimes.join('/')}) steps, background score ${settings.bgThresholds.join('/')}) on '${split}' ` +
    `(${scored.length} images with masks, ${mode})`);
  const sweep = new CandidateSweep(candidates.length, dataset.classes);
  const mine = share.mine(scored);
  const bar = progress(hooks, `IRN walk sweep ${split}`, mine.length);
  for await (const batch of loaderOf(config, net, dataset, mine, split).epoch(0)) {
    hooks.signal?.throwIfAborted();
    const item = mine[batch.indices[0]!]!;
    const gt = await readMask(item.maskPath!);
    walkedMasks(config, net, batch, camFile(config, split, item), settings).forEach((m, i) => sweep.add(i, m.data, gt.data, item.id));
    bar.tick();
  }
  bar.stop();
  const { miou, bestIndex } = sweep.sumOver(share).result();
  const nb = settings.bgThresholds.length;
  for (let row = 0; row * nb < candidates.length; row++) {
    const { camExponent, expTimes } = candidates[row * nb]!;
    log(`IRN walk on '${split}', ${camExponent === 1 ? '' : `CAMs^${camExponent}, `}2^${expTimes} steps ` +
      `(background score: mIoU %): ${settings.bgThresholds.map((t, k) => `${t}: ${pct(miou[row * nb + k] ?? null)}`).join(', ')}`);
  }
  return { split, mode, candidates, miou, best: { ...candidates[bestIndex]!, miou: miou[bestIndex] ?? null } };
}

export interface IrnWalkSummary {
  split: string;
  result: MiouResult | null;
  bgThreshold: number;
  /** The fit split's sweep when the CAM exponent, the length or the background score is 'fit'. */
  fit: IrnWalkFitCurve | null;
  camExponent: number;
  beta: number;
  expTimes: number;
  radius: number;
  splits: RefineSplitSummary[];
}

/** Stage 'irn-walk': pseudo-masks of data.trainSplit and eval.split by IRN's walk; scores eval.split. */
export async function irnWalkMasks(config: WeaksegConfig, hooksIn: StageHooks = {}): Promise<IrnWalkSummary> {
  const paths = prepareRun(config);
  // Distributed: each rank walks its share of every split (ImageShare).
  const share = ImageShare.of(config, hooksIn);
  const hooks = share.hooks;
  const log = logger(hooks);
  const w = config.refine.irn.walk;
  const modelPath = paths.irn.model;
  if (!existsSync(modelPath)) throw new Error(`no trained IRNet (${modelPath}); run the 'irn' stage first`);
  const scoredSplit = config.eval.split;
  emptyCache();
  const datasets = new Map<string, Dataset>();
  for (const split of unique([config.data.trainSplit, scoredSplit])) datasets.set(split, await readSplit(config, split));
  const net = buildIrNet(config, datasets.get(scoredSplit)!.classes.length, hooks);
  const outputs = new StageOutputs(hooks.resume ?? false);
  const summaries: RefineSplitSummary[] = [];
  let result: MiouResult | null = null;
  let fit: IrnWalkFitCurve | null = null;
  let chosen: IrnWalkSetting;
  try {
    inferenceModel(net.model, modelPath, config, false);
    if (w.bgThreshold === 'fit' || w.expTimes === 'fit' || w.camExponent === 'fit') fit = await fitWalk(config, net, share);
    const fixed = walkSettings(w);
    chosen = fit ? fit.best : { camExponent: fixed.camExponents[0]!, expTimes: fixed.expTimes[0]!, bgThreshold: fixed.bgThresholds[0]! };
    const { camExponent, expTimes, bgThreshold } = chosen;
    log(`IRN walk with ${modelPath}: radius ${w.radius}, beta ${w.beta}, CAMs^${camExponent}, 2^${expTimes} steps, background score ${bgThreshold}` +
      `${fit ? ` (${fit.mode}, chosen on '${fit.split}')` : ''}, stride ${net.stride}`);
    for (const [split, dataset] of datasets) {
      const dir = paths.irn.pseudo(split);
      mkdirSync(dir, { recursive: true });
      const score = split === scoredSplit ? new SplitScore(dataset) : null;
      const mine = share.mine(dataset.items);
      const todo = mine.filter((item) => !outputs.existing(item.id, join(dir, `${item.id}.png`)));
      const bar = progress(hooks, `IRN walk ${split}`, mine.length);
      let ms = 0;
      for await (const batch of loaderOf(config, net, dataset, todo, split).epoch(0)) {
        hooks.signal?.throwIfAborted();
        const item = todo[batch.indices[0]!]!;
        const t0 = performance.now();
        const mask = walkedMasks(config, net, batch, camFile(config, split, item), { camExponents: [camExponent], expTimes: [expTimes], bgThresholds: [bgThreshold] })[0]!;
        const out = join(dir, `${item.id}.png`);
        await writeMask(out, mask);
        ms += performance.now() - t0;
        outputs.add(item.id, out);
        bar.tick();
      }
      for (let i = todo.length; i < mine.length; i++) bar.tick();
      if (score) for (const item of mine) await score.add(item, await readMask(join(dir, `${item.id}.png`)));
      const seconds = bar.stop();
      share.joinSplit(outputs, dataset.items, (item) => join(dir, `${item.id}.png`));
      score?.sumOver(share);
      const [computed, msAll] = share.total(todo.length, ms) as [number, number];
      summaries.push({ split, dir, images: dataset.items.length, computed, seconds, msPerImage: computed ? msAll / computed : 0 });
      log(`IRN walk ${split}: ${dataset.items.length} images (${computed} computed) in ${seconds.toFixed(1)} s -> ${dir}`);
      if (score) {
        result = score.result();
        if (result) log(`${formatMiouTable(result)}\nIRN pseudo-mask mIoU on '${split}': ${pct(result.miou)} %`);
        else log(`IRN walk ${split}: no ground-truth masks, not scored`);
      }
    }
  } finally {
    net.model.dispose();
  }
  const summary: IrnWalkSummary = {
    split: scoredSplit, result, bgThreshold: chosen.bgThreshold, fit, camExponent: chosen.camExponent, beta: w.beta,
    expTimes: chosen.expTimes, radius: w.radius, splits: summaries,
  };
  recordMetrics(config, 'irn-walk', summary);
  return summary;
}
