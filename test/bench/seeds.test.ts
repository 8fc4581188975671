// The method benchmarks' seed handling (bench/seeds.ts) on the demo's synthetic data: a seed is trained once and
// then reused (not retrained, CAMs not remade, same figures), a directory made by `weakseg run --seed N` is reused
// as that seed's, a directory holding a run with other settings is refused by name and left as it was, and the
// seed lists, mean and standard deviation.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { makeSyntheticDataset } from '../../src/data/index.js';
import { type WeaksegConfig, demoConfig, runPaths, runPipeline } from '../../src/pipeline/index.js';
import { gainOver, meanSd, meansOver, readBaselinePerSeed, runSeed, seedDirs, seedList, threadsNote } from '../../bench/seeds.js';
import { tempDir } from '../data/helpers.js';

const quiet = { log: () => {} };
const opts = { retrain: false, skipTrain: false, skipCams: false, ...quiet };

function base(dir: string, over: Record<string, unknown> = {}): WeaksegConfig {
  return demoConfig({
    out: join(dir, 'base'), size: 'tiny',
    overrides: {
      runtime: { threads: 1, checkpointEverySteps: 0 }, data: { root: join(dir, 'data') },
      train: { epochs: 1, batchSize: 8, cropSize: 48, ...over },
      cams: { splits: ['train', 'val'], scales: [1], flip: false },
      eval: { split: 'train', fitSplit: 'val', thresholds: { from: 0.1, to: 0.5, step: 0.1 } },
    },
  });
}

test('seed lists, run directories, mean and sample standard deviation', () => {
  assert.deepEqual(seedList({ seeds: '3' }), [0, 1, 2]);
  assert.deepEqual(seedList({ seeds: '3', 'seed-list': '4, 1' }), [4, 1]);
  assert.throws(() => seedList({ seeds: '0' }), /--seeds must be a positive count/);
  assert.throws(() => seedList({ seeds: '1', 'seed-list': '1,1' }), /distinct/);
  const dirs = seedDirs('/r', [0, 1], ['1=/elsewhere/run']);
  assert.deepEqual([...dirs], [[0, { dir: '/r/seed-0', own: true }], [1, { dir: '/elsewhere/run', own: false }]]);
  assert.throws(() => seedDirs('/r', [0], ['2=/x']), /seed 2 is not among the seeds run/);
  assert.throws(() => seedDirs('/r', [0], ['/x']), /SEED=DIR/);
  assert.deepEqual(meanSd([24.19, 30.46, 27.0]), { mean: 27.22, sd: 3.14 }); // sd by hand: sqrt(19.73 / 2)
  assert.deepEqual(meanSd([5]), { mean: 5, sd: null });
  assert.deepEqual(meansOver([{ a: 1, b: null }, { a: 3, b: 2 }], ['a', 'b']), { a: 2, a_sd: 1.41, b: 2, b_sd: null });
});

test('a seed is trained once, then reused; a `weakseg run` directory is reused; other settings are refused', async (t) => {
  const dir = await tempDir(t);
  await makeSyntheticDataset({ root: join(dir, 'data'), seed: 5, train: 16, scored: 8, val: 8, size: 48 });
  const cfg = base(dir);
  const own = { dir: join(dir, 'bench', 'seed-0'), own: true };

  const first = await runSeed(cfg, 0, own, opts);
  assert.ok(first.train !== null && first.camMsPerImage !== null, 'trained and made CAMs');
  assert.equal(first.trainThreads, 1, 'the thread count of runtime.threads, read back from the model file');
  // As a baseline (no summary yet): its leak-free figure and its thread count, from the seed's own files.
  assert.deepEqual(readBaselinePerSeed(join(dir, 'bench', 'bench-summary.json')).map((b) => [b.seed, b.train_threads]), [[0, 1]]);
  const model = join(own.dir, 'model.safetensors');
  const modelTime = statSync(model).mtimeMs;
  const again = await runSeed(cfg, 0, own, opts);
  assert.equal(again.train, null, 'not retrained');
  assert.equal(again.camMsPerImage, null, 'CAMs not remade');
  assert.equal(statSync(model).mtimeMs, modelTime);
  assert.deepEqual(again.report.result, first.report.result);

  // Another learning rate: refused by name; the directory keeps its model and config.
  const config = readFileSync(join(own.dir, 'config.json'), 'utf8');
  await assert.rejects(runSeed(base(dir, { lr: 0.5 }), 0, own, opts), /seed-0 holds a run with other settings \(train\.lr: 0\.05 there, 0\.5 here\)/);
  assert.equal(statSync(model).mtimeMs, modelTime);
  assert.equal(readFileSync(join(own.dir, 'config.json'), 'utf8'), config);

  // --skip-train on a seed never trained: an error naming the directory.
  await assert.rejects(runSeed(cfg, 2, { dir: join(dir, 'bench', 'seed-2'), own: true }, { ...opts, skipTrain: true }),
    /seed 2: .*seed-2 holds no finished training .* --skip-train/);

  // A run directory made by `weakseg run --seed 1` with the same settings is that seed's figures, as they are.
  const run = { ...cfg, runDir: join(dir, 'weakseg-run'), train: { ...cfg.train, seed: 1 }, run: { ...cfg.run, stages: ['train', 'cams', 'eval'] } } as WeaksegConfig;
  await runPipeline(run, { progress: false, ...quiet });
  const reused = await runSeed(cfg, 1, { dir: run.runDir, own: false }, opts);
  assert.equal(reused.train, null);
  assert.equal(reused.camMsPerImage, null);
  assert.equal(JSON.parse(readFileSync(join(runPaths(run).root, 'config.json'), 'utf8')).run.stages.length, 3, 'its own config kept');
  await assert.rejects(runSeed(cfg, 1, { dir: run.runDir, own: false }, { ...opts, retrain: true }), /--retrain would delete/);
});

