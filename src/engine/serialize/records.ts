// Engine-independent tensor records shared by the safetensors and .pth parsers.
// Nothing here imports the engine, so the parsers can be unit tested without the native addon.

/** Same literals as the engine's `DType`; kept local so this module never loads the addon. */
export type DType = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'int64' | 'int32' | 'uint8' | 'bool';

/**
 * A tensor as found in a file: a (possibly strided) view of a little-endian storage.
 * `bytes` holds the whole storage (`storageNumel * itemSize` bytes); several records may share one storage
 * (views of the same tensor in a .pth file share the same `bytes` object).
 */
export interface TensorRecord {
  dtype: DType;
  shape: number[];
  strides: number[]; // in elements, like torch
  storageOffset: number; // in elements
  bytes: Uint8Array;
}

/** A contiguous tensor given to a writer: `bytes.length` must be `numel * itemSize`. */
export interface ContiguousTensorRecord {
  dtype: DType;
  shape: number[];
  bytes: Uint8Array;
}

const ITEM_SIZE: Record<DType, number> = {
  float32: 4, float16: 2, bfloat16: 2, float64: 8, int64: 8, int32: 4, uint8: 1, bool: 1,
};

export const DTYPES: readonly DType[] = Object.keys(ITEM_SIZE) as DType[];

export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(ITEM_SIZE, x);
}

export function dtypeItemSize(dtype: DType): number {
  return ITEM_SIZE[dtype];
}

/** Number of elements, or undefined if a dimension is invalid or the product is not a safe integer. */
export function checkedNumel(shape: readonly unknown[]): number | undefined {
  let n = 1n;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) return undefined;
    n *= BigInt(d);
  }
  return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : undefined;
}

export function numelOf(shape: readonly number[]): number {
  const n = checkedNumel(shape);
  if (n === undefined) throw new Error(`invalid shape [${shape.join(', ')}]`);
  return n;
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= Math.max(shape[i]!, 1);
  }
  return strides;
}

/** True when the record is a plain row-major array starting at element 0 of a storage of exactly its size. */
export function isDenseRecord(r: TensorRecord): boolean {
  const numel = numelOf(r.shape);
  if (r.storageOffset !== 0 || r.bytes.length !== numel * dtypeItemSize(r.dtype)) return false;
  const c = contiguousStrides(r.shape);
  // Strides of size-1 dimensions never matter.
  return r.shape.every((d, i) => d <= 1 || r.strides[i] === c[i]);
}

/**
 * Check that a strided view stays inside its storage. Returns an error message, or undefined if valid.
 * Uses BigInt because offset + sum((size-1)*stride) of hostile values can exceed 2^53.
 */
export function viewProblem(shape: readonly number[], strides: readonly number[], storageOffset: number,
  storageNumel: number): string | undefined {
  if (shape.length !== strides.length) return `size has ${shape.length} dims but stride has ${strides.length}`;
  const numel = checkedNumel(shape);
  if (numel === undefined) return `invalid size [${shape.join(', ')}]`;
  for (const s of strides) {
    if (typeof s !== 'number' || !Number.isSafeInteger(s) || s < 0) return `invalid stride [${strides.join(', ')}]`;
  }
  if (!Number.isSafeInteger(storageOffset) || storageOffset < 0) return `invalid storage offset ${storageOffset}`;
  if (numel === 0) return storageOffset <= storageNumel ? undefined : `storage offset ${storageOffset} is past the storage (${storageNumel} elements)`;
  let last = BigInt(storageOffset);
  for (let i = 0; i < shape.length; i++) last += BigInt(shape[i]! - 1) * BigInt(strides[i]!);
  if (last >= BigInt(storageNumel)) {
    return `view (size [${shape.join(', ')}], stride [${strides.join(', ')}], offset ${storageOffset}) reaches element ${last} but the storage holds ${storageNumel} elements`;
  }
  return undefined;
}

/**
 * The record's elements as a new row-major little-endian byte array (what `Tensor.toBytes()` returns).
 * Plain JS, so tests and engine-less tools can read strided .pth views.
 */
export function recordToContiguousBytes(r: TensorRecord): Uint8Array {
  const item = dtypeItemSize(r.dtype);
  const numel = numelOf(r.shape);
  if (isDenseRecord(r)) return r.bytes.slice();
  const problem = viewProblem(r.shape, r.strides, r.storageOffset, Math.floor(r.bytes.length / item));
  if (problem) throw new Error(problem);
  const out = new Uint8Array(numel * item);
  const nd = r.shape.length;
  const index = new Array<number>(nd).fill(0);
  let src = r.storageOffset;
  for (let k = 0; k < numel; k++) {
    out.set(r.bytes.subarray(src * item, src * item + item), k * item);
    // Odometer increment of the multi-index, adjusting the source element offset incrementally.
    for (let d = nd - 1; d >= 0; d--) {
      index[d]!++;
      src += r.strides[d]!;
      if (index[d]! < r.shape[d]!) break;
      src -= r.strides[d]! * r.shape[d]!;
      index[d] = 0;
    }
  }
  return out;
}

/** Bool storages must hold only 0 or 1; anything else is undefined behaviour in libtorch. */
export function checkBoolBytes(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i]! > 1) return false;
  return true;
}
