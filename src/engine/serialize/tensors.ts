// Thin layer turning the record-level parsers' output into engine tensors (and back, for writing).
// This is the only serialize module that imports the engine; the parsers stay testable without the addon.

import { fromBytes, type Tensor } from '../index.js';
import { PthTensorRecord, findStateDict, readPth, type PthValue } from './pth.js';
import { dtypeItemSize, isDenseRecord, viewProblem, type ContiguousTensorRecord, type TensorRecord } from './records.js';
import { readSafetensorsRecords, writeSafetensorsRecords } from './safetensors.js';

/**
 * Build tensors from records. Records sharing one storage (`bytes` object) become views of one shared CPU
 * tensor, as torch.load does; a record alone on its storage and dense is copied directly.
 */
export function recordsToTensors<K>(records: Iterable<readonly [K, TensorRecord]>): Map<K, Tensor> {
  const list = [...records];
  const uses = new Map<Uint8Array, number>();
  for (const [, r] of list) uses.set(r.bytes, (uses.get(r.bytes) ?? 0) + 1);
  const bases = new Map<Uint8Array, Tensor>();
  const out = new Map<K, Tensor>();
  try {
    for (const [key, r] of list) {
      if (uses.get(r.bytes) === 1 && isDenseRecord(r)) {
        out.set(key, fromBytes(r.bytes, r.dtype, r.shape));
        continue;
      }
      const storageNumel = Math.floor(r.bytes.length / dtypeItemSize(r.dtype));
      // The parsers already checked this; records built elsewhere get the same check before the view.
      const problem = viewProblem(r.shape, r.strides, r.storageOffset, storageNumel);
      if (problem) throw new Error(`tensor ${String(key)}: ${problem}`);
      let base = bases.get(r.bytes);
      if (!base) {
        base = fromBytes(r.bytes.subarray(0, storageNumel * dtypeItemSize(r.dtype)), r.dtype, [storageNumel]);
        bases.set(r.bytes, base);
      }
      out.set(key, base.asStrided(r.shape, r.strides, r.storageOffset));
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  } finally {
    // The views keep the shared storage alive; the base handles are no longer needed.
    for (const b of bases.values()) b.dispose();
  }
  return out;
}

/** One record as a tensor (a copy; strided records are materialized as views of their own storage copy). */
export function recordToTensor(r: TensorRecord): Tensor {
  return recordsToTensors([[0, r]]).get(0)!;
}

/** A tensor as a contiguous little-endian record for the writers (copies to CPU if needed). */
export function tensorToRecord(t: Tensor): ContiguousTensorRecord {
  return { dtype: t.dtype, shape: [...t.shape], bytes: t.toBytes() };
}

export interface LoadedSafetensors {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

/** Load a safetensors file into CPU tensors. */
export function loadSafetensors(path: string): LoadedSafetensors {
  const { tensors, metadata } = readSafetensorsRecords(path);
  return { tensors: recordsToTensors(tensors), metadata };
}

/** Save tensors (any device, any layout) and optional string metadata as a safetensors file. */
export function saveSafetensors(path: string, tensors: Map<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>): void {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  writeSafetensorsRecords(path, entries.map(([k, t]) => [k, tensorToRecord(t)] as const), metadata);
}

/** Deepest container nesting loadPth accepts (real checkpoints nest a handful of levels). */
const MAX_DEPTH = 1000;

/**
 * Load a torch.save checkpoint and return its whole object tree (see PthValue) with every tensor replaced by
 * a CPU engine Tensor. Tensors that shared a storage in the file share it here too.
 */
export function loadPth(path: string): unknown {
  const tree = readPth(path);
  // Collect every tensor record, then rebuild the containers with tensors in their place (cycles allowed).
  // Both walks recurse; a hostile pickle can nest containers deeply enough to overflow the JS stack.
  const tooDeep = (depth: number) => {
    if (depth > MAX_DEPTH) throw new Error(`${path}: containers nested more than ${MAX_DEPTH} levels deep`);
  };
  const found: [PthTensorRecord, PthTensorRecord][] = [];
  const seen = new Set<unknown>();
  const collect = (v: PthValue, depth: number): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    tooDeep(depth);
    seen.add(v);
    if (v instanceof PthTensorRecord) found.push([v, v]);
    else if (Array.isArray(v) || v instanceof Set) for (const x of v) collect(x, depth + 1);
    else if (v instanceof Map) for (const [k, x] of v) { collect(k, depth + 1); collect(x, depth + 1); }
  };
  collect(tree, 0);
  const tensors = recordsToTensors(found);

  // Depth was checked by collect, which saw every container this walk visits.
  const done = new Map<unknown, unknown>();
  const convert = (v: PthValue): unknown => {
    if (v === null || typeof v !== 'object') return v;
    if (v instanceof PthTensorRecord) return tensors.get(v);
    if (done.has(v)) return done.get(v);
    if (Array.isArray(v)) {
      const a: unknown[] = [];
      done.set(v, a);
      for (const x of v) a.push(convert(x));
      return Object.isFrozen(v) ? Object.freeze(a) : a;
    }
    if (v instanceof Map) {
      const m = new Map<unknown, unknown>();
      done.set(v, m);
      for (const [k, x] of v) m.set(convert(k), convert(x));
      return m;
    }
    if (v instanceof Set) {
      const s = new Set<unknown>();
      done.set(v, s);
      for (const x of v) s.add(convert(x));
      return s;
    }
    return v; // Uint8Array (bytes)
  };
  return convert(tree);
}

/**
 * Load the state dict of a torch.save checkpoint: the top-level dict of tensors, or the one under
 * "state_dict", "model" or "model_state_dict" in a training checkpoint. Keys keep the file's order.
 */
export function loadPthStateDict(path: string): Map<string, Tensor> {
  return recordsToTensors(findStateDict(readPth(path), path));
}
