// IRN's pseudo-labels (Ahn, Cho & Kwak, CVPR 2019; methods-reference.md section 2.7; jiwoon-ahn/irn
// step/cam_to_ir_label.py, misc/indexing.py, step/make_sem_seg_labels.py), the parts that run per image on the CPU:
//
//   IR labels   fg = CRF(argmax [conf_fg, cams]),  bg = CRF(argmax [conf_bg, cams])  (CRF from hard labels)
//               label = fg;  label[fg == bg_id] = 255;  label[fg == bg == bg_id] = 0
//   affinity    a_ij = 1 - max of the class boundary map B along the path from i to j   (pairs within a radius)
//   walk        x = (cams pooled to the boundary grid)^p, times (1 - B);  x T^(2^expTimes) with T = A^beta / column sums
//               (p = 1 in IRN; AMR's make_sem_seg_labels.py raises the CAMs to 1.5 first)
//   labels      upsampled, divided by its maximum, background plane = a constant threshold, argmax
//
// The walk reuses the random walk of random-walk.ts on a grid padded with boundary 1 (affinity 0), so every real
// pixel is the "from" end of all its pairs, as IRN's padded PathIndex makes it.
import { F, tensor, tidy } from '../engine/index.js';
import type { LabelMap } from '../data/index.js';
import type { CamRecord } from '../cams/format.js';
import type { CrfParams } from './crf-presets.js';
import { type RgbImage, denseCrf, labelMap } from './crf.js';
import { UNCERTAIN, pairGrid, pairOffsets, planeIndexToMaskIds } from './affinity-labels.js';
import { type AffinityField, propagateSnapshots, transition, walkInput } from './random-walk.js';

/** pydensecrf's `unary_from_labels` certainty (IRN's crf_inference_label: 0.7). */
export const LABEL_CONFIDENCE = 0.7;

/**
 * A dense CRF started from hard labels (plane indices 0..n-1), as IRN's `crf_inference_label`: the unary gives each
 * pixel's label probability `confidence` and the other labels an equal share of the rest. Returns plane indices.
 */
export function crfFromLabels(image: RgbImage, planes: Uint8Array, n: number, crf: CrfParams, confidence = LABEL_CONFIDENCE): Uint8Array {
  const plane = image.width * image.height;
  if (planes.length !== plane) throw new RangeError(`CRF from labels: ${planes.length} labels for a ${image.width}x${image.height} image`);
  if (n === 1) return new Uint8Array(plane);
  const prob = new Float32Array(n * plane).fill((1 - confidence) / (n - 1));
  for (let i = 0; i < plane; i++) prob[planes[i]! * plane + i] = confidence;
  return labelMap(denseCrf(image, prob, n, crf), n);
}

/**
 * argmax over [threshold, cam_1 .. cam_L] per pixel (the threshold wins ties, as np.argmax's first maximum; it is
 * compared in float32, as IRN pads its float32 CAMs with it).
 */
export function thresholdArgmax(record: CamRecord, threshold: number): Uint8Array {
  const plane = record.width * record.height;
  const L = record.labels.length;
  const out = new Uint8Array(plane);
  const t = Math.fround(threshold);
  for (let i = 0; i < plane; i++) {
    let best = t;
    for (let c = 0; c < L; c++) {
      const v = record.cams[c * plane + i]!;
      if (v > best) { best = v; out[i] = c + 1; }
    }
  }
  return out;
}

export interface IrLabelOptions {
  /** Foreground confidence threshold (IRN: 0.30; AMR: 0.60). */
  confFg: number;
  /** Background confidence threshold (IRN: 0.05; AMR: 0.33). */
  confBg: number;
  crf: CrfParams;
}

