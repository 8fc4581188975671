// Stages 4-6: refining CAMs into pseudo-masks (methods-reference.md sections 2.5, 2.6, 3(e)).
//
//   crf         seeds at the eval stage's threshold, refined by a dense CRF           -> crf/<split>/*.png
//   affinity    AffinityNet labels from CRF'd CAMs (la/ha), then AffinityNet training  -> affinity/
//   randomWalk  CAMs propagated by the affinity net's random walk                       -> pseudo/<split>/*.png
//
// Each scoring stage records { split, result, ... } in metrics.json under its name. Images in two splits (VOC's
// train is inside train_aug) are computed once per stage and hard-linked into the other split's folder.
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import cliProgress from 'cli-progress';
import { F, type Tensor, emptyCache, manualSeed, tensor, tidy } from '../engine/index.js';
import {
  BatchLoader, type Dataset, type DatasetItem, type LabelMap, decodeImage, evalTransform, readMask, trainTransform, writeMask,
} from '../data/index.js';
import { type CamRecord, camPath, readCam } from '../cams/format.js';
import { ConfusionMatrix, type MiouResult, formatMiouTable, withBackground } from '../eval/index.js';
import { type CrfParams, crfParams } from '../refine/crf-presets.js';
import { denseCrf, labelMap } from '../refine/crf.js';
import {
  type LabelShares, LabelShareCounter, affinityLabelMap, alphaForThreshold, planeIndexToMaskIds,
} from '../refine/affinity-labels.js';
import { AffinityNet, affinityTaps, freezeAffinityStem } from '../refine/affinity-net.js';
import { type WalkCrf, randomWalkMask, randomWalkMasksPerAlpha } from '../refine/random-walk.js';
import { loadModelWeights } from '../train/checkpoint.js';
import { type WeaksegConfig, thresholdList } from './config.js';
import {
  type StageHooks, buildBackbone, logger, prepareRun, readMetrics, readSplit, recordMetrics, runPaths, writeJsonAtomic,
} from './common.js';
import { type FitSummary, fitAndSave, fitFigures, refuseExistingCheckpoints, requireOneBatch } from './fit.js';

const pct = (v: number | null) => (v === null ? '-' : (100 * v).toFixed(2));

/** A progress bar on a terminal, else a log line every 50 images. */
function progress(hooks: StageHooks, label: string, total: number) {
  const log = logger(hooks);
  const useBar = (hooks.progress ?? 'auto') === 'auto' ? Boolean(process.stderr.isTTY) : Boolean(hooks.progress);
  const bar = useBar
    ? new cliProgress.SingleBar({ format: `${label} |{bar}| {value}/{total} | {rate} img/s | ETA {eta_formatted}`, hideCursor: true, clearOnComplete: true, fps: 4 }, cliProgress.Presets.shades_classic)
    : null;
  bar?.start(total, 0, { rate: '-' });
  const t0 = performance.now();
  let done = 0;
  return {
    tick(): void {
      done++;
      const rate = (done / ((performance.now() - t0) / 1000)).toFixed(2);
      bar?.update(done, { rate });
      if (!bar && (done % 50 === 0 || done === total)) log(`${label}: ${done}/${total} (${rate} img/s)`);
    },
    /** Stops the bar; returns the seconds since the start. */
    stop(): number {
      bar?.stop();
      return (performance.now() - t0) / 1000;
    },
  };
}

/** The CAM file of an item; a missing one is an error naming the file and the stage that makes it. */
function camFile(config: WeaksegConfig, split: string, item: DatasetItem): string {
  const path = camPath(runPaths(config).cams(split), item.id);
  if (!existsSync(path)) {
    throw new Error(`no CAM for '${item.id}' of split '${split}' (${path}); run \`weakseg cams\` with '${split}' in cams.splits`);
  }
  return path;
}

/** Per-image outputs of one stage across splits: made once, hard-linked into later splits, kept on resume. */
class StageOutputs {
  readonly #made = new Map<string, string>();

  constructor(private readonly resume: boolean) {}

