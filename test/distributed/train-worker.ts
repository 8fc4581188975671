// One rank of the data-parallel training test (test/distributed/train.test.ts):
// `node train-worker.js <dataRoot> <runDir> <globalBatch> [resume | cams <weights>]`. Trains the demo's classifier (tinynet with
// frozen BatchNorm: batch statistics would differ between a batch of b and one of 2b) for a few steps, or makes the
// CAMs of its splits with the given weights.
// Run by the test runner directly (no WORLD_SIZE), it does nothing.
import { createBackbone } from '../../src/backbones/index.js';
import { distEnvFrom } from '../../src/engine/index.js';
import { demoConfig, makeCams, trainClassifier } from '../../src/pipeline/index.js';

const env = distEnvFrom();
const [dataRoot, runDir, batch, mode, weights] = process.argv.slice(2);
if (env && dataRoot && runDir && batch) {
  const config = demoConfig({
    out: runDir, size: 'tiny',
    overrides: {
      data: { root: dataRoot }, runtime: { logEvery: 1, checkpointEverySteps: 2 },
      cams: { splits: ['train', 'val'], scales: [1, 0.5], ...(weights ? { checkpoint: weights } : {}) },
      train: { epochs: 2, batchSize: Number(batch), cropSize: 64, ...(process.env.MAX_STEPS ? { maxSteps: Number(process.env.MAX_STEPS) } : {}) },
    },
  });
  const hooks = {
    progress: false as const, log: () => {}, resume: mode === 'resume',
    backboneFactory: (c: typeof config, o?: { blocks?: unknown }) => createBackbone('tinynet', {
      outputStride: c.model.outputStride, frozenBatchNorm: true, ...(o?.blocks ? { blocks: o.blocks } : {}),
    }),
  };
  try {
    if (mode === 'cams') {
      const cams = await makeCams(config, hooks);
      process.stdout.write(`${JSON.stringify({ rank: env.rank, images: cams.splits.map((s) => s.images) })}\n`);
      process.exit(0);
    }
    const fit = await trainClassifier(config, hooks);
    process.stdout.write(`${JSON.stringify({ rank: env.rank, stepLosses: fit.result.stepLosses, steps: fit.steps })}\n`);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ rank: env.rank, error: (e as Error).message })}\n`);
    process.exitCode = 3;
  }
}
