import { LatticeHashTable } from './lattice-hash.js';
import { slice, splat } from './splat-slice.js';

/**
 * Permutohedral lattice (Adams, Baek & Davis 2010) for high-dimensional Gaussian filtering:
 *   out_i ≈ c · Σ_j exp(-|f_i - f_j|² / 2) · in_j
 * in O(N·d²) build and O(N·d·V + M·d·V) per filter. Port of densecrf's `permutohedral.cpp`
 * (lucasb-eyer/pydensecrf), which is what pydensecrf runs: same elevation, rounding, rank, barycentric
 * weights, [½ 1 ½] blur along the d+1 lattice axes in forward order, and the `alpha = 1/(1+2^-d)` slice
 * scale. The constant c is not 1; densecrf only ever uses the filter under a normalisation that cancels it.
 *
 * Features are point-major: `features[i*d + k]` is coordinate k of point i, already divided by the
 * kernel's standard deviation. Values are point-major too: `[N][valueSize]`.
 *
 * Everything that depends only on the features (vertex ids, barycentric weights, blur neighbours) is
 * computed once in `build`; each filter (`filter`, or `splatBlur` + `sliceAdd`) only moves values.
 */
export class PermutohedralLattice {
  /** Number of input points N. */
  readonly nPoints: number;
  /** Feature dimension d. */
  readonly dim: number;
  /** Number of lattice vertices M. */
  readonly nVertices: number;
  /** `[N][d+1]` vertex of each simplex corner, shifted by +1 so row 0 of a value buffer is the empty vertex. */
  readonly offsets: Int32Array;
  /** `[N][d+1]` barycentric weight of each corner (sums to 1 per point). */
  readonly barycentric: Float32Array;
  /** `[d+1][M][2]` (+1-shifted) neighbours of each vertex along each axis; 0 where the neighbour is absent. */
  readonly blurNeighbors: Int32Array;
  /** densecrf's slice scale ("magic scaling constant" in permutohedral.cpp). */
  readonly alpha: number;

  /** Vertex values `[M+1][vs]` after the last `splatBlur`, and the blur's ping-pong partner. */
  private blurred = new Float32Array(0);
  private spare = new Float32Array(0);
  private blurredValueSize = 0;

  private constructor(
    nPoints: number,
    dim: number,
    nVertices: number,
    offsets: Int32Array,
    barycentric: Float32Array,
    blurNeighbors: Int32Array,
  ) {
    this.nPoints = nPoints;
    this.dim = dim;
    this.nVertices = nVertices;
    this.offsets = offsets;
    this.barycentric = barycentric;
    this.blurNeighbors = blurNeighbors;
    this.alpha = 1 / (1 + Math.pow(2, -dim));
  }

