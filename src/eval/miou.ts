/**
 * Confusion-matrix segmentation metrics (methods reference, section 1.2).
 *
 * - Counts are accumulated over the whole split, never averaged per image.
 * - Pixels whose ground truth is 255 are dropped.
 * - A prediction outside [0, K) (e.g. 255 "unsure" in a pseudo-mask) on a scored pixel is NOT ignored: it counts
 *   as a miss for the ground-truth class (in T but no class's P), exactly as SEAM's TP/P/T evaluator does.
 *   Ignoring such pixels would let a method raise its score by abstaining. (IRN instead rewrites 255 to
 *   background before scoring; do that explicitly if that is the protocol being reproduced.)
 * - IoU_c = TP / (T + P - TP); mIoU is the nan-mean over the classes present, i.e. classes with at least one
 *   ground-truth or predicted pixel (those with a defined IoU, as numpy's nanmean in IRN's evaluator). A class
 *   predicted but absent from the ground truth therefore counts, with IoU 0.
 */
import { IGNORE_INDEX } from '../data/mask.js';

export interface ClassScore {
  /** Mask id (0 = background). */
  id: number;
  name: string;
  /** null when the class has no ground-truth and no predicted pixel. */
  iou: number | null;
  /** TP / P, null when nothing was predicted as this class. */
  precision: number | null;
  /** TP / T, null when the class has no ground-truth pixel. */
  recall: number | null;
  tp: number;
  gtPixels: number;
  predPixels: number;
}

/** JSON-serialisable scores (undefined values are null, never NaN). Fractions in [0, 1]. */
export interface MiouResult {
  numClasses: number;
  miou: number | null;
  /** Classes that entered the mean. */
  presentClasses: number;
  pixelAccuracy: number | null;
  /** Pixels scored (ground truth not 255). */
  scoredPixels: number;
  /** Scored pixels predicted outside [0, K) (counted as misses). */
  unpredictedPixels: number;
  classes: ClassScore[];
}

/** Segmentation class names for a dataset's foreground classes: background first. */
export function withBackground(classes: readonly string[]): string[] {
  return ['background', ...classes];
}

export class ConfusionMatrix {
  /**
   * Row = ground-truth class (K rows), column = predicted class, with one extra last column for predictions
   * outside [0, K). Float64 so that counts stay exact far beyond 2^32 pixels.
   */
  readonly counts: Float64Array;
  private readonly cols: number;

  /** @param numClasses K, background included (21 for VOC). */
  constructor(readonly numClasses: number) {
    if (!Number.isInteger(numClasses) || numClasses < 1 || numClasses > IGNORE_INDEX) {
      throw new RangeError(`numClasses must be an integer in 1..${IGNORE_INDEX}, got ${numClasses}`);
    }
    this.cols = numClasses + 1;
    this.counts = new Float64Array(numClasses * this.cols);
  }

  /**
   * Add one image. `pred` and `gt` are label maps of equal length; `id` names the image in errors.
   * A ground-truth value that is neither a class id nor 255 is an error: it means the wrong K.
   */
  add(pred: Uint8Array, gt: Uint8Array, id = 'image'): void {
    if (pred.length !== gt.length) throw new RangeError(`${id}: prediction has ${pred.length} pixels, ground truth ${gt.length}`);
    const K = this.numClasses;
    const cols = this.cols;
    const counts = this.counts;
    for (let i = 0; i < gt.length; i++) {
      const g = gt[i];
      if (g === IGNORE_INDEX) continue;
      if (g >= K) throw new RangeError(`${id}: ground-truth value ${g} at pixel ${i} is not a class id (K = ${K}) nor ${IGNORE_INDEX}`);
      const p = pred[i];
      counts[g * cols + (p < K ? p : K)]++;
    }
  }

  /** Add another matrix's counts (e.g. from a parallel worker). */
  merge(other: ConfusionMatrix): void {
    if (other.numClasses !== this.numClasses) throw new RangeError(`cannot merge K=${other.numClasses} into K=${this.numClasses}`);
    for (let i = 0; i < this.counts.length; i++) this.counts[i] += other.counts[i];
  }

  /** Pixels with ground truth `gt` predicted as `pred` (`pred === K` reads the out-of-range column). */
  at(gt: number, pred: number): number {
    return this.counts[gt * this.cols + pred];
  }

  /** Per-class and mean scores. `classNames` has K names (background first); default "class <id>". */
  score(classNames?: readonly string[]): MiouResult {
    const K = this.numClasses;
    if (classNames && classNames.length !== K) throw new RangeError(`${classNames.length} class names for K = ${K}`);
    const classes: ClassScore[] = [];
    let iouSum = 0;
    let present = 0;
    let tpTotal = 0;
    let scored = 0;
    let unpredicted = 0;
    for (let c = 0; c < K; c++) {
      let gtPixels = 0;
      let predPixels = 0;
      for (let k = 0; k <= K; k++) gtPixels += this.at(c, k);
      for (let r = 0; r < K; r++) predPixels += this.at(r, c);
      const tp = this.at(c, c);
      const union = gtPixels + predPixels - tp;
      const iou = union > 0 ? tp / union : null;
      if (iou !== null) {
        iouSum += iou;
        present++;
      }
      tpTotal += tp;
      scored += gtPixels;
      unpredicted += this.at(c, K);
      classes.push({
        id: c,
        name: classNames?.[c] ?? `class ${c}`,
        iou,
        precision: predPixels > 0 ? tp / predPixels : null,
        recall: gtPixels > 0 ? tp / gtPixels : null,
        tp,
        gtPixels,
        predPixels,
      });
    }
    return {
      numClasses: K,
      miou: present > 0 ? iouSum / present : null,
      presentClasses: present,
      pixelAccuracy: scored > 0 ? tpTotal / scored : null,
      scoredPixels: scored,
      unpredictedPixels: unpredicted,
      classes,
    };
  }
}

/** A fixed-width text table of a result, percentages with two decimals, "-" where undefined. */
export function formatMiouTable(result: MiouResult): string {
  const pct = (v: number | null) => (v === null ? '-' : (100 * v).toFixed(2));
  const nameWidth = Math.max(5, ...result.classes.map((c) => c.name.length));
  const row = (cells: string[]) => cells[0].padEnd(nameWidth) + cells.slice(1).map((s) => s.padStart(12)).join('');
  const lines = [row(['class', 'IoU %', 'precision %', 'recall %', 'gt px', 'pred px'])];
  for (const c of result.classes) {
    lines.push(row([c.name, pct(c.iou), pct(c.precision), pct(c.recall), String(c.gtPixels), String(c.predPixels)]));
  }
  lines.push(
    `mIoU ${pct(result.miou)} % over ${result.presentClasses} of ${result.numClasses} classes present ` +
      `(present = has ground-truth or predicted pixels); pixel accuracy ${pct(result.pixelAccuracy)} %`,
  );
  if (result.unpredictedPixels > 0) {
    lines.push(`${result.unpredictedPixels} scored pixels had a prediction outside [0, ${result.numClasses}) (counted as misses)`);
  }
  return lines.join('\n');
}
