/**
 * Fully connected CRF with Gaussian edge potentials (Krähenbühl & Koltun 2011), mirroring pydensecrf's
 * `DenseCRF2D` (`setUnaryEnergy`, `addPairwiseGaussian`, `addPairwiseBilateral`, `inference`) and its
 * `utils.unary_from_softmax`, so settings from Python code (methods reference §2.5) carry over as they are.
 *
 * Public arrays are label-major `[L][H][W]` like pydensecrf's; internally Q and messages are pixel-major
 * `[N][L]` so the lattice touches one contiguous run of labels per vertex.
 */
import { CRF_PRESETS, type CrfParams, type CrfPresetName, scaledToImage } from './crf-presets.js';
import { expNonPositive, logPositive } from './fast-math.js';
import { PairwiseKernel } from './pairwise.js';

export class DenseCRF2D {
  readonly width: number;
  readonly height: number;
  readonly nLabels: number;
  /** -unary, pixel-major; zeros until `setUnaryEnergy` (densecrf starts from a zero unary too). */
  private readonly negUnary: Float32Array;
  private readonly kernels: PairwiseKernel[] = [];

  constructor(width: number, height: number, nLabels: number) {
    for (const [name, v] of [['width', width], ['height', height], ['nLabels', nLabels]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
    }
    this.width = width;
    this.height = height;
    this.nLabels = nLabels;
    this.negUnary = new Float32Array(width * height * nLabels);
  }

  /** Unary energies (e.g. -log p), label-major `[L][H][W]`. */
  setUnaryEnergy(unary: Float32Array): void {
    const n = this.width * this.height;
    const nl = this.nLabels;
    if (unary.length !== n * nl) throw new RangeError(`unary has ${unary.length} values, expected ${nl}×${n}`);
    for (let l = 0; l < nl; l++) {
      for (let p = 0; p < n; p++) this.negUnary[p * nl + l] = -unary[l * n + p];
    }
  }

  /** Smoothness kernel over pixel positions: features (x/sxy, y/sxy). */
  addPairwiseGaussian(sxy: number, compat: number): void {
    checkSigma('sxy', sxy);
    const { width, height } = this;
    const f = new Float32Array(width * height * 2);
    for (let y = 0, p = 0; y < height; y++) {
      for (let x = 0; x < width; x++, p++) {
        f[2 * p] = x / sxy;
        f[2 * p + 1] = y / sxy;
      }
    }
    this.kernels.push(new PairwiseKernel(f, width * height, 2, compat));
  }

  /** Appearance kernel: features (x/sxy, y/sxy, r/srgb, g/srgb, b/srgb); `rgb` is HWC uint8. */
  addPairwiseBilateral(sxy: number, srgb: number, rgb: Uint8Array, compat: number): void {
    checkSigma('sxy', sxy);
    checkSigma('srgb', srgb);
    const { width, height } = this;
    if (rgb.length !== width * height * 3) {
      throw new RangeError(`image has ${rgb.length} bytes, expected ${height}×${width}×3`);
    }
    const f = new Float32Array(width * height * 5);
    for (let y = 0, p = 0; y < height; y++) {
      for (let x = 0; x < width; x++, p++) {
        f[5 * p] = x / sxy;
        f[5 * p + 1] = y / sxy;
        f[5 * p + 2] = rgb[3 * p] / srgb;
        f[5 * p + 3] = rgb[3 * p + 1] / srgb;
        f[5 * p + 4] = rgb[3 * p + 2] / srgb;
      }
    }
    this.kernels.push(new PairwiseKernel(f, width * height, 5, compat));
  }

  /**
   * Mean-field inference as densecrf's `DenseCRF::inference`: Q₀ = softmax(-U), then n times
   * Q = softmax(-U + Σ_k message_k(Q)). Returns Q label-major `[L][H][W]`.
   */
  inference(iterations: number): Float32Array {
    if (!Number.isInteger(iterations) || iterations < 0) {
      throw new RangeError(`iterations must be a non-negative integer, got ${iterations}`);
    }
    const nl = this.nLabels;
    const n = this.width * this.height;
    const q = new Float32Array(this.negUnary.length);
    softmaxRows(this.negUnary, nl, q, 0, n);
    const message = new Float32Array(Math.min(n, CHUNK_PIXELS) * nl);
    for (let it = 0; it < iterations; it++) {
      for (const k of this.kernels) k.spread(q, nl);
      // Messages are summed and normalised chunk by chunk, so they never leave the cache; overwriting q
      // is safe because every kernel has already splatted it.
      for (let start = 0; start < n; start += CHUNK_PIXELS) {
        const end = Math.min(n, start + CHUNK_PIXELS);
        message.set(this.negUnary.subarray(start * nl, end * nl));
        for (const k of this.kernels) k.addMessage(nl, message, start, end);
        softmaxRows(message, nl, q, start, end);
      }
    }
    return toLabelMajor(q, nl);
  }
}

/** Pixels per message chunk: 21 labels × 2048 × 4 B = 172 KB, about an L2 cache. */
const CHUNK_PIXELS = 2048;

/**
 * pydensecrf `utils.unary_from_softmax(prob, clip=clip)`: -log(clip(p, clip, 1)), same `[L][H][W]` layout.
 * Inputs need not sum to one (SEAM feeds stacked CAM scores).
 */
export function unaryFromProbabilities(prob: Float32Array, clip = 1e-5): Float32Array {
  const u = new Float32Array(prob.length);
  for (let i = 0; i < prob.length; i++) u[i] = -logPositive(Math.min(Math.max(prob[i], clip), 1));
  return u;
}

/** Per-pixel argmax of label-major `[L][H][W]` scores (first label wins ties, as Eigen's maxCoeff). */
export function labelMap(q: Float32Array, nLabels: number): Uint8Array {
  if (nLabels < 1 || nLabels > 256 || q.length % nLabels !== 0) {
    throw new RangeError(`labelMap needs 1..256 labels dividing the length ${q.length}, got ${nLabels}`);
  }
  const n = q.length / nLabels;
  const best = q.slice(0, n);
  const labels = new Uint8Array(n);
  for (let l = 1; l < nLabels; l++) {
    const b = l * n;
    for (let p = 0; p < n; p++) {
      if (q[b + p] > best[p]) {
        best[p] = q[b + p];
        labels[p] = l;
      }
    }
  }
  return labels;
}

export interface RgbImage {
  /** HWC uint8 RGB. */
  readonly rgb: Uint8Array;
  readonly width: number;
  readonly height: number;
}

/**
 * One-call dense CRF as the WSSS codebases run it (SEAM `crf_inference`, deeplab-pytorch `dense_crf`):
 * unary from probabilities, Gaussian then bilateral kernel, mean-field. `prob` and the result are `[L][H][W]`.
 * Spatial widths are scaled to the image when `params.referenceSize` is set (`scaledToImage`).
 */
export function denseCrf(
  image: RgbImage,
  prob: Float32Array,
  nLabels: number,
  params: CrfParams | CrfPresetName,
): Float32Array {
  const p = scaledToImage(typeof params === 'string' ? CRF_PRESETS[params] : params, image.width, image.height);
  const crf = new DenseCRF2D(image.width, image.height, nLabels);
  crf.setUnaryEnergy(unaryFromProbabilities(prob, p.clip));
  crf.addPairwiseGaussian(p.gaussian.sxy, p.gaussian.compat);
  crf.addPairwiseBilateral(p.bilateral.sxy, p.bilateral.srgb, image.rgb, p.bilateral.compat);
  return crf.inference(p.iterations);
}

function checkSigma(name: string, v: number): void {
  if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`${name} must be a positive number, got ${v}`);
}

/**
 * Rows start..end-1 of `out` = softmax of rows 0..end-start-1 of `scores` (both pixel-major, `nl` per
 * row), max-subtracted like densecrf's expAndNormalize.
 */
function softmaxRows(scores: Float32Array, nl: number, out: Float32Array, start: number, end: number): void {
  for (let b = 0, o = start * nl; o < end * nl; b += nl, o += nl) {
    let mx = scores[b];
    for (let k = 1; k < nl; k++) mx = Math.max(mx, scores[b + k]); // branch-free, unlike `if (s > mx)`
    let sum = 0;
    for (let k = 0; k < nl; k++) {
      const e = expNonPositive(scores[b + k] - mx);
      out[o + k] = e;
      sum += e;
    }
    const inv = 1 / sum;
    for (let k = 0; k < nl; k++) out[o + k] *= inv;
  }
}

function toLabelMajor(pixelMajor: Float32Array, nl: number): Float32Array {
  const n = pixelMajor.length / nl;
  const out = new Float32Array(pixelMajor.length);
  for (let p = 0; p < n; p++) {
    for (let l = 0; l < nl; l++) out[l * n + p] = pixelMajor[p * nl + l];
  }
  return out;
}