  static build(features: Float32Array, nPoints: number, dim: number): PermutohedralLattice {
    if (!(dim >= 1) || !Number.isInteger(dim)) throw new RangeError(`lattice dimension must be a positive integer, got ${dim}`);
    if (features.length !== nPoints * dim) {
      throw new RangeError(`features have ${features.length} values, expected ${nPoints}×${dim}`);
    }
    const d = dim;
    const d1 = d + 1;
    const hash = new LatticeHashTable(d, nPoints);
    const offsets = new Int32Array(nPoints * d1);
    const barycentric = new Float32Array(nPoints * d1);

    // canonical[r*(d+1) + rank]: coordinate offset of the remainder-r corner of the canonical simplex.
    const canonical = new Int32Array(d1 * d1);
    for (let r = 0; r <= d; r++) {
      for (let j = 0; j <= d - r; j++) canonical[r * d1 + j] = r;
      for (let j = d - r + 1; j <= d; j++) canonical[r * d1 + j] = r - d1;
    }
    // Diagonal of the elevation matrix E, scaled so the blur matches a unit-std Gaussian (Adams et al. p.5-6).
    const invStdDev = Math.sqrt(2 / 3) * d1;
    const scale = new Float64Array(d);
    for (let i = 0; i < d; i++) scale[i] = invStdDev / Math.sqrt((i + 1) * (i + 2));

    const elevated = new Float64Array(d1);
    const rem0 = new Float64Array(d1);
    const rank = new Int32Array(d1);
    const prevRem0 = new Float64Array(d1);
    const prevRank = new Int32Array(d1);
    const bary = new Float64Array(d + 2);
    const key = new Int32Array(d);
    const down = 1 / d1;

    for (let p = 0; p < nPoints; p++) {
      const fb = p * d;
      // Elevate onto the hyperplane Σx = 0 in d+1 dimensions.
      let sm = 0;
      for (let j = d; j > 0; j--) {
        const cf = features[fb + j - 1] * scale[j - 1];
        elevated[j] = sm - j * cf;
        sm += cf;
      }
      elevated[0] = sm;

      // Nearest remainder-0 lattice point, by rounding each coordinate to a multiple of d+1.
      let sum = 0;
      for (let i = 0; i <= d; i++) {
        const v = Math.round(elevated[i] * down);
        rem0[i] = v * d1;
        sum += v;
      }

      // rank[i]: position of coordinate i when the residuals are sorted in decreasing order.
      rank.fill(0);
      for (let i = 0; i < d; i++) {
        const di = elevated[i] - rem0[i];
        for (let j = i + 1; j <= d; j++) {
          if (di < elevated[j] - rem0[j]) rank[i]++;
          else rank[j]++;
        }
      }
      // The rounded point may be off the hyperplane (sum ≠ 0): shift ranks and wrap.
      for (let i = 0; i <= d; i++) {
        rank[i] += sum;
        if (rank[i] < 0) {
          rank[i] += d1;
          rem0[i] += d1;
        } else if (rank[i] > d) {
          rank[i] -= d1;
          rem0[i] -= d1;
        }
      }

      // Barycentric coordinates of the point in its simplex (Adams et al. p.10).
      bary.fill(0);
      for (let i = 0; i <= d; i++) {
        const v = (elevated[i] - rem0[i]) * down;
        bary[d - rank[i]] += v;
        bary[d - rank[i] + 1] -= v;
      }
      bary[0] += 1 + bary[d + 1];

      // The d+1 simplex corners; a key needs only d coordinates since the last is implied by Σ = 0.
      // Raster neighbours often share a simplex (same rem0 and rank): then they share its vertex ids.
      const ob = p * d1;
      let sameSimplex = p > 0;
      for (let i = 0; i <= d && sameSimplex; i++) sameSimplex = rem0[i] === prevRem0[i] && rank[i] === prevRank[i];
      for (let r = 0; r <= d; r++) {
        if (sameSimplex) {
          offsets[ob + r] = offsets[ob - d1 + r];
        } else {
          for (let i = 0; i < d; i++) key[i] = rem0[i] + canonical[r * d1 + rank[i]];
          offsets[ob + r] = hash.find(key, true) + 1;
        }
        barycentric[ob + r] = bary[r];
      }
      prevRem0.set(rem0);
      prevRank.set(rank);
    }

    const m = hash.size;
    // Along axis j, neighbour n1 has +d in coordinate j and -1 in all others, n2 the opposite step.
    // n2(u) = v exactly when n1(v) = u, so one lookup per (vertex, axis) fills both.
    const blurNeighbors = new Int32Array(d1 * m * 2);
    const k = new Int32Array(d);
    for (let v = 0; v < m; v++) {
      for (let j = 0; j <= d; j++) {
        hash.copyKey(v, k);
        for (let i = 0; i < d; i++) k[i] += i === j ? d : -1;
        const u = hash.find(k, false);
        blurNeighbors[(j * m + v) * 2] = u + 1;
        if (u >= 0) blurNeighbors[(j * m + u) * 2 + 1] = v + 1;
      }
    }
    return new PermutohedralLattice(nPoints, d, m, offsets, barycentric, blurNeighbors);
  }

