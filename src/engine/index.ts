// The weakseg tensor engine: a typed API over libtorch through the native addon in native/.
export * from './dtype.js';
export { Tensor, type Scalar, type TensorOrScalar } from './tensor.js';
export * from './creation.js';
export * from './autograd.js';
export * from './runtime.js';
export { tidy, keep, dispose } from './scope.js';
export * as F from './functional.js';
export * from './lattice.js';
export * from './distributed.js';
