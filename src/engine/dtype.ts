export type DType = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'int64' | 'int32' | 'uint8' | 'bool';
/** 'cpu', 'cuda' or 'cuda:N'. */
export type Device = string;
export type MemoryFormat = 'contiguous' | 'channels_last' | 'preserve';

export type TypedArray =
  | Float32Array
  | Float64Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint16Array;

const ITEM_SIZE: Record<DType, number> = {
  float32: 4, float16: 2, bfloat16: 2, float64: 8, int64: 8, int32: 4, uint8: 1, bool: 1,
};

export function itemSize(dtype: DType): number {
  const n = ITEM_SIZE[dtype];
  if (n === undefined) throw new TypeError(`unknown dtype '${String(dtype)}'`);
  return n;
}

export function isFloating(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64' || dtype === 'float16' || dtype === 'bfloat16';
}

/** The dtype a typed array holds (float16 / bfloat16 bits travel in Uint16Array and need an explicit dtype). */
export function dtypeOfArray(a: TypedArray): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof BigInt64Array) return 'int64';
  if (a instanceof Uint8Array) return 'uint8';
  throw new TypeError('a Uint16Array holds float16 or bfloat16 bits: pass { dtype } explicitly');
}

/** A typed-array view of raw bytes of the given dtype (float16 / bfloat16 as their Uint16 bits). */
export function viewBytes(bytes: Uint8Array, dtype: DType): TypedArray {
  const { buffer, byteOffset, byteLength } = bytes;
  const n = byteLength / itemSize(dtype);
  switch (dtype) {
    case 'float32': return new Float32Array(buffer, byteOffset, n);
    case 'float64': return new Float64Array(buffer, byteOffset, n);
    case 'int32': return new Int32Array(buffer, byteOffset, n);
    case 'int64': return new BigInt64Array(buffer, byteOffset, n);
    case 'float16': case 'bfloat16': return new Uint16Array(buffer, byteOffset, n);
    case 'uint8': case 'bool': return bytes;
  }
}
