// Stage 'affinity': AffinityNet's labels from CRF'd CAMs (la/ha background exponents), then AffinityNet trained on
// them with the shared trainer (methods-reference.md section 2.6) -> affinity/. Records its figures in metrics.json.
import { join } from 'node:path';
import { manualSeed } from '../engine/index.js';
import { type Dataset, decodeImage } from '../data/index.js';
import { readCam } from '../cams/format.js';
import { affinityLabelMap, alphaForThreshold } from '../refine/affinity-labels.js';
import { AffinityNet, affinityTaps, freezeAffinityStem } from '../refine/affinity-net.js';
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
    labels: { split: labels.split, images: labels.images, seconds: labels.seconds, msPerImage: labels.msPerImage, shares: labels.shares, alphas: labels.alphas },
  });
  return { ...fit, labels };
}
