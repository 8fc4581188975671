// Stage 1: train the classifier of a method from image-level tags.
import { BatchLoader, trainTransform } from '../data/index.js';
import { emptyCache, manualSeed } from '../engine/index.js';
import { saveSafetensors } from '../engine/serialize/index.js';
import { latestCheckpoint, listCheckpoints } from '../train/checkpoint.js';
import { TrainReporter } from '../train/reporter.js';
import { type TrainResult, train } from '../train/trainer.js';
import type { WeaksegConfig } from './config.js';
import { type StageHooks, buildMethod, prepareRun, readSplit, recordMetrics } from './common.js';

/** `resume`: continue from the newest checkpoint of the run (default false: refuse a run that has checkpoints). */
export type TrainOptions = StageHooks;

export interface TrainSummary {
  runDir: string;
  model: string;
  epochs: number;
  steps: number;
  epochLosses: number[];
  secondsPerEpoch: number;
  msPerStep: number;
  dataWaitShare: number;
  result: TrainResult;
}

export async function trainClassifier(config: WeaksegConfig, options: TrainOptions = {}): Promise<TrainSummary> {
  const paths = prepareRun(config);
  if (!options.resume && latestCheckpoint(paths.checkpoints)) {
    throw new Error(`${paths.root} already has checkpoints (${listCheckpoints(paths.checkpoints).length}); ` +
      'resume it (--resume) or choose a new run directory');
  }
  const t = config.train;
  const dataset = await readSplit(config, config.data.trainSplit);
  if (dataset.items.length < t.batchSize) {
    throw new Error(`split '${config.data.trainSplit}' has ${dataset.items.length} images, fewer than one batch of ${t.batchSize}`);
  }
  manualSeed(t.seed); // the new layers' initialisation is part of the run's determinism
  const method = buildMethod(config, dataset.classes.length, options);
  const reporter = new TrainReporter({
    textLog: paths.trainLog, jsonLog: paths.trainJsonLog, progress: options.progress ?? 'auto', logEvery: t.logEvery,
    write: options.log,
  });
  reporter.line(`run ${paths.root}: method ${method.name}, backbone ${method.backbone.name} ` +
    `(output stride ${method.backbone.outputStride}, input mean ${method.backbone.inputNorm.mean.join('/')} ` +
    `std ${method.backbone.inputNorm.std.join('/')}), ${dataset.items.length} images of '${config.data.trainSplit}', ` +
    `${dataset.classes.length} classes; momentum ${t.momentum}`);
  const loader = new BatchLoader(
    dataset,
    trainTransform({
      cropSize: t.cropSize,
      ...(t.scaleRange ? { scaleRange: t.scaleRange } : {}),
      flip: t.flip,
      ...(t.jitter ? { jitter: t.jitter } : {}),
      norm: method.backbone.inputNorm,
    }),
    { batchSize: t.batchSize, shuffle: true, seed: t.seed, prefetch: t.prefetch, dropLast: true, onBadFile: config.data.onBadFile },
  );
  let result: TrainResult;
  try {
    result = await train({
      method, loader, epochs: t.epochs, seed: t.seed, device: config.device, channelsLast: config.model.channelsLast,
      optimizer: { lr: t.lr, momentum: t.momentum, weightDecay: t.weightDecay, nesterov: t.nesterov, polyPower: t.polyPower },
      checkpointDir: paths.checkpoints, resume: options.resume ?? false, keepCheckpoints: t.keepCheckpoints,
      checkpointEverySteps: t.checkpointEverySteps,
      maxSteps: t.maxSteps, onEvent: reporter.onEvent, signal: options.signal,
      checkpointMetadata: { backbone: method.backbone.name, config: JSON.stringify(config) },
    });
  } finally {
    reporter.close();
  }
  const sd = method.model.stateDict();
  saveSafetensors(paths.model, sd, {
    format: 'weakseg-model/1', method: method.name, backbone: method.backbone.name,
    num_classes: String(method.numClasses), classes: JSON.stringify(dataset.classes),
    epochs_completed: String(result.epochsCompleted), steps: String(result.steps),
  });
  const epochsRun = result.epochLosses.length;
  const summary: TrainSummary = {
    runDir: paths.root,
    model: paths.model,
    epochs: result.epochsCompleted,
    steps: result.steps,
    epochLosses: result.epochLosses,
    secondsPerEpoch: epochsRun ? result.seconds / epochsRun : 0,
    msPerStep: result.stepMsMean,
    dataWaitShare: result.dataWaitShare,
    result,
  };
  recordMetrics(config, 'train', {
    epochs: summary.epochs, steps: summary.steps, epochLosses: summary.epochLosses,
    secondsPerEpoch: summary.secondsPerEpoch, msPerStep: summary.msPerStep, dataWaitShare: summary.dataWaitShare,
    lastCheckpoint: result.lastCheckpoint,
  });
  reporter.line(`model saved to ${paths.model}`);
  method.model.dispose();
  emptyCache(); // the cached activation blocks of training are of no use to later stages
  return summary;
}
