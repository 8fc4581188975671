// Stage 'random-walk': CAMs propagated by the trained AffinityNet's random walk (methods-reference.md sections 2.6,
// 3(e)) -> pseudo/<split>/*.png for data.trainSplit and eval.split; the settings marked 'fit' (background exponent,
// beta, number of steps) are chosen on the fit split. Records { split, result, beta, logt, bgAlpha, fit, ... } in
// metrics.json under 'random-walk'.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type Batch, BatchLoader, type Dataset, type DatasetItem, type LabelMap, decodeImage, evalTransform, readMask, writeMask } from '../data/index.js';
import { emptyCache, tidy } from '../engine/index.js';
import { readCam } from '../cams/format.js';
import { type MiouResult, formatMiouTable } from '../eval/index.js';
import { type CrfParams, crfParams } from '../refine/crf-presets.js';
import { LabelShareCounter } from '../refine/affinity-labels.js';
import type { AffinityNet } from '../refine/affinity-net.js';
import { AffinityAgreement, type AffinityAgreementResult, gridPairLabels } from '../refine/affinity-score.js';
import { type WalkCrf, randomWalkMask, randomWalkMaskGrid } from '../refine/random-walk.js';
import type { WeaksegConfig } from './config.js';
import { type StageHooks, logger, prepareRun, readSplit, recordMetrics, skippedFilesLog } from './common.js';
import {
  CandidateSweep, ImageShare, type RefineSplitSummary, SplitScore, StageOutputs, camFile, fitItems, fitSplitOf, inferenceModel, paddedDeviceImage, pct, progress, unique,
} from './per-image.js';
import { buildAffinityNet } from './affinity.js';

export interface RandomWalkSplitSummary extends RefineSplitSummary {
  /** Per computed image: the affinity net's forward pass and the walk (input, propagation, upsampling). */
  msNet: number;
  msWalk: number;
}

/** One setting of the walk. */
export interface WalkSetting {
  beta: number;
  logt: number;
  bgAlpha: number;
}

/** Random-walk mIoU per candidate setting on the split the settings were chosen on. */
export interface WalkFitCurve {
  split: string;
  mode: 'leak-free' | 'oracle';
  candidates: WalkSetting[];
  miou: (number | null)[];
  best: WalkSetting & { miou: number | null };
  /** The affinity net's field against the split's ground-truth pairs (does it leak across boundaries?). */
  affinity: AffinityAgreementResult;
}

export interface RandomWalkSummary {
  /** The split scored (eval.split). */
  split: string;
  result: MiouResult | null;
  beta: number;
  logt: number;
  bgAlpha: number;
  /** The sweep that chose the settings marked 'fit' (null when none is). */
  fit: WalkFitCurve | null;
  /** Share of the scored split's pixels left unclaimed (255; only with refine.randomWalk.uncertainBelow > 0). */
  uncertainShare: number;
  splits: RandomWalkSplitSummary[];
}

/** The affinity field of one image (a batch of 1), padded to a multiple of the stride as infer_aff.py does. */
function affinityFieldOf(net: AffinityNet, batch: Batch, config: WeaksegConfig) {
  return tidy(() => net.affinityField(paddedDeviceImage(batch, config, net.stride)));
}

/** The random walk's CRF settings (refine.randomWalk.crf), or null when off. */
function walkCrfParams(config: WeaksegConfig): CrfParams | null {
  const preset = config.refine.randomWalk.crf;
  return preset ? crfParams(preset, { referenceSize: config.refine.crf.referenceSize, workingSize: config.refine.crf.workingSize }) : null;
}

/** The random walk's CRF for one image (its RGB read from disk), or null when off. */
async function walkCrf(params: CrfParams | null, item: DatasetItem): Promise<WalkCrf | null> {
  if (!params) return null;
  const image = await decodeImage(item.imagePath);
  return { params, image: { rgb: image.data, width: image.width, height: image.height } };
}

/** The candidates of each walk setting: the one given, or the list to choose from where it is 'fit'. */
function walkGrid(config: WeaksegConfig) {
  const rw = config.refine.randomWalk;
  return {
    betas: rw.beta === 'fit' ? [...rw.betas] : [rw.beta],
    logts: rw.logt === 'fit' ? [...rw.logts] : [rw.logt],
    bgAlphas: rw.bgAlpha === 'fit' ? [...rw.bgAlphas] : [rw.bgAlpha],
  };
}

/**
 * The walk's settings chosen by walking every combination of the candidates on eval.fitSplit (leak-free) or,
 * without one, eval.split (oracle): one walk per image and beta carries all exponents and step counts.
 */
