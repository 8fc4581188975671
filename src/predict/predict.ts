// `weakseg predict`: the run's networks on images nobody tagged. Per image, in OUT:
//
//   <id>.png    palette PNG mask (VOC colours; 0 background, i the class classes[i - 1]); tEXt chunk "labels" holds
//               the label names as JSON, "source" the image's path
//   <id>.jpg    the image with the mask blended over it (background left as is)
//   <id>.json   one line: { id, path, width, height, classes: [{ label, name, share, confidence }], ms }
//
// and at the end predictions.jsonl (every image's line, in input order) and summary.json.
//
// With a segmenter: multi-scale + flip probabilities (src/segmentation/infer.ts), argmax or dense CRF, over
// background and the given tags only when there are some; confidence is the network's mean probability of the
// label over the pixels given it. Without one, the classifier: tags are the classes with sigmoid(GAP(CAM)) above a
// threshold (for the CAM method exactly its classification logits), or given with --tags; their CAMs (src/cams) ->
// seeds at the run's chosen background threshold -> dense CRF (as the 'crf' stage); confidence is the mean CAM
// score (background: 1 - the highest CAM score).
//
// Images larger than maxSide on their longer side are predicted at that size and the labels scaled back up
// (nearest), so a 24-megapixel photo does not need gigabytes of class probabilities.
// Outputs are written to temporary names and renamed, the JSON line last: an image is done when its JSON exists,
// and a rerun (even after kill -9) skips it.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import cliProgress from 'cli-progress';
import sharp from 'sharp';
import { type Tensor, emptyCache, noGrad, setNumThreads, tensor, tidy } from '../engine/index.js';
import {
  BadFileLog, type BadFilePolicy, type LabelMap, type RgbImage, decodeImage, encodeMask, handleBadFile, normalizeToChw,
  resizeBilinear, resizeNearest, vocColormap,
} from '../data/index.js';
import { writeFileAtomic } from '../io/files.js';
import { multiScaleProbabilities, labelsFromProbabilities } from '../segmentation/infer.js';
import { multiScaleCam } from '../cams/infer.js';
import { crfParams, type CrfParams, type CrfPresetName } from '../refine/crf-presets.js';
import type { WeaksegConfig } from '../pipeline/config.js';
import { type StageHooks, logger, readMetrics } from '../pipeline/common.js';
import { chosenThreshold, crfSeedMask, crfSettings } from '../pipeline/crf.js';
import type { Method } from '../methods/method.js';
import type { DeepLab } from '../segmentation/deeplab.js';
import { hasSegmenter, loadClassifier, loadSegmenter } from './models.js';
import { listInputs, type PredictInput } from './inputs.js';

export interface PredictOptions {
  input?: string;
  list?: string;
  out: string;
  /** Test-time scales (default seg.scales, or cams.scales for the classifier). */
  scales?: number[];
  /** Flipped passes (default seg.testFlip, or cams.flip). */
  flip?: boolean;
  /** Segmenter: dense CRF preset or null (default seg.crf). The classifier path always runs the run's CRF. */
  crf?: CrfPresetName | null;
  /** Longest side the networks see (default 1024). */
  maxSide?: number;
  /**
   * Tags given by name: the classifier takes them instead of predicting them; the segmenter may then predict only
   * background and these classes.
   */
  tags?: string[];
  /** Classifier: sigmoid threshold of a predicted tag (default 0.5). */
  tagThreshold?: number;
  /** Bad (unreadable, corrupt) images: 'skip' (default, reported) or 'fail'. */
  onBadFile?: BadFilePolicy;
  /** Mask opacity in the overlay JPEG (default 0.5). */
  opacity?: number;
}

export interface ClassFound {
  label: number;
  name: string;
  /** Fraction of the image's pixels. */
  share: number;
  confidence: number;
}

export interface PredictionLine {
  id: string;
  path: string;
  width: number;
  height: number;
  classes: ClassFound[];
  /** Tags the classifier path used, or the ones the segmenter was restricted to (absent when none were given to it). */
  tags?: string[];
  ms: number;
}

export interface PredictSummary {
  out: string;
  model: string;
  mode: 'segmenter' | 'classifier';
  images: number;
  predicted: number;
  /** Done by an earlier run and skipped. */
  kept: number;
  badFiles: { path: string; reason: string }[];
  imagesPerSecond: number;
  /** Images in which each label was found. */
  labelImages: Record<string, number>;
}

