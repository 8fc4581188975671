// Stages 'seg-train' and 'seg-eval': DeepLab retrained on the pseudo-masks of the training split, then scored on a
// labelled split with multi-scale + flip inference (methods-reference.md sections 2.8, 3(f)).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type Tensor, emptyCache, manualSeed } from '../engine/index.js';
import { readSafetensorsHeader } from '../engine/serialize/index.js';
import {
  BatchLoader, DataError, type Dataset, IGNORE_INDEX, type ItemTransform, type LabelMap, decodeImage, evalTransform, readMask, repeatFactors,
  resizeBilinear, resizeNearest, writeMask,
} from '../data/index.js';
import type { Backbone } from '../backbones/backbone.js';
import { createBackbone } from '../backbones/index.js';
import { type MiouResult, formatMiouTable } from '../eval/index.js';
import { DeepLab } from '../segmentation/deeplab.js';
import { syncBatchNorm } from '../nn/index.js';
import { labelsFromProbabilities, multiScaleProbabilities } from '../segmentation/infer.js';
import { ignoreUncertainBand } from '../segmentation/targets.js';
import { readCam } from '../cams/format.js';
import { crfParams } from '../refine/crf-presets.js';
import { latestCheckpoint, loadModelWeights } from '../train/checkpoint.js';
import { GROUND_TRUTH, type WeaksegConfig } from './config.js';
import { type StageHooks, buildMethod, imageCount, logger, prepareRun, readSplit, recordMetrics, skippedFilesLog } from './common.js';
import { camWeightsPath } from './cams.js';
import { worldGroup } from './distributed.js';
import { runPaths } from './paths.js';
import { stageNamed } from './stages.js';
import { type FitSummary, fitAndSave, fitFigures, fitTransform, refuseExistingCheckpoints, requireOneBatch } from './fit.js';
import {
  ImageShare, type LabelMapsSummary, SplitScore, StageOutputs, camFile, deviceImage, inferenceModel, pct, progress, workingShape,
  writeLabelMaps,
} from './per-image.js';

/** Format tag of the saved segmentation model (seg/model.safetensors). */
export const SEGMENTER_FORMAT = 'weakseg-segmenter/1';

/** Where the pseudo-masks of a split live (seg.pseudoMasks names the stage that makes them) and what they are. */
export function pseudoMaskDir(config: WeaksegConfig, split: string): { dir: string; madeBy: string } {
  if (config.seg.pseudoMasks === GROUND_TRUTH) throw new Error("seg.pseudoMasks 'groundTruth' trains on the dataset's own masks, not a stage's");
  const source = stageNamed(config.seg.pseudoMasks, 'seg.pseudoMasks').pseudoMasks;
  if (!source) throw new Error(`seg.pseudoMasks: the '${config.seg.pseudoMasks}' stage makes no pseudo-masks`);
  return { dir: source.dir(config, split), madeBy: source.describe(config, split) };
}

/**
 * The segmenter's training set: the training split with every item's mask replaced by its pseudo-mask
 * (`<dir>/<id>.png`), or with seg.pseudoMasks 'groundTruth' the items with a ground-truth mask, on it. With
 * seg.trainImages 'withGroundTruth' (implied by 'groundTruth') only the items that have a ground-truth mask are
 * kept. A missing pseudo-mask is an error naming the file and the stage that makes it.
 */
export function withPseudoMasks(config: WeaksegConfig, dataset: Dataset, split: string): Dataset {
  const source = config.seg.pseudoMasks;
  const supervised = source === GROUND_TRUTH;
  const kept = supervised || config.seg.trainImages === 'withGroundTruth' ? dataset.items.filter((i) => i.maskPath) : dataset.items;
  if (kept.length === 0) {
    throw new Error(`${supervised ? "seg.pseudoMasks 'groundTruth'" : "seg.trainImages 'withGroundTruth'"}: no image of split ` +
      `'${split}' has a ground-truth mask`);
  }
  if (supervised) return { classes: dataset.classes, items: kept };
  const { dir, madeBy } = pseudoMaskDir(config, split);
  const items = kept.map((item) => ({ ...item, maskPath: join(dir, `${item.id}.png`) }));
  const missing = items.filter((i) => !existsSync(i.maskPath));
  if (missing.length) {
    throw new Error(`seg.pseudoMasks is '${source}' but ${missing.length} of ${items.length} images of split '${split}' ` +
      `have no pseudo-mask (first: ${missing[0]!.maskPath}); they are ${madeBy}`);
  }
  return { classes: dataset.classes, items };
}

