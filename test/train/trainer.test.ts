import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { manualSeed, tidy } from '../../src/engine/index.js';
import { BatchLoader } from '../../src/data/index.js';
import { loadSafetensors } from '../../src/engine/serialize/index.js';
import { CamMethod } from '../../src/methods/index.js';
import { SGD } from '../../src/nn/index.js';
import { type TrainEvent, listCheckpoints, loadCheckpoint, resumedAt, train } from '../../src/train/index.js';
import { TinyBackbone, synthDataset, synthTransform } from '../methods/tiny.js';

const OPT = { lr: 0.1, momentum: 0.9, weightDecay: 1e-4, polyPower: 0.9 };
const dataset = synthDataset(24, 5);

function setup(initSeed: number) {
  manualSeed(initSeed);
  const method = new CamMethod(new TinyBackbone({ channels: 8 }), { numClasses: 3 });
  const loader = new BatchLoader(dataset, synthTransform(16), { batchSize: 6, seed: 11, dropLast: true });
  return { method, loader };
}

function params(m: CamMethod): Map<string, number[]> {
  return new Map([...m.model.stateDict()].map(([k, t]) => [k, Array.from(t.toFloat32Array())]));
}

test('checkpoint then resume continues at the right step with identical parameters', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-resume-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const epochs = 3;

  // Uninterrupted reference run.
  const a = setup(7);
  const full = await train({ ...a, epochs, optimizer: OPT, seed: 2, checkpointDir: join(dir, 'a') });
  assert.equal(full.steps, 12);
  assert.deepEqual(listCheckpoints(join(dir, 'a')).map((c) => c.epoch), [1, 2, 3]);

  // Interrupted after 5 steps (epoch 2 unfinished: only epoch 1 is checkpointed).
  const b = setup(7);
  const part = await train({ ...b, epochs, optimizer: OPT, seed: 2, checkpointDir: join(dir, 'b'), maxSteps: 5 });
  assert.equal(part.steps, 5);
  assert.equal(part.epochsCompleted, 1);
  assert.deepEqual(listCheckpoints(join(dir, 'b')).map((c) => c.epoch), [1]);
  b.method.model.dispose();

  // A fresh process would build the model from a different init; resume must overwrite all of it.
  const c = setup(99);
  const events: TrainEvent[] = [];
  const rest = await train({
    ...c, epochs, optimizer: OPT, seed: 2, checkpointDir: join(dir, 'b'), resume: true, onEvent: (e) => events.push(e),
  });
  const resume = events.find((e) => e.type === 'resume');
  assert.ok(resume && resume.type === 'resume');
  assert.equal(resume.epoch, 1);
  assert.equal(resume.step, 4);
  assert.equal(resumedAt(resume.step, resume.epoch, resume.stepsPerEpoch), '4 steps done (1 epoch)');
  const firstStep = events.find((e) => e.type === 'step');
  assert.ok(firstStep && firstStep.type === 'step');
  assert.equal(firstStep.step, 5, 'the first step after resuming is global step 5');
  assert.equal(firstStep.epoch, 1);
  // The learning rate picks up where the schedule was: lr0 * (1 - 4/12)^0.9.
  assert.ok(Math.abs(firstStep.lr - 0.1 * Math.pow(1 - 4 / 12, 0.9)) < 1e-12, `lr ${firstStep.lr}`);
  assert.equal(rest.steps, 12);
  assert.equal(rest.epochsCompleted, 3);
  assert.deepEqual(full.stepLosses.slice(4), rest.stepLosses, 'same losses after resuming');
  const pa = params(a.method);
  const pc = params(c.method);
  for (const [k, v] of pa) assert.deepEqual(pc.get(k), v, `parameter ${k} differs after resume`);
  a.method.model.dispose();
  c.method.model.dispose();
});

test('a mid-epoch checkpoint resumes inside the epoch and repeats the uninterrupted run exactly', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-midepoch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const epochs = 2; // 4 steps per epoch

  const a = setup(3);
  const full = await train({ ...a, epochs, optimizer: OPT, seed: 5 });

  // Killed after step 7 (epoch 2, third batch); the rolling checkpoint was written at step 6.
  const b = setup(3);
  await train({ ...b, epochs, optimizer: OPT, seed: 5, checkpointDir: dir, checkpointEverySteps: 2, maxSteps: 7 });
  b.method.model.dispose();
  assert.deepEqual(listCheckpoints(dir).map((c) => c.epoch), [1]);
  assert.ok(readdirSync(dir).includes('last.safetensors'), 'rolling mid-epoch checkpoint written');

  const c = setup(42);
  const events: TrainEvent[] = [];
  const rest = await train({
    ...c, epochs, optimizer: OPT, seed: 5, checkpointDir: dir, checkpointEverySteps: 2, resume: true,
    onEvent: (e) => events.push(e),
  });
  const resume = events.find((e) => e.type === 'resume');
  assert.ok(resume && resume.type === 'resume' && resume.step === 6 && resume.path.endsWith('last.safetensors'));
  assert.equal(resumedAt(resume.step, resume.epoch, resume.stepsPerEpoch), '6 steps done (1 epoch and 2 steps of epoch 2)');
  const firstStep = events.find((e) => e.type === 'step');
  assert.ok(firstStep && firstStep.type === 'step' && firstStep.step === 7 && firstStep.stepInEpoch === 3);
  assert.deepEqual(rest.stepLosses, full.stepLosses.slice(6), 'the two remaining steps see the same batches');
  const pa = params(a.method);
  const pc = params(c.method);
  for (const [k, v] of pa) assert.deepEqual(pc.get(k), v, `parameter ${k} differs after a mid-epoch resume`);
  assert.ok(!readdirSync(dir).includes('last.safetensors'), 'the finished epoch replaces the rolling checkpoint');
  a.method.model.dispose();
  c.method.model.dispose();
});