  /** `output = lattice filter of input` (densecrf's `Permutohedral::compute`, forward direction). */
  filter(input: Float32Array, valueSize: number, output: Float32Array): void {
    const sliceWeights = new Float32Array(this.barycentric.length);
    for (let i = 0; i < sliceWeights.length; i++) sliceWeights[i] = this.barycentric[i] * this.alpha;
    this.splatBlur(input, valueSize, this.barycentric);
    output.fill(0);
    this.sliceAdd(valueSize, sliceWeights, output, 0, this.nPoints);
  }

  /**
   * First half of a filter: splat `input` (`[N][valueSize]`) with `splatWeights` (`[N][d+1]`, standing in
   * for the barycentric weights so callers can fold per-point scales in once) and blur. The result stays
   * in this lattice's buffers for `sliceAdd`.
   */
  splatBlur(input: Float32Array, valueSize: number, splatWeights: Float32Array): void {
    const n = this.nPoints;
    const d1 = this.dim + 1;
    const m = this.nVertices;
    const vs = valueSize;
    if (input.length !== n * vs) throw new RangeError(`filter input must hold ${n}×${vs} values`);
    if (splatWeights.length !== n * d1) throw new RangeError(`splat weights must hold ${n}×${d1} values`);
    const len = (m + 1) * vs;
    if (this.blurred.length !== len) {
      this.blurred = new Float32Array(len);
      this.spare = new Float32Array(len);
    }
    let values = this.blurred;
    let next = this.spare;
    values.fill(0);
    next.fill(0, 0, vs); // row 0 (the absent vertex) must read as zero in both buffers

    splat(input, vs, this.offsets, splatWeights, d1, values);

    // [½ 1 ½] along each lattice axis in densecrf's (forward) order. Absent neighbours (id 0) count as
    // zero; about half are absent in a sparse 5D lattice, so the cases skip reading the zero row.
    const nb = this.blurNeighbors;
    for (let j = 0; j < d1; j++) {
      const jb = j * m * 2;
      for (let v = 0; v < m; v++) {
        const a = nb[jb + 2 * v] * vs;
        const b = nb[jb + 2 * v + 1] * vs;
        const c = (v + 1) * vs;
        if (a !== 0 && b !== 0) {
          for (let k = 0; k < vs; k++) next[c + k] = values[c + k] + 0.5 * (values[a + k] + values[b + k]);
        } else if (a !== 0 || b !== 0) {
          const e = a + b;
          for (let k = 0; k < vs; k++) next[c + k] = values[c + k] + 0.5 * values[e + k];
        } else {
          for (let k = 0; k < vs; k++) next[c + k] = values[c + k];
        }
      }
      const t = values;
      values = next;
      next = t;
    }
    this.blurred = values;
    this.spare = next;
    this.blurredValueSize = vs;
  }

  /**
   * Second half: for points `start..end-1`, `output[(p-start)·vs + k] +=` slice of the last `splatBlur`
   * with `sliceWeights` (`[N][d+1]`). Slicing a range lets callers consume the result in cache-sized chunks.
   */
  sliceAdd(valueSize: number, sliceWeights: Float32Array, output: Float32Array, start: number, end: number): void {
    const d1 = this.dim + 1;
    if (valueSize !== this.blurredValueSize) throw new RangeError(`sliceAdd needs a splatBlur with ${valueSize} values first`);
    if (sliceWeights.length !== this.nPoints * d1) throw new RangeError(`slice weights must hold ${this.nPoints}×${d1} values`);
    if (!(0 <= start && start <= end && end <= this.nPoints) || output.length < (end - start) * valueSize) {
      throw new RangeError(`bad slice range ${start}..${end} for an output of ${output.length}`);
    }
    slice(this.blurred, valueSize, this.offsets, sliceWeights, d1, output, start, end);
  }
}
