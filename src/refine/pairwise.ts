import { PermutohedralLattice } from './permutohedral.js';

/**
 * One pairwise term of densecrf's DenseCRF: a Gaussian kernel K over per-pixel features with Potts
 * compatibility, as pydensecrf builds it by default (DIAG_KERNEL, NORMALIZE_SYMMETRIC; see
 * `densecrf.pyx` `addPairwiseGaussian`/`addPairwiseBilateral` and `pairwise.cpp` `DenseKernel`).
 *
 * Its mean-field message is `compat · D^{-1/2} K D^{-1/2} Q` with `D = diag(K·1)`, K applied by the
 * lattice (self-affinity included, as in densecrf). In densecrf the Potts term yields `-compat·(...)`
 * which inference subtracts from -unary, so the message is added here.
 */
export class PairwiseKernel {
  private readonly lattice: PermutohedralLattice;
  /** Barycentric weights × D^{-1/2}: the normalisation folded into the splat. */
  private readonly splatWeights: Float32Array;
  /** Barycentric weights × alpha × D^{-1/2} × compat: normalisation, slice scale and compatibility. */
  private readonly sliceWeights: Float32Array;

  /** `features` point-major `[N][dim]`, each already divided by its standard deviation. */
  constructor(features: Float32Array, nPoints: number, dim: number, compat: number) {
    this.lattice = PermutohedralLattice.build(features, nPoints, dim);
    const degree = new Float32Array(nPoints);
    this.lattice.filter(new Float32Array(nPoints).fill(1), 1, degree);

    const d1 = dim + 1;
    const bary = this.lattice.barycentric;
    const sliceScale = this.lattice.alpha * compat;
    this.splatWeights = new Float32Array(nPoints * d1);
    this.sliceWeights = new Float32Array(nPoints * d1);
    for (let p = 0; p < nPoints; p++) {
      const norm = 1 / Math.sqrt(degree[p] + 1e-20); // densecrf's epsilon
      for (let r = p * d1, end = r + d1; r < end; r++) {
        this.splatWeights[r] = bary[r] * norm;
        this.sliceWeights[r] = bary[r] * norm * sliceScale;
      }
    }
  }

  /** Splat and blur Q (pixel-major `[N][nLabels]`); `addMessage` then reads the result. */
  spread(q: Float32Array, nLabels: number): void {
    this.lattice.splatBlur(q, nLabels, this.splatWeights);
  }

  /** For pixels start..end-1: `message[p - start] += compat · (D^{-1/2} K D^{-1/2} Q)[p]`. */
  addMessage(nLabels: number, message: Float32Array, start: number, end: number): void {
    this.lattice.sliceAdd(nLabels, this.sliceWeights, message, start, end);
  }
}