  /** An existing output for this image at `path` (linked from an earlier split of this run, or resumed), or null. */
  existing(id: string, path: string): string | null {
    const made = this.#made.get(id);
    if (made && made !== path) {
      mkdirSync(dirname(path), { recursive: true });
      rmSync(path, { force: true });
      linkSync(made, path);
      return path;
    }
    if (made || (this.resume && existsSync(path))) return path;
    return null;
  }

  add(id: string, path: string): void {
    this.#made.set(id, path);
  }
}

/** Accumulates a split's scores against its ground truth (images without a mask are not scored). */
class SplitScore {
  readonly cm: ConfusionMatrix;
  scored = 0;

  constructor(readonly dataset: Dataset) {
    this.cm = new ConfusionMatrix(dataset.classes.length + 1);
  }

  async add(item: DatasetItem, pred: LabelMap): Promise<void> {
    if (!item.maskPath) return;
    const gt = await readMask(item.maskPath);
    if (gt.width !== pred.width || gt.height !== pred.height) {
      throw new Error(`${item.id}: prediction is ${pred.width}x${pred.height} but its mask ${item.maskPath} ${gt.width}x${gt.height}`);
    }
    this.cm.add(pred.data, gt.data, item.id);
    this.scored++;
  }

  result(): MiouResult | null {
    return this.scored ? this.cm.score(withBackground(this.dataset.classes)) : null;
  }
}

const unique = (xs: string[]) => [...new Set(xs)];

/** One confusion matrix per candidate setting (a threshold, an exponent), to keep the one with the best mIoU. */
class CandidateSweep {
  readonly #matrices: ConfusionMatrix[];

  constructor(count: number, private readonly classes: readonly string[]) {
    this.#matrices = Array.from({ length: count }, () => new ConfusionMatrix(classes.length + 1));
  }

  add(candidate: number, pred: Uint8Array, gt: Uint8Array, id: string): void {
    this.#matrices[candidate]!.add(pred, gt, id);
  }

  /** mIoU per candidate and the first best one. */
  result(): { miou: (number | null)[]; bestIndex: number } {
    const names = withBackground(this.classes);
    const miou = this.#matrices.map((cm) => cm.score(names).miou);
    let bestIndex = 0;
    miou.forEach((m, k) => { if ((m ?? -1) > (miou[bestIndex] ?? -1)) bestIndex = k; });
    return { miou, bestIndex };
  }
}

export interface RefineSplitSummary {
  split: string;
  dir: string;
  images: number;
  /** Images computed in this call (the rest were resumed or shared with an earlier split). */
  computed: number;
  seconds: number;
  /** Per computed image. */
  msPerImage: number;
}

// ---------------------------------------------------------------------------------------------------------------
// crf: seeds at the chosen threshold, refined by a dense CRF

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

function crfSettings(config: WeaksegConfig): CrfParams {
  const c = config.refine.crf;
  return crfParams(c.preset, { ...(c.iterations !== undefined ? { iterations: c.iterations } : {}), referenceSize: c.referenceSize });
}

/** Where a free setting is chosen: eval.fitSplit (leak-free) or, without one, eval.split itself (oracle). */
function fitSplitOf(config: WeaksegConfig): { split: string; mode: 'leak-free' | 'oracle' } {
  return config.eval.fitSplit ? { split: config.eval.fitSplit, mode: 'leak-free' } : { split: config.eval.split, mode: 'oracle' };
}

/** The fit split and its items with ground truth; a split without any is an error naming the `setting`. */
async function fitItems(config: WeaksegConfig, split: string, setting: string): Promise<{ dataset: Dataset; scored: DatasetItem[] }> {
  const dataset = await readSplit(config, split);
  const scored = dataset.items.filter((item) => item.maskPath);
  if (scored.length === 0) throw new Error(`${setting} needs ground-truth masks on '${split}', which has none`);
  return { dataset, scored };
}

/**
 * The CRF'd seeds' threshold chosen by sweeping refine.crf.thresholds through the CRF on eval.fitSplit (leak-free)
 * or, without one, on eval.split (oracle). The sweep is kept in crf/fit.json and reused on resume.
 */
