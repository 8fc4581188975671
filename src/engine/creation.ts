// Tensor creation and free functions that combine several tensors.
import { type DType, type Device, type TypedArray, dtypeOfArray, itemSize } from './dtype.js';
import { N } from './native.js';
import { Tensor, type TensorOrScalar, wrap } from './tensor.js';

export interface CreateOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

function finish(t: Tensor, opts: CreateOptions): Tensor {
  return opts.requiresGrad ? t.requiresGrad_(true) : t;
}

function dev(opts: CreateOptions): Device {
  return opts.device ?? 'cpu';
}

/** Copies raw little-endian bytes into a new CPU tensor; bytes.length must equal numel * itemSize. */
export function fromBytes(bytes: Uint8Array, dtype: DType, shape: number[]): Tensor {
  return wrap(N.fromBytes(bytes, dtype, shape));
}

type Nested = number | boolean | Nested[];

function inferShape(data: Nested): number[] {
  const shape: number[] = [];
  let cur: Nested = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0] as Nested;
    if (cur === undefined) break;
  }
  return shape;
}

function flattenNested(data: Nested, shape: number[], depth: number, out: (number | boolean)[]): void {
  if (depth === shape.length) {
    if (Array.isArray(data)) throw new TypeError('tensor(): ragged nested array');
    out.push(data);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[depth]) {
    throw new TypeError(`tensor(): ragged nested array (expected length ${shape[depth]} at depth ${depth})`);
  }
  for (const d of data) flattenNested(d, shape, depth + 1, out);
}

function typedFor(values: (number | boolean)[], dtype: DType): TypedArray {
  switch (dtype) {
    case 'float32': return Float32Array.from(values as number[], Number);
    case 'float64': return Float64Array.from(values as number[], Number);
    case 'int32': return Int32Array.from(values as number[], Number);
    case 'int64': return BigInt64Array.from(values as number[], (v) => BigInt(Math.trunc(Number(v))));
    case 'uint8': case 'bool': return Uint8Array.from(values as number[], Number);
    default: return Float32Array.from(values as number[], Number);
  }
}

/**
 * A tensor from a number, nested arrays or a typed array (then `shape` defaults to 1-D).
 * Like torch.tensor: integers give int64, booleans bool, anything else float32, unless dtype is given.
 */
export function tensor(
  data: Nested | TypedArray,
  opts: CreateOptions & { shape?: number[] } = {},
): Tensor {
  if (opts.dtype !== undefined) itemSize(opts.dtype); // an unknown dtype name fails here, before anything is allocated
  let t: Tensor;
  if (ArrayBuffer.isView(data)) {
    const arr = data as TypedArray;
    const srcType = opts.dtype && arr instanceof Uint16Array ? opts.dtype : dtypeOfArray(arr);
    const shape = opts.shape ?? [arr.length];
    const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.length * itemSize(srcType));
    t = fromBytes(bytes, srcType, shape);
    if (opts.dtype && opts.dtype !== srcType) t = convertAndFree(t, opts.dtype);
  } else {
    const shape = inferShape(data);
    const flat: (number | boolean)[] = [];
    flattenNested(data, shape, 0, flat);
    const inferred: DType = flat.every((v) => typeof v === 'boolean') && flat.length > 0
      ? 'bool'
      : flat.every((v) => typeof v === 'number' && Number.isInteger(v)) && flat.length > 0 ? 'int64' : 'float32';
    const dtype = opts.dtype ?? inferred;
    const storeAs: DType = dtype === 'float16' || dtype === 'bfloat16' ? 'float32' : dtype;
    const arr = typedFor(flat, storeAs);
    t = fromBytes(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength), storeAs, opts.shape ?? shape);
    if (storeAs !== dtype) t = convertAndFree(t, dtype);
  }
  if (opts.device && opts.device !== 'cpu') {
    const staged = t;
    try {
      t = staged.to({ device: opts.device });
    } finally {
      staged.dispose(); // the CPU staging tensor, also when the device is unavailable
    }
  }
  return finish(t, opts);
}

function convertAndFree(t: Tensor, dtype: DType): Tensor {
  try {
    return t.to({ dtype });
  } finally {
    t.dispose();
  }
}