/** IRN's inter-pixel relation labels of one image (mask ids: 0 background, class index + 1, 255 uncertain). */
export function irLabelMap(image: RgbImage, record: CamRecord, o: IrLabelOptions): LabelMap {
  if (image.width !== record.width || image.height !== record.height) {
    throw new RangeError(`${record.id}: CAM is ${record.width}x${record.height} but the image ${image.width}x${image.height}`);
  }
  if (!(o.confBg <= o.confFg)) throw new RangeError(`IR labels: confBg (${o.confBg}) must not exceed confFg (${o.confFg})`);
  const n = record.labels.length + 1;
  const fg = crfFromLabels(image, thresholdArgmax(record, o.confFg), n, o.crf);
  const bg = crfFromLabels(image, thresholdArgmax(record, o.confBg), n, o.crf);
  const planes = fg.slice();
  for (let i = 0; i < planes.length; i++) {
    if (fg[i] === 0) planes[i] = bg[i] === 0 ? 0 : UNCERTAIN;
  }
  return { width: record.width, height: record.height, data: planeIndexToMaskIds(planes, record.labels) };
}

/**
 * The cells on the way from a pixel to the one at offset [dy, dx] (both ends included): those of the bounding box
 * whose distance to the line through both is below one cell (misc/indexing.py `get_search_paths_dst`).
 */
export function pathPoints([dy, dx]: readonly [number, number]): [number, number][] {
  const lengthSq = dy * dy + dx * dx;
  const out: [number, number][] = [];
  for (let y = Math.min(0, dy); y <= Math.max(0, dy); y++) {
    for (let x = Math.min(0, dx); x <= Math.max(0, dx); x++) {
      if ((dy * x - dx * y) ** 2 / lengthSq < 1) out.push([y, x]);
    }
  }
  return out;
}

/**
 * The affinity field of a class boundary map (h x w, values in [0, 1]) for pairs within `radius`: the map is
 * padded with boundary 1 (radius - 1 cells left, right and below) so that every real cell starts all its pairs;
 * a pair's affinity is 1 - the largest boundary value on its path. The field is on the padded grid.
 */
export function boundaryAffinityField(boundary: Float32Array, height: number, width: number, radius: number): AffinityField {
  if (boundary.length !== height * width) throw new RangeError(`boundary map: ${boundary.length} values for ${height}x${width}`);
  const r1 = radius - 1;
  const H = height + r1;
  const W = width + 2 * r1;
  const padded = new Float32Array(H * W).fill(1);
  for (let y = 0; y < height; y++) padded.set(boundary.subarray(y * width, (y + 1) * width), y * W + r1);
  const g = pairGrid(H, W, radius);
  const offsets = pairOffsets(radius);
  const weights = new Float32Array(offsets.length * g.rows * g.cols);
  offsets.forEach((offset, k) => {
    const path = pathPoints(offset).map(([py, px]) => py * W + px + r1);
    for (let r = 0; r < g.rows; r++) {
      for (let c = 0; c < g.cols; c++) {
        const p = r * W + c;
        let m = 0;
        for (const d of path) m = Math.max(m, padded[p + d]!);
        weights[(k * g.rows + r) * g.cols + c] = 1 - m;
      }
    }
  });
  return { height: H, width: W, radius, weights };
}

export interface IrnWalkOptions {
  /** Pair radius of the walk on the boundary grid (IRN: 5). */
  radius: number;
  /** Power of the affinities (IRN: 10). */
  beta: number;
  /** The walk runs 2^expTimes steps (IRN: 8). */
  expTimes: number;
  /** Stride of the boundary grid (IRN: 4). */
  stride: number;
  /** Power of the pooled CAMs before the walk (IRN: 1, the default; AMR: 1.5). */
  camExponent?: number;
}

/**
 * The walked class scores of one image on its boundary grid (planar L x h x w): the CAMs average-pooled by the
 * stride, raised to camExponent, times (1 - boundary), propagated by the walk on the boundary-derived affinities.
 */
export function irnWalk(record: CamRecord, boundary: Float32Array, grid: { height: number; width: number }, o: IrnWalkOptions): Float32Array {
  return irnWalkSnapshots(record, boundary, grid, o, [o.expTimes])[0]!;
}

