// SEAM trained through the pipeline's training stage (the shared trainer, the loader, the config's method section)
// on the demo's synthetic data with TinyNet: the loss falls, every step's total is the sum of its terms (SEAM
// weighs them all 1), and each variant setting runs and reaches the loss: the paper variant (no min-pool term,
// plain-mean ECR, which cannot exceed the code's top-20 % mean; ohemRatio 1 gives the same ECR), the L2 ER loss (below L1's on the same first
// batch, as every difference lies in [-1, 1]), and the rotate and translate transforms.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { makeSyntheticDataset } from '../../src/data/index.js';
import { demoConfig, runPaths, trainClassifier } from '../../src/pipeline/index.js';
import { tempDir } from '../data/helpers.js';

const quiet = { progress: false as const, log: () => {} };

interface Step { step: number; loss: number; parts: Record<string, number> }

let data: string | null = null;

async function trainSeam(dir: string, name: string, seam: Record<string, unknown>, maxSteps: number): Promise<Step[]> {
  const config = demoConfig({
    out: join(dir, name), size: 'tiny',
    overrides: {
      runtime: { threads: 1, checkpointEverySteps: 0 },
      data: { root: data },
      method: { name: 'seam', pcmTaps: ['layer1', 'layer2'], ...seam },
      train: { epochs: 6, batchSize: 8, cropSize: 64, maxSteps, lr: 0.02 },
    },
  });
  await trainClassifier(config, quiet);
  return readFileSync(runPaths(config).trainJsonLog, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Step & { type: string })
    .filter((e) => e.type === 'step');
}

function checkSums(steps: Step[], names: string[], what: string): void {
  for (const s of steps) {
    assert.deepEqual(Object.keys(s.parts).sort(), [...names].sort(), `${what}: the terms logged`);
    const sum = Object.values(s.parts).reduce((a, b) => a + b, 0);
    assert.ok(Number.isFinite(s.loss) && Math.abs(s.loss - sum) <= 1e-5 * Math.max(1, Math.abs(s.loss)),
      `${what}, step ${s.step}: total ${s.loss} against the sum of its terms ${sum}`);
  }
}

test('SEAM through the training stage: the loss falls; variants paper, l2, rotate and translate run', async (t) => {
  const dir = await tempDir(t);
  data = join(dir, 'data');
  await makeSyntheticDataset({ root: data, seed: 1, train: 48, scored: 4, val: 4, size: 64 });

  const code = await trainSeam(dir, 'code', {}, 30);
  assert.equal(code.length, 30);
  checkSums(code, ['cls', 'min', 'er', 'ecr'], 'code variant');
  const mean = (xs: Step[]) => xs.reduce((s, x) => s + x.loss, 0) / xs.length;
  const first = mean(code.slice(0, 6));
  const last = mean(code.slice(-6));
  t.diagnostic(`code variant: mean loss of steps 1-6 ${first.toFixed(4)}, of steps 25-30 ${last.toFixed(4)}`);
  assert.ok(last < 0.9 * first, `the loss falls by more than 10 %: ${first} -> ${last}`);

  // Same seed, so the same initialisation and first batch: the first step's forward pass is the code variant's.
  const paper = await trainSeam(dir, 'paper', { variant: 'paper' }, 3);
  checkSums(paper, ['cls', 'er', 'ecr'], 'paper variant');
  assert.ok(Math.abs(paper[0]!.parts.cls! - code[0]!.parts.cls!) < 1e-6, 'same first forward pass');
  assert.ok(paper[0]!.parts.ecr! < code[0]!.parts.ecr!,
    `plain-mean ECR ${paper[0]!.parts.ecr} below the top-20 % mean ${code[0]!.parts.ecr}`);

  // ohemRatio set explicitly overrides the variant's: 1 under 'code' gives the paper's ECR with the min-pool term.
  const plainEcr = await trainSeam(dir, 'ohem-1', { ohemRatio: 1 }, 1);
  checkSums(plainEcr, ['cls', 'min', 'er', 'ecr'], 'ohemRatio 1');
  assert.ok(Math.abs(plainEcr[0]!.parts.ecr! - paper[0]!.parts.ecr!) < 1e-6, `ohemRatio 1: ${plainEcr[0]!.parts.ecr} is the paper's ECR ${paper[0]!.parts.ecr}`);

  const l2 = await trainSeam(dir, 'l2', { erLoss: 'l2' }, 3);
  checkSums(l2, ['cls', 'min', 'er', 'ecr'], 'erLoss l2');
  assert.ok(l2[0]!.parts.er! < code[0]!.parts.er! && l2[0]!.parts.er! > 0,
    `L2 ER ${l2[0]!.parts.er} below L1's ${code[0]!.parts.er} on the same batch`);
  assert.equal(l2[0]!.parts.cls, code[0]!.parts.cls);

  for (const transform of ['rotate', 'translate'] as const) {
    const steps = await trainSeam(dir, transform, { transform }, 3);
    checkSums(steps, ['cls', 'min', 'er', 'ecr'], transform);
    // The second view differs from the rescaled one, so its classification term does too.
    assert.notEqual(steps[0]!.parts.cls, code[0]!.parts.cls, `${transform}: another second view than rescale's`);
  }
});
