// Tests for src/engine/serialize: safetensors read/write, the zip reader, the restricted pickle VM and
// the torch.save (.pth) reader. Record-level tests need no native addon; the tensor-level tests at the end
// skip unless the engine has been built.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  DTYPES, dtypeItemSize, numelOf, recordToContiguousBytes, viewProblem, type ContiguousTensorRecord, type DType,
  type TensorRecord,
} from '../../src/engine/serialize/records.js';
import {
  MAX_SAFETENSORS_HEADER_BYTES, parseSafetensors, readSafetensorsHeader, readSafetensorsRecords,
  serializeSafetensors, writeSafetensorsRecords,
} from '../../src/engine/serialize/safetensors.js';
import { ZipReader } from '../../src/engine/serialize/zip.js';
import { type ZEntry, makeZip } from './zip-writer.js';
import { PyCallable, isTuple, unpickle } from '../../src/engine/serialize/pickle.js';
import {
  PthTensorRecord, findStateDict, parsePth, readPth, readPthStateDict,
} from '../../src/engine/serialize/pth.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url)); // dist/test/engine/ -> repo root
const FIXTURES = join(ROOT, 'test', 'fixtures');
const MOBILENET = join(ROOT, '..', 'shared', 'weights', 'mobilenet_v2_imagenet.safetensors');
const TMP = mkdtempSync(join(tmpdir(), 'weakseg-serialize-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

interface Described {
  dtype: DType; shape: number[]; stride: number[]; storage_offset: number; contiguous: boolean;
  values: (number | string | boolean)[]; sum: number; hex: string;
}
interface Expected {
  torch_version: string;
  state_dict: Record<string, Described>;
  order: string[];
  checkpoint: { epoch: number; lr: number; momentum: number; momentum_buffer_0: Described; views: Described[] };
}
const EXPECTED = JSON.parse(readFileSync(join(FIXTURES, 'tiny_expected.json'), 'utf8')) as Expected;

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const enc = new TextEncoder();

/** Asserts fn throws an Error whose message contains every needle (file names, entry names, ...). */
function throwsNaming(fn: () => unknown, ...needles: (string | RegExp)[]): Error {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof Error, `expected an Error to be thrown (needles: ${needles.join(', ')})`);
  for (const n of needles) {
    if (typeof n === 'string') assert.ok(err.message.includes(n), `message ${JSON.stringify(err.message)} should contain ${JSON.stringify(n)}`);
    else assert.match(err.message, n);
  }
  return err;
}

// ---------------------------------------------------------------------------------------------------------
// Value decoding, to compare record bytes with the values torch wrote into tiny_expected.json.

function f16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function decode(bytes: Uint8Array, dtype: DType): (number | bigint | boolean)[] {
  const b = bytes.slice(); // aligned copy
  const buf = b.buffer;
  switch (dtype) {
    case 'float32': return [...new Float32Array(buf)];
    case 'float64': return [...new Float64Array(buf)];
    case 'float16': return [...new Uint16Array(buf)].map(f16ToNumber);
    case 'bfloat16': return [...new Uint16Array(buf)].map((h) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]!);
    case 'int64': return [...new BigInt64Array(buf)];
    case 'int32': return [...new Int32Array(buf)];
    case 'uint8': return [...b];
    case 'bool': return [...b].map((x) => x !== 0);
  }
}

function normalizeExpected(d: Described): (number | bigint | boolean)[] {
  if (d.dtype === 'int64') return d.values.map((v) => BigInt(v as number | string));
  return d.values as (number | boolean)[];
}

function checkRecord(name: string, r: TensorRecord, d: Described): void {
  assert.equal(r.dtype, d.dtype, `${name} dtype`);
  assert.deepEqual(r.shape, d.shape, `${name} shape`);
  // Strides of size-1 dims are arbitrary in torch; compare only the meaningful ones.
  assert.deepEqual(r.strides.filter((_, i) => d.shape[i]! > 1), d.stride.filter((_, i) => d.shape[i]! > 1), `${name} strides`);
  assert.equal(r.storageOffset, d.storage_offset, `${name} storage offset`);
  const bytes = recordToContiguousBytes(r);
  assert.equal(hex(bytes), d.hex, `${name} bytes`);
  assert.deepEqual(decode(bytes, r.dtype), normalizeExpected(d), `${name} values`);
}

// ---------------------------------------------------------------------------------------------------------
// records.ts

test('records: strided view gather and bounds checks', () => {
  // 3x4 view with stride (1, 3) at offset 2 in a storage of 16 int32.
  const storage = new Uint8Array(new Int32Array(Array.from({ length: 16 }, (_, i) => i * 10)).buffer);
  const r: TensorRecord = { dtype: 'int32', shape: [3, 4], strides: [1, 3], storageOffset: 2, bytes: storage };
  assert.deepEqual(decode(recordToContiguousBytes(r), 'int32'), [20, 50, 80, 110, 30, 60, 90, 120, 40, 70, 100, 130]);
  assert.equal(viewProblem([3, 4], [1, 3], 2, 14), undefined);
  assert.match(viewProblem([3, 4], [1, 3], 2, 13)!, /reaches element 13/);
  assert.match(viewProblem([2], [-1], 0, 10)!, /invalid stride/);
  assert.match(viewProblem([2, 2], [1], 0, 10)!, /dims/);
  assert.equal(viewProblem([0, 5], [5, 1], 3, 3), undefined); // empty views touch nothing
  assert.match(viewProblem([2 ** 20, 4], [2 ** 52, 1], 0, 10)!, /reaches element 4722361979270017843203 /); // exact, no overflow
  assert.equal(numelOf([]), 1);
});

// ---------------------------------------------------------------------------------------------------------
// safetensors

function sampleBytes(dtype: DType, numel: number, seed: number): Uint8Array {
  const n = numel * dtypeItemSize(dtype);
  const b = new Uint8Array(n);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = dtype === 'bool' ? (x >>> 16) & 1 : x >>> 24; // arbitrary bit patterns (NaNs included) for the rest
  }
  return b;
}

function sampleTensors(): Map<string, ContiguousTensorRecord> {
  const m = new Map<string, ContiguousTensorRecord>();
  DTYPES.forEach((dtype, i) => {
    m.set(`${dtype}.matrix`, { dtype, shape: [3, 5], bytes: sampleBytes(dtype, 15, i + 1) });
    m.set(`${dtype}.scalar`, { dtype, shape: [], bytes: sampleBytes(dtype, 1, i + 11) });
    m.set(`${dtype}.empty`, { dtype, shape: [0, 4], bytes: new Uint8Array(0) });
  });
  m.set('__proto__', { dtype: 'uint8', shape: [2], bytes: new Uint8Array([7, 9]) }); // must stay an ordinary key
  m.set('unicode.名前', { dtype: 'float32', shape: [1, 1, 1], bytes: sampleBytes('float32', 1, 99) });
  return m;
}

function checkRoundTrip(read: Map<string, TensorRecord>, written: Map<string, ContiguousTensorRecord>): void {
  assert.deepEqual([...read.keys()].sort(), [...written.keys()].sort());
  for (const [name, w] of written) {
    const r = read.get(name)!;
    assert.equal(r.dtype, w.dtype, name);
    assert.deepEqual(r.shape, w.shape, name);
    assert.equal(r.storageOffset, 0);
    assert.equal(hex(r.bytes), hex(w.bytes), `${name} bytes`);
  }
}