/** Fails on a pseudo-mask value that is neither a label of the K-label network nor 255, naming the file. */
function checkMaskValues(transform: ItemTransform, numLabels: number): ItemTransform {
  return async (item, context) => {
    const sample = await transform(item, context);
    const mask = sample.mask;
    if (mask) {
      for (let i = 0; i < mask.length; i++) {
        const v = mask[i]!;
        if (v >= numLabels && v !== IGNORE_INDEX) {
          throw new DataError(item.maskPath ?? item.id, `pseudo-mask value ${v} is neither a label (0..${numLabels - 1}) nor ${IGNORE_INDEX}`);
        }
      }
    }
    return sample;
  };
}

/** The training transform of the segmenter: rescale, flip, jitter, crop (padding: image 0, mask 255), normalise. */
export function segTrainTransform(config: WeaksegConfig, backbone: Backbone, numLabels: number): ItemTransform {
  return checkMaskValues(fitTransform(config.seg, backbone.inputNorm, true), numLabels);
}

/** DeepLab over seg.backbone (default model.backbone) with seg.weights (default model.weights). */
export function buildSegmenter(config: WeaksegConfig, numClasses: number, hooks: StageHooks): DeepLab {
  const s = config.seg;
  const m = config.model;
  let backbone: Backbone;
  if (hooks.backboneFactory) {
    backbone = hooks.backboneFactory(config);
  } else {
    const name = s.backbone ?? m.backbone;
    // model.padding belongs to the classifier's backbone; it carries over only when the segmenter uses the same one.
    const padding = name === m.backbone && m.padding ? { padding: m.padding } : {};
    backbone = createBackbone(name, { weights: s.weights ?? m.weights, outputStride: s.outputStride, ...padding });
  }
  return new DeepLab(backbone, {
    numClasses, head: s.head, dropout: s.dropout, headLrMult: s.headLrMult, classifierInit: s.classifierInit,
    headBatchNorm: s.batchNorm === 'frozen' ? 'frozen' : 'batch',
  });
}

/**
 * seg.backboneInit 'classifier': copies the backbone of the run's trained classifier (the weights the CAM stage
 * reads) into the segmenter's. Keys the method added to its backbone (per-block modules) are left out; a key the
 * segmenter's backbone has and the classifier's lacks is an error. Returns the weights file.
 */
export function backboneFromClassifier(config: WeaksegConfig, net: DeepLab, numClasses: number, hooks: StageHooks): string {
  const name = config.seg.backbone ?? config.model.backbone;
  if (name !== config.model.backbone) {
    throw new Error(`seg.backboneInit 'classifier' needs the classifier's backbone, but seg.backbone is '${name}' and model.backbone '${config.model.backbone}'`);
  }
  const weights = camWeightsPath(config);
  const classifier = buildMethod(config, numClasses, hooks);
  try {
    loadModelWeights(weights, classifier.model);
    const own = net.backbone.stateDict();
    const theirs = classifier.backbone.stateDict();
    net.backbone.loadStateDict(new Map([...theirs].filter(([k]) => own.has(k))), { source: `${weights} (the classifier's backbone)` });
  } finally {
    classifier.model.dispose();
  }
  return weights;
}

/**
 * seg.ignoreBand: each training pseudo-mask with the pixels of PSA's uncertain band set to 255, written to
 * seg/targets/<split> (kept on resume) by rank 0 while the other ranks wait; returns the dataset reading them (and,
 * on rank 0, what was written). Needs the split's CAMs.
 */
