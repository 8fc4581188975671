// The permutohedral lattice ops (native/lattice.cc): the Gaussian filter of the dense CRF, which ATen lacks.
// All take and return CPU tensors: features and values float32, indices int32; see src/refine/permutohedral.ts.
import { N } from './native.js';
import { type Tensor, wrap, wrapAll } from './tensor.js';

/** What `latticeBuild` returns for N points of dimension d with M lattice vertices. */
export interface LatticeIndex {
  /** [N, d+1] int32: each point's simplex corners as vertex ids + 1 (row 0 of a value buffer is the absent vertex). */
  offsets: Tensor;
  /** [N, d+1] float32: the corners' barycentric weights. */
  barycentric: Tensor;
  /** [d+1, M, 2] int32: each vertex's two neighbours along each lattice axis (ids + 1, 0 where absent). */
  neighbors: Tensor;
  /** [N·(d+1)] int32 and [M+2] int32: the (point, corner) entries grouped by vertex, for the splat. */
  splatOrder: Tensor;
  splatStart: Tensor;
}

/** Builds the lattice of `features` ([N, d] float32, each coordinate already divided by its standard deviation). */
export function latticeBuild(features: Tensor): LatticeIndex {
  const [offsets, barycentric, neighbors, splatOrder, splatStart] = wrapAll(N.latticeBuild(features.handle));
  return { offsets, barycentric, neighbors, splatOrder, splatStart };
}

/** [M+1, V] vertex values: Σ over the entries at each vertex of weight · input row (row 0 stays zero). */
export function latticeSplat(input: Tensor, weights: Tensor, index: LatticeIndex): Tensor {
  return wrap(N.latticeSplat(input.handle, weights.handle, index.splatOrder.handle, index.splatStart.handle));
}

/** [½ 1 ½] along each of the d+1 lattice axes in turn. */
export function latticeBlur(values: Tensor, index: LatticeIndex): Tensor {
  return wrap(N.latticeBlur(values.handle, index.neighbors.handle));
}

/** [N, V]: each point's weighted sum of its corners' vertex values. */
export function latticeSlice(values: Tensor, weights: Tensor, index: LatticeIndex): Tensor {
  return wrap(N.latticeSlice(values.handle, index.offsets.handle, weights.handle));
}
