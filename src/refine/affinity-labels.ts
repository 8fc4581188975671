// AffinityNet's training labels from CAMs (methods-reference.md section 2.6; PSA/SEAM infer_SEAM.py
// `_crf_with_alpha`, voc12/data.py `VOC12AffDataset` and `ExtractAffinityLabelInRadius`).
//
//   la = argmax CRF([(1 - max fg)^alphaLow,  cams])   big background score: its foreground is reliable
//   ha = argmax CRF([(1 - max fg)^alphaHigh, cams])   small background score: its background is reliable
//   label = la;  label[la == bg] = 255;  label[ha == bg] = 0
//
// Labels are mask ids (0 background, class index + 1; 255 uncertain). During training they are brought to the
// feature grid (`labelsOnFeatureGrid`) and turned into three kinds of pixel pairs within a radius
// (`affinityPairLabels`): bg_pos (both background), fg_pos (same foreground class), neg (different labels, both
// certain).
import { F, type Tensor, oneHot, stack, where } from '../engine/index.js';
import type { LabelMap, RgbImage } from '../data/index.js';
import type { CamRecord } from '../cams/format.js';
import { denseCrf, labelMap } from './crf.js';
import type { CrfParams } from './crf-presets.js';

export const UNCERTAIN = 255;

export interface AffinityLabelOptions {
  /** Background exponent of the la map (PSA/SEAM: 4). */
  alphaLow: number;
  /** Background exponent of the ha map (PSA/SEAM: 24). */
  alphaHigh: number;
  /** Dense CRF settings (PSA preset, 10 iterations). */
  crf: CrfParams;
}

function checkRecord(record: CamRecord): number {
  const plane = record.width * record.height;
  if (record.cams.length !== record.labels.length * plane) {
    throw new RangeError(`${record.id}: ${record.cams.length} CAM values for ${record.labels.length} labels of ${record.width}x${record.height}`);
  }
  return plane;
}

/**
 * The planes [bg, cam_1 .. cam_L] (label-major, (L+1) x H x W) with bg = (1 - max_c cam_c)^alpha, as
 * infer_SEAM.py `_crf_with_alpha` and infer_aff.py build them. An image without labels is all background.
 * With several exponents there is one background plane per exponent, in front: [bg_1 .. bg_k, cams].
 */
export function camsWithBackground(record: CamRecord, alpha: number | readonly number[]): Float32Array {
  const plane = checkRecord(record);
  const L = record.labels.length;
  const alphas = typeof alpha === 'number' ? [alpha] : alpha;
  const k = alphas.length;
  const out = new Float32Array((k + L) * plane);
  out.set(record.cams, k * plane);
  for (let i = 0; i < plane; i++) {
    let m = 0;
    for (let c = 0; c < L; c++) m = Math.max(m, record.cams[c * plane + i]!);
    for (let b = 0; b < k; b++) out[b * plane + i] = (1 - m) ** alphas[b]!;
  }
  return out;
}

/**
 * The background exponent whose score (1 - m)^alpha equals a foreground score m exactly at m = t, so that the argmax
 * of camsWithBackground(record, alpha) is the seed rule "foreground where max cam > t": alpha = ln t / ln(1 - t).
 * PSA/SEAM's random-walk alpha 6 corresponds to t = 0.222, its affinity-label alphas 4 and 24 to 0.276 and 0.092.
 */
export function alphaForThreshold(t: number): number {
  if (!(t > 0 && t < 1)) throw new RangeError(`a background exponent needs a threshold strictly between 0 and 1, got ${t}`);
  return Math.log(t) / Math.log(1 - t);
}

/** Plane indices of [bg, labels...] to mask ids: 0 stays background, plane k is class labels[k - 1] + 1, 255 stays. */
export function planeIndexToMaskIds(planes: Uint8Array, labels: readonly number[]): Uint8Array {
  const ids = new Uint8Array(256).fill(UNCERTAIN);
  [0, ...labels.map((l) => l + 1)].forEach((id, k) => { ids[k] = id; });
  const out = new Uint8Array(planes.length);
  for (let i = 0; i < planes.length; i++) out[i] = ids[planes[i]!]!;
  return out;
}