/** One image's labels and per-label confidence sums, at the resolution it was predicted. */
interface Labelled {
  labels: LabelMap;
  /** Per label: the summed confidence over its pixels (at the predicted resolution). */
  confidenceSum: Float64Array;
  tags?: string[];
}


/** JSON with every non-ASCII character escaped, for PNG tEXt (Latin-1). */
function asciiJson(v: unknown): string {
  return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const PALETTE = vocColormap();

/** The image with every non-background label blended in its VOC colour. */
export function overlay(image: RgbImage, labels: LabelMap, opacity: number): Uint8Array {
  const out = new Uint8Array(image.data.length);
  const n = labels.width * labels.height;
  for (let i = 0; i < n; i++) {
    const l = labels.data[i]!;
    for (let c = 0; c < 3; c++) {
      const v = image.data[3 * i + c]!;
      out[3 * i + c] = l === 0 ? v : Math.round((1 - opacity) * v + opacity * PALETTE[l]![c]!);
    }
  }
  return out;
}

function labelsOfSegmenter(net: DeepLab, x: Tensor, rgb: RgbImage,
  o: { scales: number[]; flip: boolean; crf: CrfParams | null; channelsLast: boolean; allowed?: number[] }): Labelled {
  return tidy(() => {
    const probs = multiScaleProbabilities(net, x, { scales: o.scales, flip: o.flip, channelsLast: o.channelsLast });
    const labels = labelsFromProbabilities(probs, { ...(o.crf ? { crf: o.crf, rgb } : {}), ...(o.allowed ? { allowed: o.allowed } : {}) });
    const K = probs.size(0);
    const p = probs.toFloat32Array();
    const n = labels.width * labels.height;
    const confidenceSum = new Float64Array(K);
    for (let i = 0; i < n; i++) {
      const l = labels.data[i]!;
      confidenceSum[l] += p[l * n + i]!;
    }
    return { labels, confidenceSum };
  });
}

function labelsOfClassifier(method: Method, x: Tensor, rgb: RgbImage, classes: string[], o: {
  scales: number[]; flip: boolean; crf: CrfParams; threshold: number; tags?: string[]; tagThreshold: number; channelsLast: boolean;
  normalization: WeaksegConfig['cams']['normalization'];
}): Labelled {
  let tags: number[];
  if (o.tags) {
    tags = o.tags.map((t) => classes.indexOf(t));
  } else {
    // The method's classification logits at scale 1 (SEAM's CAMs are the PCM's rectified output, whose mean is
    // no logit: every class that fires anywhere read as a tag).
    const scores = tidy(() => noGrad(() => method.classify(x).sigmoid().toFloat32Array()));
    tags = [...scores].flatMap((s, c) => (s > o.tagThreshold ? [c] : []));
  }
  const { width, height } = rgb;
  const plane = width * height;
  if (!tags.length) {
    return { labels: { width, height, data: new Uint8Array(plane) }, confidenceSum: Float64Array.from([plane, ...classes.map(() => 0)]), tags: [] };
  }
  const cams = tidy(() => multiScaleCam(method, x, tags, {
    scales: o.scales, flip: o.flip, channelsLast: o.channelsLast,
    ...(o.normalization === 'auto' ? {} : { normalization: o.normalization }),
  }).toFloat32Array());
  const planes = new Float32Array(tags.length * plane);
  tags.forEach((c, k) => planes.set(cams.subarray(c * plane, (c + 1) * plane), k * plane));
  const labels = crfSeedMask(rgb, { id: '', labels: tags, width, height, cams: planes, metadata: {} }, o.threshold, o.crf);
  const confidenceSum = new Float64Array(classes.length + 1);
  for (let i = 0; i < plane; i++) {
    const l = labels.data[i]!;
    if (l === 0) {
      let m = 0;
      for (let k = 0; k < tags.length; k++) m = Math.max(m, planes[k * plane + i]!);
      confidenceSum[0] += 1 - m;
    } else {
      confidenceSum[l] += cams[(l - 1) * plane + i]!;
    }
  }
  return { labels, confidenceSum, tags: tags.map((c) => classes[c]!) };
}

/** The classifier path's seed threshold: the crf stage's (when it fitted one), else the eval stage's. */
function classifierThreshold(config: WeaksegConfig): number {
  const crf = readMetrics(config).crf as { threshold?: unknown } | undefined;
  if (typeof crf?.threshold === 'number') return crf.threshold;
  return chosenThreshold(config).threshold;
}

function foundClasses(labels: LabelMap, confidenceSum: Float64Array, names: string[]): ClassFound[] {
  const count = new Float64Array(names.length);
  for (const l of labels.data) count[l]++;
  const n = labels.data.length;
  const out: ClassFound[] = [];
  for (let l = 0; l < names.length; l++) {
    if (count[l]! > 0) {
      out.push({ label: l, name: names[l]!, share: count[l]! / n, confidence: Math.min(1, confidenceSum[l]! / count[l]!) });
    }
  }
  return out.sort((a, b) => b.share - a.share);
}

export function outputPaths(out: string, id: string): { mask: string; overlay: string; json: string } {
  return { mask: join(out, `${id}.png`), overlay: join(out, `${id}.jpg`), json: join(out, `${id}.json`) };
}

/** Runs predict; returns the summary (also written to OUT/summary.json). */
export async function predict(config: WeaksegConfig, options: PredictOptions, hooks: StageHooks = {}): Promise<PredictSummary> {
  const log = logger(hooks);
  const inputs: PredictInput[] = listInputs(options);
  const out = resolve(options.out);
  mkdirSync(out, { recursive: true });
  const policy = options.onBadFile ?? 'skip';
  const maxSide = options.maxSide ?? 1024;
  if (!Number.isInteger(maxSide) || maxSide < 16) throw new Error(`predict: --max-side must be an integer >= 16, got ${maxSide}`);
  const opacity = options.opacity ?? 0.5;
  const useSegmenter = hasSegmenter(config);
  const badFiles = new BadFileLog((bad) => log(`skipped ${bad.path}: ${bad.reason}`));
  if (config.runtime.threads) setNumThreads(config.runtime.threads);
  emptyCache();
  const model = useSegmenter ? await loadSegmenter(config, hooks) : await loadClassifier(config, hooks);
  const names = ['background', ...model.classes];
  const channelsLast = config.runtime.channelsLast;
  const segCrf = options.crf === undefined ? config.seg.crf : options.crf;
  for (const t of options.tags ?? []) {
    if (!model.classes.includes(t)) throw new Error(`--tags: unknown class '${t}' (classes: ${model.classes.join(', ')})`);
  }
  const segSettings = {
    scales: options.scales ?? config.seg.scales, flip: options.flip ?? config.seg.testFlip, channelsLast,
    crf: segCrf ? crfParams(segCrf, { referenceSize: config.refine.crf.referenceSize }) : null,
    ...(options.tags ? { allowed: [0, ...options.tags.map((t) => model.classes.indexOf(t) + 1)] } : {}),
  };
  let clsSettings: Parameters<typeof labelsOfClassifier>[4] | null = null;
  if (!useSegmenter) {
    clsSettings = {
      scales: options.scales ?? config.cams.scales, flip: options.flip ?? config.cams.flip, crf: crfSettings(config),
      threshold: classifierThreshold(config), tagThreshold: options.tagThreshold ?? 0.5, channelsLast,
      normalization: config.cams.normalization, ...(options.tags ? { tags: options.tags } : {}),
    };
  }
  const norm = model.net.backbone.inputNorm;
  log(`predict: ${inputs.length} image(s) -> ${out} with the ${useSegmenter ? 'segmenter' : 'classifier (no segmenter in this run): tags -> CAMs -> seeds -> CRF'} ${model.weights}` +
    (useSegmenter ? `; scales ${segSettings.scales.join('/')}${segSettings.flip ? ' + flips' : ''}${segCrf ? `, CRF '${segCrf}'` : ''}` +
      `${options.tags ? `; only background and the tags ${options.tags.join(', ')}` : ''}`
      : `; seed threshold ${clsSettings!.threshold}${options.tags ? `, tags ${options.tags.join(', ')}` : `, tags with sigmoid > ${clsSettings!.tagThreshold}`}`));

  const useBar = (hooks.progress ?? 'auto') === 'auto' ? Boolean(process.stderr.isTTY) : Boolean(hooks.progress);
  const bar = useBar
    ? new cliProgress.SingleBar({ format: 'predict |{bar}| {value}/{total} | {rate} img/s | ETA {eta_formatted}', hideCursor: true, clearOnComplete: true, fps: 4 }, cliProgress.Presets.shades_classic)
    : null;
  bar?.start(inputs.length, 0, { rate: '-' });
  const lines: string[] = [];
  const labelImages: Record<string, number> = {};
  let predicted = 0;
  let kept = 0;
  let busyMs = 0;
  try {
    for (const [i, item] of inputs.entries()) {
      hooks.signal?.throwIfAborted();
      const paths = outputPaths(out, item.id);
      let line: PredictionLine | null = null;
      if (existsSync(paths.json) && existsSync(paths.mask) && existsSync(paths.overlay)) {
        try {
          line = JSON.parse(readFileSync(paths.json, 'utf8')) as PredictionLine;
          kept++;
        } catch {
          line = null; // unreadable: predict again
        }
      }
      if (!line) {
        let rgb: RgbImage | null = null;
        try {
          rgb = await decodeImage(item.path);
        } catch (e) {
          handleBadFile(policy, badFiles, e, item.id);
        }
        if (rgb) {
          const t0 = performance.now();
          const scale = Math.min(1, maxSide / Math.max(rgb.width, rgb.height));
          const small = scale < 1
            ? resizeBilinear(rgb, Math.max(1, Math.round(rgb.width * scale)), Math.max(1, Math.round(rgb.height * scale))) as RgbImage
            : rgb;
          let x: Tensor = tensor(normalizeToChw(small, norm), { shape: [1, 3, small.height, small.width] });
          let result: Labelled;
          try {
            if (config.runtime.device !== 'cpu') x = x.to({ device: config.runtime.device });
            result = useSegmenter
              ? { ...labelsOfSegmenter(model.net as DeepLab, x, small, segSettings), ...(options.tags ? { tags: options.tags } : {}) }
              : labelsOfClassifier(model.net as Method, x, small, model.classes, clsSettings!);
          } finally {
            x.dispose();
          }
          const classes = foundClasses(result.labels, result.confidenceSum, names);
          const labels = scale < 1 ? resizeNearest(result.labels, rgb.width, rgb.height) : result.labels;
          if (scale < 1) {
            // Shares at the original resolution (the nearest upscaling moves a few boundary pixels).
            const exact = foundClasses(labels, new Float64Array(names.length), names);
            for (const c of classes) c.share = exact.find((e) => e.label === c.label)?.share ?? c.share;
          }
          writeFileAtomic(paths.mask, encodeMask(labels, { labels: asciiJson(names), source: asciiJson(item.path) }));
          const jpeg = await sharp(Buffer.from(overlay(rgb, labels, opacity)), { raw: { width: rgb.width, height: rgb.height, channels: 3 } })
            .jpeg({ quality: 90 }).toBuffer();
          writeFileAtomic(paths.overlay, jpeg);
          line = {
            id: item.id, path: item.path, width: rgb.width, height: rgb.height, classes,
            ...(result.tags ? { tags: result.tags } : {}), ms: Math.round(performance.now() - t0),
          };
          writeFileAtomic(paths.json, `${JSON.stringify(line)}\n`);
          busyMs += performance.now() - t0;
          predicted++;
        }
      }
      if (line) {
        lines.push(JSON.stringify(line));
        for (const c of line.classes) labelImages[c.name] = (labelImages[c.name] ?? 0) + 1;
      }
      const rate = predicted ? predicted / (busyMs / 1000) : 0;
      bar?.update(i + 1, { rate: rate.toFixed(2) });
      if (!bar && ((i + 1) % 50 === 0 || i + 1 === inputs.length)) log(`predict: ${i + 1}/${inputs.length} (${rate.toFixed(2)} img/s)`);
      await new Promise<void>((r) => setImmediate(r));
    }
  } finally {
    bar?.stop();
    model.net.model.dispose();
  }
  writeFileAtomic(join(out, 'predictions.jsonl'), lines.length ? `${lines.join('\n')}\n` : '');
  const summary: PredictSummary = {
    out, model: model.weights, mode: useSegmenter ? 'segmenter' : 'classifier', images: inputs.length, predicted, kept,
    badFiles: badFiles.entries.map((b) => ({ path: b.path, reason: b.reason })),
    imagesPerSecond: predicted ? predicted / (busyMs / 1000) : 0, labelImages,
  };
  writeFileAtomic(join(out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  log(`predict: ${predicted} predicted, ${kept} already done, ${badFiles.count} bad file(s) skipped` +
    `${predicted ? ` (${summary.imagesPerSecond.toFixed(2)} img/s)` : ''}; classes found: ` +
    `${Object.entries(labelImages).filter(([k]) => k !== 'background').map(([k, v]) => `${k} in ${v}`).join(', ') || 'none'}; ${join(out, 'predictions.jsonl')}`);
  return summary;
}
