// What the three training stages (classifier, AffinityNet, segmenter) share around the trainer: refusing to
// overwrite a run's checkpoints unless resuming, the one-batch check, the logs, the loader, saving the model and
// freeing the allocator's cache afterwards. Each stage keeps only what is its own: its net, data and settings.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { emptyCache, getNumThreads, setDeterministic } from '../engine/index.js';
import { readSafetensorsHeader, saveSafetensors } from '../engine/serialize/index.js';
import { BatchLoader, type Dataset, type ItemTransform, type Normalization, type PairOptions, type SourceSpan, trainTransform } from '../data/index.js';
import type { Trainable } from '../train/contract.js';
import { latestCheckpoint, listCheckpoints } from '../train/checkpoint.js';
import { TrainReporter } from '../train/reporter.js';
import { type ScheduleSettings, type TrainResult, train } from '../train/trainer.js';
import type { FitSettings, WeaksegConfig } from './config.js';
import { type StageHooks, skippedFilesLog } from './common.js';
import { perRankBatch, rankDevice, worldGroup } from './distributed.js';
import { DataParallel } from '../train/data-parallel.js';

/** Throws unless the checkpoint folder is empty or the stage resumes. */
export function refuseExistingCheckpoints(dir: string, hooks: StageHooks): void {
  if (!hooks.resume && latestCheckpoint(dir)) {
    throw new Error(`${dir} already has checkpoints (${listCheckpoints(dir).length}); ` +
      'resume it (--resume) or choose a new run directory');
  }
}

/** Throws when a split cannot fill one batch (`field` names the setting, e.g. 'seg.batchSize'). */
export function requireOneBatch(dataset: Dataset, split: string, batchSize: number, field: string): void {
  if (dataset.items.length < batchSize) {
    throw new Error(`split '${split}' has ${dataset.items.length} images, fewer than one batch of ${field} = ${batchSize}`);
  }
}

/**
 * The training crops of a fit section (train, refine.affinity, seg): rescale or long-side resize, flip, colour
 * jitter, crop, normalise and cutout; with `withMask` the mask is cropped along (padding 255), for nets that learn from pixels.
 */
export function fitTransform(s: FitSettings, norm: Normalization, withMask = false): ItemTransform {
  return trainTransform({
    withMask,
    cropSize: s.cropSize,
    ...(s.scaleRange ? { scaleRange: s.scaleRange } : {}),
    ...(s.longSide ? { longSide: s.longSide } : {}),
    flip: s.flip,
    ...(s.jitter ? { jitter: s.jitter } : {}),
    ...(s.cutout ? { cutout: s.cutout } : {}),
    norm,
  });
}

/** The trainer's schedule from a config's `schedule` section (poly takes the section's polyPower). */
function scheduleOf(s: FitSettings): ScheduleSettings {
  const c = s.schedule;
  const warmup = { warmupSteps: c.warmupSteps, warmupFactor: c.warmupFactor };
  switch (c.type) {
    case 'step': return { type: 'step', epochs: c.epochs, gamma: c.gamma, ...warmup };
    case 'cosine': return { type: 'cosine', minFactor: c.minFactor, ...warmup };
    default: return { type: 'poly', power: s.polyPower, ...warmup };
  }
}

export interface FitSpec {
  net: Trainable;
  /** Items with their masks where the net learns from pixels. */
  dataset: Dataset;
  /** The split they come from, for the skipped-files log. */
  split: string;
  transform: ItemTransform;
  /** Give each image a partner (methods trained on pairs). */
  pairs?: PairOptions | undefined;
  /** Class-balanced sampling: one repeat factor per item of `dataset` (data/sampling.ts). */
  repeatFactors?: readonly number[] | undefined;
  /** The dataset mixes weighted sources (data.extra, extra.ts): the loader draws each epoch by their weights. */
  sources?: readonly SourceSpan[] | undefined;
  settings: FitSettings;
  files: { checkpoints: string; trainLog: string; trainJsonLog: string; model: string };
  /** The first log line: what is trained on what. */
  headline: string;
  checkpointMetadata: Record<string, string>;
  /** The saved model's metadata, given how training ended. */
  modelMetadata: (result: TrainResult) => Record<string, string>;
}

/** The figures every training stage records. */
export interface FitSummary {
  model: string;
  epochs: number;
  steps: number;
  epochLosses: number[];
  secondsPerEpoch: number;
  msPerStep: number;
  dataWaitShare: number;
  /** The engine's thread count and libtorch's deterministic mode during training (the same on a rerun: same bits). */
  threads: number;
  deterministic: boolean;
  result: TrainResult;
}

