// The Tensor class: a typed, torch-like face over one native libtorch tensor.
// Every method is one native call; defaults follow PyTorch's.
import { inspect } from 'node:util';

import { type DType, type Device, type MemoryFormat, type TypedArray, viewBytes } from './dtype.js';
import { N, type NativeTensor } from './native.js';
import { track } from './scope.js';

export type Scalar = number | boolean;
export type TensorOrScalar = Tensor | Scalar;

/** Wraps a fresh native handle (registers it with the current scope). */
export function wrap(h: NativeTensor): Tensor {
  return new Tensor(h);
}
export function wrapAll(hs: NativeTensor[]): Tensor[] {
  return hs.map(wrap);
}

/**
 * PyTorch refuses masked_fill with a non-bool mask ("only supports boolean masks"); our libtorch build still
 * takes integer masks (nonzero = true), so a mask that would fail in PyTorch would silently work here. Checked
 * in TS rather than native/: the dtype is known here and the addon stays a thin pass-through.
 */
function boolMask(mask: Tensor, op: string): Tensor {
  if (mask.dtype !== 'bool') throw new TypeError(`${op}: only supports boolean masks, but got mask of dtype ${mask.dtype}`);
  return mask;
}

function h(x: TensorOrScalar): NativeTensor | Scalar {
  return x instanceof Tensor ? x.handle : x;
}

function normDim(dim: number, ndim: number): number {
  return dim < 0 ? dim + ndim : dim;
}

export class Tensor {
  /** The native handle; internal to the engine. */
  readonly handle: NativeTensor;
  #shape: number[] | undefined;

  constructor(handle: NativeTensor) {
    this.handle = handle;
    track(this);
  }