test('safetensors: round trip of every dtype in memory, bit-exact, with metadata', () => {
  const tensors = sampleTensors();
  const metadata = { format: 'pt', note: 'ünïcödé, "quotes" and\nnewlines', __proto__x: 'y', empty: '' };
  const buf = serializeSafetensors(tensors, metadata);
  const n = Number(new DataView(buf.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0, 'header padded to a multiple of 8');
  const header = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + n))) as Record<string, { dtype: string; data_offsets: number[] }>;
  assert.deepEqual(Object.keys(header).sort(), [...tensors.keys(), '__metadata__'].sort());
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const item = { F32: 4, F16: 2, BF16: 2, F64: 8, I64: 8, I32: 4, U8: 1, BOOL: 1 }[info.dtype]!;
    assert.equal((8 + n + info.data_offsets[0]!) % item, 0, `${name} is aligned to its item size`);
  }
  const parsed = parseSafetensors(buf, 'mem.safetensors');
  checkRoundTrip(parsed.tensors, tensors);
  assert.deepEqual(parsed.metadata, metadata);
  assert.equal(Object.getPrototypeOf(parsed.tensors.get('__proto__')), Object.prototype);
});

test('safetensors: round trip through a file; header-only read; no metadata', () => {
  const tensors = sampleTensors();
  const path = join(TMP, 'roundtrip.safetensors');
  writeSafetensorsRecords(path, tensors, { epoch: '3' });
  assert.ok(!existsSync(`${path}.tmp-${process.pid}`), 'temporary file renamed away');
  const read = readSafetensorsRecords(path);
  checkRoundTrip(read.tensors, tensors);
  assert.deepEqual(read.metadata, { epoch: '3' });
  const header = readSafetensorsHeader(path);
  assert.equal(header.entries.length, tensors.size);
  assert.equal(header.dataOffset + header.dataLength, statSync(path).size);

  const bare = join(TMP, 'bare.safetensors');
  writeSafetensorsRecords(bare, [['x', { dtype: 'float32', shape: [2], bytes: new Uint8Array(8) }]]);
  const text = readFileSync(bare).subarray(8).toString('latin1');
  assert.ok(!text.includes('__metadata__'), 'metadata omitted when not given');
  assert.deepEqual(readSafetensorsRecords(bare).metadata, {});
  // An empty file of tensors is valid too.
  writeSafetensorsRecords(bare, new Map());
  assert.equal(readSafetensorsRecords(bare).tensors.size, 0);
});

test('safetensors: writer rejects inconsistent input', () => {
  const t = (bytes: number, dtype: DType = 'float32', shape = [2]) => new Map([['x', { dtype, shape, bytes: new Uint8Array(bytes) }]]);
  assert.throws(() => serializeSafetensors(t(7)), /7 bytes given/);
  assert.throws(() => serializeSafetensors(t(8, 'complex64' as DType)), /unsupported dtype/);
  assert.throws(() => serializeSafetensors(t(8, 'float32', [-2])), /invalid shape/);
  assert.throws(() => serializeSafetensors(new Map([['__metadata__', { dtype: 'uint8' as DType, shape: [0], bytes: new Uint8Array(0) }]])), /invalid tensor name/);
  assert.throws(() => serializeSafetensors(t(8), { a: 1 as unknown as string }), /must be a string/);
  assert.throws(() => serializeSafetensors([['a', t(8).get('x')!], ['a', t(8).get('x')!]]), /duplicate/);
});

/** A safetensors file from an arbitrary header (object or raw string) and data block. */
function rawSafetensors(header: unknown, data: Uint8Array | number = 0, lengthOverride?: bigint): Uint8Array {
  const json = typeof header === 'string' ? enc.encode(header) : header instanceof Uint8Array ? header : enc.encode(JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + d.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  out.set(d, 8 + json.length);
  return out;
}

test('safetensors: hostile files are refused with an error naming the file (and the entry)', () => {
  const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const cases: [string, Uint8Array, (string | RegExp)[]][] = [
    ['empty', new Uint8Array(0), [/shorter than the 8-byte header length/]],
    ['short', new Uint8Array(5), [/shorter than the 8-byte/]],
    ['length-past-eof', rawSafetensors(ok, 8, 1000n), [/header length 1000 exceeds the \d+ bytes/]],
    ['length-huge', rawSafetensors(ok, 8, 2n ** 63n), [/exceeds the 100000000-byte limit/]],
    ['length-over-limit', rawSafetensors(ok, 8, BigInt(MAX_SAFETENSORS_HEADER_BYTES + 1)), [/limit/]],
    ['not-utf8', rawSafetensors(new Uint8Array([0x7b, 0xff, 0x7d])), [/UTF-8/]],
    ['not-json', rawSafetensors('{"a": '), [/not valid JSON/]],
    ['json-array', rawSafetensors('[1, 2]'), [/must be a JSON object, got an array/]],
    ['json-null', rawSafetensors('null'), [/must be a JSON object/]],
    ['json-number', rawSafetensors('42      '), [/must be a JSON object, got number/]],
    ['entry-not-object', rawSafetensors({ a: [1] }), ['tensor "a"', /must be an object/]],
    ['unknown-dtype', rawSafetensors({ w: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } }, 2), ['tensor "w"', /unsupported dtype "F8_E4M3"/]],
    ['dtype-missing', rawSafetensors({ w: { shape: [2], data_offsets: [0, 8] } }, 8), ['tensor "w"', /missing dtype/]],
    ['dtype-proto', rawSafetensors({ w: { dtype: 'toString', shape: [2], data_offsets: [0, 8] } }, 8), ['tensor "w"', /unsupported dtype/]],
    ['shape-negative', rawSafetensors({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }), ['tensor "w"', /shape/]],
    ['shape-fraction', rawSafetensors({ w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 6] } }, 6), ['tensor "w"', /shape/]],
    ['shape-string', rawSafetensors({ w: { dtype: 'F32', shape: '2', data_offsets: [0, 8] } }, 8), ['tensor "w"', /shape must be an array/]],
    ['shape-overflow', rawSafetensors({ w: { dtype: 'U8', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 8] } }, 8), ['tensor "w"', /safe-integer product/]],
    ['offsets-past-end', rawSafetensors({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 8), ['tensor "w"', /run past the 8-byte data block/]],
    ['offsets-reversed', rawSafetensors({ w: { dtype: 'F32', shape: [0], data_offsets: [8, 0] } }, 8), ['tensor "w"', /begin <= end/]],
    ['offsets-negative', rawSafetensors({ w: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, 8), ['tensor "w"', /non-negative/]],
    ['offsets-shape', rawSafetensors({ w: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 8), ['tensor "w"', /\[begin, end\]/]],
    ['size-mismatch', rawSafetensors({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 12), ['tensor "w"', /span 8 bytes but shape \[3\] of F32 needs 12/]],
    ['overlap', rawSafetensors({
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    }, 12), [/tensor "b".*overlap tensor "a"/]],
    ['duplicate-range', rawSafetensors({
      a: { dtype: 'U8', shape: [4], data_offsets: [0, 4] },
      b: { dtype: 'U8', shape: [4], data_offsets: [0, 4] },
    }, 4), [/overlap/]],
    ['metadata-not-object', rawSafetensors({ __metadata__: ['x'] }), [/__metadata__ must be an object/]],
    ['metadata-value', rawSafetensors({ __metadata__: { epoch: 3 } }), [/__metadata__ entry "epoch" must be a string/]],
    ['bool-not-0-1', rawSafetensors({ m: { dtype: 'BOOL', shape: [2], data_offsets: [0, 2] } }, new Uint8Array([1, 2])), ['tensor "m"', /BOOL/]],
  ];
  for (const [name, bytes, needles] of cases) {
    const path = join(TMP, `hostile-${name}.safetensors`);
    writeFileSync(path, bytes);
    throwsNaming(() => readSafetensorsRecords(path), path, ...needles);
    throwsNaming(() => parseSafetensors(bytes, `mem-${name}`), `mem-${name}`, ...needles);
  }
  // Valid edge cases: a null __metadata__, zero-size tensors sharing an offset, unused trailing bytes.
  const fine = rawSafetensors({ __metadata__: null, e1: { dtype: 'F32', shape: [0], data_offsets: [0, 0] },
    e2: { dtype: 'I64', shape: [3, 0], data_offsets: [0, 0] }, a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] } }, 5);
  assert.deepEqual([...parseSafetensors(fine).tensors.keys()].sort(), ['a', 'e1', 'e2']);
});

