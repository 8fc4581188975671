// safetensors reader/writer at the record level (no engine dependency).
// Format: u64 LE header length N, N bytes of JSON header, then the raw little-endian data block;
// data_offsets in the header are relative to the start of the data block.
// The file is untrusted: every size and offset is checked before anything is allocated from it.

import { closeSync, fstatSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import {
  checkBoolBytes, checkedNumel, contiguousStrides, dtypeItemSize,
  type ContiguousTensorRecord, type DType, type TensorRecord,
} from './records.js';
import { writingTo } from '../../io/files.js';

/** Largest JSON header we accept, as in the reference implementation (guards against huge allocations). */
export const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;

const FROM_ST: Record<string, DType> = {
  F32: 'float32', F16: 'float16', BF16: 'bfloat16', F64: 'float64',
  I64: 'int64', I32: 'int32', U8: 'uint8', BOOL: 'bool',
};
const TO_ST: Record<DType, string> = {
  float32: 'F32', float16: 'F16', bfloat16: 'BF16', float64: 'F64',
  int64: 'I64', int32: 'I32', uint8: 'U8', bool: 'BOOL',
};

export interface SafetensorsEntry {
  name: string;
  dtype: DType;
  shape: number[];
  /** Byte range inside the data block. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** Entries in data-block order. */
  entries: SafetensorsEntry[];
  /** `__metadata__`, or an empty object when the file has none. */
  metadata: Record<string, string>;
  /** Absolute file offset of the data block (8 + header length). */
  dataOffset: number;
  /** Bytes from `dataOffset` to the end of the file. */
  dataLength: number;
}

export interface SafetensorsContents {
  /** Tensors in data-block order; each record is dense (contiguous strides, offset 0). */
  tensors: Map<string, TensorRecord>;
  metadata: Record<string, string>;
}

function fail(file: string, what: string): never {
  throw new Error(`${file}: invalid safetensors file: ${what}`);
}

/** Validate the 8-byte length prefix against the file size; returns the header length. */
function headerLength(prefix: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || prefix.length < 8) fail(file, `file is ${fileSize} bytes, shorter than the 8-byte header length`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_SAFETENSORS_HEADER_BYTES)) fail(file, `header length ${n} exceeds the ${MAX_SAFETENSORS_HEADER_BYTES}-byte limit`);
  if (n > BigInt(fileSize - 8)) fail(file, `header length ${n} exceeds the ${fileSize - 8} bytes after the length prefix`);
  return Number(n);
}

const isPlainObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x);

/** Parse and validate the JSON header. `dataLength` is the size of the data block that follows it. */
export function parseSafetensorsHeader(json: Uint8Array, dataOffset: number, dataLength: number,
  file = '<buffer>'): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
  } catch {
    return fail(file, 'header is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return fail(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(parsed)) return fail(file, `header must be a JSON object, got ${Array.isArray(parsed) ? 'an array' : typeof parsed}`);

  const metadata: [string, string][] = [];
  const entries: SafetensorsEntry[] = [];
  for (const [name, info] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      if (info === null) continue; // the reference implementation allows an explicit null
      if (!isPlainObject(info)) return fail(file, '__metadata__ must be an object mapping strings to strings');
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== 'string') return fail(file, `__metadata__ entry "${k}" must be a string, got ${JSON.stringify(v)?.slice(0, 80)}`);
        metadata.push([k, v]);
      }
      continue;
    }
    const bad = (what: string): never => fail(file, `tensor "${name}": ${what}`);
    if (!isPlainObject(info)) bad('entry must be an object');
    const { dtype: st, shape, data_offsets: offsets } = info as Record<string, unknown>;
    if (typeof st !== 'string') bad('missing dtype');
    const dtype = Object.prototype.hasOwnProperty.call(FROM_ST, st as string) ? FROM_ST[st as string]! : undefined;
    if (!dtype) return bad(`unsupported dtype ${JSON.stringify(st)} (supported: ${Object.keys(FROM_ST).join(', ')})`);
    if (!Array.isArray(shape)) return bad('shape must be an array');
    const numel = checkedNumel(shape);
    if (numel === undefined) return bad(`shape ${JSON.stringify(shape).slice(0, 200)} must hold non-negative safe integers with a safe-integer product`);
    if (!Array.isArray(offsets) || offsets.length !== 2) return bad('data_offsets must be [begin, end]');
    const [begin, end] = offsets as unknown[];
    if (typeof begin !== 'number' || typeof end !== 'number' || !Number.isSafeInteger(begin) || !Number.isSafeInteger(end)
      || begin < 0 || end < begin) {
      return bad(`data_offsets ${JSON.stringify(offsets)} must be non-negative integers with begin <= end`);
    }
    if (end > dataLength) return bad(`data_offsets [${begin}, ${end}] run past the ${dataLength}-byte data block`);
    const nbytes = numel * dtypeItemSize(dtype);
    if (end - begin !== nbytes) return bad(`data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape [${shape.join(', ')}] of ${st} needs ${nbytes}`);
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }

  // Overlapping ranges would alias two tensors onto the same bytes. Empty tensors occupy nothing.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let prev: SafetensorsEntry | undefined;
  for (const e of entries) {
    if (e.begin === e.end) continue;
    if (prev && e.begin < prev.end) fail(file, `tensor "${e.name}": data_offsets [${e.begin}, ${e.end}] overlap tensor "${prev.name}" [${prev.begin}, ${prev.end}]`);
    prev = e;
  }
  // Object.fromEntries defines own properties, so a "__proto__" key stays an ordinary key.
  return { entries, metadata: Object.fromEntries(metadata), dataOffset, dataLength };
}