async function bandedTargets(
  config: WeaksegConfig, dataset: Dataset, split: string, hooks: StageHooks,
): Promise<{ dataset: Dataset; summary: LabelMapsSummary | null }> {
  const band = config.seg.ignoreBand!;
  const dir = runPaths(config).seg.targets(split);
  const group = worldGroup(config);
  const summary = group && group.rank !== 0 ? null : await writeLabelMaps(dataset.items, split, dir, hooks, `segmenter targets (ignoring CAM scores in [${band[0]}, ${band[1]}))`,
    async (item) => ignoreUncertainBand(await readMask(item.maskPath!), readCam(camFile(config, split, item)), band),
    { ignoreBand: band, pseudoMasks: config.seg.pseudoMasks });
  group?.barrier();
  return { dataset: { classes: dataset.classes, items: dataset.items.map((i) => ({ ...i, maskPath: join(dir, `${i.id}.png`) })) }, summary };
}

export interface SegTrainSummary extends FitSummary {
  runDir: string;
  pseudoMasks: string;
  images: number;
}

/** Stage 'seg-train': trains DeepLab on the pseudo-masks of data.trainSplit. `hooks.resume` continues from seg/checkpoints. */
export async function trainSegmenter(config: WeaksegConfig, hooks: StageHooks = {}): Promise<SegTrainSummary> {
  const paths = prepareRun(config);
  const seg = paths.seg;
  refuseExistingCheckpoints(seg.checkpoints, hooks);
  const s = config.seg;
  const split = config.data.trainSplit;
  const read = await readSplit(config, split);
  let dataset = withPseudoMasks(config, read, split);
  requireOneBatch(dataset, split, s.batchSize, 'seg.batchSize');
  const targets = s.ignoreBand ? await bandedTargets(config, dataset, split, hooks) : null;
  if (targets) dataset = targets.dataset;
  const factors = s.sampling === 'repeatFactor' ? repeatFactors(dataset.items, dataset.classes.length, s.repeatThreshold) : undefined;
  manualSeed(s.seed); // the head's initialisation is part of the run's determinism
  const net = buildSegmenter(config, dataset.classes.length, hooks);
  let init = s.weights ?? config.model.weights ?? 'none: random init';
  try {
    if (s.backboneInit === 'classifier') init = `the classifier's, ${backboneFromClassifier(config, net, dataset.classes.length, hooks)}`;
  } catch (e) {
    net.model.dispose();
    throw e;
  }
  if (s.batchNorm === 'sync') syncBatchNorm(net.model, worldGroup(config));
  const repeated = factors ? factors.filter((r) => r > 1).length : 0;
  const fit = await fitAndSave(config, hooks, {
    net,
    dataset,
    split,
    transform: segTrainTransform(config, net.backbone, net.numLabels),
    repeatFactors: factors,
    settings: s,
    files: seg,
    headline: `segmenter ${paths.root}: DeepLab ${net.headName} on ${net.backbone.name} (output stride ` +
      `${net.backbone.outputStride}, weights ${init}), ${net.numLabels} labels; ` +
      `${imageCount(config, split, { items: dataset.items, skipped: read.skipped })} with ${s.pseudoMasks === GROUND_TRUTH ? 'their ground-truth masks (the supervised ceiling)' : `'${s.pseudoMasks}' pseudo-masks`}` +
      `${targets?.summary ? ` (${pct(targets.summary.shares.uncertain)} % of pixels ignored)` : ''}; crop ${s.cropSize}, batch ${s.batchSize}, ` +
      `lr ${s.lr} (head x${s.headLrMult}), momentum ${s.momentum}${s.batchNorm === 'frozen' ? ', head BatchNorm frozen' : ''}` +
      `${worldGroup(config) && s.batchNorm !== 'frozen' ? `, ${s.batchNorm === 'sync' ? 'synchronised' : 'per-rank'} BatchNorm` : ''}` +
      `${factors ? `; repeat-factor sampling (t ${s.repeatThreshold}: ${repeated} images with a factor above 1, up to ${Math.max(...factors).toFixed(2)})` : ''}`,
    checkpointMetadata: { backbone: net.backbone.name, head: net.headName, config: JSON.stringify(config) },
    modelMetadata: (result) => ({
      format: SEGMENTER_FORMAT, method: net.name, head: net.headName, backbone: net.backbone.name,
      output_stride: String(net.backbone.outputStride), num_classes: String(net.numClasses),
      classes: JSON.stringify(dataset.classes), pseudo_masks: s.pseudoMasks,
      epochs_completed: String(result.epochsCompleted), steps: String(result.steps),
    }),
  });
  recordMetrics(config, 'seg-train', {
    pseudoMasks: s.pseudoMasks, head: net.headName, backbone: net.backbone.name, images: dataset.items.length, backboneInit: init,
    ignoredShare: targets?.summary?.shares.uncertain ?? null, repeatedImages: factors ? repeated : null, ...fitFigures(fit),
  });
  return { runDir: paths.root, pseudoMasks: s.pseudoMasks, images: dataset.items.length, ...fit };
}