test('safetensors: reads the shared MobileNetV2 weights', (t) => {
  if (!existsSync(MOBILENET)) {
    t.skip(`${MOBILENET} is absent (../shared is only present in the development checkout)`);
    return;
  }
  const { tensors, metadata } = readSafetensorsRecords(MOBILENET);
  assert.equal(tensors.size, 262);
  for (const [name, r] of tensors) assert.equal(r.dtype, 'float16', name);
  assert.deepEqual(tensors.get('features.0.0.weight')!.shape, [32, 3, 3, 3]);
  assert.deepEqual(tensors.get('classifier.1.weight')!.shape, [1001, 1280]);
  for (const key of ['input_mean', 'input_std', 'padding']) assert.equal(typeof metadata[key], 'string', key);
  assert.equal(metadata.input_mean, '0.5,0.5,0.5');
  assert.equal(metadata.input_std, '0.5,0.5,0.5');
  t.diagnostic(`mobilenet metadata: ${JSON.stringify(metadata)}`);
  // BatchNorm was folded into the convolutions: the BN weights are ones.
  assert.ok(decode(tensors.get('features.0.1.weight')!.bytes, 'float16').every((v) => v === 1));
});

// ---------------------------------------------------------------------------------------------------------
// zip reader

test('zip: stored, deflated and ZIP64 archives', () => {
  const big = enc.encode('weakseg '.repeat(1000));
  for (const zip64 of [false, true]) {
    const buf = makeZip([
      { name: 'a/stored.bin', data: new Uint8Array([1, 2, 3]) },
      { name: 'a/deflated.txt', data: big, method: 8 },
      { name: 'a/empty', data: new Uint8Array(0) },
    ], { zip64, comment: 'PK\x05\x06 a comment that looks like a signature' });
    const z = ZipReader.fromBuffer(buf, 'mem.zip');
    assert.deepEqual([...z.entries.keys()], ['a/stored.bin', 'a/deflated.txt', 'a/empty']);
    assert.deepEqual([...z.read('a/stored.bin')], [1, 2, 3]);
    assert.equal(hex(z.read('a/deflated.txt')), hex(big));
    assert.equal(z.read('a/empty').length, 0);
    throwsNaming(() => z.read('a/missing'), 'mem.zip', 'a/missing');
  }
  // The torch fixture: ZIP64 end records and 64-byte aligned, padded local headers.
  const z = ZipReader.open(join(FIXTURES, 'tiny_state_dict.pth'));
  try {
    assert.ok(z.entries.has('tiny_state_dict/data.pkl'));
    assert.equal(new TextDecoder().decode(z.read('tiny_state_dict/version')).trim(), '3');
  } finally {
    z.close();
  }
});

test('zip: malformed archives are refused with an error naming the file and entry', () => {
  const good = makeZip([{ name: 'x/data.pkl', data: new Uint8Array([0x80, 2, 0x4e, 0x2e]) }]);
  const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
  const eocdAt = good.length - 22;
  const cdAt = dv(good).getUint32(eocdAt + 16, true);
  const patch = (f: (b: Uint8Array, v: DataView) => void) => { const b = good.slice(); f(b, dv(b)); return b; };
  const cases: [string, Uint8Array, (string | RegExp)[], string?][] = [
    ['truncated', good.subarray(0, good.length - 5), [/no end-of-central-directory record/]],
    ['tiny', new Uint8Array(10), [/too short/]],
    ['cd-past-eof', patch((_, v) => v.setUint32(eocdAt + 16, 1 << 30, true)), [/central directory.*runs past/]],
    ['cd-size-huge', patch((_, v) => v.setUint32(eocdAt + 12, 0xfffffff0, true)), [/central directory/]],
    ['count-huge', patch((_, v) => { v.setUint16(eocdAt + 8, 9999, true); v.setUint16(eocdAt + 10, 9999, true); }), [/9999 entries cannot fit/]],
    ['multi-disk', patch((_, v) => v.setUint16(eocdAt + 4, 1, true)), [/multi-disk/]],
    ['local-offset-past-eof', patch((_, v) => v.setUint32(cdAt + 42, 1 << 30, true)), [/x\/data.pkl/, /outside the \d+-byte file/], 'x/data.pkl'],
    ['size-past-cd', patch((_, v) => { v.setUint32(cdAt + 20, 5000, true); v.setUint32(cdAt + 24, 5000, true); }), [/x\/data.pkl/, /runs into the central directory/], 'x/data.pkl'],
    ['bad-local-sig', patch((_, v) => v.setUint32(0, 0xdeadbeef, true)), [/x\/data.pkl/, /no local header/], 'x/data.pkl'],
    ['crc', patch((_, v) => v.setUint32(cdAt + 16, 1234, true)), [/x\/data.pkl/, /CRC mismatch/], 'x/data.pkl'],
    ['method', patch((_, v) => v.setUint16(cdAt + 10, 12, true)), [/x\/data.pkl/, /unsupported compression method 12/], 'x/data.pkl'],
    ['encrypted', patch((_, v) => v.setUint16(cdAt + 8, 1, true)), [/x\/data.pkl/, /encrypted/], 'x/data.pkl'],
    ['stored-size-mismatch', patch((_, v) => v.setUint32(cdAt + 24, 3, true)), [/x\/data.pkl/, /stored entry/], 'x/data.pkl'],
  ];
  for (const [name, bytes, needles, entry] of cases) {
    const path = join(TMP, `hostile-${name}.zip`);
    writeFileSync(path, bytes);
    throwsNaming(() => {
      const z = ZipReader.open(path);
      try { z.read(entry ?? 'x/data.pkl'); } finally { z.close(); }
    }, path, ...needles);
  }
  // Duplicate names, and a deflate bomb that inflates past its declared size.
  throwsNaming(() => ZipReader.fromBuffer(makeZip([{ name: 'd', data: new Uint8Array(1) }, { name: 'd', data: new Uint8Array(1) }]), 'dup.zip'), 'dup.zip', /duplicate entry "d"/);
  const bombData = new Uint8Array(1 << 20);
  const bomb = ZipReader.fromBuffer(makeZip([{ name: 'bomb', data: bombData, method: 8, uncompressedSize: 100 }]), 'bomb.zip');
  throwsNaming(() => bomb.read('bomb'), 'bomb.zip', 'bomb', /inflate/);
  // ZIP64 extra field too short for the fields it must carry.
  const z64 = makeZip([{ name: 'e', data: new Uint8Array(4) }], { zip64: true });
  const z64v = dv(z64);
  const cd64 = Number(z64v.getBigUint64(z64.length - 22 - 20 - 56 + 48, true));
  z64v.setUint16(cd64 + 46 + 1 + 2, 8, true); // extra data length 24 -> 8: only the uncompressed size fits
  throwsNaming(() => ZipReader.fromBuffer(z64, 'z64.zip'), 'z64.zip', 'entry "e"', /zip64 extra field is too short/);
});