function toRecords(header: SafetensorsHeader, data: Uint8Array, dataStart: number, file: string): SafetensorsContents {
  const tensors = new Map<string, TensorRecord>();
  for (const e of header.entries) {
    const bytes = data.subarray(e.begin - dataStart, e.end - dataStart);
    if (e.dtype === 'bool' && !checkBoolBytes(bytes)) fail(file, `tensor "${e.name}": BOOL data holds bytes other than 0 and 1`);
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, strides: contiguousStrides(e.shape), storageOffset: 0, bytes });
  }
  return { tensors, metadata: header.metadata };
}

/** Parse a whole safetensors file held in memory. Records are views into `buf` (no copy). */
export function parseSafetensors(buf: Uint8Array, file = '<buffer>'): SafetensorsContents {
  const n = headerLength(buf.subarray(0, 8), buf.length, file);
  const header = parseSafetensorsHeader(buf.subarray(8, 8 + n), 8 + n, buf.length - 8 - n, file);
  return toRecords(header, buf.subarray(8 + n), 0, file);
}

function readFully(fd: number, length: number, position: number): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    // fs reads take at most 2^31-1 bytes per call; big checkpoints are read in 1 GiB chunks.
    const got = readSync(fd, out, done, Math.min(length - done, 1 << 30), position + done);
    if (got === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += got;
  }
  return out;
}

/** Read and validate only the header of a safetensors file (cheap: does not read tensor data). */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openSync(path, 'r');
  try {
    return readHeaderFd(fd, fstatSync(fd).size, path);
  } finally {
    closeSync(fd);
  }
}

function readHeaderFd(fd: number, size: number, path: string): SafetensorsHeader {
  const n = headerLength(readFully(fd, Math.min(8, size), 0), size, path);
  return parseSafetensorsHeader(readFully(fd, n, 8), 8 + n, size - 8 - n, path);
}

/**
 * Read a safetensors file. The header is validated before the data block is read; only the bytes that
 * tensors reference are read, into one buffer that all records view.
 */
export function readSafetensorsRecords(path: string): SafetensorsContents {
  const fd = openSync(path, 'r');
  try {
    const header = readHeaderFd(fd, fstatSync(fd).size, path);
    // Entries are sorted by offset and do not overlap, so the used span runs from the first to the last one.
    const used = header.entries.filter((e) => e.end > e.begin);
    const start = used.length ? used[0]!.begin : 0;
    const end = used.length ? used[used.length - 1]!.end : 0;
    const data = readFully(fd, end - start, header.dataOffset + start);
    return toRecords(header, data, start, path);
  } finally {
    closeSync(fd);
  }
}

type TensorSource = Map<string, ContiguousTensorRecord> | Iterable<readonly [string, ContiguousTensorRecord]>;

