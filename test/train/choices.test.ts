// The trainer's optimizer and schedule choices against formulas computed here (torch.optim's AdamW; poly, step and
// cosine with linear warmup), and the afterBackward/afterStep hooks: once per step, in order, at the right moment.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type Tensor, manualSeed, tensor, tidy } from '../../src/engine/index.js';
import { BatchLoader } from '../../src/data/index.js';
import { AdamW, Module } from '../../src/nn/index.js';
import { CamMethod } from '../../src/methods/index.js';
import { type StepContext, type TrainEvent, makeOptimizer, makeSchedule, train } from '../../src/train/index.js';
import { TinyBackbone, synthDataset, synthTransform } from '../methods/tiny.js';
import { vals } from '../helpers.js';

class Params extends Module {
  readonly w: Tensor;
  constructor(values: number[]) {
    super();
    this.w = this.registerParameter('w', tensor(new Float64Array(values)));
  }
}

/** torch.optim.AdamW, one parameter vector, gradient of sum(c * p^2 / 2) = c * p. */
function adamwReference(p0: number[], c: number[], steps: number, lr: number, wd: number, b1 = 0.9, b2 = 0.999, eps = 1e-8): number[] {
  const p = [...p0];
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  for (let t = 1; t <= steps; t++) {
    for (let i = 0; i < p.length; i++) {
      const g = c[i]! * p[i]!;
      p[i] = p[i]! * (1 - lr * wd);
      m[i] = b1 * m[i]! + (1 - b1) * g;
      v[i] = b2 * v[i]! + (1 - b2) * g * g;
      const mhat = m[i]! / (1 - b1 ** t);
      const vhat = v[i]! / (1 - b2 ** t);
      p[i] = p[i]! - (lr * mhat) / (Math.sqrt(vhat) + eps);
    }
  }
  return p;
}

function stepQuadratic(opt: AdamW, w: Tensor, c: number[]): void {
  tidy(() => {
    opt.zeroGrad();
    w.square().mul(tensor(new Float64Array(c))).sum().div(2).backward();
    opt.step();
  });
}

test('AdamW follows torch.optim.AdamW (decoupled decay, bias correction) and resumes from its state dict', () => {
  const p0 = [1, -2, 0.5, 3];
  const c = [1, 0.5, 4, 0.1];
  const a = new Params(p0);
  const opt = new AdamW([{ params: [a.w], lrMult: 2 }], { lr: 0.05, weightDecay: 0.1 });
  for (let s = 0; s < 3; s++) stepQuadratic(opt, a.w, c);
  const ref = adamwReference(p0, c, 3, 0.1, 0.1);
  vals(a.w).forEach((x, i) => assert.ok(Math.abs(x - ref[i]!) < 1e-12, `p[${i}] ${x} vs ${ref[i]}`));

  // Two steps, state saved, a new optimizer loads it and takes the third: the same as three in a row.
  const b = new Params(p0);
  const first = new AdamW([{ params: [b.w], lrMult: 2 }], { lr: 0.05, weightDecay: 0.1 });
  for (let s = 0; s < 2; s++) stepQuadratic(first, b.w, c);
  const state = first.stateDict();
  assert.deepEqual([...state.keys()].sort(), ['0.0.exp_avg', '0.0.exp_avg_sq', '0.0.step', 'step_count']);
  const second = new AdamW([{ params: [b.w], lrMult: 2 }], { lr: 0.05, weightDecay: 0.1 });
  second.loadStateDict(state);
  stepQuadratic(second, b.w, c);
  assert.deepEqual(vals(b.w), vals(a.w));
  for (const o of [opt, first, second]) o.dispose();
});

test('makeOptimizer builds AdamW or SGD from the settings', () => {
  const method = new CamMethod(new TinyBackbone(), { numClasses: 3 });
  const adam = makeOptimizer(method, { type: 'adamw', lr: 0.001, weightDecay: 0.01 });
  assert.ok(adam instanceof AdamW);
  assert.deepEqual(adam.groups.map((g) => g.lr), [0.001, 0.01]);
  assert.equal(makeOptimizer(method, { lr: 0.1, momentum: 0.9, weightDecay: 0 }).constructor.name, 'SGD');
  method.model.dispose();
});