test('checkpoints hold model, momentum and position; no temporary files are left', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-ckpt-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const s = setup(3);
  await train({ ...s, epochs: 2, optimizer: OPT, seed: 4, checkpointDir: dir, keepCheckpoints: 1 });
  assert.deepEqual(readdirSync(dir), ['epoch-002.safetensors'], 'only the newest is kept, no temp files');
  const { tensors, metadata } = loadSafetensors(join(dir, 'epoch-002.safetensors'));
  assert.equal(metadata.format, 'weakseg-checkpoint/1');
  assert.equal(metadata.epoch, '2');
  assert.equal(metadata.step, '8');
  assert.equal(metadata.seed, '4');
  assert.equal(metadata.method, 'cam');
  const keys = [...tensors.keys()];
  assert.ok(keys.includes('model.classifier.conv.weight'));
  assert.ok(keys.includes('model.backbone.conv1.weight'));
  assert.ok(keys.some((k) => /^optimizer\.1\.0\.momentum_buffer$/.test(k)), `momentum of the head group in ${keys.join(', ')}`);
  for (const v of tensors.values()) v.dispose();

  // Loading restores the optimizer's momentum exactly.
  const fresh = setup(50);
  const opt = new SGD(fresh.method.paramGroups(), { lr: 0.1, momentum: 0.9 });
  const { info } = loadCheckpoint(join(dir, 'epoch-002.safetensors'), fresh.method.model, opt);
  assert.deepEqual([info.epoch, info.step, info.totalSteps], [2, 8, 8]);
  tidy(() => {
    const saved = loadSafetensors(join(dir, 'epoch-002.safetensors')).tensors;
    const state = opt.stateDict();
    assert.ok(state.get('1.0.momentum_buffer')!.equal(saved.get('optimizer.1.0.momentum_buffer')!));
    for (const v of [...state.values(), ...saved.values()]) v.dispose();
  });
  opt.dispose();
  fresh.method.model.dispose();
  s.method.model.dispose();
});

test('resuming a run made for a different length is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-len-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const s = setup(3);
  await train({ ...s, epochs: 1, optimizer: OPT, checkpointDir: dir });
  await assert.rejects(train({ ...s, epochs: 2, optimizer: OPT, checkpointDir: dir, resume: true }), /total steps/);
  s.method.model.dispose();
});

test('a diverging loss stops training with a clear message', async () => {
  const s = setup(3);
  await assert.rejects(
    train({ ...s, epochs: 1, optimizer: { ...OPT, lr: 1e30 }, maxSteps: 3 }),
    /training diverged: loss is (NaN|Infinity)/,
  );
  s.method.model.dispose();
});

test('data wait: the share of each epoch spent waiting for batches, the last step included', async () => {
  // One batch per epoch, loaded at once, and a step that takes at least 60 ms: the loader alone, whose clock stops at
  // its last batch, would call the whole epoch waiting.
  const { method } = setup(3);
  const loss = method.loss.bind(method);
  method.loss = (batch, context) => {
    const until = performance.now() + 60;
    while (performance.now() < until) { /* a slow step */ }
    return loss(batch, context);
  };
  const one = new BatchLoader({ ...dataset, items: dataset.items.slice(0, 6) }, synthTransform(16), { batchSize: 6, seed: 11, dropLast: true });
  const events: TrainEvent[] = [];
  const result = await train({ method, loader: one, epochs: 2, optimizer: OPT, seed: 1, onEvent: (e) => events.push(e) });
  const epochs = events.filter((e) => e.type === 'epoch');
  assert.equal(epochs.length, 2);
  for (const e of epochs) {
    assert.ok(e.type === 'epoch' && e.steps === 1 && e.dataWaitShare >= 0 && e.dataWaitShare < 0.5, JSON.stringify(e));
    assert.ok(e.type === 'epoch' && e.seconds >= 0.06, 'the slow step is inside the epoch');
  }
  assert.ok(result.dataWaitShare >= 0 && result.dataWaitShare < 0.5, `overall ${result.dataWaitShare}`);
  method.model.dispose();
});
