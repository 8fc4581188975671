// Reader for PyTorch's zip checkpoint format (torch.save since 1.6), at the record level (no engine).
// Layout: <archive>/data.pkl (the pickled object tree), <archive>/data/<key> (raw little-endian storages),
// <archive>/version and sometimes <archive>/byteorder. Tensors in data.pkl are
// _rebuild_tensor_v2(storage, offset, size, stride, ...) calls whose storage is a persistent id
// ('storage', <torch.XStorage>, key, location, numel) naming a data/<key> entry.

import { closeSync, openSync, readSync } from 'node:fs';
import { PyCallable, isTuple, unpickle } from './pickle.js';
import { checkBoolBytes, dtypeItemSize, viewProblem, type DType, type TensorRecord } from './records.js';
import { DEFAULT_ZIP_LIMITS, ZipReader, type ZipLimits } from './zip.js';

/** A tensor found in a .pth file. Views of one storage share the same `bytes` object. */
export class PthTensorRecord implements TensorRecord {
  constructor(
    readonly dtype: DType,
    readonly shape: number[],
    readonly strides: number[],
    readonly storageOffset: number,
    /** The whole storage. */
    readonly bytes: Uint8Array,
    /** Zip entry the storage came from, e.g. "archive/data/3". */
    readonly storageEntry: string,
    /** Device the tensor was saved from ("cpu", "cuda:0"); records are always loaded to CPU. */
    readonly location: string,
    readonly requiresGrad: boolean,
    readonly isParameter: boolean,
  ) {}
}

/**
 * The Python object tree of a .pth file: null, boolean, number, bigint (ints beyond 2^53), string,
 * Uint8Array (bytes), arrays (lists; tuples are frozen arrays), Map (dicts, including OrderedDict),
 * Set, and PthTensorRecord for tensors.
 */
export type PthValue = unknown;

/** Storage type globals as they appear in persistent ids. */
const STORAGE_TYPES: Record<string, DType> = {
  FloatStorage: 'float32', HalfStorage: 'float16', BFloat16Storage: 'bfloat16', DoubleStorage: 'float64',
  LongStorage: 'int64', IntStorage: 'int32', ByteStorage: 'uint8', BoolStorage: 'bool',
};

class StorageType {
  constructor(readonly name: string, readonly dtype: DType) {}
}

class Storage {
  constructor(readonly dtype: DType, readonly numel: number, readonly bytes: Uint8Array,
    readonly entry: string, readonly location: string) {}
}

const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x);
const intList = (x: unknown): x is number[] => Array.isArray(x) && x.every(isInt);

function expectArgs(args: unknown[], min: number, max: number, what: string): void {
  if (args.length < min || args.length > max) throw new Error(`${what} takes ${min === max ? min : `${min}..${max}`} arguments, got ${args.length}`);
}

function rebuildTensorV2(args: unknown[]): PthTensorRecord {
  // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  expectArgs(args, 6, 7, '_rebuild_tensor_v2');
  const [storage, offset, size, stride, requiresGrad] = args;
  if (!(storage instanceof Storage)) throw new Error('storage argument is not a persistent storage');
  if (!isInt(offset) || !intList(size) || !intList(stride) || typeof requiresGrad !== 'boolean') {
    throw new Error(`bad arguments for the tensor in "${storage.entry}"`);
  }
  const problem = viewProblem(size, stride, offset, storage.numel);
  if (problem) throw new Error(`tensor in "${storage.entry}": ${problem}`);
  return new PthTensorRecord(storage.dtype, [...size], [...stride], offset, storage.bytes, storage.entry,
    storage.location, requiresGrad, false);
}

function rebuildParameter(args: unknown[], what: string, max: number): PthTensorRecord {
  // (data, requires_grad, backward_hooks[, state]): a Parameter is its tensor plus a flag here.
  expectArgs(args, 3, max, what);
  const [data, requiresGrad] = args;
  if (!(data instanceof PthTensorRecord) || typeof requiresGrad !== 'boolean') throw new Error(`bad arguments for ${what}`);
  return new PthTensorRecord(data.dtype, data.shape, data.strides, data.storageOffset, data.bytes, data.storageEntry,
    data.location, requiresGrad, true);
}

function orderedDict(args: unknown[]): Map<unknown, unknown> {
  expectArgs(args, 0, 1, 'OrderedDict');
  const d = new Map<unknown, unknown>();
  if (args.length === 1) {
    const items = args[0];
    if (!Array.isArray(items) || !items.every((p) => Array.isArray(p) && p.length === 2)) throw new Error('OrderedDict argument must be a list of pairs');
    for (const [k, v] of items as unknown[][]) d.set(k, v);
  }
  return d;
}

