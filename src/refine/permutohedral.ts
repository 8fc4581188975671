import { type LatticeIndex, type Tensor, dispose, keep, latticeBlur, latticeBuild, latticeSlice, latticeSplat, tensor, tidy } from '../engine/index.js';

/**
 * Permutohedral lattice (Adams, Baek & Davis 2010) for high-dimensional Gaussian filtering:
 *   out_i ≈ c · Σ_j exp(-|f_i - f_j|² / 2) · in_j
 * in O(N·d²) build and O(N·d·V + M·d·V) per filter, as densecrf's `permutohedral.cpp` (lucasb-eyer/pydensecrf)
 * computes it: same elevation, rounding, rank, barycentric weights, [½ 1 ½] blur along the d+1 lattice axes in
 * forward order, and the `alpha = 1/(1+2^-d)` slice scale. The constant c is not 1; densecrf only ever uses
 * the filter under a normalisation that cancels it. The build and the three passes are native
 * (native/lattice.cc): in TypeScript they took 2 s per VOC-sized CRF against the 1 s asked for.
 *
 * Features are point-major `[N][d]`, already divided by the kernel's standard deviation; values are `[N, V]`
 * tensors. Everything that depends only on the features is computed once in `build`; a filter only moves values.
 * The lattice owns native memory: `dispose()` it when done.
 */
export class PermutohedralLattice {
  readonly nVertices: number;
  /** densecrf's slice scale ("magic scaling constant" in permutohedral.cpp). */
  readonly alpha: number;
  readonly index: LatticeIndex;

  private constructor(dim: number, index: LatticeIndex) {
    this.index = index;
    this.nVertices = index.splatStart.size(0) - 2;
    this.alpha = 1 / (1 + Math.pow(2, -dim));
  }

  static build(features: Float32Array, nPoints: number, dim: number): PermutohedralLattice {
    if (!(dim >= 1) || !Number.isInteger(dim)) throw new RangeError(`lattice dimension must be a positive integer, got ${dim}`);
    if (features.length !== nPoints * dim) {
      throw new RangeError(`features have ${features.length} values, expected ${nPoints}×${dim}`);
    }
    const index = tidy(() => latticeBuild(tensor(features, { shape: [nPoints, dim] })));
    for (const t of Object.values(index)) keep(t);
    return new PermutohedralLattice(dim, index);
  }

  /** [N, d+1] barycentric weights of each point's simplex corners (sum to 1 per point). */
  get barycentric(): Tensor {
    return this.index.barycentric;
  }

  /**
   * The lattice filter of `input` ([N, V] float32). `splatWeights` and `sliceWeights` ([N, d+1]) stand in for
   * the barycentric weights (the slice's times alpha), so callers can fold per-point scales in once;
   * without them this is densecrf's `Permutohedral::compute`.
   */
  filter(input: Tensor, splatWeights?: Tensor, sliceWeights?: Tensor): Tensor {
    return tidy(() => {
      const bary = this.index.barycentric;
      const blurred = latticeBlur(latticeSplat(input, splatWeights ?? bary, this.index), this.index);
      return latticeSlice(blurred, sliceWeights ?? bary.mul(this.alpha), this.index);
    });
  }

  dispose(): void {
    dispose(this.index);
  }
}