/** The CRF'd label map (mask ids) of one background exponent: argmax of the CRF marginals. */
export function crfLabelMap(image: RgbImage, record: CamRecord, alpha: number, crf: CrfParams): Uint8Array {
  if (image.width !== record.width || image.height !== record.height) {
    throw new RangeError(`${record.id}: CAM is ${record.width}x${record.height} but the image ${image.width}x${image.height}`);
  }
  const L = record.labels.length;
  const q = denseCrf({ rgb: image.data, width: image.width, height: image.height }, camsWithBackground(record, alpha), L + 1, crf);
  return planeIndexToMaskIds(labelMap(q, L + 1), record.labels);
}

/** PSA's combination: start from la; where la says background the label is uncertain; where ha does, background. */
export function combineAffinityLabels(la: Uint8Array, ha: Uint8Array): Uint8Array {
  if (la.length !== ha.length) throw new RangeError(`la has ${la.length} pixels, ha ${ha.length}`);
  const out = la.slice();
  for (let i = 0; i < out.length; i++) {
    if (la[i] === 0) out[i] = UNCERTAIN;
    if (ha[i] === 0) out[i] = 0;
  }
  return out;
}

/** The affinity label map of one image (full resolution, mask ids, 255 uncertain). */
export function affinityLabelMap(image: RgbImage, record: CamRecord, o: AffinityLabelOptions): LabelMap {
  const la = crfLabelMap(image, record, o.alphaLow, o.crf);
  const ha = crfLabelMap(image, record, o.alphaHigh, o.crf);
  return { width: record.width, height: record.height, data: combineAffinityLabels(la, ha) };
}

/**
 * The half-neighbourhood within `radius` on the feature grid, [dy, dx], in PSA's order: (0, 1..r-1), then for
 * dy = 1..r-1 every dx in -(r-1)..r-1 with dx² + dy² < r². Radius 5 gives 34 offsets; each unordered pair of
 * pixels closer than r appears once.
 */
export function pairOffsets(radius: number): [number, number][] {
  if (!Number.isInteger(radius) || radius < 2) throw new RangeError(`pair radius must be an integer >= 2, got ${radius}`);
  const out: [number, number][] = [];
  for (let dx = 1; dx < radius; dx++) out.push([0, dx]);
  for (let dy = 1; dy < radius; dy++) {
    for (let dx = -radius + 1; dx < radius; dx++) if (dx * dx + dy * dy < radius * radius) out.push([dy, dx]);
  }
  return out;
}

/**
 * Where pairs start on an h x w grid, as PSA crops it (`get_indices_of_pairs`): the "from" pixels are rows
 * 0..h-r and columns r-1..w-r, so that every offset stays inside the grid. Pixels of the bottom r-1 rows and
 * the outer r-1 columns take part only as the far end of a pair.
 */
export interface PairGrid {
  height: number;
  width: number;
  radius: number;
  /** Rows and columns of "from" pixels: rows [0, rows), columns [radius - 1, radius - 1 + cols). */
  rows: number;
  cols: number;
}

export function pairGrid(height: number, width: number, radius: number): PairGrid {
  const rows = height - (radius - 1);
  const cols = width - 2 * (radius - 1);
  if (rows < 1 || cols < 1) {
    throw new RangeError(`feature grid ${height}x${width} is too small for pairs within radius ${radius} ` +
      `(needs at least ${radius} rows and ${2 * radius - 1} columns): use a larger crop or image`);
  }
  return { height, width, radius, rows, cols };
}

/** The "to" window of one offset (or the "from" window for [0, 0]) of N x ... x h x w maps: N x ... x rows x cols. */
export function pairWindow(x: Tensor, g: PairGrid, [dy, dx]: readonly [number, number]): Tensor {
  const d = x.ndim;
  return x.narrow(d - 2, dy, g.rows).narrow(d - 1, g.radius - 1 + dx, g.cols);
}