export function empty(shape: number[], opts: CreateOptions = {}): Tensor {
  return finish(wrap(N.empty(shape, opts.dtype ?? 'float32', dev(opts))), opts);
}
export function zeros(shape: number[], opts: CreateOptions = {}): Tensor {
  return finish(wrap(N.zeros(shape, opts.dtype ?? 'float32', dev(opts))), opts);
}
export function ones(shape: number[], opts: CreateOptions = {}): Tensor {
  return finish(wrap(N.ones(shape, opts.dtype ?? 'float32', dev(opts))), opts);
}
export function full(shape: number[], value: number | boolean, opts: CreateOptions = {}): Tensor {
  const dtype = opts.dtype ?? (typeof value === 'boolean' ? 'bool' : 'float32');
  return finish(wrap(N.full(shape, value, dtype, dev(opts))), opts);
}
/** arange(end) or arange(start, end, step); int64 when all arguments are integers, like torch. */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  const [s, e] = end === undefined ? [0, start] : [start, end];
  const dtype = opts.dtype ?? ([s, e, step].every(Number.isInteger) ? 'int64' : 'float32');
  return finish(wrap(N.arange(s, e, step, dtype, dev(opts))), opts);
}
export function linspace(start: number, end: number, steps: number, opts: CreateOptions = {}): Tensor {
  return finish(wrap(N.linspace(start, end, steps, opts.dtype ?? 'float32', dev(opts))), opts);
}
/** Uniform [0, 1). */
export function rand(shape: number[], opts: CreateOptions = {}): Tensor {
  return finish(wrap(N.rand(shape, opts.dtype ?? 'float32', dev(opts))), opts);
}
/** Standard normal. */
export function randn(shape: number[], opts: CreateOptions = {}): Tensor {
  return finish(wrap(N.randn(shape, opts.dtype ?? 'float32', dev(opts))), opts);
}
/** Integers in [low, high). */
export function randint(low: number, high: number, shape: number[], opts: CreateOptions = {}): Tensor {
  return finish(wrap(N.randint(low, high, shape, opts.dtype ?? 'int64', dev(opts))), opts);
}
export function randperm(n: number, opts: CreateOptions = {}): Tensor {
  return wrap(N.randperm(n, opts.dtype ?? 'int64', dev(opts)));
}
export function eye(n: number, m = n, opts: CreateOptions = {}): Tensor {
  return finish(wrap(N.eye(n, m, opts.dtype ?? 'float32', dev(opts))), opts);
}
export function scalarTensor(value: number | boolean, opts: CreateOptions = {}): Tensor {
  return finish(wrap(N.scalarTensor(value, opts.dtype ?? 'float32', dev(opts))), opts);
}
export function zerosLike(t: Tensor, dtype?: DType): Tensor { return wrap(N.zerosLike(t.handle, dtype ?? null)); }
export function onesLike(t: Tensor, dtype?: DType): Tensor { return wrap(N.onesLike(t.handle, dtype ?? null)); }
export function fullLike(t: Tensor, value: number | boolean, dtype?: DType): Tensor {
  return wrap(N.fullLike(t.handle, value, dtype ?? null));
}
export function emptyLike(t: Tensor): Tensor { return wrap(N.emptyLike(t.handle)); }
export function randLike(t: Tensor): Tensor { return wrap(N.randLike(t.handle)); }
export function randnLike(t: Tensor): Tensor { return wrap(N.randnLike(t.handle)); }
/** Bernoulli samples with the probabilities in p. */
export function bernoulli(p: Tensor): Tensor { return wrap(N.bernoulli(p.handle)); }

export function cat(tensors: Tensor[], dim = 0): Tensor { return wrap(N.cat(tensors.map((t) => t.handle), dim)); }
export function stack(tensors: Tensor[], dim = 0): Tensor { return wrap(N.stack(tensors.map((t) => t.handle), dim)); }
/** Elementwise cond ? x : y; x and y may be numbers. */
export function where(cond: Tensor, x: TensorOrScalar, y: TensorOrScalar): Tensor {
  const h = (v: TensorOrScalar) => (v instanceof Tensor ? v.handle : v);
  return wrap(N.where(cond.handle, h(x), h(y)));
}
export function einsum(equation: string, ...tensors: Tensor[]): Tensor {
  return wrap(N.einsum(equation, tensors.map((t) => t.handle)));
}
export function matmul(a: Tensor, b: Tensor): Tensor { return a.matmul(b); }
export function bmm(a: Tensor, b: Tensor): Tensor { return a.bmm(b); }
export function outer(a: Tensor, b: Tensor): Tensor { return wrap(N.outer(a.handle, b.handle)); }
export function maximum(a: Tensor, b: Tensor): Tensor { return a.maximum(b); }
export function minimum(a: Tensor, b: Tensor): Tensor { return a.minimum(b); }
/** One-hot encoding of an int64 tensor (int64 result). */
export function oneHot(t: Tensor, numClasses = -1): Tensor { return wrap(N.oneHot(t.handle, numClasses)); }
