// The random walk of PSA/SEAM infer_aff.py (methods-reference.md sections 2.6, 3(e)):
//
//   A    = aff^beta on the pairs within the radius, symmetric, self-affinity 1   (stride-8 grid of the padded image)
//   T    = A / column sums
//   x    = [bg, cams] average-pooled by the stride, bg = (1 - max fg)^alpha
//   x_rw = x T^(2^logt), upsampled bilinearly to the image, argmax (optionally of a dense CRF started from x_rw)
//
// infer_aff.py builds A densely and squares T logt times; here T stays sparse (one weight plane per offset of
// the half-neighbourhood) and x is multiplied by it 2^logt times, which gives the same x T^(2^logt) up to
// rounding with a few million multiply-adds instead of dense HW x HW products.
import { F, type Tensor, tensor, tidy } from '../engine/index.js';
import type { LabelMap } from '../data/index.js';
import type { CamRecord } from '../cams/format.js';
import type { CrfParams } from './crf-presets.js';
import { type RgbImage, denseCrf, labelMap } from './crf.js';
import { UNCERTAIN, camsWithBackground, pairGrid, pairOffsets, planeIndexToMaskIds } from './affinity-labels.js';

/**
 * The affinities of one image on its h x w feature grid, as the affinity net gives them: for offset k of
 * `pairOffsets(radius)` and "from" cell (r, c) of `pairGrid(height, width, radius)`,
 * weights[(k * rows + r) * cols + c] = a(pixel (r, c + radius - 1), that pixel + offset k).
 */
export interface AffinityField {
  height: number;
  width: number;
  radius: number;
  weights: Float32Array;
}

export interface RandomWalkOptions {
  /** Power of the affinities (PSA/SEAM: 8). */
  beta: number;
  /** The walk runs 2^logt steps (PSA/SEAM: 6). */
  logt: number;
}

/** The sparse transition T = A^beta / column sums: pair weights, their pixel indices and 1 / column sums. */
export interface Transition {
  size: number;
  /** Pixel index of each pair's "from" end and its offset in pixels, per pair (k-major). */
  from: Int32Array;
  step: Int32Array;
  weight: Float64Array;
  /** 1 / sum_i A_ij (self-affinity 1 included). */
  invColumnSum: Float64Array;
}

export function transition(field: AffinityField, beta: number): Transition {
  const { height: h, width: w, radius } = field;
  const g = pairGrid(h, w, radius);
  const offsets = pairOffsets(radius);
  const cells = g.rows * g.cols;
  if (field.weights.length !== offsets.length * cells) {
    throw new RangeError(`affinity field: ${field.weights.length} weights, expected ${offsets.length} offsets x ${g.rows} x ${g.cols}`);
  }
  const pairs = offsets.length * cells;
  const from = new Int32Array(pairs);
  const step = new Int32Array(pairs);
  const weight = new Float64Array(pairs);
  const columnSum = new Float64Array(h * w).fill(1);
  offsets.forEach(([dy, dx], k) => {
    for (let r = 0; r < g.rows; r++) {
      for (let c = 0; c < g.cols; c++) {
        const i = (k * g.rows + r) * g.cols + c;
        const p = r * w + c + radius - 1;
        const a = field.weights[i]! ** beta;
        if (!(a >= 0)) throw new RangeError(`affinity field: weight ${field.weights[i]} at offset ${k}, cell (${r}, ${c}) is not a non-negative number`);
        from[i] = p;
        step[i] = dy * w + dx;
        weight[i] = a;
        columnSum[p] += a;
        columnSum[p + dy * w + dx] += a;
      }
    }
  });
  const invColumnSum = columnSum.map((s) => 1 / s);
  return { size: h * w, from, step, weight, invColumnSum };
}

/**
 * x T^steps for `channels` row vectors x (planar: channel k at k * size), one sparse product per step:
 * (x T)_j = (x_j + sum over pairs {i, j} of A_ij x_i) / sum_i A_ij.
 */
export function propagate(x: Float32Array, channels: number, t: Transition, steps: number): Float32Array {
  return propagateSnapshots(x, channels, t, [steps])[0]!;
}