// Python 3 pickles bytes at protocol 2 as _codecs.encode(<latin-1 str>, 'latin1'), and b'' as bytes().
function codecsEncode(args: unknown[]): Uint8Array {
  expectArgs(args, 2, 2, '_codecs.encode');
  const [s, enc] = args;
  if (typeof s !== 'string' || (enc !== 'latin1' && enc !== 'latin-1')) throw new Error('only encode(str, "latin1") is supported');
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) throw new Error('string is not latin-1');
    out[i] = c;
  }
  return out;
}

function emptyBytes(args: unknown[]): Uint8Array {
  expectArgs(args, 0, 0, 'bytes');
  return new Uint8Array(0);
}

/** The only globals a torch state-dict checkpoint may reference. */
const ALLOWED_CALLABLES: Record<string, PyCallable> = Object.fromEntries(([
  ['torch._utils._rebuild_tensor_v2', rebuildTensorV2],
  ['torch._utils._rebuild_parameter', (a: unknown[]) => rebuildParameter(a, '_rebuild_parameter', 3)],
  ['torch._utils._rebuild_parameter_with_state', (a: unknown[]) => rebuildParameter(a, '_rebuild_parameter_with_state', 4)],
  ['collections.OrderedDict', orderedDict],
  ['_codecs.encode', codecsEncode],
  ['builtins.bytes', emptyBytes],
  ['__builtin__.bytes', emptyBytes],
] as [string, (a: unknown[]) => unknown][]).map(([q, f]) => [q, new PyCallable(q, f)]));

function findGlobal(module: string, name: string): unknown {
  if (module === 'torch' && Object.prototype.hasOwnProperty.call(STORAGE_TYPES, name)) {
    return new StorageType(name, STORAGE_TYPES[name]!);
  }
  const q = `${module}.${name}`;
  return Object.prototype.hasOwnProperty.call(ALLOWED_CALLABLES, q) ? ALLOWED_CALLABLES[q] : undefined;
}

/** First bytes of a file, to tell the legacy (non-zip) torch.save format from a zip archive. */
function sniff(path: string): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const b = new Uint8Array(4);
    const n = readSync(fd, b, 0, 4, 0);
    return b.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** Locate the single "<archive>/data.pkl" entry; the archive name is whatever torch.save chose. */
function archivePrefix(zip: ZipReader): string {
  const candidates = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (candidates.length === 0) {
    const hint = [...zip.entries.keys()].some((n) => n.endsWith('/constants.pkl')) ? ' (this looks like a TorchScript archive; save a state dict instead)' : '';
    throw new Error(`${zip.file}: not a torch.save checkpoint: no <archive>/data.pkl entry${hint}`);
  }
  if (candidates.length > 1) throw new Error(`${zip.file}: ambiguous checkpoint: several data.pkl entries (${candidates.join(', ')})`);
  const prefix = candidates[0]!.slice(0, -'data.pkl'.length);
  // torch.jit.save archives also hold a data.pkl, but it pickles __torch__ module classes.
  if (zip.entries.has(`${prefix}constants.pkl`)) {
    throw new Error(`${zip.file}: this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; save model.state_dict() with torch.save instead`);
  }
  return prefix;
}

/** What reading a .pth may cost: the zip limits, and the largest pickle (data.pkl) accepted. */
export interface PthLimits extends ZipLimits {
  /** Largest data.pkl, uncompressed (default 256 MiB; a state dict's pickle is a few hundred KB). */
  maxPickleBytes: number;
}

export const DEFAULT_PTH_LIMITS: PthLimits = Object.freeze({ ...DEFAULT_ZIP_LIMITS, maxPickleBytes: 256 * 2 ** 20 });

export interface ReadPthOptions {
  /** Tighter (or looser) bounds than DEFAULT_PTH_LIMITS. */
  limits?: Partial<PthLimits>;
}

const limitsOf = (o: ReadPthOptions): PthLimits => ({ ...DEFAULT_PTH_LIMITS, ...o.limits });