/**
 * Pixel labels (N x H x W int64, 255 uncertain or padding) brought to the h x w feature grid by a vote in each
 * stride x stride cell: the label most of the cell's real pixels carry (the uncertain label 255 counts as a
 * label; ties go to the lower id, then to 255); a cell with no real pixel (crop padding, `valid` false) is 255.
 *
 * PSA average-pools the la and ha CRF score maps by 8 and takes their argmax before combining them; with label
 * maps stored as PNGs this vote is the counterpart, and, as there, padding casts no vote.
 */
export function labelsOnFeatureGrid(
  masks: Tensor, valid: Tensor | undefined,
  o: { stride: number; height: number; width: number; numClasses: number },
): Tensor {
  const { stride, height: h, width: w } = o;
  if (masks.ndim !== 3) throw new RangeError(`affinity labels: expected N x H x W masks, got shape [${masks.shape}]`);
  const K = o.numClasses + 1; // mask ids 0..numClasses; channel K is "uncertain"
  const labels = masks.long();
  const certain = labels.ne(UNCERTAIN);
  const top = labels.maskedFill(certain.logicalNot(), 0).max().item();
  if (top >= K) throw new RangeError(`affinity labels: mask id ${top} is not a class id (${o.numClasses} classes) nor 255`);
  let votes = oneHot(where(certain, labels, K), K + 1).float();
  if (valid) votes = votes.mul(valid.unsqueeze(3).float());
  votes = votes.permute(0, 3, 1, 2);
  const [H, W] = [masks.size(1), masks.size(2)];
  const [Hc, Wc] = [h * stride, w * stride];
  // Cells past the crop (a size that is not a multiple of the stride) get no votes; pixels past the grid none.
  votes = F.pad(votes, [0, Math.max(0, Wc - W), 0, Math.max(0, Hc - H)]).narrow(2, 0, Hc).narrow(3, 0, Wc);
  const pooled = F.avgPool2d(votes, stride);
  const best = pooled.argmax(1);
  const none = pooled.sum(1).le(0);
  return best.maskedFill(best.eq(K).logicalOr(none), UNCERTAIN);
}

export interface PairLabels {
  /** N x P x rows x cols float (1/0), P = offsets: both ends background. */
  bgPos: Tensor;
  /** Both ends the same foreground class. */
  fgPos: Tensor;
  /** Different labels, both certain. */
  neg: Tensor;
}

/** PSA's `ExtractAffinityLabelInRadius` on N x h x w grid labels. */
export function affinityPairLabels(labels: Tensor, radius: number): PairLabels {
  if (labels.ndim !== 3) throw new RangeError(`affinity pairs: expected N x h x w labels, got shape [${labels.shape}]`);
  const g = pairGrid(labels.size(1), labels.size(2), radius);
  const from = pairWindow(labels, g, [0, 0]).unsqueeze(1);
  const to = stack(pairOffsets(radius).map((o) => pairWindow(labels, g, o)), 1);
  const pos = from.eq(to);
  const bothCertain = from.lt(UNCERTAIN).logicalAnd(to.lt(UNCERTAIN));
  return {
    bgPos: pos.logicalAnd(from.eq(0)).float(),
    fgPos: pos.logicalAnd(from.ne(0)).logicalAnd(bothCertain).float(),
    neg: pos.logicalNot().logicalAnd(bothCertain).float(),
  };
}

/** Shares of the pixels of label maps that are uncertain, background and foreground. */
export interface LabelShares {
  pixels: number;
  uncertain: number;
  background: number;
  foreground: number;
}

export class LabelShareCounter {
  /** Pixels, uncertain pixels, background pixels (one array, so that counts of several processes can be summed). */
  readonly counts = new Float64Array(3);

  add(labels: Uint8Array): void {
    let uncertain = 0;
    let background = 0;
    for (const v of labels) {
      if (v === UNCERTAIN) uncertain++;
      else if (v === 0) background++;
    }
    const c = this.counts;
    c.set([c[0]! + labels.length, c[1]! + uncertain, c[2]! + background]);
  }

  get shares(): LabelShares {
    const [pixels = 0, uncertain = 0, background = 0] = this.counts;
    const n = pixels || 1;
    return { pixels, uncertain: uncertain / n, background: background / n, foreground: (pixels - uncertain - background) / n };
  }
}
