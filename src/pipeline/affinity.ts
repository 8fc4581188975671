// Stage 'affinity': AffinityNet's labels from CRF'd CAMs (la/ha background exponents), then AffinityNet trained on
// them with the shared trainer (methods-reference.md section 2.6) -> affinity/. Records its figures in metrics.json.
import { join } from 'node:path';
import { manualSeed, tidy } from '../engine/index.js';
import { type Dataset, decodeImage, readMask } from '../data/index.js';
import { readCam } from '../cams/format.js';
import { affinityLabelMap, alphaForThreshold } from '../refine/affinity-labels.js';
import { AffinityNet, affinityTaps, freezeAffinityStem } from '../refine/affinity-net.js';
import { AffinityAgreement, type AffinityAgreementResult, gridPairLabels } from '../refine/affinity-score.js';
import type { WeaksegConfig } from './config.js';
import { type StageHooks, buildBackbone, imageCount, logger, prepareRun, readMetrics, readSplit, recordMetrics } from './common.js';
import { runPaths } from './paths.js';
import { type FitSummary, fitAndSave, fitFigures, fitTransform, refuseExistingCheckpoints, requireOneBatch } from './fit.js';
import { type LabelMapsSummary, camFile, writeLabelMaps } from './per-image.js';
import { chosenThreshold, crfSettings } from './crf.js';

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

export interface AffinityLabelsSummary extends LabelMapsSummary {
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
  const made = await writeLabelMaps(dataset.items, split, dir, hooks, 'affinity labels',
    async (item, i) => affinityLabelMap(await decodeImage(item.imagePath), readCam(camPaths[i]!), { alphaLow: alphas.low, alphaHigh: alphas.high, crf }),
    { alphas, crf });
  return { ...made, alphas };
}

/** The affinity net of a config (taps, radius), on a backbone from buildBackbone (or the test hook). */
export function buildAffinityNet(config: WeaksegConfig, numClasses: number, hooks: StageHooks): AffinityNet {
  const backbone = buildBackbone(config, hooks);
  freezeAffinityStem(backbone);
  const a = config.refine.affinity;
  return new AffinityNet(backbone, { numClasses, taps: affinityTaps(backbone, a.taps), radius: a.radius, headLrMult: a.headLrMult });
}

export interface AffinitySummary extends FitSummary {
  labels: AffinityLabelsSummary & { score: AffinityLabelScore | null };
}

/** The affinity labels' pairs against the ground truth's, on the training images that have ground truth. */
export interface AffinityLabelScore {
  images: number;
  /** Of the ground truth's pairs in each group, the share the labels are sure of (both ends certain). */
  coverage: { bgPos: number | null; fgPos: number | null; neg: number | null };
  /** On the pairs the labels are sure of: a labelled-positive pair has affinity 1, a negative one 0. */
  agreement: AffinityAgreementResult;
}

/**
 * Scores the pair labels of data.trainSplit's images with ground truth on the feature grid a pair net (AffinityNet,
 * or IRNet with `labelPath` its IR labels) learns them on: are the pairs it is taught right? Null when no training
 * image has ground truth.
 */
export async function scoreAffinityLabels(
  config: WeaksegConfig, dataset: Dataset, o: { stride: number; radius: number; labelPath?: (id: string) => string },
): Promise<AffinityLabelScore | null> {
  const items = dataset.items.filter((item) => item.maskPath);
  if (items.length === 0) return null;
  const labelPath = o.labelPath ?? ((id: string) => affinityLabelPath(config, id));
  const taught = new AffinityAgreement();
  const truthPairs = { bgPos: 0, fgPos: 0, neg: 0 };
  const grid = { stride: o.stride, radius: o.radius, numClasses: dataset.classes.length };
  for (const item of items) {
    const [labels, truth] = [await readMask(labelPath(item.id)), await readMask(item.maskPath!)];
    if (labels.width !== truth.width || labels.height !== truth.height) {
      throw new Error(`${labelPath(item.id)}: ${labels.width}x${labels.height}, its ground truth ${item.maskPath} ${truth.width}x${truth.height}`);
    }
    tidy(() => {
      const cells = { height: Math.ceil(truth.height / o.stride), width: Math.ceil(truth.width / o.stride) };
      const t = gridPairLabels(truth, cells, grid);
      const l = gridPairLabels(labels, cells, grid);
      const positive = l.bgPos.add(l.fgPos);
      taught.add(positive, t, positive.add(l.neg));
      for (const g of ['bgPos', 'fgPos', 'neg'] as const) truthPairs[g] += t[g].sum().item();
    });
  }
  const r = taught.result();
  const share = (g: 'bgPos' | 'fgPos' | 'neg') => (truthPairs[g] ? r[g].pairs / truthPairs[g] : null);
  return { images: items.length, coverage: { bgPos: share('bgPos'), fgPos: share('fgPos'), neg: share('neg') }, agreement: r };
}

/** One log line of a pair-label score (nothing without ground truth). */
export function logLabelScore(hooks: StageHooks, what: string, score: AffinityLabelScore | null): void {
  if (!score) return;
  const g = (k: 'bgPos' | 'fgPos' | 'neg') => `${score.coverage[k] === null ? '-' : (100 * score.coverage[k]).toFixed(1)} % labelled, ` +
    `${score.agreement[k].agree === null ? '-' : (100 * score.agreement[k].agree).toFixed(1)} % of those right`;
  logger(hooks)(`${what} against the ground truth of ${score.images} images: background pairs ${g('bgPos')}; ` +
    `same-object pairs ${g('fgPos')}; pairs across a boundary ${g('neg')}`);
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
  const labelScore = await scoreAffinityLabels(config, dataset, { stride: net.stride, radius: net.radius });
  logLabelScore(hooks, 'affinity labels', labelScore);
  const fit = await fitAndSave(config, hooks, {
    net,
    dataset: labelled,
    split: config.data.trainSplit,
    transform: fitTransform(a, net.backbone.inputNorm, true),
    settings: a,
    files: ap,
    headline: `affinity net on ${net.backbone.name} (stride ${net.stride}), taps ` +
      `${taps.map((t) => `${t.name}:${t.width}`).join(', ')}, radius ${net.radius}; ` +
      `${imageCount(config, config.data.trainSplit, dataset)}, crop ${a.cropSize}, batch ${a.batchSize}, ${a.epochs} epochs, lr ${a.lr} (new layers x${a.headLrMult})`,
    checkpointMetadata: { backbone: net.backbone.name, config: JSON.stringify(config) },
    modelMetadata: (result) => ({
      format: 'weakseg-affinity/1', backbone: net.backbone.name, stride: String(net.stride), radius: String(net.radius),
      taps: JSON.stringify(taps), num_classes: String(net.numClasses), classes: JSON.stringify(dataset.classes),
      epochs_completed: String(result.epochsCompleted), steps: String(result.steps),
    }),
  });
  recordMetrics(config, 'affinity', {
    model: ap.model, ...fitFigures(fit), taps, radius: net.radius, stride: net.stride,
    labels: { split: labels.split, images: labels.images, seconds: labels.seconds, msPerImage: labels.msPerImage, shares: labels.shares, alphas: labels.alphas, score: labelScore },
  });
  return { ...fit, labels: { ...labels, score: labelScore } };
}