test('schedules: poly, step at epochs and cosine, each with linear warmup, against hand-computed factors', () => {
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  const poly = makeSchedule({ type: 'poly', power: 0.9, warmupSteps: 4, warmupFactor: 0.1 }, 10, 5);
  close(poly(0), 0.1);
  close(poly(2), (0.1 + 0.9 * 0.5) * 0.8 ** 0.9);
  close(poly(4), 0.6 ** 0.9);
  close(poly(10), 0);
  const plain = makeSchedule({ type: 'poly', power: 0.9 }, 10, 5);
  close(plain(0), 1);
  close(plain(3), 0.7 ** 0.9);
  const step = makeSchedule({ type: 'step', epochs: [2, 3], gamma: 0.1 }, 20, 4);
  assert.deepEqual([0, 7, 8, 11, 12, 19].map(step), [1, 1, 0.1, 0.1, 0.1 ** 2, 0.1 ** 2]);
  const warmStep = makeSchedule({ type: 'step', epochs: [1], gamma: 0.5, warmupSteps: 2, warmupFactor: 0 }, 8, 4);
  assert.deepEqual([0, 1, 2, 3, 4].map(warmStep), [0, 0.5, 1, 1, 0.5]);
  const cos = makeSchedule({ type: 'cosine', minFactor: 0.1 }, 10, 5);
  close(cos(0), 1);
  close(cos(5), 0.55);
  close(cos(10), 0.1);
  close(cos(2), 0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * 0.2)));
});

test('the trainer applies the schedule and calls afterBackward then afterStep once per step, method hooks first', async () => {
  manualSeed(3);
  const calls: string[] = [];
  const method = new CamMethod(new TinyBackbone({ channels: 4 }), { numClasses: 3 });
  const w = () => vals(method.model.classifier.weight);
  let beforeStep: number[] = [];
  const hooked = Object.assign(method, {
    afterBackward(ctx: StepContext) {
      calls.push(`method.afterBackward ${ctx.step}`);
      assert.ok(method.model.classifier.weight.grad, 'gradients exist after backward');
      beforeStep = w();
    },
    afterStep(ctx: StepContext) {
      calls.push(`method.afterStep ${ctx.step}`);
      assert.notDeepEqual(w(), beforeStep, 'the update happened before afterStep');
    },
  });
  const loader = new BatchLoader(synthDataset(12, 2), synthTransform(16), { batchSize: 4, seed: 1, dropLast: true });
  const lrs: number[] = [];
  await train({
    method: hooked, loader, epochs: 2, seed: 0,
    optimizer: { lr: 0.1, momentum: 0.9, weightDecay: 0 },
    schedule: { type: 'cosine', minFactor: 0, warmupSteps: 2, warmupFactor: 0.5 },
    hooks: {
      afterBackward: (ctx) => { calls.push(`options.afterBackward ${ctx.step}`); },
      afterStep: (ctx) => { calls.push(`options.afterStep ${ctx.step}`); },
    },
    onEvent: (e: TrainEvent) => { if (e.type === 'step') lrs.push(e.lr); },
  });
  const expected = [0, 1, 2, 3, 4, 5].flatMap((s) => [`method.afterBackward ${s}`, `options.afterBackward ${s}`, `method.afterStep ${s}`, `options.afterStep ${s}`]);
  assert.deepEqual(calls, expected);
  const factor = (s: number) => (s < 2 ? 0.5 + 0.5 * (s / 2) : 1) * 0.5 * (1 + Math.cos((Math.PI * s) / 6));
  lrs.forEach((lr, s) => assert.ok(Math.abs(lr - 0.1 * factor(s)) < 1e-12, `step ${s}: lr ${lr} vs ${0.1 * factor(s)}`));
  method.model.dispose();
});