// ---------------------------------------------------------------------------------------------------------
// pickle VM

const PICKLES: Record<number, string> = {
  // pickle.dumps(obj, protocol=p).hex() from a plain CPython 3.11, for the object described at checkPickleValue.
  0: '286470300a56690a70310a286c70320a49300a6149310a61492d310a61493235350a61493235360a614936353533350a614936353533360a61492d323134373438333634380a6149323134373438333634370a614c323134373438333634384c0a614c393030373139393235343734303939324c0a614c2d393030373139393235343734303939324c0a614c393232333337323033363835343737353830384c0a614c2d393232333337323033363835343737353830394c0a617356660a70330a286c70340a46302e300a61462d312e350a614631652b3330300a6146696e660a6146302e310a617356730a70350a286c70360a560a70370a615668e96c6c6f0a70380a61565c75363565355c75363732635c5530303031663630300a70390a6156615c7530303061625c7530303563630a7031300a6173566e0a7031310a4e7356740a7031320a4930310a735666610a7031330a4930300a735674750a7031340a2849310a2849320a49330a747031350a2874747031360a73566e65737465640a7031370a28647031380a49310a566f6e650a7031390a73566c0a7032300a286c7032310a286c7032320a6128647032330a61737356616c6961730a7032340a286c7032350a286c7032360a49310a61616732360a61732e',
  1: '7d71002858010000006971015d7102284b004b014affffffff4bff4d00014dffff4a000001004a000000804affffff7f4c323134373438333634384c0a4c393030373139393235343734303939324c0a4c2d393030373139393235343734303939324c0a4c393232333337323033363835343737353830384c0a4c2d393232333337323033363835343737353830394c0a6558010000006671035d71042847000000000000000047bff8000000000000477e37e43c8800759c477ff0000000000000473fb999999999999a6558010000007371055d71062858000000007107580600000068c3a96c6c6f7108580a000000e697a5e69cacf09f988071095805000000610a625c63710a6558010000006e710b4e580100000074710c4930310a58020000006661710d4930300a58020000007475710e284b01284b024b0374710f2974711058060000006e657374656471117d7112284b0158030000006f6e65711358010000006c71145d7115285d71167d711765755805000000616c69617371185d7119285d711a4b0161681a65752e',
  2: '80027d71002858010000006971015d7102284b004b014affffffff4bff4d00014dffff4a000001004a000000804affffff7f8a0500000080008a07000000000000208a07000000000000e08a090000000000000080008a09ffffffffffffff7fff6558010000006671035d71042847000000000000000047bff8000000000000477e37e43c8800759c477ff0000000000000473fb999999999999a6558010000007371055d71062858000000007107580600000068c3a96c6c6f7108580a000000e697a5e69cacf09f988071095805000000610a625c63710a6558010000006e710b4e580100000074710c8858020000006661710d8958020000007475710e4b014b024b0386710f2987711058060000006e657374656471117d7112284b0158030000006f6e65711358010000006c71145d7115285d71167d711765755805000000616c69617371185d7119285d711a4b0161681a65752e',
  3: '80037d71002858010000006971015d7102284b004b014affffffff4bff4d00014dffff4a000001004a000000804affffff7f8a0500000080008a07000000000000208a07000000000000e08a090000000000000080008a09ffffffffffffff7fff6558010000006671035d71042847000000000000000047bff8000000000000477e37e43c8800759c477ff0000000000000473fb999999999999a6558010000007371055d71062858000000007107580600000068c3a96c6c6f7108580a000000e697a5e69cacf09f988071095805000000610a625c63710a6558010000006e710b4e580100000074710c8858020000006661710d8958020000007475710e4b014b024b0386710f2987711058060000006e657374656471117d7112284b0158030000006f6e65711358010000006c71145d7115285d71167d711765755805000000616c69617371185d7119285d711a4b0161681a65580100000062711b430200ff711c752e',
  4: '80049523010000000000007d94288c0169945d94284b004b014affffffff4bff4d00014dffff4a000001004a000000804affffff7f8a0500000080008a07000000000000208a07000000000000e08a090000000000000080008a09ffffffffffffff7fff658c0166945d942847000000000000000047bff8000000000000477e37e43c8800759c477ff0000000000000473fb999999999999a658c0173945d94288c00948c0668c3a96c6c6f948c0ae697a5e69cacf09f9880948c05610a625c6394658c016e944e8c017494888c02666194898c027475944b014b024b0386942987948c066e6573746564947d94284b018c036f6e65948c016c945d94285d947d9465758c05616c696173945d94285d944b0161681a658c016294430200ff948c03736574948f94284b0790752e',
  5: '80059523010000000000007d94288c0169945d94284b004b014affffffff4bff4d00014dffff4a000001004a000000804affffff7f8a0500000080008a07000000000000208a07000000000000e08a090000000000000080008a09ffffffffffffff7fff658c0166945d942847000000000000000047bff8000000000000477e37e43c8800759c477ff0000000000000473fb999999999999a658c0173945d94288c00948c0668c3a96c6c6f948c0ae697a5e69cacf09f9880948c05610a625c6394658c016e944e8c017494888c02666194898c027475944b014b024b0386942987948c066e6573746564947d94284b018c036f6e65948c016c945d94285d947d9465758c05616c696173945d94285d944b0161681a658c016294430200ff948c03736574948f94284b0790752e',
};

/**
 * The object pickled above:
 *   {'i': [0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31-1, 2**31, 2**53, -(2**53), 2**63, -2**63-1],
 *    'f': [0.0, -1.5, 1e300, inf, 0.1], 's': ['', 'héllo', '日本😀', 'a\nb\\c'], 'n': None, 't': True,
 *    'fa': False, 'tu': (1, (2, 3), ()), 'nested': {1: 'one', 'l': [[], {}]}, 'alias': [shared, shared],
 *    'b': b'\x00\xff' (protocol >= 3), 'set': {7} (protocol >= 4)}
 */
function checkPickleValue(v: unknown, protocol: number): void {
  assert.ok(v instanceof Map);
  assert.deepEqual(v.get('i'), [0, 1, -1, 255, 256, 65535, 65536, -(2 ** 31), 2 ** 31 - 1, 2 ** 31, 2n ** 53n, -(2n ** 53n), 2n ** 63n, -(2n ** 63n) - 1n]);
  assert.deepEqual(v.get('f'), [0, -1.5, 1e300, Infinity, 0.1]);
  assert.deepEqual(v.get('s'), ['', 'héllo', '日本😀', 'a\nb\\c']);
  assert.equal(v.get('n'), null);
  assert.equal(v.get('t'), true);
  assert.equal(v.get('fa'), false);
  const tu = v.get('tu') as unknown[];
  assert.deepEqual(tu, [1, [2, 3], []]);
  assert.ok(isTuple(tu) && isTuple(tu[1]) && isTuple(tu[2]), 'tuples are frozen arrays');
  const nested = v.get('nested') as Map<unknown, unknown>;
  assert.equal(nested.get(1), 'one');
  assert.deepEqual(nested.get('l'), [[], new Map()]);
  const alias = v.get('alias') as unknown[][];
  assert.equal(alias[0], alias[1], 'memoized objects keep their identity');
  assert.ok(!isTuple(alias), 'lists are not frozen');
  if (protocol >= 3) assert.deepEqual(v.get('b'), new Uint8Array([0, 255]));
  if (protocol >= 4) assert.deepEqual(v.get('set'), new Set([7]));
}