test('gainOver: difference of the means over the seeds both have, spread of the per-seed gains', () => {
  const ours = [{ seed: 0, value: 30 }, { seed: 1, value: 33 }, { seed: 2, value: 31 }, { seed: 5, value: null }];
  const base = [{ seed: 0, value: 29 }, { seed: 1, value: 30 }, { seed: 3, value: 10 }, { seed: 5, value: 20 }];
  const g = gainOver(ours, base);
  assert.deepEqual(g.seeds, [0, 1], 'seed 2 has no baseline, seed 3 no run, seed 5 no figure');
  assert.equal(g.gain, (30 + 33) / 2 - (29 + 30) / 2);
  assert.equal(g.sd, Math.round(Math.SQRT2 * 100) / 100, 'gains 1 and 3: sample sd sqrt(2)');
  assert.deepEqual(gainOver(ours, []), { gain: undefined, sd: undefined, seeds: [] });
});

test('readBaselinePerSeed: the summary\'s seeds, then the leak-free metrics of the seeds it lacks', async (t) => {
  const dir = await tempDir(t);
  const names = ['background', 'cat', 'cow', 'dog', 'horse', 'person', 'sheep', 'sofa'];
  const metrics = (miou: number, mode: string, iou: number) => ({
    eval: { mode, split: 'train', thresholdChosenOn: 'val',
      result: { miou, classes: names.map((name, id) => ({ id, name, iou: name === 'sofa' ? 0.9 : iou })) } },
  });
  const write = (path: string, v: unknown) => { mkdirSync(join(dir, path, '..'), { recursive: true }); writeFileSync(join(dir, path), JSON.stringify(v)); };
  // The summary of a later `--seed-list 1` run: seed 1 only, its figure kept even though seed-1/metrics.json differs.
  write('bench-summary.json', { per_seed: [{ seed: 1, seed_miou_valt: 30.46, seed_miou_frequent7: 46.31 }] });
  write('seed-1/metrics.json', metrics(0.1, 'leak-free', 0.1));
  write('seed-0/metrics.json', metrics(0.24194, 'leak-free', 0.4));
  write('seed-2/metrics.json', metrics(0.5, 'oracle', 0.5)); // another protocol: not a benchmark figure
  write('seed-3/config.json', {}); // no metrics yet
  assert.deepEqual(readBaselinePerSeed(join(dir, 'bench-summary.json')), [
    { seed: 0, seed_miou_valt: 24.19, seed_miou_frequent7: 40, train_threads: null },
    { seed: 1, seed_miou_valt: 30.46, seed_miou_frequent7: 46.31, train_threads: null },
  ]);
  // An older single-run summary without per_seed was seed 0's; no summary and no seed directories: nothing.
  write('old/bench-summary.json', { seed_miou_valt: 25.83, seed_miou_frequent7: 41 });
  assert.deepEqual(readBaselinePerSeed(join(dir, 'old', 'bench-summary.json')), [{ seed: 0, seed_miou_valt: 25.83, seed_miou_frequent7: 41, train_threads: null }]);
  assert.deepEqual(readBaselinePerSeed(join(dir, 'none', 'bench-summary.json')), []);
});

test('threadsNote: silent when every known thread count agrees, names each count\'s runs when they differ', () => {
  assert.equal(threadsNote([{ name: 'seam seed 0', threads: 2 }, { name: 'cam seed 0', threads: 2 }, { name: 'old', threads: null }]), null);
  assert.equal(threadsNote([]), null);
  const note = threadsNote([{ name: 'pixel-ss seed 0', threads: 1 }, { name: 'pixel-ss seed 2', threads: 2 }, { name: 'seam seed 0', threads: 2 }]);
  assert.ok(note?.includes('(1: pixel-ss seed 0; 2: pixel-ss seed 2, seam seed 0)'), note ?? 'null');
});