async function fitWalk(config: WeaksegConfig, net: AffinityNet, share: ImageShare): Promise<WalkFitCurve> {
  const hooks = share.hooks;
  const log = logger(hooks);
  const rw = config.refine.randomWalk;
  const { split, mode } = fitSplitOf(config);
  const { dataset, scored } = await fitItems(config, split, "refine.randomWalk's 'fit' settings");
  const crfOfWalk = walkCrfParams(config);
  const grid = walkGrid(config);
  const candidates = grid.betas.flatMap((beta) => grid.logts.flatMap((logt) => grid.bgAlphas.map((bgAlpha) => ({ beta, logt, bgAlpha }))));
  log(`random walk: choosing among ${candidates.length} settings (beta ${grid.betas.join('/')}, logt ${grid.logts.join('/')}, ` +
    `background exponent ${grid.bgAlphas.join('/')}) on '${split}' (${scored.length} images with masks, ${mode})`);
  const mine = share.mine(scored);
  const camPaths = new Map(mine.map((item) => [item.id, camFile(config, split, item)]));
  const sweep = new CandidateSweep(candidates.length, dataset.classes);
  const agreement = new AffinityAgreement();
  const bar = progress(hooks, `random-walk settings sweep ${split}`, mine.length);
  const loader = new BatchLoader({ ...dataset, items: mine }, evalTransform({ norm: net.backbone.inputNorm, withMask: false }), {
    batchSize: 1, shuffle: false, prefetch: 4, onBadFile: config.data.onBadFile, badFiles: skippedFilesLog(config, split, mine.length),
  });
  for await (const batch of loader.epoch(0)) {
    hooks.signal?.throwIfAborted();
    const item = mine[batch.indices[0]!]!;
    const field = affinityFieldOf(net, batch, config);
    const masks = randomWalkMaskGrid(readCam(camPaths.get(item.id)!), field, {
      ...grid, stride: net.stride, uncertainBelow: rw.uncertainBelow, crf: await walkCrf(crfOfWalk, item),
    });
    const gt = await readMask(item.maskPath!);
    tidy(() => agreement.addWeights(field.weights, gridPairLabels(gt, field, { stride: net.stride, radius: net.radius, numClasses: dataset.classes.length })));
    masks.forEach((m, k) => sweep.add(k, m.mask.data, gt.data, item.id));
    bar.tick();
  }
  bar.stop();
  const { miou, bestIndex } = sweep.sumOver(share).result();
  share.sum(agreement.sums);
  const affinity = agreement.result();
  const group = (g: { meanAffinity: number | null; agree: number | null }) => `mean ${g.meanAffinity?.toFixed(3) ?? '-'}, ${pct(g.agree)} % on the right side of 0.5`;
  log(`affinities on '${split}' against its ground truth: background pairs ${group(affinity.bgPos)}; same-object pairs ${group(affinity.fgPos)}; ` +
    `pairs across a boundary ${group(affinity.neg)}; balanced ${pct(affinity.balanced)} %`);
  // One entry per (beta, logt): its best exponent's mIoU, so that a large grid stays readable.
  const rows = grid.betas.flatMap((beta, b) => grid.logts.map((logt, l) => {
    const offset = (b * grid.logts.length + l) * grid.bgAlphas.length;
    const row = miou.slice(offset, offset + grid.bgAlphas.length).map((m) => m ?? -1);
    const k = row.indexOf(Math.max(...row));
    return grid.bgAlphas.length === 1 ? `beta ${beta}, logt ${logt}: ${pct(miou[offset] ?? null)}`
      : `beta ${beta}, logt ${logt}: ${pct(miou[offset + k] ?? null)} at exponent ${grid.bgAlphas[k]}` +
        (candidates.length === grid.bgAlphas.length ? ` (${grid.bgAlphas.map((a, i) => `${a}: ${pct(miou[offset + i] ?? null)}`).join(', ')})` : '');
  }));
  log(`random walk on '${split}' (mIoU %): ${rows.join('; ')}`);
  return { split, mode, candidates, miou, best: { ...candidates[bestIndex]!, miou: miou[bestIndex] ?? null }, affinity };
}