async function fitCrfThreshold(config: WeaksegConfig, crf: CrfParams, hooks: StageHooks): Promise<{ chosen: ChosenThreshold; curve: CrfFitCurve }> {
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
  const camPaths = scored.map((item) => camFile(config, split, item));
  const sweep = new CandidateSweep(thresholds.length, dataset.classes);
  const bar = progress(hooks, `CRF threshold sweep ${split}`, scored.length);
  for (const [i, item] of scored.entries()) {
    hooks.signal?.throwIfAborted();
    const record = readCam(camPaths[i]!);
    const image = await decodeImage(item.imagePath);
    const gt = await readMask(item.maskPath!);
    thresholds.forEach((t, k) => sweep.add(k, crfSeedMask(image, record, t, crf).data, gt.data, item.id));
    bar.tick();
  }
  bar.stop();
  const { miou, bestIndex } = sweep.result();
  const curve: CrfFitCurve = { split, thresholds, miou, best: { threshold: thresholds[bestIndex]!, miou: miou[bestIndex] ?? null } };
  mkdirSync(dirname(file), { recursive: true });
  writeJsonAtomic(file, { key, curve });
  log(`CRF threshold on '${split}' (t: mIoU %): ${thresholds.map((t, k) => `${t}: ${pct(miou[k] ?? null)}`).join(', ')}`);
  return { chosen: { threshold: curve.best.threshold, mode, thresholdChosenOn: split }, curve };
}

