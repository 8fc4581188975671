/**
 * Fully connected CRF with Gaussian edge potentials (Krähenbühl & Koltun 2011), mirroring pydensecrf's
 * `DenseCRF2D` (`setUnaryEnergy`, `addPairwiseGaussian`, `addPairwiseBilateral`, `inference`) and its
 * `utils.unary_from_softmax`, so settings from Python code (methods reference §2.5) carry over as they are.
 *
 * Public arrays are label-major `[L][H][W]` like pydensecrf's; internally Q and messages are pixel-major
 * `[N][L]` tensors so the lattice touches one contiguous run of labels per vertex. A DenseCRF2D holds native
 * memory (the unary, the kernels' lattices): `dispose()` it when done; `denseCrf` does.
 */
import { F, type Tensor, keep, tensor, tidy, zeros } from '../engine/index.js';
import { CRF_PRESETS, type CrfParams, type CrfPresetName, scaledToImage } from './crf-presets.js';
import { LatticeKernel, type PairwiseTerm, SEPARABLE_MAX_SXY, SeparableGaussianKernel } from './pairwise.js';

export class DenseCRF2D {
  readonly width: number;
  readonly height: number;
  readonly nLabels: number;
  /** -unary `[N, L]`; zeros until `setUnaryEnergy` (densecrf starts from a zero unary too). */
  private negUnary: Tensor;
  private readonly kernels: PairwiseTerm[] = [];

  constructor(width: number, height: number, nLabels: number) {
    for (const [name, v] of [['width', width], ['height', height], ['nLabels', nLabels]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
    }
    this.width = width;
    this.height = height;
    this.nLabels = nLabels;
    this.negUnary = keep(zeros([width * height, nLabels]));
  }

  /** Unary energies (e.g. -log p), label-major `[L][H][W]`. */
  setUnaryEnergy(unary: Float32Array): void {
    this.replaceNegUnary(unary, 'unary', (u) => u.neg());
  }

  /**
   * `setUnaryEnergy(unaryFromProbabilities(prob, clip))` in one pass: pydensecrf's usual
   * `d.setUnaryEnergy(unary_from_softmax(prob))`. `prob` is label-major `[L][H][W]`.
   */
  setUnaryFromProbabilities(prob: Float32Array, clip = 1e-5): void {
    this.replaceNegUnary(prob, 'probabilities', (p) => p.clamp(clip, 1).log());
  }

  /** -unary = `toNegUnary(values)` for label-major `values`, stored pixel-major. */
  private replaceNegUnary(values: Float32Array, what: string, toNegUnary: (labelMajor: Tensor) => Tensor): void {
    const n = this.width * this.height;
    const nl = this.nLabels;
    if (values.length !== n * nl) throw new RangeError(`${what} has ${values.length} values, expected ${nl}×${n}`);
    // One NaN or infinity would spread through every message to every pixel (each message sums over all).
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      const l = Math.floor(bad / n);
      const p = bad % n;
      throw new RangeError(`${what} holds ${values[bad]} at label ${l}, pixel (${p % this.width}, ${Math.floor(p / this.width)}); it must be finite`);
    }
    this.negUnary.dispose();
    this.negUnary = keep(tidy(() => toNegUnary(tensor(values, { shape: [nl, n] })).t().contiguous()));
  }

  /**
   * Smoothness kernel over pixel positions: features (x/sxy, y/sxy). Up to `SEPARABLE_MAX_SXY` pixels wide it
   * is applied exactly, as a separable convolution; wider, by the lattice as densecrf does.
   */
  addPairwiseGaussian(sxy: number, compat: number): void {
    checkSigma('sxy', sxy);
    checkCompat(compat);
    const { width, height } = this;
    if (sxy <= SEPARABLE_MAX_SXY) {
      this.kernels.push(new SeparableGaussianKernel(width, height, sxy, compat));
      return;
    }
    const f = new Float32Array(width * height * 2);
    for (let y = 0, p = 0; y < height; y++) {
      for (let x = 0; x < width; x++, p++) {
        f[2 * p] = x / sxy;
        f[2 * p + 1] = y / sxy;
      }
    }
    this.kernels.push(new LatticeKernel(f, width * height, 2, compat));
  }

  /** Appearance kernel: features (x/sxy, y/sxy, r/srgb, g/srgb, b/srgb); `rgb` is HWC uint8. */
  addPairwiseBilateral(sxy: number, srgb: number, rgb: Uint8Array, compat: number): void {
    checkSigma('sxy', sxy);
    checkSigma('srgb', srgb);
    checkCompat(compat);
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
    this.kernels.push(new LatticeKernel(f, width * height, 5, compat));
  }