const noGlobals = () => undefined;

test('pickle: protocols 0-5 decode to the expected values', () => {
  for (const [p, h] of Object.entries(PICKLES)) {
    checkPickleValue(unpickle(Buffer.from(h, 'hex'), { file: `p${p}.pkl`, findGlobal: noGlobals }), Number(p));
  }
});

/** Builds pickles opcode by opcode (protocol 2 style, as torch.save writes them). */
class PickleBuilder {
  private readonly parts: number[] = [];
  op(...bytes: number[]) { this.parts.push(...bytes); return this; }
  proto(n = 2) { return this.op(0x80, n); }
  global(module: string, name: string) { return this.op(0x63, ...enc.encode(`${module}\n${name}\n`)); }
  stackGlobal(module: string, name: string) { return this.str(module).str(name).op(0x93); }
  str(s: string) {
    const b = enc.encode(s);
    return this.op(0x58, b.length & 0xff, (b.length >> 8) & 0xff, 0, 0, ...b);
  }
  int(n: number) { const b = new Uint8Array(4); new DataView(b.buffer).setInt32(0, n, true); return this.op(0x4a, ...b); }
  mark() { return this.op(0x28); }
  tuple() { return this.op(0x74); }
  emptyTuple() { return this.op(0x29); }
  emptyDict() { return this.op(0x7d); }
  reduce() { return this.op(0x52); }
  stop() { return this.op(0x2e); }
  ints(xs: number[]) { this.mark(); for (const x of xs) this.int(x); return this.tuple(); }
  build() { return new Uint8Array(this.parts); }
}

test('pickle: dangerous globals, opcodes and malformed streams are refused, naming the file', () => {
  const refused: [string, string][] = [
    ['os', 'system'], ['posix', 'system'], ['nt', 'system'], ['builtins', 'eval'], ['builtins', 'exec'],
    ['__builtin__', 'eval'], ['builtins', 'getattr'], ['builtins', '__import__'], ['subprocess', 'Popen'],
    ['subprocess', 'check_output'], ['torch', 'load'], ['torch.serialization', 'load'], ['torch._utils', '_rebuild_tensor'],
    ['numpy.core.multiarray', '_reconstruct'], ['collections', 'OrderedDictX'], ['torch', 'FloatStorage\nfoo'],
  ];
  for (const [module, name] of refused) {
    for (const viaStack of [false, true]) {
      const b = new PickleBuilder().proto(viaStack ? 4 : 2);
      if (viaStack) b.stackGlobal(module, name); else b.global(module, name);
      // Refused at the GLOBAL opcode itself, before anything could be called with ('echo pwned',).
      const bytes = b.str('echo pwned').op(0x85).reduce().stop().build();
      const err = throwsNaming(() => unpickle(bytes, { file: 'evil.pkl', findGlobal: noGlobals }), 'evil.pkl', 'refusing to load global');
      if (!name.includes('\n')) assert.ok(err.message.includes(`"${module}.${name}"`), err.message);
    }
  }
  const bad: [string, Uint8Array, RegExp][] = [
    ['INST', new PickleBuilder().mark().op(0x69, ...enc.encode('os\nsystem\n')).stop().build(), /INST/],
    ['OBJ', new PickleBuilder().mark().op(0x6f).stop().build(), /OBJ/],
    ['EXT1', new PickleBuilder().op(0x82, 1).stop().build(), /extension registry/],
    ['NEXT_BUFFER', new PickleBuilder().proto(5).op(0x97).stop().build(), /out-of-band/],
    ['unknown opcode', new PickleBuilder().op(0xff).build(), /unsupported opcode 0xff/],
    ['truncated', new PickleBuilder().proto().str('abc').build().subarray(0, 8), /truncated/],
    ['no STOP', new PickleBuilder().proto().op(0x4e).build(), /truncated/],
    ['underflow', new PickleBuilder().op(0x61).stop().build(), /stack underflow/],
    ['no MARK', new PickleBuilder().op(0x74).stop().build(), /MARK expected/],
    ['bad memo', new PickleBuilder().op(0x68, 3).stop().build(), /memo key 3/],
    ['call non-callable', new PickleBuilder().op(0x4e).emptyTuple().reduce().stop().build(), /REDUCE on non-callable None/],
    ['APPEND to tuple', new PickleBuilder().emptyTuple().op(0x4e, 0x61).stop().build(), /APPEND on tuple/],
    ['SETITEM on list', new PickleBuilder().op(0x5d, 0x4e, 0x4e, 0x73).stop().build(), /SETITEM on list/],
    ['BUILD on list', new PickleBuilder().op(0x5d).emptyDict().op(0x62).stop().build(), /BUILD on list/],
    ['persistent id', new PickleBuilder().str('x').op(0x51).stop().build(), /persistent ids are not allowed/],
    ['huge BINUNICODE8', new PickleBuilder().proto(4).op(0x8d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f).stop().build(), /exceeds the pickle size/],
    ['protocol 6', new PickleBuilder().proto(6).stop().build(), /protocol 6/],
  ];
  for (const [name, bytes, re] of bad) throwsNaming(() => unpickle(bytes, { file: `bad-${name}.pkl`, findGlobal: noGlobals }), `bad-${name}.pkl`, re);
  // A huge APPENDS batch (the VM must not spread it into a call) and deep nesting are fine here.
  const many = new PickleBuilder().op(0x5d).mark();
  for (let i = 0; i < 200_000; i++) many.op(0x4e);
  assert.equal((unpickle(many.op(0x65).stop().build(), { file: 'many.pkl', findGlobal: noGlobals }) as unknown[]).length, 200_000);
  assert.ok(Array.isArray(unpickle(deepPickle(100_000), { file: 'deep.pkl', findGlobal: noGlobals })));
  // Allowed callables run only their JS implementation.
  let calls = 0;
  const f = new PyCallable('m.f', (args) => { calls++; return args.length; });
  const ok = new PickleBuilder().proto().global('m', 'f').ints([1, 2, 3]).reduce().stop().build();
  assert.equal(unpickle(ok, { file: 'ok.pkl', findGlobal: (m, n) => (m === 'm' && n === 'f' ? f : undefined) }), 3);
  assert.equal(calls, 1);
});

/** Lists nested `depth` levels deep: [[[...]]]. */
function deepPickle(depth: number): Uint8Array {
  const b = new PickleBuilder().proto();
  for (let i = 0; i < depth; i++) b.op(0x5d);
  for (let i = 1; i < depth; i++) b.op(0x61);
  return b.stop().build();
}

// ---------------------------------------------------------------------------------------------------------
// .pth

