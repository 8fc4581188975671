import { F, type Tensor, keep, ones, tensor, tidy } from '../engine/index.js';
import { PermutohedralLattice } from './permutohedral.js';

/**
 * One pairwise term of densecrf's DenseCRF: a Gaussian kernel K over per-pixel features with Potts
 * compatibility, as pydensecrf builds it by default (DIAG_KERNEL, NORMALIZE_SYMMETRIC; see
 * `densecrf.pyx` `addPairwiseGaussian`/`addPairwiseBilateral` and `pairwise.cpp` `DenseKernel`).
 *
 * Its mean-field message is `compat · D^{-1/2} K D^{-1/2} Q` with `D = diag(K·1)`, self-affinity included,
 * as in densecrf. In densecrf the Potts term yields `-compat·(...)` which inference subtracts from -unary,
 * so the message is added. Terms own native memory: `dispose()` them.
 */
export interface PairwiseTerm {
  /** `compat · D^{-1/2} K D^{-1/2} Q` for Q `[N, nLabels]` (pixel-major). */
  message(q: Tensor): Tensor;
  dispose(): void;
}

/** A Gaussian kernel over arbitrary features, applied by the permutohedral lattice (densecrf's way). */
export class LatticeKernel implements PairwiseTerm {
  private readonly lattice: PermutohedralLattice;
  /** Barycentric weights × D^{-1/2}: the normalisation folded into the splat. */
  private readonly splatWeights: Tensor;
  /** Barycentric weights × alpha × D^{-1/2} × compat: normalisation, slice scale and compatibility. */
  private readonly sliceWeights: Tensor;

  /** `features` point-major `[N][dim]`, each already divided by its standard deviation. */
  constructor(features: Float32Array, nPoints: number, dim: number, compat: number) {
    this.lattice = PermutohedralLattice.build(features, nPoints, dim);
    const lattice = this.lattice;
    [this.splatWeights, this.sliceWeights] = tidy(() => {
      const norm = lattice.filter(ones([nPoints, 1])).add(1e-20).rsqrt(); // densecrf's epsilon
      const splat = lattice.barycentric.mul(norm);
      return [keep(splat), keep(splat.mul(lattice.alpha * compat))];
    });
  }

  message(q: Tensor): Tensor {
    return this.lattice.filter(q, this.splatWeights, this.sliceWeights);
  }

  dispose(): void {
    this.lattice.dispose();
    this.splatWeights.dispose();
    this.sliceWeights.dispose();
  }
}

/**
 * The smoothness kernel exp(-|p_i - p_j|² / 2 sxy²) over pixel positions, applied exactly: pixels lie on a
 * grid, so K is a separable convolution, truncated at 4 sxy (the weight there is e^-8 = 3e-4 of the centre,
 * and the neglected tail mass below 1e-4). This is closer to the model than the lattice, whose filter is a
 * Gaussian only to ~10 % (test/refine/crf.test.ts), and at the widths the presets use it is also faster: at
 * sxy 1 (deeplab) the lattice has more vertices than pixels (building and blurring it took a quarter of the
 * CRF), while the two convolutions take 8 ms on 500×375×21 on one core (14 ms at sxy 3, the lattice 11 ms
 * plus 25 ms to build). Wider kernels go to the lattice (`SEPARABLE_MAX_SXY`), whose cost falls with width.
 */
export class SeparableGaussianKernel implements PairwiseTerm {
  private readonly width: number;
  private readonly height: number;
  private readonly radius: number;
  /** The 1-D taps as depthwise weights for one channel, down the columns and along the rows. */
  private readonly vertical: Tensor;
  private readonly horizontal: Tensor;
  /** D^{-1/2} and compat · D^{-1/2}, [N, 1]. */
  private readonly norm: Tensor;
  private readonly scaledNorm: Tensor;

  constructor(width: number, height: number, sxy: number, compat: number) {
    this.width = width;
    this.height = height;
    this.radius = Math.ceil(4 * sxy);
    const r = this.radius;
    const taps = Float32Array.from({ length: 2 * r + 1 }, (_, i) => Math.exp(-((i - r) ** 2) / (2 * sxy * sxy)));
    this.vertical = keep(tensor(taps, { shape: [1, 1, 2 * r + 1, 1] }));
    this.horizontal = keep(tensor(taps, { shape: [1, 1, 1, 2 * r + 1] }));
    [this.norm, this.scaledNorm] = tidy(() => {
      const degree = this.filter(ones([width * height, 1]));
      const norm = degree.add(1e-20).rsqrt();
      return [keep(norm), keep(norm.mul(compat))];
    });
  }

  message(q: Tensor): Tensor {
    return tidy(() => this.filter(q.mul(this.norm)).mul(this.scaledNorm));
  }

  /** K·x for pixel-major x [N, L]: a depthwise convolution down the columns, then along the rows. */
  private filter(x: Tensor): Tensor {
    const { width: w, height: h, radius: r } = this;
    const labels = x.size(1);
    return tidy(() => {
      // [N, L] pixel-major is [1, H, W, L]: an NCHW tensor in channels-last memory, which the convolutions keep.
      const image = x.view([1, h, w, labels]).permute([0, 3, 1, 2]);
      // The same taps for every channel: expanded views, not copies.
      const down = F.conv2d(image, this.vertical.expand([labels, 1, 2 * r + 1, 1]), null, { padding: [r, 0], groups: labels });
      const across = F.conv2d(down, this.horizontal.expand([labels, 1, 1, 2 * r + 1]), null, { padding: [0, r], groups: labels });
      return across.permute([0, 2, 3, 1]).reshape([w * h, labels]);
    });
  }

  dispose(): void {
    for (const t of [this.vertical, this.horizontal, this.norm, this.scaledNorm]) t.dispose();
  }
}

/** Spatial kernels up to this width (pixels) use `SeparableGaussianKernel`; wider ones the lattice. */
export const SEPARABLE_MAX_SXY = 3;