/**
 * irnWalk after 2^e steps for every e of `expTimes` (non-decreasing), from one walk: the shorter walks are the
 * longest one's intermediate states (IRN squares T; stepping through its powers gives the same scores).
 */
export function irnWalkSnapshots(
  record: CamRecord, boundary: Float32Array, grid: { height: number; width: number }, o: Omit<IrnWalkOptions, 'expTimes'>,
  expTimes: readonly number[],
): Float32Array[] {
  expTimes.forEach((e) => {
    if (!Number.isInteger(e) || e < 0) throw new RangeError(`IRN walk: expTimes must be non-negative integers, got ${expTimes.join(', ')}`);
  });
  const input = walkInput(record, [], o.stride);
  const { height: h, width: w } = grid;
  if (input.height !== h || input.width !== w) {
    throw new RangeError(`${record.id}: the CAMs pool to ${input.height}x${input.width} at stride ${o.stride}, the boundary map is ${h}x${w}`);
  }
  const L = input.channels;
  if (L === 0) return expTimes.map(() => new Float32Array(0));
  const p = o.camExponent ?? 1;
  if (!(p > 0)) throw new RangeError(`IRN walk: camExponent must be positive, got ${p}`);
  const field = boundaryAffinityField(boundary, h, w, o.radius);
  const r1 = o.radius - 1;
  const [H, W] = [field.height, field.width];
  const x = new Float32Array(L * H * W);
  for (let c = 0; c < L; c++) {
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < w; xx++) {
        const v = input.scores[(c * h + y) * w + xx]!;
        x[(c * H + y) * W + xx + r1] = (p === 1 ? v : Math.max(v, 0) ** p) * (1 - boundary[y * w + xx]!);
      }
    }
  }
  return propagateSnapshots(x, L, transition(field, o.beta), expTimes.map((e) => 2 ** e)).map((walked) => {
    const out = new Float32Array(L * h * w);
    for (let c = 0; c < L; c++) {
      for (let y = 0; y < h; y++) out.set(walked.subarray((c * H + y) * W + r1, (c * H + y) * W + r1 + w), (c * h + y) * w);
    }
    return out;
  });
}

/**
 * Walked scores (planar L x h x w) to one mask per background threshold: upsampled bilinearly by the stride (align
 * corners off), cropped to the image, divided by their maximum, a constant background plane at the threshold, argmax
 * (make_sem_seg_labels.py). Mask ids: 0 background, class index + 1.
 */
export function irnMasks(record: CamRecord, walked: Float32Array, grid: { height: number; width: number }, stride: number, bgThresholds: readonly number[]): LabelMap[] {
  const { width: W, height: H } = record;
  const L = record.labels.length;
  const { height: h, width: w } = grid;
  if (walked.length !== L * h * w) throw new RangeError(`${record.id}: ${walked.length} walked scores for ${L} labels of ${h}x${w}`);
  if (L === 0) return bgThresholds.map(() => ({ width: W, height: H, data: new Uint8Array(W * H) }));
  return tidy(() => {
    let up = F.interpolate(tensor(walked, { shape: [1, L, h, w] }), { size: [h * stride, w * stride], mode: 'bilinear', alignCorners: false })
      .narrow(2, 0, H).narrow(3, 0, W);
    const max = up.max().item();
    if (max > 0) up = up.div(max);
    const scores = up.contiguous().dataSync() as Float32Array;
    const plane = W * H;
    return bgThresholds.map((t) => {
      const planes = new Uint8Array(plane);
      for (let i = 0; i < plane; i++) {
        let best = Math.fround(t);
        for (let c = 0; c < L; c++) {
          const v = scores[c * plane + i]!;
          if (v > best) { best = v; planes[i] = c + 1; }
        }
      }
      return { width: W, height: H, data: planeIndexToMaskIds(planes, record.labels) };
    });
  });
}
