// Loading pretrained weights into a backbone by name, from safetensors or torch.save (.pth) files.
import { extname } from 'node:path';

import { type Tensor, dispose } from '../engine/index.js';
import { loadPthStateDict, loadSafetensors } from '../engine/serialize/index.js';
import { type KeyPatterns, type LoadReport, type Module, StateDictError } from '../nn/index.js';
import type { InputNorm } from './backbone.js';

export interface WeightsFile {
  /** The tensors by key, as stored (float16 stays float16 here; loading converts to the model's dtype). */
  tensors: Map<string, Tensor>;
  /** safetensors `__metadata__` (empty for .pth files). */
  metadata: Record<string, string>;
  path: string;
}

/** Reads a state dict from a .safetensors file or a torch.save .pth/.pt/.bin checkpoint (CPU tensors). */
export function readWeights(path: string): WeightsFile {
  const ext = extname(path).toLowerCase();
  if (ext === '.safetensors') {
    const { tensors, metadata } = loadSafetensors(path);
    return { tensors, metadata, path };
  }
  if (ext === '.pth' || ext === '.pt' || ext === '.bin' || ext === '.ckpt') {
    return { tensors: loadPthStateDict(path), metadata: {}, path };
  }
  throw new Error(`${path}: unknown weights format '${ext}' (expected .safetensors, or a torch.save .pth/.pt/.bin/.ckpt)`);
}

export interface LoadWeightsOptions {
  /** Fail (changing nothing) on any missing, unexpected or wrongly shaped key. Default true. */
  strict?: boolean;
  /**
   * Renames file keys before matching (e.g. strips a "module." prefix); return null to drop a key.
   * Applied before `ignore`.
   */
  rename?: (key: string) => string | null;
  /** File keys the model is not expected to have (e.g. an ImageNet classifier on a headless backbone). */
  ignore?: (key: string) => boolean;
  /** Model keys the file may lack (keys, or patterns with '*': 'layer*.*.amm.*'); the rest stays strict. */
  allowMissing?: KeyPatterns;
}

/**
 * Copies a weights file's tensors into a model by dotted key (converting float16 and other dtypes to the
 * model's). As torch does for checkpoints older than the counter, BatchNorm `num_batches_tracked` buffers
 * the file lacks are not reported missing: the model keeps its own. Strict by default: any other missing,
 * unexpected or wrongly shaped key throws a StateDictError that lists them, and nothing is loaded.
 */
export function loadWeightsInto(model: Module, file: WeightsFile, opts: LoadWeightsOptions = {}): LoadReport {
  const src = new Map<string, Tensor>();
  for (const [k, t] of file.tensors) {
    const name = opts.rename ? opts.rename(k) : k;
    if (name === null || opts.ignore?.(name)) continue;
    src.set(name, t);
  }
  for (const [k, t] of model.stateDict()) {
    if (k.endsWith('.num_batches_tracked') && !src.has(k)) src.set(k, t);
  }
  try {
    return model.loadStateDict(src, { strict: opts.strict ?? true, source: file.path, ...(opts.allowMissing ? { allowMissing: opts.allowMissing } : {}) });
  } catch (e) {
    if (e instanceof StateDictError) {
      // Re-throw with a hint about the likely cause: a checkpoint of a different architecture or options.
      e.message += ` (model: ${model.constructor.name}; check the architecture and options match the file)`;
    }
    throw e;
  }
}

/** Reads a weights file, loads it into the model, and frees the file's tensors. */
export function loadWeights(model: Module, path: string, opts: LoadWeightsOptions = {}): LoadReport {
  const file = readWeights(path);
  try {
    return loadWeightsInto(model, file, opts);
  } finally {
    dispose(file.tensors);
  }
}

/**
 * Every backbone builder's weight loading: without a path, `build(null)`; with one, reads the file, builds the
 * model (which may read the file's metadata, e.g. padding), loads it with the options `how` gives, and disposes of
 * the model if anything fails. The file's tensors are always freed.
 */
export function buildWithWeights<M extends Module & { loadReport: LoadReport | null }>(
  path: string | undefined,
  build: (file: WeightsFile | null) => M,
  how: (file: WeightsFile, model: M) => LoadWeightsOptions,
): M {
  if (!path) return build(null);
  const file = readWeights(path);
  let model: M | null = null;
  try {
    model = build(file);
    model.loadReport = loadWeightsInto(model, file, how(file, model));
    return model;
  } catch (e) {
    model?.dispose();
    throw e;
  } finally {
    dispose(file.tensors);
  }
}

/** The input normalisation a weights file declares in its metadata (`input_mean`, `input_std`), if any. */
export function inputNormFromMetadata(metadata: Record<string, string>): InputNorm | null {
  const parse = (key: string): [number, number, number] | null => {
    const v = metadata[key];
    if (v === undefined) return null;
    const nums = v.split(',').map((s) => Number(s.trim()));
    if (nums.length !== 3 || nums.some((n) => !Number.isFinite(n))) {
      throw new Error(`weights metadata '${key}' should be three comma-separated numbers, got '${v}'`);
    }
    return nums as [number, number, number];
  };
  const mean = parse('input_mean');
  const std = parse('input_std');
  if (!mean && !std) return null;
  if (!mean || !std) throw new Error('weights metadata gives only one of input_mean and input_std');
  if (std.some((s) => s <= 0)) throw new Error(`weights metadata input_std must be positive, got ${std.join(',')}`);
  return { mean, std };
}