export async function crfSeeds(config: WeaksegConfig, hooks: StageHooks = {}): Promise<CrfSummary> {
  const paths = prepareRun(config);
  const log = logger(hooks);
  const crf = crfSettings(config);
  const rule = config.refine.crf.threshold;
  const fitted = rule === 'fit' ? await fitCrfThreshold(config, crf, hooks) : null;
  const chosen = fitted?.chosen ?? chosenThreshold(config);
  const scoredSplit = config.eval.split;
  const trainSplit = config.data.trainSplit;
  const splits = unique([scoredSplit, ...(existsSync(paths.cams(trainSplit)) ? [trainSplit] : [])]);
  log(`CRF seeds at t = ${chosen.threshold} (${chosen.mode}, ${rule === 'fit' ? 'swept through the CRF' : 'the seed threshold'} ` +
    `on '${chosen.thresholdChosenOn}'), ` +
    `${config.refine.crf.preset} CRF with ${crf.iterations} iterations: ${splits.join(', ')}`);
  const outputs = new StageOutputs(hooks.resume ?? false);
  const summaries: RefineSplitSummary[] = [];
  let result: MiouResult | null = null;
  for (const split of splits) {
    const dataset = await readSplit(config, split);
    const camPaths = dataset.items.map((item) => camFile(config, split, item));
    const dir = paths.crf(split);
    const score = split === scoredSplit ? new SplitScore(dataset) : null;
    const bar = progress(hooks, `CRF ${split}`, dataset.items.length);
    let computed = 0;
    let computeMs = 0;
    for (const [i, item] of dataset.items.entries()) {
      hooks.signal?.throwIfAborted();
      const out = join(dir, `${item.id}.png`);
      let mask: LabelMap;
      if (outputs.existing(item.id, out)) {
        mask = await readMask(out);
      } else {
        const t0 = performance.now();
        const record = readCam(camPaths[i]!);
        mask = crfSeedMask(await decodeImage(item.imagePath), record, chosen.threshold, crf);
        await writeMask(out, mask);
        computeMs += performance.now() - t0;
        computed++;
      }
      outputs.add(item.id, out);
      await score?.add(item, mask);
      bar.tick();
    }
    const seconds = bar.stop();
    writeFileSync(join(dir, 'info.json'), `${JSON.stringify({ split, ...chosen, crf,
      format: 'VOC palette PNG: 0 background, class index + 1 for objects' }, null, 2)}\n`);
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

/** The exponent PSA/SEAM's alphaLow and alphaHigh (4 and 24) are relative to: their walk's, t = 0.22. */
const PSA_BACKGROUND_ALPHA = 6;

/** The background exponents of the affinity labels (refine.alphas). */
export interface RefineAlphas {
  rule: 'fromThreshold' | 'fixed';
  /** The threshold they were derived from (rule 'fromThreshold') and the stage that chose it. */
  threshold: number | null;
  thresholdFrom: 'crf' | 'eval' | null;
  low: number;
  high: number;
}

/** The crf stage's threshold (metrics.json crf.threshold), or null before that stage has run. */
function crfThreshold(config: WeaksegConfig): number | null {
  const t = (readMetrics(config).crf as { threshold?: unknown } | undefined)?.threshold;
  return typeof t === 'number' ? t : null;
}

export function refineAlphas(config: WeaksegConfig): RefineAlphas {
  const r = config.refine;
  if (r.alphas === 'fixed') return { rule: 'fixed', threshold: null, thresholdFrom: null, low: r.alphaLow, high: r.alphaHigh };
  const fromCrf = crfThreshold(config);
  const threshold = fromCrf ?? chosenThreshold(config).threshold;
  if (!(threshold > 0 && threshold < 1)) {
    throw new Error(`refine.alphas 'fromThreshold' needs a threshold strictly between 0 and 1, got ${threshold}; set refine.alphas to 'fixed'`);
  }
  const scale = alphaForThreshold(threshold) / PSA_BACKGROUND_ALPHA;
  return { rule: 'fromThreshold', threshold, thresholdFrom: fromCrf === null ? 'eval' : 'crf', low: r.alphaLow * scale, high: r.alphaHigh * scale };
}

const fmtAlpha = (a: number) => String(Number(a.toFixed(3)));

// ---------------------------------------------------------------------------------------------------------------
// affinity: labels from CRF'd CAMs, then AffinityNet training

export interface AffinityLabelsSummary extends RefineSplitSummary {
  /** Shares of label pixels: uncertain (255), background (0) and foreground. */
  shares: LabelShares;
  alphas: RefineAlphas;
}

/** The label PNG of an item (mask ids, 255 uncertain). */
export function affinityLabelPath(config: WeaksegConfig, id: string): string {
  return join(runPaths(config).affinity.labels, `${id}.png`);
}

/** la/ha affinity labels for every image of data.trainSplit (needs its CAMs). */
export async function makeAffinityLabels(config: WeaksegConfig, hooks: StageHooks = {}): Promise<AffinityLabelsSummary> {
  const paths = prepareRun(config);
  const log = logger(hooks);
  const r = config.refine;
  const alphas = refineAlphas(config);
  const split = config.data.trainSplit;
  const crf = crfSettings(config);
  const dataset = await readSplit(config, split);
  const camPaths = dataset.items.map((item) => camFile(config, split, item));
  const dir = paths.affinity.labels;
  log(`affinity labels of '${split}': background (1 - max fg)^${fmtAlpha(alphas.low)} (la) and ^${fmtAlpha(alphas.high)} (ha)` +
    `${alphas.rule === 'fromThreshold' ? ` (from the ${alphas.thresholdFrom} stage's threshold ${alphas.threshold})` : ''}, ` +
    `${r.crf.preset} CRF with ${crf.iterations} iterations -> ${dir}`);
  const outputs = new StageOutputs(hooks.resume ?? false);
  const counter = new LabelShareCounter();
  const bar = progress(hooks, 'affinity labels', dataset.items.length);
  let computed = 0;
  let computeMs = 0;
  for (const [i, item] of dataset.items.entries()) {
    hooks.signal?.throwIfAborted();
    const out = affinityLabelPath(config, item.id);
    let labels: LabelMap;
    if (outputs.existing(item.id, out)) {
      labels = await readMask(out);
    } else {
      const t0 = performance.now();
      labels = affinityLabelMap(await decodeImage(item.imagePath), readCam(camPaths[i]!), { alphaLow: alphas.low, alphaHigh: alphas.high, crf });
      await writeMask(out, labels);
      computeMs += performance.now() - t0;
      computed++;
    }
    outputs.add(item.id, out);
    counter.add(labels.data);
    bar.tick();
  }
  const seconds = bar.stop();
  const shares = counter.shares;
  writeFileSync(join(dir, 'info.json'), `${JSON.stringify({ split, alphas, crf,
    count: dataset.items.length, shares, format: 'VOC palette PNG: 0 background, class index + 1, 255 uncertain' }, null, 2)}\n`);
  log(`affinity labels: ${dataset.items.length} images (${computed} computed) in ${seconds.toFixed(1)} s; pixels ` +
    `${pct(shares.foreground)} % foreground, ${pct(shares.background)} % background, ${pct(shares.uncertain)} % uncertain`);
  return { split, dir, images: dataset.items.length, computed, seconds, msPerImage: computed ? computeMs / computed : 0, shares, alphas };
}

/** The affinity net of a config (taps, radius), on a backbone from buildBackbone (or the test hook). */
export function buildAffinityNet(config: WeaksegConfig, numClasses: number, hooks: StageHooks): AffinityNet {
  const backbone = buildBackbone(config, hooks);
  freezeAffinityStem(backbone);
  const a = config.refine.affinity;
  return new AffinityNet(backbone, { numClasses, taps: affinityTaps(backbone, a.taps), radius: a.radius, headLrMult: a.headLrMult });
}

export interface AffinitySummary extends FitSummary {
  labels: AffinityLabelsSummary;
}

/** Makes the affinity labels (kept on resume) and trains AffinityNet on them with the shared trainer. */
export async function trainAffinity(config: WeaksegConfig, hooks: StageHooks = {}): Promise<AffinitySummary> {
  const ap = prepareRun(config).affinity;
  refuseExistingCheckpoints(ap.checkpoints, hooks);
  const labels = await makeAffinityLabels(config, hooks);
  const a = config.refine.affinity;
  const dataset = await readSplit(config, config.data.trainSplit);
  requireOneBatch(dataset, config.data.trainSplit, a.batchSize, 'refine.affinity.batchSize');
  const labelled: Dataset = { ...dataset, items: dataset.items.map((item) => ({ ...item, maskPath: affinityLabelPath(config, item.id) })) };
  manualSeed(a.seed); // the new layers' initialisation is part of the run's determinism
  const net = buildAffinityNet(config, dataset.classes.length, hooks);
  const { taps } = net.model;
  const fit = await fitAndSave(config, hooks, {
    net,
    dataset: labelled,
    transform: trainTransform({
      withMask: true,
      cropSize: a.cropSize,
      ...(a.scaleRange ? { scaleRange: a.scaleRange } : {}),
      flip: a.flip,
      ...(a.jitter ? { jitter: a.jitter } : {}),
      norm: net.backbone.inputNorm,
    }),
    settings: a,
    files: ap,
    headline: `affinity net on ${net.backbone.name} (stride ${net.stride}), taps ` +
      `${taps.map((t) => `${t.name}:${t.width}`).join(', ')}, radius ${net.radius}; ${dataset.items.length} images of ` +
      `'${config.data.trainSplit}', crop ${a.cropSize}, batch ${a.batchSize}, ${a.epochs} epochs, lr ${a.lr} (new layers x${a.headLrMult})`,
    checkpointMetadata: { backbone: net.backbone.name, config: JSON.stringify(config) },
    modelMetadata: (result) => ({
      format: 'weakseg-affinity/1', backbone: net.backbone.name, stride: String(net.stride), radius: String(net.radius),
      taps: JSON.stringify(taps), num_classes: String(net.numClasses), classes: JSON.stringify(dataset.classes),
      epochs_completed: String(result.epochsCompleted), steps: String(result.steps),
    }),
  });
  recordMetrics(config, 'affinity', {
    model: ap.model, ...fitFigures(fit), taps, radius: net.radius, stride: net.stride,
    labels: { split: labels.split, images: labels.images, seconds: labels.seconds, msPerImage: labels.msPerImage, shares: labels.shares, alphas: labels.alphas },
  });
  return { ...fit, labels };
}

// ---------------------------------------------------------------------------------------------------------------
// randomWalk: CAMs propagated by the affinity net

export interface RandomWalkSplitSummary extends RefineSplitSummary {
  /** Per computed image: the affinity net's forward pass and the walk (input, propagation, upsampling). */
  msNet: number;
  msWalk: number;
}

/** Random-walk mIoU per background exponent on the split the exponent was chosen on. */
export interface BgAlphaFitCurve {
  split: string;
  mode: 'leak-free' | 'oracle';
  bgAlphas: number[];
  miou: (number | null)[];
  best: { bgAlpha: number; miou: number | null };
}

export interface RandomWalkSummary {
  /** The split scored (eval.split). */
  split: string;
  result: MiouResult | null;
  beta: number;
  logt: number;
  bgAlpha: number;
  /** The sweep that chose bgAlpha (refine.randomWalk.bgAlpha 'fit'). */
  bgAlphaFit: BgAlphaFitCurve | null;
  /** Share of the scored split's pixels left unclaimed (255; only with refine.randomWalk.uncertainBelow > 0). */
  uncertainShare: number;
  splits: RandomWalkSplitSummary[];
}

/** The affinity field of one image (a batch of 1), padded to a multiple of the stride as infer_aff.py does. */
function affinityFieldOf(net: AffinityNet, batch: { images: Float32Array; shape: number[] }, device: WeaksegConfig['device']) {
  return tidy(() => {
    const [, ch, h, w] = batch.shape as [number, number, number, number];
    let image: Tensor = tensor(batch.images, { shape: [1, ch, h, w] });
    if (device !== 'cpu') image = image.to({ device });
    // infer_aff.py pads the normalised image with zeros (the mean colour) to a multiple of the stride.
    const s = net.stride;
    return net.affinityField(F.pad(image, [0, Math.ceil(w / s) * s - w, 0, Math.ceil(h / s) * s - h]));
  });
}

/** The random walk's CRF settings (refine.randomWalk.crf), or null when off. */
function walkCrfParams(config: WeaksegConfig): CrfParams | null {
  const preset = config.refine.randomWalk.crf;
  return preset ? crfParams(preset, { referenceSize: config.refine.crf.referenceSize }) : null;
}

/** The random walk's CRF for one image (its RGB read from disk), or null when off. */
async function walkCrf(params: CrfParams | null, item: DatasetItem): Promise<WalkCrf | null> {
  if (!params) return null;
  const image = await decodeImage(item.imagePath);
  return { params, image: { rgb: image.data, width: image.width, height: image.height } };
}

/**
 * The background exponent chosen by walking every refine.randomWalk.bgAlphas on eval.fitSplit (leak-free) or,
 * without one, eval.split (oracle): one walk per image carries all exponents' background planes.
 */
async function fitBgAlpha(config: WeaksegConfig, net: AffinityNet, hooks: StageHooks): Promise<BgAlphaFitCurve> {
  const log = logger(hooks);
  const rw = config.refine.randomWalk;
  const { split, mode } = fitSplitOf(config);
  const { dataset, scored } = await fitItems(config, split, "refine.randomWalk.bgAlpha 'fit'");
  const crfOfWalk = walkCrfParams(config);
  const bgAlphas = [...rw.bgAlphas];
  log(`random walk: choosing the background exponent among ${bgAlphas.join(', ')} on '${split}' (${scored.length} images with masks, ${mode})`);
  const camPaths = new Map(scored.map((item) => [item.id, camFile(config, split, item)]));
  const sweep = new CandidateSweep(bgAlphas.length, dataset.classes);
  const bar = progress(hooks, `random-walk exponent sweep ${split}`, scored.length);
  const loader = new BatchLoader({ ...dataset, items: scored }, evalTransform({ norm: net.backbone.inputNorm, withMask: false }), {
    batchSize: 1, shuffle: false, prefetch: 4, onBadFile: config.data.onBadFile,
  });
  for await (const batch of loader.epoch(0)) {
    hooks.signal?.throwIfAborted();
    const item = scored[batch.indices[0]!]!;
    const masks = randomWalkMasksPerAlpha(readCam(camPaths.get(item.id)!), affinityFieldOf(net, batch, config.device), {
      beta: rw.beta, logt: rw.logt, bgAlphas, stride: net.stride, uncertainBelow: rw.uncertainBelow, crf: await walkCrf(crfOfWalk, item),
    });
    const gt = await readMask(item.maskPath!);
    masks.forEach((m, k) => sweep.add(k, m.data, gt.data, item.id));
    bar.tick();
  }
  bar.stop();
  const { miou, bestIndex } = sweep.result();
  log(`random walk on '${split}' (exponent: mIoU %): ${bgAlphas.map((a, k) => `${a}: ${pct(miou[k] ?? null)}`).join(', ')}`);
  return { split, mode, bgAlphas, miou, best: { bgAlpha: bgAlphas[bestIndex]!, miou: miou[bestIndex] ?? null } };
}

/** Pseudo-masks of data.trainSplit and eval.split by the random walk; scores eval.split. */
export async function randomWalkMasks(config: WeaksegConfig, hooks: StageHooks = {}): Promise<RandomWalkSummary> {
  const paths = prepareRun(config);
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
  let bgAlphaFit: BgAlphaFitCurve | null = null;
  let bgAlpha: number;
  try {
    loadModelWeights(modelPath, net.model);
    if (config.device !== 'cpu') net.model.to({ device: config.device });
    net.model.eval();
    if (rw.bgAlpha === 'fit') {
      bgAlphaFit = await fitBgAlpha(config, net, hooks);
      bgAlpha = bgAlphaFit.best.bgAlpha;
    } else {
      bgAlpha = rw.bgAlpha;
    }
    const crfOfWalk = walkCrfParams(config);
    log(`random walk with ${modelPath}: beta ${rw.beta}, ${2 ** rw.logt} steps (logt ${rw.logt}), background alpha ${bgAlpha}` +
      `${bgAlphaFit ? ` (${bgAlphaFit.mode}, chosen on '${bgAlphaFit.split}')` : ''}, stride ${net.stride}, radius ${net.radius}`);
    for (const [split, dataset] of datasets) {
      const dir = paths.pseudo(split);
      const score = split === scoredSplit ? new SplitScore(dataset) : null;
      const unclaimed = new LabelShareCounter();
      const todo = dataset.items.filter((item) => !outputs.existing(item.id, join(dir, `${item.id}.png`)));
      const camPaths = new Map(todo.map((item) => [item.id, camFile(config, split, item)]));
      const bar = progress(hooks, `random walk ${split}`, dataset.items.length);
      let msNet = 0;
      let msWalk = 0;
      const masks = new Map<string, LabelMap>();
      const loader = new BatchLoader({ ...dataset, items: todo }, evalTransform({ norm: net.backbone.inputNorm, withMask: false }), {
        batchSize: 1, shuffle: false, prefetch: 4, onBadFile: config.data.onBadFile,
      });
      for await (const batch of loader.epoch(0)) {
        hooks.signal?.throwIfAborted();
        const item = todo[batch.indices[0]!]!;
        const t0 = performance.now();
        const field = affinityFieldOf(net, batch, config.device);
        const t1 = performance.now();
        const mask = randomWalkMask(readCam(camPaths.get(item.id)!), field, {
          beta: rw.beta, logt: rw.logt, bgAlpha, stride: net.stride, uncertainBelow: rw.uncertainBelow, crf: await walkCrf(crfOfWalk, item),
        });
        const out = join(dir, `${item.id}.png`);
        await writeMask(out, mask);
        msNet += t1 - t0;
        msWalk += performance.now() - t1;
        outputs.add(item.id, out);
        masks.set(item.id, mask);
        bar.tick();
      }
      for (let i = todo.length; i < dataset.items.length; i++) bar.tick();
      for (const item of dataset.items) {
        if (!score) break;
        const mask = masks.get(item.id) ?? await readMask(join(dir, `${item.id}.png`));
        await score.add(item, mask);
        if (item.maskPath) unclaimed.add(mask.data);
      }
      const seconds = bar.stop();
      const computed = todo.length;
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
  const summary: RandomWalkSummary = { split: scoredSplit, result, beta: rw.beta, logt: rw.logt, bgAlpha, bgAlphaFit, uncertainShare, splits: summaries };
  recordMetrics(config, 'randomWalk', summary);
  return summary;
}