  /**
   * Mean-field inference as densecrf's `DenseCRF::inference`: Q₀ = softmax(-U), then n times
   * Q = softmax(-U + Σ_k message_k(Q)). Returns Q label-major `[L][H][W]`.
   */
  inference(iterations: number): Float32Array {
    if (!Number.isInteger(iterations) || iterations < 0) {
      throw new RangeError(`iterations must be a non-negative integer, got ${iterations}`);
    }
    return tidy(() => {
      let q = softmaxRows(this.negUnary);
      for (let it = 0; it < iterations; it++) {
        const next = tidy(() => softmaxRows(this.kernels.reduce((m, k) => m.add(k.message(q)), this.negUnary)));
        q.dispose();
        q = next;
      }
      return q.t().contiguous().toFloat32Array();
    });
  }

  /** Frees the native memory of the unary and the kernels' lattices. */
  dispose(): void {
    this.negUnary.dispose();
    for (const k of this.kernels) k.dispose();
    this.kernels.length = 0;
  }
}

/**
 * pydensecrf `utils.unary_from_softmax(prob, clip=clip)`: -log(clip(p, clip, 1)), same `[L][H][W]` layout.
 * Inputs need not sum to one (SEAM feeds stacked CAM scores).
 */
export function unaryFromProbabilities(prob: Float32Array, clip = 1e-5): Float32Array {
  return tidy(() => tensor(prob).clamp(clip, 1).log().neg().toFloat32Array());
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
  const given: CrfParams = typeof params === 'string' ? CRF_PRESETS[params] : params;
  const { width: W, height: H } = image;
  const work = given.workingSize != null && Math.max(W, H) > given.workingSize ? given.workingSize / Math.max(W, H) : 0;
  if (work) {
    // Downscaled (area: averages), solved, and the posterior upscaled (bilinear) to the image.
    if (prob.length !== nLabels * W * H) throw new RangeError(`probabilities have ${prob.length} values, expected ${nLabels}×${W * H}`);
    const [w, h] = [Math.max(1, Math.round(W * work)), Math.max(1, Math.round(H * work))];
    const shrink = (x: Tensor) => F.interpolate(x, { size: [h, w], mode: 'area' });
    const [smallProb, smallRgb] = tidy(() => [
      shrink(tensor(prob, { shape: [1, nLabels, H, W] })).toFloat32Array(),
      shrink(tensor(Float32Array.from(image.rgb), { shape: [1, H, W, 3] }).permute([0, 3, 1, 2])).permute([0, 2, 3, 1]).round().clamp(0, 255).contiguous().toFloat32Array(),
    ]);
    const q = denseCrf({ rgb: Uint8Array.from(smallRgb), width: w, height: h }, smallProb, nLabels, { ...given, workingSize: null });
    return tidy(() => F.interpolate(tensor(q, { shape: [1, nLabels, h, w] }), { size: [H, W], mode: 'bilinear', alignCorners: false }).toFloat32Array());
  }
  const p = scaledToImage(given, W, H);
  const crf = new DenseCRF2D(image.width, image.height, nLabels);
  try {
    crf.setUnaryFromProbabilities(prob, p.clip);
    crf.addPairwiseGaussian(p.gaussian.sxy, p.gaussian.compat);
    crf.addPairwiseBilateral(p.bilateral.sxy, p.bilateral.srgb, image.rgb, p.bilateral.compat);
    return crf.inference(p.iterations);
  } finally {
    crf.dispose();
  }
}

/**
 * Softmax over each row of `[N, L]` scores, max-subtracted like densecrf's expAndNormalize. Written out
 * because ATen's last-dimension softmax is slow for rows this short (21 labels: 18 ms against 12.6 ms for
 * these four ops on 500×375, one thread).
 */
function softmaxRows(scores: Tensor): Tensor {
  return tidy(() => {
    const e = scores.sub(scores.amax(1, true)).exp_();
    return e.div_(e.sum(1, true));
  });
}

/**
 * Kernel widths below this are degenerate: the kernel reaches no neighbour (a hundredth of a pixel or intensity
 * level), and dividing features by them overflows the lattice's coordinates.
 */
export const MIN_KERNEL_WIDTH = 0.01;

function checkSigma(name: string, v: number): void {
  if (!Number.isFinite(v) || v < MIN_KERNEL_WIDTH) {
    throw new RangeError(`${name} must be a finite width of at least ${MIN_KERNEL_WIDTH}, got ${v}`);
  }
}

function checkCompat(compat: number): void {
  if (!Number.isFinite(compat)) throw new RangeError(`compat must be a finite number, got ${compat}`);
}
