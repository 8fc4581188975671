/**
 * Scoring CAM seeds against a sweep of background thresholds (methods reference, section 1.3).
 *
 * Seed rule: keep the CAMs of the image's labelled classes (scores in [0, 1]), prepend a constant background
 * plane t, take the argmax (the first maximum wins, so background wins a tie, as numpy's argmax over
 * [bg, cams...] does) and map plane k back to its class id. So a pixel is foreground iff max_c cam_c > t.
 *
 * One pass serves every threshold: for each pixel only (gt, best foreground class, number of thresholds below
 * its max score) is counted; the confusion matrix for any t is then a suffix sum over that last index.
 *
 * Choosing t on the split being reported leaks pixel labels into a weakly supervised pipeline (the maintainers
 * of SEAM and ReCAM say as much); `leakFreeThreshold` picks t on one split and reports on another.
 */
import { ConfusionMatrix, type MiouResult } from './miou.js';

/** 0.05, 0.06, ..., 0.60. */
export const DEFAULT_THRESHOLDS: readonly number[] = Object.freeze(
  Array.from({ length: 56 }, (_, i) => Math.round((0.05 + 0.01 * i) * 100) / 100),
);

export interface CamSample {
  /** Foreground class indices (0..C-1, mask id = index + 1) of the image's labels, one per CAM plane. */
  labels: readonly number[];
  /** `labels.length` planes of width x height scores in [0, 1], planar (plane k at offset k * width * height). */
  cams: Float32Array;
  width: number;
  height: number;
  /** Ground-truth class ids (0 background, 255 ignore), width x height. */
  gt: Uint8Array;
  /** Names the image in errors. */
  id?: string;
}

function checkSample(sample: CamSample, numClasses: number): void {
  const { labels, cams, width, height, gt, id = 'image' } = sample;
  const plane = width * height;
  if (cams.length !== labels.length * plane) {
    throw new RangeError(`${id}: ${cams.length} CAM values for ${labels.length} labels of ${width}x${height}`);
  }
  if (gt.length !== plane) throw new RangeError(`${id}: ground truth has ${gt.length} pixels, CAMs ${width}x${height}`);
  for (const label of labels) {
    if (!(Number.isInteger(label) && label >= 0 && label + 1 < numClasses)) {
      throw new RangeError(`${id}: label ${label} is not a foreground class (K = ${numClasses}, labels 0..${numClasses - 2})`);
    }
  }
}

/** Seeds at background threshold t: a class-id map (0 background, label + 1 otherwise). */
export function camsToSeeds(
  cams: Float32Array,
  labels: readonly number[],
  width: number,
  height: number,
  threshold: number,
): Uint8Array {
  const plane = width * height;
  if (cams.length !== labels.length * plane) throw new RangeError(`${cams.length} CAM values for ${labels.length} labels of ${width}x${height}`);
  const seeds = new Uint8Array(plane);
  for (let i = 0; i < plane; i++) {
    let best = threshold;
    for (let k = 0; k < labels.length; k++) {
      const v = cams[k * plane + i];
      if (v > best) {
        best = v;
        seeds[i] = labels[k] + 1;
      }
    }
  }
  return seeds;
}

export interface SweepResult {
  thresholds: number[];
  /** mIoU per threshold (null if nothing was scored). */
  miou: (number | null)[];
  /** The threshold with the highest mIoU (the lowest such t on ties) and its full scores. */
  best: { threshold: number; index: number; result: MiouResult };
}

/** Accumulates seeds for every threshold in one pass. */
export class ThresholdSweep {
  readonly thresholds: readonly number[];
  /** [gt][fg class id][bucket]: bucket b = number of thresholds strictly below the pixel's best CAM score. */
  private readonly hist: Float64Array;
  private readonly buckets: number;

  /**
   * @param numClasses K, background included (21 for VOC)
   * @param thresholds strictly increasing (default 0.05..0.60 step 0.01)
   */
  constructor(
    readonly numClasses: number,
    thresholds: readonly number[] = DEFAULT_THRESHOLDS,
  ) {
    if (thresholds.length === 0) throw new RangeError('need at least one threshold');
    for (let j = 1; j < thresholds.length; j++) {
      if (!(thresholds[j] > thresholds[j - 1])) throw new RangeError('thresholds must be strictly increasing');
    }
    if (!Number.isInteger(numClasses) || numClasses < 1 || numClasses > 255) {
      throw new RangeError(`numClasses must be an integer in 1..255, got ${numClasses}`);
    }
    this.thresholds = [...thresholds];
    this.buckets = thresholds.length + 1;
    this.hist = new Float64Array(numClasses * numClasses * this.buckets);
  }