/** x T^s for every s of `steps` (non-decreasing) from one walk: the shorter walks are its intermediate states. */
export function propagateSnapshots(x: Float32Array, channels: number, t: Transition, steps: readonly number[]): Float32Array[] {
  const n = t.size;
  if (x.length !== channels * n) throw new RangeError(`random walk: ${x.length} scores for ${channels} channels of ${n} cells`);
  steps.forEach((s, k) => {
    if (!Number.isInteger(s) || s < 0 || (k > 0 && s < steps[k - 1]!)) throw new RangeError(`random walk: step counts must be non-decreasing non-negative integers, got ${steps.join(', ')}`);
  });
  let cur = Float64Array.from(x);
  let next = new Float64Array(channels * n);
  const { from, step, weight, invColumnSum } = t;
  const snapshots: Float32Array[] = [];
  let done = 0;
  for (const target of steps) {
    // One channel at a time over the pair list: the fastest of the layouts measured (pixel-major, per-offset
    // bands, and engine ops over shifted planes, which pay one native call per offset and step).
    for (; done < target; done++) {
      next.set(cur); // self-affinity 1
      for (let c = 0; c < channels; c++) {
        const o = c * n;
        for (let i = 0; i < weight.length; i++) {
          const a = weight[i]!;
          const p = o + from[i]!;
          const q = p + step[i]!;
          next[p] += a * cur[q]!;
          next[q] += a * cur[p]!;
        }
        for (let p = 0; p < n; p++) next[o + p] *= invColumnSum[p]!;
      }
      [cur, next] = [next, cur];
    }
    snapshots.push(Float32Array.from(cur));
  }
  return snapshots;
}

/** x T^(2^logt) on the field's grid. */
export function randomWalk(scores: Float32Array, channels: number, field: AffinityField, o: RandomWalkOptions): Float32Array {
  if (!Number.isInteger(o.logt) || o.logt < 0) throw new RangeError(`logt must be a non-negative integer, got ${o.logt}`);
  return propagate(scores, channels, transition(field, o.beta), 2 ** o.logt);
}

/**
 * The walk's input: [bg, cams] at the image size with bg = (1 - max fg)^bgAlpha, zero-padded to a multiple of
 * the stride and average-pooled by it (infer_aff.py). Planar (L+1) x h x w. With several exponents the
 * background planes come first, one per exponent: [bg_1 .. bg_k, cams].
 */
export function walkInput(record: CamRecord, bgAlpha: number | readonly number[], stride: number): { scores: Float32Array; channels: number; height: number; width: number } {
  const { width: W, height: H } = record;
  const full = camsWithBackground(record, bgAlpha);
  const C = full.length / (W * H);
  const h = Math.ceil(H / stride);
  const w = Math.ceil(W / stride);
  const scores = new Float32Array(C * h * w);
  const area = stride * stride;
  for (let c = 0; c < C; c++) {
    for (let y = 0; y < H; y++) {
      const row = (c * h + Math.floor(y / stride)) * w;
      for (let x = 0; x < W; x++) scores[row + Math.floor(x / stride)] += full[(c * H + y) * W + x]! / area;
    }
  }
  return { scores, channels: C, height: h, width: w };
}

/**
 * Walked scores (planar C x h x w) to a label map of the image: bilinear upsampling by the stride (align corners
 * off, as torch.nn.Upsample), cropped to width x height, argmax (plane index; the first plane wins ties).
 *
 * `uncertainBelow` u > 0: a plane claims a pixel only where its score is at least u times that plane's peak in
 * the image; the pixel takes the best claiming plane, and 255 where none claims it. u = 0 is the plain argmax.
 *
 * `crf`: the argmax is taken of the dense CRF's posterior started from the upsampled scores (PSA's "rw + dCRF")
 * instead of the scores themselves; unclaimed pixels (u > 0) stay 255.
 */
export function walkedScoresToPlanes(
  scores: Float32Array, channels: number, grid: { height: number; width: number }, stride: number,
  image: { width: number; height: number }, uncertainBelow = 0, crf: WalkCrf | null = null,
): Uint8Array {
  const { height: h, width: w } = grid;
  if (scores.length !== channels * h * w) throw new RangeError(`walked scores: ${scores.length} values for ${channels} x ${h} x ${w}`);
  return tidy(() => {
    let up: Tensor = F.interpolate(tensor(scores, { shape: [1, channels, h, w] }), { size: [h * stride, w * stride], mode: 'bilinear', alignCorners: false });
    up = up.narrow(2, 0, image.height).narrow(3, 0, image.width);
    const claims = uncertainBelow > 0 ? up.ge(up.amax([2, 3], true).mul(uncertainBelow)) : null;
    if (crf) {
      if (crf.image.width !== image.width || crf.image.height !== image.height) {
        throw new RangeError(`random walk CRF: the image is ${crf.image.width}x${crf.image.height}, the scores ${image.width}x${image.height}`);
      }
      const q = denseCrf(crf.image, up.contiguous().dataSync() as Float32Array, channels, crf.params);
      const planes = labelMap(q, channels);
      if (claims) {
        const unclaimed = claims.any(1).logicalNot().contiguous().dataSync() as Uint8Array;
        for (let i = 0; i < planes.length; i++) if (unclaimed[i]) planes[i] = UNCERTAIN;
      }
      return planes;
    }
    const planes = claims
      ? up.maskedFill(claims.logicalNot(), -Infinity).argmax(1).maskedFill(claims.any(1).logicalNot(), UNCERTAIN)
      : up.argmax(1);
    return Uint8Array.from(planes.dataSync() as BigInt64Array, Number);
  });
}