function checkStateDict(sd: Map<string, TensorRecord>): void {
  assert.deepEqual([...sd.keys()], EXPECTED.order, 'state dict keys in file order');
  for (const [name, r] of sd) checkRecord(name, r, EXPECTED.state_dict[name]!);
}

test('pth: torch.save(state_dict) fixtures, protocol 2 and 4', () => {
  for (const file of ['tiny_state_dict.pth', 'tiny_state_dict_p4.pth']) {
    const sd = readPthStateDict(join(FIXTURES, file));
    checkStateDict(sd);
    const nbt = sd.get('bn.num_batches_tracked')!;
    assert.equal(nbt.dtype, 'int64');
    assert.deepEqual(nbt.shape, []);
    assert.deepEqual(decode(recordToContiguousBytes(nbt), 'int64'), [1n]);
    const nc = sd.get('nc') as PthTensorRecord;
    assert.ok(nc instanceof PthTensorRecord);
    assert.deepEqual(nc.strides, [1, 4]);
    assert.equal(nc.storageOffset, 2);
    assert.equal(nc.bytes.length, 20 * 4, 'the whole 20-element storage is kept');
    assert.equal(nc.location, 'cpu');
    assert.match(nc.storageEntry, /\/data\/\d+$/);
  }
});

test('pth: nested training checkpoint keeps the whole tree', () => {
  const path = join(FIXTURES, 'tiny_checkpoint.pth');
  const tree = readPth(path) as Map<string, unknown>;
  assert.ok(tree instanceof Map);
  assert.deepEqual([...tree.keys()], ['model', 'epoch', 'optimizer', 'meta', 'views']);
  assert.equal(tree.get('epoch'), EXPECTED.checkpoint.epoch);
  checkStateDict(tree.get('model') as Map<string, TensorRecord>);
  checkStateDict(readPthStateDict(path));

  const opt = tree.get('optimizer') as Map<string, unknown>;
  const group = (opt.get('param_groups') as Map<string, unknown>[])[0]!;
  assert.equal(group.get('lr'), EXPECTED.checkpoint.lr);
  assert.equal(group.get('momentum'), EXPECTED.checkpoint.momentum);
  assert.equal(group.get('nesterov'), false);
  assert.deepEqual(group.get('params'), [0, 1, 2, 3, 4, 5]);
  const state = opt.get('state') as Map<number, Map<string, TensorRecord>>;
  checkRecord('momentum_buffer', state.get(0)!.get('momentum_buffer')!, EXPECTED.checkpoint.momentum_buffer_0);

  const meta = tree.get('meta') as Map<string, unknown>;
  assert.equal(meta.get('name'), 'tiny');
  assert.equal(meta.get('huge'), 2n ** 70n);
  assert.equal(meta.get('neg'), -5);
  assert.equal(meta.get('ratio'), 0.25);
  assert.deepEqual(meta.get('flags'), [true, false, null]);
  assert.ok(isTuple(meta.get('flags')));
  assert.deepEqual(meta.get('blob'), new Uint8Array([0, 1, 255])); // protocol 2 bytes: _codecs.encode
  assert.deepEqual(meta.get('sizes'), [1, 2, 3]);

  // Three views of fc.weight's storage: one storage object, shared with the model's fc.weight.
  const views = tree.get('views') as TensorRecord[];
  views.forEach((v, i) => checkRecord(`views[${i}]`, v, EXPECTED.checkpoint.views[i]!));
  assert.equal(views[0]!.bytes, views[1]!.bytes);
  assert.equal(views[0]!.bytes, views[2]!.bytes);
  assert.equal(views[0]!.bytes, (tree.get('model') as Map<string, TensorRecord>).get('fc.weight')!.bytes);
});

test('pth: hostile fixtures are refused without executing anything', () => {
  const evil = join(FIXTURES, 'hostile_os_system.pth');
  throwsNaming(() => readPth(evil), evil, /refusing to load global "(posix|os|nt)\.system"/, 'nothing was executed');
  throwsNaming(() => readPthStateDict(evil), evil, /system/);
  const nested = join(FIXTURES, 'hostile_nested_eval.pth');
  throwsNaming(() => readPth(nested), nested, /refusing to load global "builtins\.eval"/);
});

interface FakeTensor { name: string; type?: string; key: string; numel: number; offset?: number; size: number[]; stride: number[]; param?: boolean }

/** A data.pkl like torch.save's for the given tensors (protocol 2, OrderedDict of _rebuild_tensor_v2). */
function torchPickle(tensors: FakeTensor[]): Uint8Array {
  const b = new PickleBuilder().proto(2).global('collections', 'OrderedDict').emptyTuple().reduce().mark();
  for (const t of tensors) {
    b.str(t.name);
    if (t.param) b.global('torch._utils', '_rebuild_parameter').mark();
    b.global('torch._utils', '_rebuild_tensor_v2').mark();
    b.mark().str('storage').global('torch', t.type ?? 'FloatStorage').str(t.key).str('cpu').int(t.numel).tuple().op(0x51);
    b.int(t.offset ?? 0).ints(t.size).ints(t.stride).op(0x89).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
    if (t.param) b.op(0x88).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
  }
  return b.op(0x75).stop().build();
}

function torchZip(pkl: Uint8Array, storages: Record<string, Uint8Array>, extra: ZEntry[] = []): Uint8Array {
  return makeZip([
    { name: 'archive/data.pkl', data: pkl },
    ...Object.entries(storages).map(([k, data]) => ({ name: `archive/data/${k}`, data })),
    { name: 'archive/version', data: enc.encode('3\n') },
    ...extra,
  ]);
}