  // ---- metadata ----
  get shape(): number[] {
    return (this.#shape ??= N.shape(this.handle) as number[]).slice();
  }
  get ndim(): number {
    return (this.#shape ??= N.shape(this.handle) as number[]).length;
  }
  get numel(): number {
    return (this.#shape ??= N.shape(this.handle) as number[]).reduce((a, b) => a * b, 1);
  }
  /** Size of one dimension (negative counts from the end). */
  size(dim: number): number {
    const s = (this.#shape ??= N.shape(this.handle) as number[]);
    const d = normDim(dim, s.length);
    if (d < 0 || d >= s.length) throw new RangeError(`size(${dim}): tensor has ${s.length} dimensions`);
    return s[d]!;
  }
  get strides(): number[] {
    return N.strides(this.handle);
  }
  get storageOffset(): number {
    return N.storageOffset(this.handle);
  }
  get dtype(): DType {
    return N.dtype(this.handle);
  }
  get device(): Device {
    return N.device(this.handle);
  }
  get requiresGrad(): boolean {
    return N.requiresGrad(this.handle);
  }
  get isLeaf(): boolean {
    return N.isLeaf(this.handle);
  }
  /** Name of the autograd node that produced this tensor, or null for a leaf. */
  get gradFn(): string | null {
    return N.gradFn(this.handle);
  }
  get isDisposed(): boolean {
    return this.handle.isDisposed;
  }
  isContiguous(format: MemoryFormat = 'contiguous'): boolean {
    return N.isContiguous(this.handle, format);
  }
  /** True when both tensors view the same storage. */
  sharesStorageWith(other: Tensor): boolean {
    return N.sharesStorage(this.handle, other.handle);
  }

  // ---- lifetime ----
  /** Frees the native tensor now. Safe to call twice. */
  dispose(): void {
    this.handle.dispose();
  }

  // ---- data out ----
  /** Raw little-endian bytes of a contiguous CPU copy. */
  toBytes(): Uint8Array {
    return N.toBytes(this.handle);
  }
  /** The values as a typed array of the tensor's dtype (float16/bfloat16 as Uint16 bits, bool as Uint8). */
  dataSync(): TypedArray {
    return viewBytes(this.toBytes(), this.dtype);
  }
  /** The values converted to float32. */
  toFloat32Array(): Float32Array {
    if (this.dtype === 'float32') return this.dataSync() as Float32Array;
    const t = N.to(this.handle, 'float32', null, false);
    try {
      return viewBytes(N.toBytes(t), 'float32') as Float32Array;
    } finally {
      t.dispose();
    }
  }
  /** The value of a one-element tensor. */
  item(): number {
    return Number(N.item(this.handle));
  }
  /** Nested arrays of numbers (booleans for bool tensors). */
  tolist(): unknown {
    const shape = this.shape;
    const flat = this.dtype === 'float16' || this.dtype === 'bfloat16' ? this.toFloat32Array() : this.dataSync();
    const isBool = this.dtype === 'bool';
    let i = 0;
    const build = (d: number): unknown => {
      if (d === shape.length) {
        const v = flat[i++]!;
        return isBool ? v !== 0 : Number(v);
      }
      const out: unknown[] = [];
      for (let k = 0; k < shape[d]!; k++) out.push(build(d + 1));
      return out;
    };
    return build(0);
  }

  toString(): string {
    if (this.isDisposed) return 'Tensor(<disposed>)';
    const shape = this.shape;
    const n = this.numel;
    const head = `Tensor(shape=[${shape.join(', ')}], dtype=${this.dtype}, device=${this.device}` +
      (this.requiresGrad ? ', requiresGrad=true' : '');
    if (n > 1000) return `${head})`;
    const vals = this.tolist();
    const fmt = (v: unknown): string =>
      typeof v === 'number' ? (Number.isInteger(v) && !this.dtype.startsWith('f') && this.dtype !== 'bfloat16'
        ? String(v) : v.toFixed(4)) : String(v);
    const render = (v: unknown, depth: number): string =>
      Array.isArray(v)
        ? `[${v.map((x) => render(x, depth + 1)).join(depth === shape.length - 1 ? ', ' : `,\n${' '.repeat(depth + 1)}`)}]`
        : fmt(v);
    return `${head},\n${render(vals, 0)})`;
  }
  [inspect.custom](): string {
    return this.toString();
  }

  // ---- conversion ----
  /** Converts dtype and/or device; returns a new tensor (or a view when nothing changes and copy is false). */
  to(target: DType | Device | { dtype?: DType; device?: Device; copy?: boolean }): Tensor {
    if (typeof target === 'string' && !isDTypeName(target) && !/^(cpu|cuda)(:\d+)?$/.test(target)) {
      throw new TypeError(`to: '${target}' is neither a dtype (${[...DTYPE_NAMES].join(', ')}) nor a device (cpu, cuda, cuda:N)`);
    }
    const spec = typeof target === 'string'
      ? (isDTypeName(target) ? { dtype: target } : { device: target })
      : target;
    return wrap(N.to(this.handle, spec.dtype ?? null, spec.device ?? null, spec.copy ?? false));
  }
  float(): Tensor { return this.to('float32'); }
  double(): Tensor { return this.to('float64'); }
  half(): Tensor { return this.to('float16'); }
  long(): Tensor { return this.to('int64'); }
  int(): Tensor { return this.to('int32'); }
  bool(): Tensor { return this.to('bool'); }
  cpu(): Tensor { return this.to({ device: 'cpu' }); }
  cuda(index = 0): Tensor { return this.to({ device: `cuda:${index}` }); }
  clone(format?: MemoryFormat): Tensor { return wrap(N.clone(this.handle, format ?? null)); }
  contiguous(format: MemoryFormat = 'contiguous'): Tensor { return wrap(N.contiguous(this.handle, format)); }
  /** Same values in channels-last (NHWC) memory order, shape unchanged. */
  channelsLast(): Tensor { return this.contiguous('channels_last'); }
  detach(): Tensor { return wrap(N.detach(this.handle)); }

  // ---- autograd ----
  requiresGrad_(on = true): this {
    N.requiresGrad_(this.handle, on);
    return this;
  }
  /** The accumulated gradient (a new handle sharing its storage), or null. */
  get grad(): Tensor | null {
    const g = N.grad(this.handle);
    return g ? wrap(g) : null;
  }
  set grad(g: Tensor | null) {
    N.setGrad(this.handle, g ? g.handle : null);
  }
  backward(gradient?: Tensor, opts: { retainGraph?: boolean; createGraph?: boolean } = {}): void {
    N.backward(this.handle, gradient?.handle ?? null, opts.retainGraph ?? false, opts.createGraph ?? false);
  }
  retainGrad(): this {
    N.retainGrad(this.handle);
    return this;
  }

  // ---- in-place ----
  copy_(src: Tensor): this { N.copy_(this.handle, src.handle); return this; }
  fill_(v: TensorOrScalar): this { N.fill_(this.handle, h(v)); return this; }
  zero_(): this { N.zero_(this.handle); return this; }
  add_(o: TensorOrScalar, alpha?: number): this { N.add_(this.handle, h(o), alpha ?? null); return this; }
  sub_(o: TensorOrScalar, alpha?: number): this { N.sub_(this.handle, h(o), alpha ?? null); return this; }
  mul_(o: TensorOrScalar): this { N.mul_(this.handle, h(o)); return this; }
  div_(o: TensorOrScalar): this { N.div_(this.handle, h(o)); return this; }
  pow_(o: TensorOrScalar): this { N.pow_(this.handle, h(o)); return this; }
  clamp_(min?: number | null, max?: number | null): this { N.clamp_(this.handle, min ?? null, max ?? null); return this; }
  maskedFill_(mask: Tensor, v: TensorOrScalar): this { N.maskedFill_(this.handle, boolMask(mask, 'maskedFill_').handle, h(v)); return this; }
  addcmul_(a: Tensor, b: Tensor, value = 1): this { N.addcmul_(this.handle, a.handle, b.handle, value); return this; }
  addcdiv_(a: Tensor, b: Tensor, value = 1): this { N.addcdiv_(this.handle, a.handle, b.handle, value); return this; }
  lerp_(end: Tensor, weight: number): this { N.lerp_(this.handle, end.handle, weight); return this; }
  scatter_(dim: number, index: Tensor, src: TensorOrScalar): this { N.scatter_(this.handle, dim, index.handle, h(src)); return this; }
  /** Advanced-index assignment: this[indices] = values (null in indices means a full slice). */
  indexPut_(indices: (Tensor | null)[], values: Tensor, accumulate = false): this {
    N.indexPut_(this.handle, indices.map((i) => i?.handle ?? null), values.handle, accumulate);
    return this;
  }
  uniform_(low = 0, high = 1): this { N.uniform_(this.handle, low, high); return this; }
  normal_(mean = 0, std = 1): this { N.normal_(this.handle, mean, std); return this; }
  relu_(): this { N.relu_(this.handle); return this; }
  sigmoid_(): this { N.sigmoid_(this.handle); return this; }
  exp_(): this { N.exp_(this.handle); return this; }
  neg_(): this { N.neg_(this.handle); return this; }
  abs_(): this { N.abs_(this.handle); return this; }
  sqrt_(): this { N.sqrt_(this.handle); return this; }
  log_(): this { N.log_(this.handle); return this; }
  tanh_(): this { N.tanh_(this.handle); return this; }

  // ---- arithmetic (broadcasting; the other operand may be a number) ----
  add(o: TensorOrScalar, alpha?: number): Tensor { return wrap(N.add(this.handle, h(o), alpha ?? null)); }
  sub(o: TensorOrScalar, alpha?: number): Tensor { return wrap(N.sub(this.handle, h(o), alpha ?? null)); }
  /** o - this */
  rsub(o: number): Tensor { return wrap(N.rsub(this.handle, o)); }
  mul(o: TensorOrScalar): Tensor { return wrap(N.mul(this.handle, h(o))); }
  div(o: TensorOrScalar, roundingMode?: 'trunc' | 'floor'): Tensor {
    return wrap(roundingMode ? N.divMode(this.handle, h(o), roundingMode) : N.div(this.handle, h(o)));
  }
  pow(o: TensorOrScalar): Tensor { return wrap(N.pow(this.handle, h(o))); }
  remainder(o: TensorOrScalar): Tensor { return wrap(N.remainder(this.handle, h(o))); }
  fmod(o: TensorOrScalar): Tensor { return wrap(N.fmod(this.handle, h(o))); }
  maximum(o: Tensor): Tensor { return wrap(N.maximum(this.handle, o.handle)); }
  minimum(o: Tensor): Tensor { return wrap(N.minimum(this.handle, o.handle)); }

  // ---- comparison and logic ----
  eq(o: TensorOrScalar): Tensor { return wrap(N.eq(this.handle, h(o))); }
  ne(o: TensorOrScalar): Tensor { return wrap(N.ne(this.handle, h(o))); }
  lt(o: TensorOrScalar): Tensor { return wrap(N.lt(this.handle, h(o))); }
  le(o: TensorOrScalar): Tensor { return wrap(N.le(this.handle, h(o))); }
  gt(o: TensorOrScalar): Tensor { return wrap(N.gt(this.handle, h(o))); }
  ge(o: TensorOrScalar): Tensor { return wrap(N.ge(this.handle, h(o))); }
  logicalAnd(o: Tensor): Tensor { return wrap(N.logicalAnd(this.handle, o.handle)); }
  logicalOr(o: Tensor): Tensor { return wrap(N.logicalOr(this.handle, o.handle)); }
  logicalXor(o: Tensor): Tensor { return wrap(N.logicalXor(this.handle, o.handle)); }
  logicalNot(): Tensor { return wrap(N.logicalNot(this.handle)); }
  isnan(): Tensor { return wrap(N.isnan(this.handle)); }
  isfinite(): Tensor { return wrap(N.isfinite(this.handle)); }
  allclose(o: Tensor, rtol = 1e-5, atol = 1e-8): boolean { return N.allclose(this.handle, o.handle, rtol, atol); }
  /** Same shape and exactly the same values. */
  equal(o: Tensor): boolean { return N.equal(this.handle, o.handle); }

  // ---- elementwise math ----
  neg(): Tensor { return wrap(N.neg(this.handle)); }
  abs(): Tensor { return wrap(N.abs(this.handle)); }
  exp(): Tensor { return wrap(N.exp(this.handle)); }
  log(): Tensor { return wrap(N.log(this.handle)); }
  log1p(): Tensor { return wrap(N.log1p(this.handle)); }
  expm1(): Tensor { return wrap(N.expm1(this.handle)); }
  sqrt(): Tensor { return wrap(N.sqrt(this.handle)); }
  rsqrt(): Tensor { return wrap(N.rsqrt(this.handle)); }
  sin(): Tensor { return wrap(N.sin(this.handle)); }
  cos(): Tensor { return wrap(N.cos(this.handle)); }
  tanh(): Tensor { return wrap(N.tanh(this.handle)); }
  sigmoid(): Tensor { return wrap(N.sigmoid(this.handle)); }
  relu(): Tensor { return wrap(N.relu(this.handle)); }
  sign(): Tensor { return wrap(N.sign(this.handle)); }
  floor(): Tensor { return wrap(N.floor(this.handle)); }
  ceil(): Tensor { return wrap(N.ceil(this.handle)); }
  round(): Tensor { return wrap(N.round(this.handle)); }
  trunc(): Tensor { return wrap(N.trunc(this.handle)); }
  reciprocal(): Tensor { return wrap(N.reciprocal(this.handle)); }
  square(): Tensor { return wrap(N.square(this.handle)); }
  erf(): Tensor { return wrap(N.erf(this.handle)); }
  logSigmoid(): Tensor { return wrap(N.logSigmoid(this.handle)); }
  /** Clamps to [min, max]; either bound may be omitted (null), and bounds may be tensors. */
  clamp(min?: number | Tensor | null, max?: number | Tensor | null): Tensor {
    if (min instanceof Tensor || max instanceof Tensor) {
      // A number next to a tensor bound becomes a temporary scalar tensor, freed right after the call.
      const lo = typeof min === 'number' ? N.scalarTensor(min, this.dtype, this.device) : null;
      const hi = typeof max === 'number' ? N.scalarTensor(max, this.dtype, this.device) : null;
      try {
        return wrap(N.clampTensor(this.handle, min instanceof Tensor ? min.handle : lo, max instanceof Tensor ? max.handle : hi));
      } finally {
        lo?.dispose();
        hi?.dispose();
      }
    }
    return wrap(N.clamp(this.handle, min ?? null, max ?? null));
  }
  clampMin(min: number): Tensor { return this.clamp(min, null); }
  clampMax(max: number): Tensor { return this.clamp(null, max); }
  softmax(dim: number, dtype?: DType): Tensor { return wrap(N.softmax(this.handle, dim, dtype ?? null)); }
  logSoftmax(dim: number, dtype?: DType): Tensor { return wrap(N.logSoftmax(this.handle, dim, dtype ?? null)); }

  // ---- reductions (dim: one or several dimensions; omitted = all) ----
  sum(dim?: number | number[], keepdim = false, dtype?: DType): Tensor {
    return wrap(N.sum(this.handle, dim ?? null, keepdim, dtype ?? null));
  }
  mean(dim?: number | number[], keepdim = false): Tensor { return wrap(N.mean(this.handle, dim ?? null, keepdim)); }
  prod(dim?: number, keepdim = false): Tensor { return wrap(N.prod(this.handle, dim ?? null, keepdim)); }
  amax(dim?: number | number[], keepdim = false): Tensor { return wrap(N.amax(this.handle, dim ?? null, keepdim)); }
  amin(dim?: number | number[], keepdim = false): Tensor { return wrap(N.amin(this.handle, dim ?? null, keepdim)); }
  /** max() of all elements, or [values, indices] along dim. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): [Tensor, Tensor];
  max(dim?: number, keepdim = false): Tensor | [Tensor, Tensor] {
    if (dim === undefined) return wrap(N.maxAll(this.handle));
    return wrapAll(N.maxDim(this.handle, dim, keepdim)) as [Tensor, Tensor];
  }
  min(): Tensor;
  min(dim: number, keepdim?: boolean): [Tensor, Tensor];
  min(dim?: number, keepdim = false): Tensor | [Tensor, Tensor] {
    if (dim === undefined) return wrap(N.minAll(this.handle));
    return wrapAll(N.minDim(this.handle, dim, keepdim)) as [Tensor, Tensor];
  }
  argmax(dim?: number, keepdim = false): Tensor { return wrap(N.argmax(this.handle, dim ?? null, keepdim)); }
  argmin(dim?: number, keepdim = false): Tensor { return wrap(N.argmin(this.handle, dim ?? null, keepdim)); }
  std(dim?: number | number[], opts: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
    return wrap(N.std(this.handle, dim ?? null, opts.unbiased ?? true, opts.keepdim ?? false));
  }
  var(dim?: number | number[], opts: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor {
    return wrap(N.var(this.handle, dim ?? null, opts.unbiased ?? true, opts.keepdim ?? false));
  }
  /** Vector p-norm over dim (all elements when omitted). */
  norm(p = 2, dim?: number | number[], keepdim = false): Tensor {
    return wrap(N.norm(this.handle, p, dim ?? null, keepdim));
  }
  logsumexp(dim: number | number[], keepdim = false): Tensor { return wrap(N.logsumexp(this.handle, dim, keepdim)); }
  any(dim?: number, keepdim = false): Tensor { return wrap(N.any(this.handle, dim ?? null, keepdim)); }
  all(dim?: number, keepdim = false): Tensor { return wrap(N.all(this.handle, dim ?? null, keepdim)); }
  cumsum(dim: number): Tensor { return wrap(N.cumsum(this.handle, dim)); }
  countNonzero(dim?: number | number[]): Tensor { return wrap(N.countNonzero(this.handle, dim ?? null)); }

  // ---- shape ----
  view(...shape: number[] | [number[]]): Tensor { return wrap(N.view(this.handle, flatArgs(shape))); }
  reshape(...shape: number[] | [number[]]): Tensor { return wrap(N.reshape(this.handle, flatArgs(shape))); }
  permute(...dims: number[] | [number[]]): Tensor { return wrap(N.permute(this.handle, flatArgs(dims))); }
  transpose(dim0: number, dim1: number): Tensor { return wrap(N.transpose(this.handle, dim0, dim1)); }
  /** Transpose of a 2-D tensor. */
  t(): Tensor { return this.transpose(0, 1); }
  flatten(startDim = 0, endDim = -1): Tensor { return wrap(N.flatten(this.handle, startDim, endDim)); }
  squeeze(dim?: number): Tensor { return wrap(N.squeeze(this.handle, dim ?? null)); }
  unsqueeze(dim: number): Tensor { return wrap(N.unsqueeze(this.handle, dim)); }
  expand(...shape: number[] | [number[]]): Tensor { return wrap(N.expand(this.handle, flatArgs(shape))); }
  expandAs(other: Tensor): Tensor { return this.expand(other.shape); }
  repeat(...reps: number[] | [number[]]): Tensor { return wrap(N.repeat(this.handle, flatArgs(reps))); }
  /** Splits into chunks of `size` (a number) or of the given sizes (an array) along dim. */
  split(size: number | number[], dim = 0): Tensor[] { return wrapAll(N.split(this.handle, size, dim)); }
  chunk(chunks: number, dim = 0): Tensor[] { return wrapAll(N.chunk(this.handle, chunks, dim)); }
  narrow(dim: number, start: number, length: number): Tensor { return wrap(N.narrow(this.handle, dim, start, length)); }
  /** Python's t[..., start:end:step, ...] on one dimension (a view). */
  slice(dim: number, start?: number | null, end?: number | null, step = 1): Tensor {
    return wrap(N.slice(this.handle, dim, start ?? null, end ?? null, step));
  }
  /** t[..., index, ...] on one dimension, removing it (a view). */
  select(dim: number, index: number): Tensor { return wrap(N.select(this.handle, dim, index)); }
  asStrided(size: number[], stride: number[], storageOffset?: number): Tensor {
    return wrap(N.asStrided(this.handle, size, stride, storageOffset ?? null));
  }
  /** Sliding windows of `size` with `step` along dim (Tensor.unfold). */
  unfold(dim: number, size: number, step: number): Tensor { return wrap(N.unfoldDim(this.handle, dim, size, step)); }
  flip(dims: number | number[]): Tensor { return wrap(N.flip(this.handle, dims)); }
  roll(shifts: number | number[], dims: number | number[]): Tensor { return wrap(N.roll(this.handle, shifts, dims)); }
  tril(diagonal = 0): Tensor { return wrap(N.tril(this.handle, diagonal)); }
  triu(diagonal = 0): Tensor { return wrap(N.triu(this.handle, diagonal)); }

  // ---- indexing ----
  indexSelect(dim: number, index: Tensor): Tensor { return wrap(N.indexSelect(this.handle, dim, index.handle)); }
  gather(dim: number, index: Tensor): Tensor { return wrap(N.gather(this.handle, dim, index.handle)); }
  scatter(dim: number, index: Tensor, src: TensorOrScalar): Tensor {
    return wrap(N.scatter(this.handle, dim, index.handle, h(src)));
  }
  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return wrap(N.scatterAdd(this.handle, dim, index.handle, src.handle));
  }
  maskedFill(mask: Tensor, value: TensorOrScalar): Tensor { return wrap(N.maskedFill(this.handle, boolMask(mask, 'maskedFill').handle, h(value))); }
  maskedSelect(mask: Tensor): Tensor { return wrap(N.maskedSelect(this.handle, mask.handle)); }
  /** Advanced indexing t[i0, i1, ...] with index or boolean tensors; null means a full slice. */
  index(indices: (Tensor | null)[]): Tensor {
    return wrap(N.index(this.handle, indices.map((i) => i?.handle ?? null)));
  }
  nonzero(): Tensor { return wrap(N.nonzero(this.handle)); }

  // ---- sorting ----
  topk(k: number, dim = -1, largest = true, sorted = true): [Tensor, Tensor] {
    return wrapAll(N.topk(this.handle, k, dim, largest, sorted)) as [Tensor, Tensor];
  }
  sort(dim = -1, descending = false, stable = false): [Tensor, Tensor] {
    return wrapAll(N.sort(this.handle, dim, descending, stable)) as [Tensor, Tensor];
  }
  argsort(dim = -1, descending = false): Tensor { return wrap(N.argsort(this.handle, dim, descending, false)); }
  /** Sorted unique values of the flattened tensor, with inverse indices and counts. */
  unique(): { values: Tensor; inverse: Tensor; counts: Tensor } {
    const [values, inverse, counts] = wrapAll(N.unique(this.handle));
    return { values: values!, inverse: inverse!, counts: counts! };
  }

  // ---- linear algebra ----
  matmul(o: Tensor): Tensor { return wrap(N.matmul(this.handle, o.handle)); }
  mm(o: Tensor): Tensor { return wrap(N.mm(this.handle, o.handle)); }
  bmm(o: Tensor): Tensor { return wrap(N.bmm(this.handle, o.handle)); }
}

const DTYPE_NAMES = new Set(['float32', 'float16', 'bfloat16', 'float64', 'int64', 'int32', 'uint8', 'bool']);
export function isDTypeName(s: string): s is DType {
  return DTYPE_NAMES.has(s);
}

function flatArgs(args: number[] | [number[]]): number[] {
  return Array.isArray(args[0]) ? (args[0] as number[]) : (args as number[]);
}

export { normDim };
