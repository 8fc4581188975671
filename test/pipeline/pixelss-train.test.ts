// Pixel-level self-supervision trained through the pipeline's training stage (the shared trainer, the loader, the
// config's method section) on the demo's synthetic data with TinyNet. A CAM run trained first is the frozen
// SupportNet. Checked: the loss falls; every step's total is SEAM's terms plus lambda_rcm RCM plus lambda_mam MAM;
// CAMs of the run are made after the support's run is gone (inference is the MainNet's alone); the EMA support
// and the plain CAM base train too.
import assert from 'node:assert/strict';
import { readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { makeSyntheticDataset } from '../../src/data/index.js';
import { readCamIndex } from '../../src/cams/index.js';
import { type WeaksegConfig, demoConfig, makeCams, runPaths, trainClassifier } from '../../src/pipeline/index.js';
import { tempDir } from '../data/helpers.js';

const quiet = { progress: false as const, log: () => {} };

interface Step { step: number; loss: number; parts: Record<string, number> }

function config(dir: string, data: string, name: string, method: Record<string, unknown>, maxSteps: number): WeaksegConfig {
  return demoConfig({
    out: join(dir, name), size: 'tiny',
    overrides: {
      runtime: { threads: 1, checkpointEverySteps: 0 },
      data: { root: data },
      method,
      train: { epochs: 6, batchSize: 8, cropSize: 64, maxSteps, lr: 0.02 },
      cams: { splits: ['val'], scales: [1] },
    },
  });
}

async function train(c: WeaksegConfig): Promise<Step[]> {
  await trainClassifier(c, quiet);
  return readFileSync(runPaths(c).trainJsonLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Step & { type: string })
    .filter((e) => e.type === 'step');
}

function checkSums(steps: Step[], names: string[], weights: Record<string, number>, what: string): void {
  for (const s of steps) {
    assert.deepEqual(Object.keys(s.parts).sort(), [...names].sort(), `${what}: the terms logged`);
    const sum = Object.entries(s.parts).reduce((a, [k, v]) => a + (weights[k] ?? 1) * v, 0);
    assert.ok(Number.isFinite(s.loss) && Math.abs(s.loss - sum) <= 1e-5 * Math.max(1, Math.abs(s.loss)),
      `${what}, step ${s.step}: total ${s.loss} against the weighted sum of its terms ${sum}`);
  }
}

test('pixel-ss through the training stage: frozen CAM support, the loss falls, CAMs without the support run; EMA and CAM base run', async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'data');
  await makeSyntheticDataset({ root: data, seed: 1, train: 48, scored: 4, val: 4, size: 64 });

  const supportRun = config(dir, data, 'support', { name: 'cam' }, 12);
  await train(supportRun);

  const pcmTaps = ['layer1', 'layer2'];
  const frozen = config(dir, data, 'frozen', {
    name: 'pixel-ss', support: 'frozen', supportMethod: 'cam', supportFrom: supportRun.runDir, pcmTaps,
    lambdaRcm: 0.2, lambdaMam: 2, mamScales: [0.5, 1, 1.5],
  }, 30);
  const steps = await train(frozen);
  assert.equal(steps.length, 30);
  checkSums(steps, ['cls', 'min', 'er', 'ecr', 'rcm', 'mam'], { rcm: 0.2, mam: 2 }, 'frozen support');
  assert.ok(steps.every((s) => s.parts.rcm! > 0 && s.parts.mam! >= 0), 'both modules active');
  const mean = (xs: Step[]) => xs.reduce((s, x) => s + x.loss, 0) / xs.length;
  const first = mean(steps.slice(0, 6));
  const last = mean(steps.slice(-6));
  t.diagnostic(`frozen support: mean loss of steps 1-6 ${first.toFixed(4)}, of steps 25-30 ${last.toFixed(4)}`);
  assert.ok(last < 0.9 * first, `the loss falls by more than 10 %: ${first} -> ${last}`);
  const rcmFirst = steps.slice(0, 6).reduce((s, x) => s + x.parts.rcm!, 0);
  const rcmLast = steps.slice(-6).reduce((s, x) => s + x.parts.rcm!, 0);
  assert.ok(rcmLast < rcmFirst, `the contrast falls: ${rcmFirst / 6} -> ${rcmLast / 6}`);

  // The support's run moved away: the CAM stage loads the run's own model file and infers from the MainNet.
  renameSync(supportRun.runDir, `${supportRun.runDir}-gone`);
  await makeCams(frozen, quiet);
  assert.equal(readCamIndex(runPaths(frozen).cams('val')).count, 4);

  const ema = await train(config(dir, data, 'ema', { name: 'pixel-ss', support: 'ema', pcmTaps, emaMomentum: 0.9 }, 3));
  checkSums(ema, ['cls', 'min', 'er', 'ecr', 'rcm', 'mam'], { rcm: 0.1, mam: 1 }, 'EMA support');
  const cam = await train(config(dir, data, 'cam-base', { name: 'pixel-ss', base: 'cam', prototypes: 'both' }, 3));
  checkSums(cam, ['cls', 'rcm', 'mam'], { rcm: 0.1, mam: 1 }, 'CAM base');
});