test('pth: hand-built archives: parameters, deflate, and every malformed case names file and entry', () => {
  const f32 = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);
  // A Parameter (as nn.Module pickles itself), stored DEFLATEd, and a view with an offset.
  const pkl = torchPickle([
    { name: 'w', key: '0', numel: 6, size: [2, 2], stride: [1, 2], offset: 1, param: true },
    { name: 'b', key: '0', numel: 6, size: [2], stride: [1] },
  ]);
  const zip = makeZip([{ name: 'archive/data.pkl', data: pkl, method: 8 }, { name: 'archive/data/0', data: f32([0, 1, 2, 3, 4, 5]), method: 8 }]);
  const sd = findStateDict(parsePth(zip, 'param.pth'), 'param.pth');
  const w = sd.get('w')!;
  assert.ok(w.isParameter && w.requiresGrad);
  assert.deepEqual(decode(recordToContiguousBytes(w), 'float32'), [1, 3, 2, 4]);
  assert.deepEqual(decode(recordToContiguousBytes(sd.get('b')!), 'float32'), [0, 1]);
  assert.equal(w.bytes, sd.get('b')!.bytes, 'one storage for both');

  const cases: [string, Uint8Array, (string | RegExp)[]][] = [
    ['view-past-storage', torchZip(torchPickle([{ name: 'w', key: '0', numel: 4, size: [10], stride: [1] }]), { 0: f32([1, 2, 3, 4]) }),
      ['archive/data/0', /reaches element 9 but the storage holds 4 elements/]],
    ['offset-past-storage', torchZip(torchPickle([{ name: 'w', key: '0', numel: 4, size: [2, 2], stride: [2, 1], offset: 1 }]), { 0: f32([1, 2, 3, 4]) }),
      ['archive/data/0', /reaches element 4/]],
    ['storage-short', torchZip(torchPickle([{ name: 'w', key: '0', numel: 4, size: [4], stride: [1] }]), { 0: f32([1, 2]) }),
      ['archive/data/0', /holds 8 bytes, but 4 elements of FloatStorage need 16/]],
    ['storage-missing', torchZip(torchPickle([{ name: 'w', key: '7', numel: 1, size: [1], stride: [1] }]), {}),
      ['archive/data/7', /missing/]],
    ['negative-stride', torchZip(torchPickle([{ name: 'w', key: '0', numel: 4, size: [2], stride: [-1], offset: 3 }]), { 0: f32([1, 2, 3, 4]) }),
      ['archive/data/0', /invalid stride/]],
    ['conflicting-storage', torchZip(torchPickle([
      { name: 'a', key: '0', numel: 4, size: [4], stride: [1] },
      { name: 'b', key: '0', type: 'IntStorage', numel: 4, size: [4], stride: [1] },
    ]), { 0: f32([1, 2, 3, 4]) }), ['archive/data/0', /conflicting/]],
    ['bool-storage', torchZip(torchPickle([{ name: 'm', key: '0', type: 'BoolStorage', numel: 2, size: [2], stride: [1] }]), { 0: new Uint8Array([1, 7]) }),
      ['archive/data/0', /BoolStorage holds bytes other than 0 and 1/]],
    ['unknown-storage-type', torchZip(torchPickle([{ name: 'c', key: '0', type: 'ComplexFloatStorage', numel: 1, size: [1], stride: [1] }]), { 0: f32([1, 2]) }),
      [/refusing to load global "torch.ComplexFloatStorage"/]],
    ['big-endian', torchZip(torchPickle([]), {}, [{ name: 'archive/byteorder', data: enc.encode('big') }]), [/"big"-endian/]],
    ['no-data-pkl', makeZip([{ name: 'archive/version', data: enc.encode('3') }]), [/no <archive>\/data.pkl/]],
    ['torchscript-no-data', makeZip([{ name: 'm/constants.pkl', data: new Uint8Array(1) }]), [/TorchScript/]],
    ['torchscript', makeZip([{ name: 'm/data.pkl', data: torchPickle([]) }, { name: 'm/constants.pkl', data: new Uint8Array(1) }]), [/TorchScript archive \(torch.jit.save\)/]],
    ['two-archives', makeZip([{ name: 'a/data.pkl', data: torchPickle([]) }, { name: 'b/data.pkl', data: torchPickle([]) }]), [/ambiguous/]],
    ['bad-pid', makeZip([{ name: 'archive/data.pkl', data: new PickleBuilder().proto().str('x').op(0x51).stop().build() }]), [/persistent id/]],
  ];
  for (const [name, bytes, needles] of cases) {
    const path = join(TMP, `hostile-${name}.pth`);
    writeFileSync(path, bytes);
    throwsNaming(() => readPth(path), path, ...needles);
  }
  // Not a zip at all: legacy torch.save files start with a pickle, others are just wrong.
  const legacy = join(TMP, 'legacy.pth');
  writeFileSync(legacy, new Uint8Array([0x80, 0x02, 0x8a, 0x0a]));
  throwsNaming(() => readPth(legacy), legacy, /legacy \(pre-1.6, non-zip\)/);
  const text = join(TMP, 'text.pth');
  writeFileSync(text, 'hello');
  throwsNaming(() => readPth(text), text, /not a torch.save zip archive/);
});

test('pth: findStateDict picks the top level or a wrapper key, else explains', () => {
  const rec = new PthTensorRecord('float32', [1], [1], 0, new Uint8Array(4), 'a/data/0', 'cpu', false, false);
  const sd = new Map([['w', rec]]);
  assert.equal(findStateDict(sd), sd);
  for (const key of ['state_dict', 'model', 'model_state_dict']) assert.equal(findStateDict(new Map<string, unknown>([['epoch', 1], [key, sd]])), sd);
  throwsNaming(() => findStateDict(new Map<string, unknown>([['epoch', 1], ['net', sd]]), 'x.pth'), 'x.pth', /keys "epoch", "net"/);
  throwsNaming(() => findStateDict([sd], 'l.pth'), 'l.pth', /holds a list/);
  throwsNaming(() => findStateDict(new Map<unknown, unknown>([[0, rec]]), 'k.pth'), 'k.pth', /no state dict/);
});

// ---------------------------------------------------------------------------------------------------------
// Tensor level: needs the native addon and the engine module.

const ADDON = join(ROOT, 'build', 'Release', 'weakseg_native.node');
const ENGINE_JS = join(ROOT, 'dist', 'src', 'engine', 'index.js');
const engineMissing = !existsSync(ADDON) ? `native addon not built (${ADDON}); run npm run build:native`
  : !existsSync(ENGINE_JS) ? `engine module not compiled (${ENGINE_JS})` : undefined;

type TensorsModule = typeof import('../../src/engine/serialize/tensors.js');
type Tensor = ReturnType<TensorsModule['recordToTensor']>;

async function engine(t: { skip: (msg: string) => void }): Promise<TensorsModule | undefined> {
  if (engineMissing) {
    t.skip(engineMissing);
    return undefined;
  }
  return import('../../src/engine/serialize/tensors.js');
}

function checkTensor(name: string, t: Tensor, d: Described): void {
  assert.equal(t.dtype, d.dtype, `${name} dtype`);
  assert.deepEqual([...t.shape], d.shape, `${name} shape`);
  assert.equal(t.device, 'cpu');
  assert.equal(hex(t.toBytes()), d.hex, `${name} bytes`);
}

test('tensors: loadPthStateDict matches torch', async (t) => {
  const T = await engine(t);
  if (!T) return;
  for (const file of ['tiny_state_dict.pth', 'tiny_state_dict_p4.pth', 'tiny_checkpoint.pth']) {
    const sd = T.loadPthStateDict(join(FIXTURES, file));
    assert.deepEqual([...sd.keys()], EXPECTED.order);
    for (const [name, x] of sd) checkTensor(`${file}:${name}`, x, EXPECTED.state_dict[name]!);
    for (const x of sd.values()) x.dispose();
  }
});

test('tensors: loadPth returns the tree with tensors; shared storages stay views', async (t) => {
  const T = await engine(t);
  if (!T) return;
  const tree = T.loadPth(join(FIXTURES, 'tiny_checkpoint.pth')) as Map<string, unknown>;
  assert.equal(tree.get('epoch'), 3);
  const views = tree.get('views') as Tensor[];
  views.forEach((v, i) => checkTensor(`views[${i}]`, v, EXPECTED.checkpoint.views[i]!));
  const model = tree.get('model') as Map<string, Tensor>;
  const nc = model.get('nc')!;
  checkTensor('nc', nc, EXPECTED.state_dict.nc!);
  assert.deepEqual(nc.strides, [1, 4], 'saved strides are kept, as torch.load does');
  assert.equal(nc.storageOffset, 2);
  assert.ok(views[0]!.sharesStorageWith(views[1]!) && views[0]!.sharesStorageWith(views[2]!));
  assert.ok(views[0]!.sharesStorageWith(model.get('fc.weight')!), 'one storage across the tree');
  assert.ok(!model.get('fc.bias')!.sharesStorageWith(model.get('fc.weight')!));
  // A non-contiguous tensor saves as its logical (contiguous) values.
  const path = join(TMP, 'nc.safetensors');
  T.saveSafetensors(path, { nc });
  const back = T.loadSafetensors(path).tensors.get('nc')!;
  checkTensor('nc (resaved)', back, { ...EXPECTED.state_dict.nc!, stride: [3, 1], storage_offset: 0 });
  back.dispose();
  const state = (tree.get('optimizer') as Map<string, unknown>).get('state') as Map<number, Map<string, Tensor>>;
  checkTensor('momentum_buffer', state.get(0)!.get('momentum_buffer')!, EXPECTED.checkpoint.momentum_buffer_0);
  for (const x of [...views, ...model.values()]) x.dispose();
});