/** The figures of a FitSummary that a stage records in metrics.json. */
export function fitFigures(fit: FitSummary) {
  return {
    epochs: fit.epochs, steps: fit.steps, epochLosses: fit.epochLosses, secondsPerEpoch: fit.secondsPerEpoch,
    msPerStep: fit.msPerStep, dataWaitShare: fit.dataWaitShare, lastCheckpoint: fit.result.lastCheckpoint,
    threads: fit.threads, deterministic: fit.deterministic,
  };
}

/** Trains `spec.net` with the shared trainer, saves it to `files.model` and disposes of it. */
export async function fitAndSave(config: WeaksegConfig, hooks: StageHooks, spec: FitSpec): Promise<FitSummary> {
  const { net, settings: s, files } = spec;
  // Distributed: one shard of each global batch per rank; rank 0 alone logs and writes files.
  const group = worldGroup(config);
  const dp = group ? new DataParallel(group, net) : undefined;
  const main = dp?.isMain ?? true;
  const reporter = new TrainReporter(main ? {
    textLog: files.trainLog, jsonLog: files.trainJsonLog, progress: hooks.progress ?? 'auto', logEvery: config.runtime.logEvery,
    write: hooks.log,
  } : { console: false });
  reporter.line(spec.headline);
  // Bits depend on the thread count too (the split of parallel reductions), so it is recorded with the weights.
  const threads = getNumThreads();
  const deterministic = config.runtime.deterministic ?? config.runtime.device === 'cpu';
  const engine = { seed: String(s.seed), threads: String(threads), deterministic: String(deterministic) };
  reporter.line(`seed ${s.seed}, ${threads} engine threads${dp ? ` per rank, ${dp.worldSize} ranks (${group!.backend})` : ''}, ` +
    `deterministic algorithms ${deterministic ? 'on' : 'off'}`);
  const resumed = hooks.resume ? latestCheckpoint(files.checkpoints) : null;
  const before = resumed ? readSafetensorsHeader(resumed).metadata.threads : undefined;
  if (before !== undefined && before !== engine.threads) {
    reporter.line(`note: ${resumed} was written with ${before} engine threads, this run has ${threads}: ` +
      'the resumed run is not bit-identical to an uninterrupted one');
  }
  const loader = new BatchLoader(spec.dataset, spec.transform, {
    batchSize: dp ? perRankBatch(s.batchSize, dp.worldSize, 'batchSize') : s.batchSize, shuffle: true, seed: s.seed, prefetch: config.runtime.prefetch, dropLast: true,
    onBadFile: config.data.onBadFile, badFiles: skippedFilesLog(config, spec.split, spec.dataset.items.length),
    ...(spec.pairs ? { pairs: spec.pairs } : {}),
    ...(spec.repeatFactors ? { repeatFactors: spec.repeatFactors } : {}),
    ...(spec.sources ? { sources: spec.sources } : {}),
    ...(dp ? { shard: { rank: dp.rank, worldSize: dp.worldSize } } : {}),
  });
  let result: TrainResult;
  const wasDeterministic = setDeterministic(deterministic);
  try {
    result = await train({
      method: net, loader, epochs: s.epochs, seed: s.seed, device: rankDevice(config), channelsLast: config.runtime.channelsLast,
      optimizer: {
        type: s.optimizer.type, lr: s.lr, momentum: s.momentum, weightDecay: s.weightDecay, nesterov: s.nesterov,
        betas: s.optimizer.betas, eps: s.optimizer.eps,
      },
      schedule: scheduleOf(s),
      checkpointDir: files.checkpoints, resume: hooks.resume ?? false, keepCheckpoints: config.runtime.keepCheckpoints,
      checkpointEverySteps: config.runtime.checkpointEverySteps, maxSteps: s.maxSteps, onEvent: reporter.onEvent,
      signal: hooks.signal, checkpointMetadata: { ...spec.checkpointMetadata, ...engine },
      ...(dp ? { distributed: dp } : {}),
    });
  } catch (e) {
    if (/deterministic implementation/.test((e as Error).message ?? '')) {
      throw new Error(`${(e as Error).message}\n(weakseg: set runtime.deterministic to false to train with this kernel)`, { cause: e });
    }
    throw e;
  } finally {
    setDeterministic(wasDeterministic);
    reporter.close();
  }
  if (main) {
    mkdirSync(dirname(files.model), { recursive: true });
    saveSafetensors(files.model, net.model.stateDict(), { ...spec.modelMetadata(result), ...engine });
    reporter.line(`model saved to ${files.model}`);
  }
  group?.barrier(); // the other ranks go on once the model is on disk
  net.model.dispose();
  emptyCache(); // the cached activation blocks of training are of no use to later stages
  const epochsRun = result.epochLosses.length;
  return {
    model: files.model, epochs: result.epochsCompleted, steps: result.steps, epochLosses: result.epochLosses,
    secondsPerEpoch: epochsRun ? result.seconds / epochsRun : 0, msPerStep: result.stepMsMean,
    dataWaitShare: result.dataWaitShare, threads, deterministic, result,
  };
}
