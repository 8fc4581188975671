// Stage 1: train the classifier of a method from image-level tags.
import { manualSeed } from '../engine/index.js';
import { MODEL_FORMAT } from '../train/checkpoint.js';
import type { WeaksegConfig } from './config.js';
import { type StageHooks, buildMethod, imageCount, logger, prepareRun, readSplit, recordMetrics } from './common.js';
import { namingSources, withExtraSources } from './extra.js';
import { type FitSummary, fitAndSave, fitFigures, fitTransform, refuseExistingCheckpoints, requireOneBatch } from './fit.js';

/** `resume`: continue from the newest checkpoint of the run (default false: refuse a run that has checkpoints). */
export type TrainOptions = StageHooks;

export interface TrainSummary extends FitSummary {
  runDir: string;
}

export async function trainClassifier(config: WeaksegConfig, options: TrainOptions = {}): Promise<TrainSummary> {
  const paths = prepareRun(config);
  refuseExistingCheckpoints(paths.checkpoints, options);
  const t = config.train;
  const main = await readSplit(config, config.data.trainSplit);
  requireOneBatch(main, config.data.trainSplit, t.batchSize, 'train.batchSize');
  const { dataset, sources, summary: extra, extra: extraFigures } = await withExtraSources(config, main, logger(options));
  manualSeed(t.seed); // the new layers' initialisation is part of the run's determinism
  const method = buildMethod(config, dataset.classes.length, options);
  const transform = fitTransform(t, method.backbone.inputNorm);
  const fit = await fitAndSave(config, options, {
    net: method,
    dataset,
    sources,
    split: config.data.trainSplit,
    transform: sources ? namingSources(transform, sources) : transform,
    pairs: method.pairs,
    settings: t,
    files: { checkpoints: paths.checkpoints, trainLog: paths.trainLog, trainJsonLog: paths.trainJsonLog, model: paths.model },
    headline: `run ${paths.root}: method ${method.name}, backbone ${method.backbone.name} ` +
      `(output stride ${method.backbone.outputStride}, input mean ${method.backbone.inputNorm.mean.join('/')} ` +
      `std ${method.backbone.inputNorm.std.join('/')}), ${imageCount(config, config.data.trainSplit, main)}${extra ? ` + ${extra}` : ''}, ` +
      `${dataset.classes.length} classes; momentum ${t.momentum}`,
    checkpointMetadata: { backbone: method.backbone.name, config: JSON.stringify(config) },
    modelMetadata: (result) => ({
      format: MODEL_FORMAT, method: method.name, backbone: method.backbone.name,
      num_classes: String(method.numClasses), classes: JSON.stringify(dataset.classes),
      epochs_completed: String(result.epochsCompleted), steps: String(result.steps),
    }),
  });
  recordMetrics(config, 'train', { ...fitFigures(fit), ...(extraFigures.length ? { extra: extraFigures } : {}) });
  return { runDir: paths.root, ...fit };
}