interface Plan { header: Uint8Array; order: [string, ContiguousTensorRecord][]; dataLength: number }

function plan(tensors: TensorSource, metadata: Record<string, string> | undefined): Plan {
  const order = [...tensors].map(([k, v]) => [k, v] as [string, ContiguousTensorRecord]);
  const seen = new Set<string>();
  for (const [name, t] of order) {
    if (name === '__metadata__' || name === '') throw new Error(`safetensors: invalid tensor name ${JSON.stringify(name)}`);
    if (seen.has(name)) throw new Error(`safetensors: duplicate tensor name "${name}"`);
    seen.add(name);
    if (!Object.prototype.hasOwnProperty.call(TO_ST, t.dtype)) throw new Error(`safetensors: tensor "${name}": unsupported dtype ${String(t.dtype)}`);
    const numel = checkedNumel(t.shape);
    if (numel === undefined) throw new Error(`safetensors: tensor "${name}": invalid shape [${t.shape.join(', ')}]`);
    if (t.bytes.length !== numel * dtypeItemSize(t.dtype)) {
      throw new Error(`safetensors: tensor "${name}": ${t.bytes.length} bytes given, shape [${t.shape.join(', ')}] of ${t.dtype} needs ${numel * dtypeItemSize(t.dtype)}`);
    }
  }
  // Largest item size first (then by name), as the reference writer does: with the header padded to
  // 8 bytes every tensor then starts at a file offset aligned to its item size.
  order.sort(([an, a], [bn, b]) => dtypeItemSize(b.dtype) - dtypeItemSize(a.dtype) || (an < bn ? -1 : an > bn ? 1 : 0));

  const json: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`safetensors: __metadata__ value for "${k}" must be a string`);
    }
    json.__metadata__ = metadata;
  }
  let offset = 0;
  for (const [name, t] of order) {
    // defineProperty: a tensor named "__proto__" must become a key, not a prototype.
    Object.defineProperty(json, name, {
      value: { dtype: TO_ST[t.dtype], shape: t.shape, data_offsets: [offset, offset + t.bytes.length] },
      enumerable: true, writable: true, configurable: true,
    });
    offset += t.bytes.length;
  }
  let text = JSON.stringify(json);
  let header = new TextEncoder().encode(text);
  const pad = (8 - (header.length % 8)) % 8;
  if (pad) {
    text += ' '.repeat(pad);
    header = new TextEncoder().encode(text);
  }
  return { header, order, dataLength: offset };
}

function lengthPrefix(n: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
}

/** Serialize tensors (contiguous little-endian bytes) and optional string metadata to a safetensors buffer. */
export function serializeSafetensors(tensors: TensorSource, metadata?: Record<string, string>): Uint8Array {
  const { header, order, dataLength } = plan(tensors, metadata);
  const out = new Uint8Array(8 + header.length + dataLength);
  out.set(lengthPrefix(header.length), 0);
  out.set(header, 8);
  let pos = 8 + header.length;
  for (const [, t] of order) {
    out.set(t.bytes, pos);
    pos += t.bytes.length;
  }
  return out;
}

/**
 * Write a safetensors file. Writes to a temporary file next to `path` and renames it into place, so an
 * interrupted save never leaves a truncated checkpoint under the final name.
 */
export function writeSafetensorsRecords(path: string, tensors: TensorSource, metadata?: Record<string, string>): void {
  const { header, order } = plan(tensors, metadata);
  const tmp = `${path}.tmp-${process.pid}`;
  writingTo(path, () => writeThenRename(tmp, path, header, order));
}

function writeThenRename(tmp: string, path: string, header: Uint8Array, order: ReturnType<typeof plan>['order']): void {
  const fd = openSync(tmp, 'w');
  try {
    const write = (b: Uint8Array) => {
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done, b.length - done);
    };
    write(lengthPrefix(header.length));
    write(header);
    for (const [, t] of order) write(t.bytes);
    closeSync(fd);
  } catch (e) {
    try { closeSync(fd); } catch { /* already closed */ }
    try { unlinkSync(tmp); } catch { /* nothing to clean */ }
    throw e;
  }
  renameSync(tmp, path);
}