export interface SegEvalReport {
  split: string;
  /** Scores of the predictions against the split's ground truth (null when no image has one). */
  result: MiouResult | null;
  /**
   * The same network told each image's tags, as CAM seeds are: only background and the image's own classes may
   * be predicted. A diagnostic (a new image comes without tags): it separates finding the right class from
   * delineating it. Null when nothing was scored or some predictions were kept from an interrupted run.
   */
  resultWithTags: MiouResult | null;
  scales: number[];
  flip: boolean;
  crf: WeaksegConfig['seg']['crf'];
  images: number;
  /** Images that had a ground-truth mask and were scored. */
  scoredImages: number;
  /** Predictions kept from an interrupted run (hooks.resume) instead of recomputed. */
  keptImages: number;
  /** Inference time per image predicted (network passes, and the CRF when on). */
  msPerImage: number;
  predictionsDir: string;
  model: string;
}

/** The segmenter's weights: seg/model.safetensors, else its newest checkpoint. */
export function segmenterWeightsPath(config: WeaksegConfig): string {
  const seg = runPaths(config).seg;
  const path = existsSync(seg.model) ? seg.model : latestCheckpoint(seg.checkpoints);
  if (!path) throw new Error(`no segmentation model (${seg.model}, or checkpoints in ${seg.checkpoints}); run the 'seg-train' stage first`);
  return path;
}

/**
 * Stage 'seg-eval': predicts every image of seg.evalSplit, writes palette PNGs and scores them. `hooks.resume`
 * keeps the predictions already written (and scores them).
 */