/** Pseudo-masks of data.trainSplit and eval.split by the random walk; scores eval.split. */
export async function randomWalkMasks(config: WeaksegConfig, hooksIn: StageHooks = {}): Promise<RandomWalkSummary> {
  const paths = prepareRun(config);
  // Distributed: each rank walks its share of every split (ImageShare).
  const share = ImageShare.of(config, hooksIn);
  const hooks = share.hooks;
  const log = logger(hooks);
  const rw = config.refine.randomWalk;
  const modelPath = paths.affinity.model;
  if (!existsSync(modelPath)) throw new Error(`no trained affinity net (${modelPath}); run the affinity stage first`);
  const scoredSplit = config.eval.split;
  const splits = unique([config.data.trainSplit, scoredSplit]);
  emptyCache();
  const outputs = new StageOutputs(hooks.resume ?? false);
  const summaries: RandomWalkSplitSummary[] = [];
  let result: MiouResult | null = null;
  let uncertainShare = 0;
  const datasets = new Map<string, Dataset>();
  for (const split of splits) datasets.set(split, await readSplit(config, split));
  const net = buildAffinityNet(config, datasets.get(scoredSplit)!.classes.length, hooks);
  let fit: WalkFitCurve | null = null;
  let setting: WalkSetting;
  try {
    inferenceModel(net.model, modelPath, config, false); // the walk's net runs in the default memory order
    if (rw.beta === 'fit' || rw.logt === 'fit' || rw.bgAlpha === 'fit') {
      fit = await fitWalk(config, net, share);
      setting = { beta: fit.best.beta, logt: fit.best.logt, bgAlpha: fit.best.bgAlpha };
    } else {
      setting = { beta: rw.beta, logt: rw.logt, bgAlpha: rw.bgAlpha };
    }
    const { beta, logt, bgAlpha } = setting;
    const crfOfWalk = walkCrfParams(config);
    log(`random walk with ${modelPath}: beta ${beta}, ${2 ** logt} steps (logt ${logt}), background alpha ${bgAlpha}` +
      `${fit ? ` (${fit.mode}, chosen on '${fit.split}')` : ''}, stride ${net.stride}, radius ${net.radius}`);
    for (const [split, dataset] of datasets) {
      const dir = paths.pseudo(split);
      const score = split === scoredSplit ? new SplitScore(dataset) : null;
      const unclaimed = new LabelShareCounter();
      const mine = share.mine(dataset.items);
      const todo = mine.filter((item) => !outputs.existing(item.id, join(dir, `${item.id}.png`)));
      const camPaths = new Map(todo.map((item) => [item.id, camFile(config, split, item)]));
      const bar = progress(hooks, `random walk ${split}`, mine.length);
      let msNet = 0;
      let msWalk = 0;
      const masks = new Map<string, LabelMap>();
      const loader = new BatchLoader({ ...dataset, items: todo }, evalTransform({ norm: net.backbone.inputNorm, withMask: false }), {
        batchSize: 1, shuffle: false, prefetch: 4, onBadFile: config.data.onBadFile, badFiles: skippedFilesLog(config, split, todo.length),
      });
      for await (const batch of loader.epoch(0)) {
        hooks.signal?.throwIfAborted();
        const item = todo[batch.indices[0]!]!;
        const t0 = performance.now();
        const field = affinityFieldOf(net, batch, config);
        const t1 = performance.now();
        const mask = randomWalkMask(readCam(camPaths.get(item.id)!), field, {
          beta, logt, bgAlpha, stride: net.stride, uncertainBelow: rw.uncertainBelow, crf: await walkCrf(crfOfWalk, item),
        });
        const out = join(dir, `${item.id}.png`);
        await writeMask(out, mask);
        msNet += t1 - t0;
        msWalk += performance.now() - t1;
        outputs.add(item.id, out);
        masks.set(item.id, mask);
        bar.tick();
      }
      for (let i = todo.length; i < mine.length; i++) bar.tick();
      for (const item of mine) {
        if (!score) break;
        const mask = masks.get(item.id) ?? await readMask(join(dir, `${item.id}.png`));
        await score.add(item, mask);
        if (item.maskPath) unclaimed.add(mask.data);
      }
      const seconds = bar.stop();
      share.joinSplit(outputs, dataset.items, (item) => join(dir, `${item.id}.png`));
      if (score) {
        score.sumOver(share);
        share.sum(unclaimed.counts);
      }
      const [computed, msNetAll, msWalkAll] = share.total(todo.length, msNet, msWalk) as [number, number, number];
      msNet = msNetAll;
      msWalk = msWalkAll;
      summaries.push({
        split, dir, images: dataset.items.length, computed, seconds, msPerImage: computed ? (msNet + msWalk) / computed : 0,
        msNet: computed ? msNet / computed : 0, msWalk: computed ? msWalk / computed : 0,
      });
      log(`random walk ${split}: ${dataset.items.length} images (${computed} computed, ` +
        `${computed ? (msNet / computed).toFixed(0) : '-'} ms net + ${computed ? (msWalk / computed).toFixed(0) : '-'} ms walk each) -> ${dir}`);
      if (score) {
        result = score.result();
        uncertainShare = unclaimed.shares.uncertain;
        if (result) log(`${formatMiouTable(result)}\nrandom-walk pseudo-mask mIoU on '${split}': ${pct(result.miou)} %`);
        else log(`random walk ${split}: no ground-truth masks, not scored`);
      }
    }
  } finally {
    net.model.dispose();
  }
  const summary: RandomWalkSummary = { split: scoredSplit, result, ...setting, fit, uncertainShare, splits: summaries };
  recordMetrics(config, 'random-walk', summary);
  return summary;
}