  add(sample: CamSample): void {
    checkSample(sample, this.numClasses);
    const { labels, cams, gt } = sample;
    const plane = sample.width * sample.height;
    const K = this.numClasses;
    const B = this.buckets;
    const t = this.thresholds;
    const n = t.length;
    for (let i = 0; i < plane; i++) {
      const g = gt[i];
      if (g === 255) continue;
      if (g >= K) throw new RangeError(`${sample.id ?? 'image'}: ground-truth value ${g} at pixel ${i} is not a class id (K = ${K}) nor 255`);
      // Best foreground class (first maximum) and its score; no labels = background everywhere.
      let cls = 0;
      let best = -Infinity;
      for (let k = 0; k < labels.length; k++) {
        const v = cams[k * plane + i];
        if (v > best) {
          best = v;
          cls = labels[k] + 1;
        }
      }
      // Count of thresholds < best (binary search); NaN compares false and lands in bucket 0 (background).
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (t[mid] < best) lo = mid + 1;
        else hi = mid;
      }
      this.hist[(g * K + cls) * B + lo]++;
    }
  }

  /** The confusion matrix of the seeds at `thresholds[index]`. */
  confusionAt(index: number): ConfusionMatrix {
    if (!(Number.isInteger(index) && index >= 0 && index < this.thresholds.length)) throw new RangeError(`threshold index ${index} out of range`);
    const K = this.numClasses;
    const B = this.buckets;
    const cm = new ConfusionMatrix(K);
    for (let g = 0; g < K; g++) {
      for (let c = 0; c < K; c++) {
        const base = (g * K + c) * B;
        // Foreground at threshold j iff more than j thresholds lie below the score: buckets j+1.. are class c.
        let fg = 0;
        let all = 0;
        for (let b = 0; b < B; b++) {
          const count = this.hist[base + b];
          all += count;
          if (b > index) fg += count;
        }
        cm.counts[g * (K + 1) + c] += fg;
        cm.counts[g * (K + 1)] += all - fg;
      }
    }
    return cm;
  }

  /** mIoU curve and the best threshold. `classNames`: K names, background first. */
  result(classNames?: readonly string[]): SweepResult {
    const scores = this.thresholds.map((_, j) => this.confusionAt(j).score(classNames));
    let bestIndex = 0;
    let bestMiou = -Infinity;
    scores.forEach((s, j) => {
      if (s.miou !== null && s.miou > bestMiou) {
        bestMiou = s.miou;
        bestIndex = j;
      }
    });
    return {
      thresholds: [...this.thresholds],
      miou: scores.map((s) => s.miou),
      best: { threshold: this.thresholds[bestIndex], index: bestIndex, result: scores[bestIndex] },
    };
  }
}

export interface SweepOptions {
  thresholds?: readonly number[];
  /** K names, background first. */
  classNames?: readonly string[];
}

/** Sweep thresholds over a stream of samples (CAMs may be produced lazily, one image at a time). */
export async function sweepThresholds(
  samples: Iterable<CamSample> | AsyncIterable<CamSample>,
  numClasses: number,
  options: SweepOptions = {},
): Promise<SweepResult> {
  const sweep = new ThresholdSweep(numClasses, options.thresholds);
  for await (const sample of samples) sweep.add(sample);
  return sweep.result(options.classNames);
}

export interface LeakFreeResult {
  /** Chosen on the fit split. */
  threshold: number;
  /** The curve on the fit split. */
  fit: SweepResult;
  /** Scores on the report split at the chosen threshold: the number to publish. */
  report: MiouResult;
  /**
   * The report split's own curve; its `best` is the leaky, oracle-threshold figure, shown only so the gap can be
   * stated, never to be reported as the result.
   */
  reportCurve: SweepResult;
}

/**
 * Choose t on `fit` (e.g. a small labelled held-out set) and score `report` at that t, as the SEAM author
 * suggests (SEAM#31), instead of picking t with the very ground truth being reported.
 */
export async function leakFreeThreshold(
  fit: Iterable<CamSample> | AsyncIterable<CamSample>,
  report: Iterable<CamSample> | AsyncIterable<CamSample>,
  numClasses: number,
  options: SweepOptions = {},
): Promise<LeakFreeResult> {
  const fitCurve = await sweepThresholds(fit, numClasses, options);
  const sweep = new ThresholdSweep(numClasses, options.thresholds);
  for await (const sample of report) sweep.add(sample);
  return {
    threshold: fitCurve.best.threshold,
    fit: fitCurve,
    report: sweep.confusionAt(fitCurve.best.index).score(options.classNames),
    reportCurve: sweep.result(options.classNames),
  };
}