/** A dense CRF on the walked scores: its settings and the RGB image it reads. */
export interface WalkCrf {
  params: CrfParams;
  image: RgbImage;
}

export interface WalkMaskOptions extends RandomWalkOptions {
  /** Background exponent of the walk's input (PSA/SEAM: 6). */
  bgAlpha: number;
  /** Feature stride of the field (8). */
  stride: number;
  uncertainBelow?: number;
  /** Dense CRF on the walked scores before the argmax (default none, as infer_aff.py). */
  crf?: WalkCrf | null;
}

/** The random-walk pseudo-mask of one image (mask ids: 0 background, class index + 1; 255 unclaimed). */
export function randomWalkMask(record: CamRecord, field: AffinityField, o: WalkMaskOptions): LabelMap {
  return randomWalkMaskGrid(record, field, { ...o, betas: [o.beta], logts: [o.logt], bgAlphas: [o.bgAlpha] })[0]!.mask;
}

/** The walk's free settings, each a list of candidates. */
export interface WalkGrid {
  betas: readonly number[];
  logts: readonly number[];
  bgAlphas: readonly number[];
}

/** One point of a WalkGrid and its pseudo-mask. */
export interface WalkGridMask {
  beta: number;
  logt: number;
  bgAlpha: number;
  mask: LabelMap;
}

/**
 * The pseudo-masks of one image for every (beta, logt, bgAlpha) of a grid, in that nesting (bgAlpha fastest),
 * from one walk per beta (used to choose the settings on the fit split): the walk is linear in its input, so every
 * exponent's background plane walks alongside the class planes, and the walk of 2^max(logts) steps passes through
 * every shorter one.
 */
export function randomWalkMaskGrid(
  record: CamRecord, field: AffinityField, o: Omit<WalkMaskOptions, 'beta' | 'logt' | 'bgAlpha'> & WalkGrid,
): WalkGridMask[] {
  const k = o.bgAlphas.length;
  if (k === 0) throw new RangeError('random walk: no background exponent');
  if (o.betas.length === 0 || o.logts.length === 0) throw new RangeError('random walk: no beta or no step count');
  o.logts.forEach((l) => {
    if (!Number.isInteger(l) || l < 0) throw new RangeError(`logt must be a non-negative integer, got ${l}`);
  });
  const input = walkInput(record, o.bgAlphas, o.stride);
  if (input.height !== field.height || input.width !== field.width) {
    throw new RangeError(`${record.id}: the CAMs pool to ${input.height}x${input.width} at stride ${o.stride}, the affinity field is ${field.height}x${field.width}`);
  }
  const cells = input.height * input.width;
  const L = record.labels.length;
  const ascending = [...new Set(o.logts)].sort((a, b) => a - b);
  const out: WalkGridMask[] = [];
  for (const beta of o.betas) {
    const snapshots = propagateSnapshots(input.scores, input.channels, transition(field, beta), ascending.map((l) => 2 ** l));
    for (const logt of o.logts) {
      const walked = snapshots[ascending.indexOf(logt)]!;
      o.bgAlphas.forEach((bgAlpha, i) => {
        const scores = new Float32Array((L + 1) * cells);
        scores.set(walked.subarray(i * cells, (i + 1) * cells));
        scores.set(walked.subarray(k * cells), cells);
        const planes = walkedScoresToPlanes(scores, L + 1, input, o.stride, record, o.uncertainBelow ?? 0, o.crf ?? null);
        out.push({ beta, logt, bgAlpha, mask: { width: record.width, height: record.height, data: planeIndexToMaskIds(planes, record.labels) } });
      });
    }
  }
  return out;
}
