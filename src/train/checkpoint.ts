// Training checkpoints: one safetensors file per epoch holding the model's state dict ("model.<key>"), the
// optimizer's state ("optimizer.<key>", e.g. SGD momentum buffers) and, in the metadata, where training stands
// (epoch, step, seed). Files are written to a temporary name and renamed into place (saveSafetensors), so a
// crash mid-write never leaves a truncated checkpoint under a real name.
import { existsSync, mkdirSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { type Tensor, dispose } from '../engine/index.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../engine/serialize/index.js';
import { readWeights } from '../backbones/weights.js';
import type { Module, Optimizer } from '../nn/index.js';

export const CHECKPOINT_FORMAT = 'weakseg-checkpoint/1';
/** The format of a trained classifier's model file (`weakseg train`'s model.safetensors). */
export const MODEL_FORMAT = 'weakseg-model/1';

export interface CheckpointInfo {
  /** Epochs completed. */
  epoch: number;
  /** Optimizer steps completed (global). */
  step: number;
  totalSteps: number;
  seed: number;
  method: string;
  /** Anything else worth keeping (backbone name, resolved config JSON...). */
  extra?: Record<string, string>;
}

const FILE_RE = /^epoch-(\d+)\.safetensors$/;

export function checkpointPath(dir: string, epoch: number): string {
  return join(dir, `epoch-${String(epoch).padStart(3, '0')}.safetensors`);
}

/** The rolling mid-epoch checkpoint (overwritten every few steps), so a killed run loses only those steps. */
export function midEpochCheckpointPath(dir: string): string {
  return join(dir, 'last.safetensors');
}

/** The checkpoints in a folder, oldest first. */
export function listCheckpoints(dir: string): { epoch: number; path: string }[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((f) => FILE_RE.exec(f))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ epoch: Number(m[1]), path: join(dir, m[0]) }))
    .sort((a, b) => a.epoch - b.epoch);
}

/** The checkpoint furthest into training: the newest epoch's, or the mid-epoch one when it is further. */
export function latestCheckpoint(dir: string): string | null {
  const all = listCheckpoints(dir);
  const epochPath = all.length ? all[all.length - 1]!.path : null;
  const mid = midEpochCheckpointPath(dir);
  if (!existsSync(mid)) return epochPath;
  if (!epochPath) return mid;
  return stepOf(mid) > stepOf(epochPath) ? mid : epochPath;
}

function stepOf(path: string): number {
  return Number(readSafetensorsHeader(path).metadata.step ?? -1);
}

/** Writes model + optimizer state atomically; returns the path. */
export function saveCheckpoint(
  dir: string, model: Module, optimizer: Optimizer, info: CheckpointInfo, path = checkpointPath(dir, info.epoch),
): string {
  mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, Tensor>();
  for (const [k, t] of model.stateDict()) tensors.set(`model.${k}`, t);
  const optState = optimizer.stateDict();
  try {
    for (const [k, t] of optState) tensors.set(`optimizer.${k}`, t);
    saveSafetensors(path, tensors, {
      format: CHECKPOINT_FORMAT,
      epoch: String(info.epoch),
      step: String(info.step),
      total_steps: String(info.totalSteps),
      seed: String(info.seed),
      method: info.method,
      ...(info.extra ?? {}),
    });
    return path;
  } finally {
    dispose([...optState.values()]);
  }
}

/** Deletes all but the newest `keep` checkpoints (keep <= 0 keeps everything). */
export function pruneCheckpoints(dir: string, keep: number): void {
  if (keep <= 0) return;
  const all = listCheckpoints(dir);
  for (const { path } of all.slice(0, Math.max(0, all.length - keep))) unlinkSync(path);
}

export interface LoadedCheckpoint {
  info: CheckpointInfo;
  metadata: Record<string, string>;
}

function intField(meta: Record<string, string>, key: string, path: string): number {
  const v = Number(meta[key]);
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`${path}: checkpoint metadata '${key}' is ${JSON.stringify(meta[key])}, not a count`);
  return v;
}

/**
 * Restores a checkpoint into a model and (optionally) an optimizer built the same way. Strict: a checkpoint of a
 * different architecture fails with the list of mismatched keys.
 */
export function loadCheckpoint(path: string, model: Module, optimizer?: Optimizer): LoadedCheckpoint {
  const { tensors, metadata } = loadSafetensors(path);
  try {
    if (metadata.format !== CHECKPOINT_FORMAT) {
      throw new Error(`${path}: not a weakseg training checkpoint (format ${JSON.stringify(metadata.format)}, expected ${CHECKPOINT_FORMAT})`);
    }
    const modelState = new Map<string, Tensor>();
    const optState = new Map<string, Tensor>();
    for (const [k, t] of tensors) {
      if (k.startsWith('model.')) modelState.set(k.slice(6), t);
      else if (k.startsWith('optimizer.')) optState.set(k.slice(10), t);
    }
    model.loadStateDict(modelState, { source: path });
    optimizer?.loadStateDict(optState);
    const info: CheckpointInfo = {
      epoch: intField(metadata, 'epoch', path),
      step: intField(metadata, 'step', path),
      totalSteps: intField(metadata, 'total_steps', path),
      seed: intField(metadata, 'seed', path),
      method: metadata.method ?? '',
    };
    return { info, metadata };
  } finally {
    dispose([...tensors.values()]);
  }
}

/**
 * Loads a trained model into a module, strictly: `source` is a run directory (its model.safetensors), a training
 * checkpoint ("model.*" keys), or a plain state-dict file (.safetensors, or a torch.save .pth). `prefix` takes only
 * the keys under it ('backbone.' loads another run's backbone into a backbone); `frozen` then freezes the module
 * for good (eval mode, no gradient). Returns the file's metadata.
 */
export function loadModelWeights(
  source: string, model: Module, options: { prefix?: string; frozen?: boolean } = {},
): Record<string, string> {
  const path = existsSync(source) && statSync(source).isDirectory() ? join(source, 'model.safetensors') : source;
  if (!existsSync(path)) {
    throw new Error(path === source ? `${source}: no such model file` : `${source}: no trained model in this run directory (no model.safetensors)`);
  }
  const { tensors, metadata } = readWeights(path);
  try {
    const strip = `${metadata.format === CHECKPOINT_FORMAT ? 'model.' : ''}${options.prefix ?? ''}`;
    const state = new Map<string, Tensor>();
    for (const [k, t] of tensors) if (k.startsWith(strip)) state.set(k.slice(strip.length), t);
    model.loadStateDict(state, { source: `${path}${options.prefix ? ` (keys under '${options.prefix}')` : ''}` });
    if (options.frozen) model.setFrozen(true);
    return metadata;
  } finally {
    dispose([...tensors.values()]);
  }
}
