// One rank of the data-parallel training test (test/distributed/train.test.ts):
// `node train-worker.js <dataRoot> <runDir> <globalBatch> [resume]`. Trains the demo's classifier (tinynet with
// frozen BatchNorm: batch statistics would differ between a batch of b and one of 2b) for a few steps.
// Run by the test runner directly (no WORLD_SIZE), it does nothing.
import { createBackbone } from '../../src/backbones/index.js';
import { distEnvFrom } from '../../src/engine/index.js';
import { demoConfig, trainClassifier } from '../../src/pipeline/index.js';

const env = distEnvFrom();
const [dataRoot, runDir, batch, mode] = process.argv.slice(2);
if (env && dataRoot && runDir && batch) {
  const config = demoConfig({
    out: runDir, size: 'tiny',
    overrides: {
      data: { root: dataRoot }, runtime: { logEvery: 1, checkpointEverySteps: 2 },
      train: { epochs: 2, batchSize: Number(batch), cropSize: 64, ...(process.env.MAX_STEPS ? { maxSteps: Number(process.env.MAX_STEPS) } : {}) },
    },
  });
  try {
    const fit = await trainClassifier(config, {
      progress: false, log: () => {}, resume: mode === 'resume',
      backboneFactory: (c, o) => createBackbone('tinynet', { outputStride: c.model.outputStride, frozenBatchNorm: true, ...(o?.blocks ? { blocks: o.blocks } : {}) }),
    });
    process.stdout.write(`${JSON.stringify({ rank: env.rank, stepLosses: fit.result.stepLosses, steps: fit.steps })}\n`);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ rank: env.rank, error: (e as Error).message })}\n`);
    process.exitCode = 3;
  }
}