test('tensors: loadPth refuses absurdly deep nesting with a clear error', async (t) => {
  const T = await engine(t);
  if (!T) return;
  const path = join(TMP, 'deep.pth');
  writeFileSync(path, makeZip([{ name: 'archive/data.pkl', data: deepPickle(50_000) }]));
  assert.ok(Array.isArray(readPth(path)), 'the record-level reader is iterative');
  throwsNaming(() => T.loadPth(path), path, /nested more than 1000 levels/);
});

test('tensors: loading inside a tidy scope returns live tensors', async (t) => {
  const T = await engine(t);
  if (!T) return;
  const E = await import('../../src/engine/index.js');
  const sd = E.tidy(() => T.loadPthStateDict(join(FIXTURES, 'tiny_checkpoint.pth')));
  for (const [name, x] of sd) {
    assert.ok(!x.isDisposed, name);
    checkTensor(name, x, EXPECTED.state_dict[name]!);
  }
  E.dispose(sd);
});

test('tensors: saveSafetensors / loadSafetensors round trip every dtype', async (t) => {
  const T = await engine(t);
  if (!T) return;
  const records = sampleTensors();
  const dense = new Map([...records].map(([k, r]) => [k, T.recordToTensor(denseRecord(r))] as const));
  const path = join(TMP, 'engine.safetensors');
  T.saveSafetensors(path, dense, { source: 'test' });
  const loaded = T.loadSafetensors(path);
  assert.deepEqual(loaded.metadata, { source: 'test' });
  for (const [name, r] of records) {
    const x = loaded.tensors.get(name)!;
    assert.equal(x.dtype, r.dtype);
    assert.deepEqual([...x.shape], r.shape);
    assert.equal(hex(x.toBytes()), hex(r.bytes), name);
  }
  for (const x of [...dense.values(), ...loaded.tensors.values()]) x.dispose();
});

test('tensors: recordToTensor builds strided views and checks records made elsewhere', async (t) => {
  const T = await engine(t);
  if (!T) return;
  const storage = new Uint8Array(new Int32Array(Array.from({ length: 16 }, (_, i) => i * 10)).buffer);
  const r: TensorRecord = { dtype: 'int32', shape: [3, 4], strides: [1, 3], storageOffset: 2, bytes: storage };
  const x = T.recordToTensor(r);
  assert.deepEqual(x.strides, [1, 3]);
  assert.equal(hex(x.toBytes()), hex(recordToContiguousBytes(r)));
  x.dispose();
  assert.throws(() => T.recordToTensor({ ...r, storageOffset: 5 }), /reaches element 16/);
});

function denseRecord(r: ContiguousTensorRecord): TensorRecord {
  const strides: number[] = [];
  let s = 1;
  for (let i = r.shape.length - 1; i >= 0; i--) { strides[i] = s; s *= Math.max(1, r.shape[i]!); }
  return { ...r, strides, storageOffset: 0 };
}

test('tensors: MobileNetV2 weights load as float16 CPU tensors', async (t) => {
  const T = await engine(t);
  if (!T) return;
  if (!existsSync(MOBILENET)) {
    t.skip(`${MOBILENET} is absent`);
    return;
  }
  const { tensors, metadata } = T.loadSafetensors(MOBILENET);
  assert.equal(tensors.size, 262);
  assert.equal(metadata.input_std, '0.5,0.5,0.5');
  const w = tensors.get('classifier.1.weight')!;
  assert.deepEqual([...w.shape], [1001, 1280]);
  assert.equal(w.dtype, 'float16');
  assert.equal(w.numel, 1001 * 1280);
  for (const x of tensors.values()) x.dispose();
});

test('pth: zip bombs are refused from the declared sizes before inflating; the pickle is read streamed', () => {
  const f32 = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);
  const pkl = torchPickle([{ name: 'w', key: '0', numel: 4, size: [4], stride: [1] }]);
  const zeros = new Uint8Array(4 << 20);
  const write = (name: string, bytes: Uint8Array) => {
    const path = join(TMP, `bomb-${name}.pth`);
    writeFileSync(path, bytes);
    return path;
  };
  // data.pkl padded with 4 MiB of zeros after STOP: a few KB that declare 4 MiB (ratio ~1000).
  const padded = new Uint8Array(pkl.length + zeros.length);
  padded.set(pkl);
  const pklBomb = write('pkl', makeZip([{ name: 'archive/data.pkl', data: padded, method: 8 }, { name: 'archive/data/0', data: f32([1, 2, 3, 4]) }]));
  throwsNaming(() => readPth(pklBomb), pklBomb, 'archive/data.pkl', /would inflate \d+ bytes to 4194\d+ \(ratio \d+, limit 100\): refused as a likely zip bomb/);
  // Within the ratio, but over a (low, for the test) pickle limit.
  throwsNaming(() => readPth(pklBomb, { limits: { maxRatio: 5000, maxPickleBytes: 1 << 20 } }), pklBomb, /declares 4194\d+ bytes uncompressed, more than the 1048576 allowed here/);
  // A storage entry declaring far more than its 4 elements need.
  const storageBomb = write('storage', makeZip([{ name: 'archive/data.pkl', data: pkl }, { name: 'archive/data/0', data: zeros, method: 8 }]));
  throwsNaming(() => readPth(storageBomb), storageBomb, 'archive/data/0', /declares 4194304 bytes uncompressed, more than the 4112 allowed here/);
  // An entry that lies about its size is stopped as soon as it inflates past it.
  const liar = write('liar', makeZip([{ name: 'archive/data.pkl', data: padded, method: 8, uncompressedSize: pkl.length }, { name: 'archive/data/0', data: f32([1, 2, 3, 4]) }]));
  throwsNaming(() => readPth(liar), liar, /inflates past its declared \d+ bytes/);
  // An absolute limit applies to every entry.
  const ok = write('ok', makeZip([{ name: 'archive/data.pkl', data: pkl, method: 8 }, { name: 'archive/data/0', data: f32([1, 2, 3, 4]), method: 8 }]));
  throwsNaming(() => readPth(ok, { limits: { maxEntryBytes: 8 } }), ok, /more than the 8 allowed here/);
  assert.equal(findStateDict(readPth(ok), ok).get('w')!.shape[0], 4);

  // A pickle of many pieces (incompressible names: ~100 KB deflated, read 16 KB at a time): every name intact.
  const names = Array.from({ length: 1500 }, (_, i) => `${i}.${randomBytes(24).toString('hex')}`);
  const many = torchPickle(names.map((name) => ({ name, key: '0', numel: 4, size: [4], stride: [1] })));
  const manyPath = write('many', makeZip([{ name: 'archive/data.pkl', data: many, method: 8 }, { name: 'archive/data/0', data: f32([1, 2, 3, 4]) }]));
  assert.deepEqual([...findStateDict(readPth(manyPath), manyPath).keys()], names);
});