export async function evaluateSegmenter(config: WeaksegConfig, hooksIn: StageHooks = {}): Promise<SegEvalReport> {
  const paths = prepareRun(config);
  // Distributed: each rank predicts its share of the split (ImageShare).
  const share = ImageShare.of(config, hooksIn);
  const hooks = share.hooks;
  const log = logger(hooks);
  const s = config.seg;
  const split = s.evalSplit;
  const weights = segmenterWeightsPath(config);
  const dataset = await readSplit(config, split);
  const meta = readSafetensorsHeader(weights).metadata;
  if (meta.num_classes !== undefined && Number(meta.num_classes) !== dataset.classes.length) {
    throw new Error(`${weights}: segmenter trained for ${meta.num_classes} classes but split '${split}' has ${dataset.classes.length}`);
  }
  emptyCache(); // training's cached blocks do not fit inference's shapes
  const net = buildSegmenter(config, dataset.classes.length, hooks);
  const dir = paths.seg.predictions(split);
  const score = new SplitScore(dataset);
  const scoreWithTags = new SplitScore(dataset);
  const outputs = new StageOutputs(hooks.resume ?? false);
  let inferMs = 0;
  let done = 0;
  let kept = 0;
  try {
    inferenceModel(net.model, weights, config);
    // The refine stages' kernel scaling (refine.crf.referenceSize) applies to the segmenter's CRF too.
    const crfSettings = s.crf ? crfParams(s.crf, { referenceSize: config.refine.crf.referenceSize, workingSize: config.refine.crf.workingSize }) : null;
    log(`segmenter ${weights} on '${split}' (${dataset.items.length} images${hooks.resume ? ', keeping predictions already written' : ''}): scales ${s.scales.join('/')}` +
      `${s.testFlip ? ' + flips' : ''}${s.crf ? `, dense CRF '${s.crf}'` : ''} -> ${dir}`);
    const mine = share.mine(dataset.items);
    const loader = new BatchLoader({ ...dataset, items: mine }, evalTransform({ norm: net.backbone.inputNorm, withMask: false }), {
      batchSize: 1, shuffle: false, prefetch: 2, onBadFile: config.data.onBadFile,
      badFiles: skippedFilesLog(config, split, mine.length),
    });
    const bar = progress(hooks, `segment ${split}`, mine.length);
    try {
      for await (const batch of loader.epoch(0)) {
        hooks.signal?.throwIfAborted();
        const item = mine[batch.indices[0]!]!;
        const [, , h, w] = batch.shape;
        const out = join(dir, `${item.id}.png`);
        let pred: LabelMap;
        let withTags: LabelMap | null = null;
        if (outputs.existing(item.id, out)) {
          // Resuming: a prediction written before the interruption is kept.
          pred = await readMask(out);
          if (pred.width !== w || pred.height !== h) {
            throw new Error(`${out}: kept prediction is ${pred.width}x${pred.height} but the image is ${w}x${h}; delete it or run without resume`);
          }
          kept++;
        } else {
          const work = workingShape(h, w, s.workingSize);
          let rgb = s.crf ? await decodeImage(item.imagePath) : undefined;
          if (rgb && work) rgb = { ...resizeBilinear(rgb, work[1], work[0]), channels: 3 };
          const p0 = performance.now();
          // Above the working size: predicted downscaled, the labels upscaled (nearest) to the image.
          const image = deviceImage(batch, config, work);
          let probs: Tensor | null = null;
          try {
            probs = multiScaleProbabilities(net, image, { scales: s.scales, flip: s.testFlip, channelsLast: config.runtime.channelsLast });
            const labelling = { crf: crfSettings, ...(rgb ? { rgb } : {}) };
            pred = labelsFromProbabilities(probs, labelling);
            inferMs += performance.now() - p0;
            if (item.maskPath) withTags = labelsFromProbabilities(probs, { ...labelling, allowed: [0, ...item.labels.map((c) => c + 1)] });
          } finally {
            probs?.dispose();
            image.dispose();
          }
          if (work) {
            pred = resizeNearest(pred, w, h);
            if (withTags) withTags = resizeNearest(withTags, w, h);
          }
          await writeMask(out, pred);
          outputs.add(item.id, out);
        }
        await score.add(item, pred);
        if (withTags) await scoreWithTags.add(item, withTags);
        done++;
        bar.tick();
        await new Promise<void>((r) => setImmediate(r));
      }
    } finally {
      bar.stop();
    }
    share.joinSplit(outputs, dataset.items, (item) => join(dir, `${item.id}.png`));
    score.sumOver(share);
    scoreWithTags.sumOver(share);
    [done, kept, inferMs] = share.total(done, kept, inferMs) as [number, number, number];
  } finally {
    net.model.dispose();
  }
  const result = score.result();
  const scored = score.scored;
  const resultWithTags = scoreWithTags.scored === scored ? scoreWithTags.result() : null;
  const report: SegEvalReport = {
    split, result, resultWithTags, scales: [...s.scales], flip: s.testFlip, crf: s.crf, images: done, scoredImages: scored, keptImages: kept,
    msPerImage: done > kept ? inferMs / (done - kept) : 0, predictionsDir: dir, model: weights,
  };
  if (result) {
    log(formatMiouTable(result));
    log(`segmenter mIoU on '${split}': ${pct(result.miou)} % (${scored} images; scales ${s.scales.join('/')}` +
      `${s.testFlip ? ' + flips' : ''}${s.crf ? `, CRF '${s.crf}'` : ', no CRF'}; ${report.msPerImage.toFixed(0)} ms per image)`);
    log(resultWithTags
      ? `told each image's tags, as the seeds are (a diagnostic: background and the image's classes only): ${pct(resultWithTags.miou)} %`
      : `told each image's tags: not scored (${scored - scoreWithTags.scored} predictions kept from an interrupted run)`);
  } else {
    log(`segmenter: no image of '${split}' has a ground-truth mask; ${done} predictions written to ${dir}, nothing scored`);
  }
  recordMetrics(config, 'seg-eval', report);
  return report;
}
