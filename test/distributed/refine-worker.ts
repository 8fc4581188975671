// One rank of the split-inference test (test/distributed/refine.test.ts):
//   `node refine-worker.js prepare <runDir>`  a tiny demo run (its own synthetic data), every stage but the report and saliency;
//   `node refine-worker.js stages <runDir> <dataRoot>`  the per-image stages that split their images over the ranks
//   (crf, random-walk, irn-walk, seg-eval) on a run whose trained models are there.
// Run by the test runner directly (no WORLD_SIZE), it does nothing.
import { distEnvFrom } from '../../src/engine/index.js';
import { makeSyntheticDataset } from '../../src/data/index.js';
import { crfSeeds, demoConfig, evaluateSegmenter, irnWalkMasks, randomWalkMasks, runPipeline, stageNames } from '../../src/pipeline/index.js';
import { join } from 'node:path';

const env = distEnvFrom();
const [mode, runDir, dataRoot] = process.argv.slice(2);
if (env && runDir) {
  const hooks = { progress: false as const, log: () => {} };
  const config = (data: string) => demoConfig({
    out: runDir, size: 'tiny',
    // Every stage but the report and saliency (which needs a user's saliency maps); IRN's walk length chosen too.
    overrides: {
      data: { root: data }, run: { stages: stageNames().filter((s) => s !== 'report' && s !== 'saliency') },
      refine: { irn: { walk: { expTimes: 'fit', expTimesCandidates: [1, 3] } } },
    },
  });
  try {
    if (mode === 'prepare') {
      const data = join(runDir, 'data');
      await makeSyntheticDataset({ root: data, seed: 3, train: 12, scored: 6, val: 6 });
      await runPipeline(config(data), hooks);
    } else if (mode === 'stages' && dataRoot) {
      const c = config(dataRoot);
      await crfSeeds(c, hooks);
      await randomWalkMasks(c, hooks);
      await irnWalkMasks(c, hooks);
      await evaluateSegmenter(c, hooks);
    }
    process.stdout.write(`${JSON.stringify({ rank: env.rank, ok: true })}\n`);
    process.exit(0);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ rank: env.rank, error: (e as Error).stack })}\n`);
    process.exitCode = 3;
  }
}