function unpickleArchive(zip: ZipReader, maxPickleBytes: number): PthValue {
  const file = zip.file;
  const prefix = archivePrefix(zip);
  const byteorder = zip.entries.has(`${prefix}byteorder`) ? new TextDecoder().decode(zip.read(`${prefix}byteorder`)).trim() : 'little';
  if (byteorder !== 'little') throw new Error(`${file}: storages are stored ${JSON.stringify(byteorder.slice(0, 20))}-endian; only little-endian checkpoints are supported`);

  const storages = new Map<string, Storage>();
  const persistentLoad = (pid: unknown): Storage => {
    if (!isTuple(pid) || pid.length !== 5 || pid[0] !== 'storage') throw new Error('expected a (\'storage\', type, key, location, numel) tuple');
    const [, type, key, location, numel] = pid;
    if (!(type instanceof StorageType)) throw new Error('storage type is not a torch storage class');
    if (typeof key !== 'string' || typeof location !== 'string' || !isInt(numel) || numel < 0) throw new Error('malformed storage tuple');
    const entry = `${prefix}data/${key}`;
    const seen = storages.get(key);
    if (seen) {
      if (seen.dtype !== type.dtype || seen.numel !== numel) throw new Error(`storage "${entry}" is referenced with conflicting types or sizes`);
      return seen;
    }
    if (!zip.entries.has(entry)) throw new Error(`storage "${entry}" is missing from the archive`);
    const nbytes = numel * dtypeItemSize(type.dtype);
    // A storage entry holds exactly its elements; the pickle's numel bounds what it may inflate to.
    const raw = zip.read(entry, nbytes + 4096);
    if (raw.length < nbytes) throw new Error(`storage "${entry}" holds ${raw.length} bytes, but ${numel} elements of ${type.name} need ${nbytes}`);
    const bytes = raw.subarray(0, nbytes);
    if (type.dtype === 'bool' && !checkBoolBytes(bytes)) throw new Error(`storage "${entry}": BoolStorage holds bytes other than 0 and 1`);
    const s = new Storage(type.dtype, numel, bytes, entry, location);
    storages.set(key, s);
    return s;
  };
  // Streamed: inflated piece by piece as the unpickler reads it, never whole.
  return unpickle(zip.stream(`${prefix}data.pkl`, maxPickleBytes), { file, findGlobal, persistentLoad });
}

/** Parse a torch.save zip archive held in memory (tests, or bytes from elsewhere). */
export function parsePth(buf: Uint8Array, file = '<buffer>', options: ReadPthOptions = {}): PthValue {
  const limits = limitsOf(options);
  const zip = ZipReader.fromBuffer(buf, file, limits);
  try {
    return unpickleArchive(zip, limits.maxPickleBytes);
  } finally {
    zip.close();
  }
}

/**
 * Read a .pth/.pt file written by torch.save (zip format) and return its object tree, with tensors as
 * PthTensorRecord. Only the globals a state dict needs are allowed; anything else is refused, unexecuted.
 */
export function readPth(path: string, options: ReadPthOptions = {}): PthValue {
  const head = sniff(path);
  if (head.length >= 2 && head[0] === 0x80 && head[1]! <= 5) {
    throw new Error(`${path}: legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with torch.save in a current PyTorch`);
  }
  if (!(head[0] === 0x50 && head[1] === 0x4b)) throw new Error(`${path}: not a torch.save zip archive (no zip signature)`);
  const limits = limitsOf(options);
  const zip = ZipReader.open(path, limits);
  try {
    return unpickleArchive(zip, limits.maxPickleBytes);
  } finally {
    zip.close();
  }
}

/** Keys under which training checkpoints commonly keep the model's state dict. */
export const STATE_DICT_KEYS = ['state_dict', 'model', 'model_state_dict'] as const;

function asTensorDict(v: unknown): Map<string, PthTensorRecord> | undefined {
  if (!(v instanceof Map)) return undefined;
  for (const [k, t] of v) if (typeof k !== 'string' || !(t instanceof PthTensorRecord)) return undefined;
  return v as Map<string, PthTensorRecord>;
}

/**
 * The state dict inside a .pth object tree: the top level if it is a dict of tensors, else the dict of
 * tensors under one of STATE_DICT_KEYS.
 */
export function findStateDict(tree: PthValue, file = '<buffer>'): Map<string, PthTensorRecord> {
  const direct = asTensorDict(tree);
  if (direct) return direct;
  if (tree instanceof Map) {
    for (const key of STATE_DICT_KEYS) {
      const sd = asTensorDict(tree.get(key));
      if (sd) return sd;
    }
    const keys = [...tree.keys()].slice(0, 20).map((k) => JSON.stringify(typeof k === 'bigint' ? String(k) : k));
    throw new Error(`${file}: no state dict found: the top-level dict (keys ${keys.join(', ')}) is not a dict of tensors and has no dict of tensors under ${STATE_DICT_KEYS.map((k) => `"${k}"`).join(', ')}`);
  }
  throw new Error(`${file}: no state dict found: the checkpoint holds a ${Array.isArray(tree) ? 'list' : tree === null ? 'None' : typeof tree}, not a dict`);
}

/** Read a .pth file and return its state dict as records, in the file's order. */
export function readPthStateDict(path: string, options: ReadPthOptions = {}): Map<string, PthTensorRecord> {
  return findStateDict(readPth(path, options), path);
}
