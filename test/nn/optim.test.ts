// Optimizers, schedules and gradient clipping against the update rules written out by hand
// (torch.optim's definitions), on float64 parameters with gradients set directly.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { type Tensor, keep, tidy } from '../../src/engine/index.js';
import {
  Adam, AdamW, LrScheduler, Optimizer, SGD, clipGradNorm, cosine, poly, stepDecay, withWarmup,
} from '../../src/nn/index.js';
import { assertClose, f64, vals } from '../helpers.js';

const P0 = [1, -2, 0.5];
const G1 = [0.3, -0.1, 2];
const G2 = [-0.4, 0.25, 1];

/** A float64 leaf parameter (kept: it outlives the test's scopes like a module's parameter). */
function param(v: number[]): Tensor {
  return keep(f64(v).requiresGrad_());
}

function setGrad(p: Tensor, g: number[]): void {
  tidy(() => { p.grad = f64(g); });
}

/** Runs two steps with gradients G1 then G2 and returns the parameter values after each. */
function twoSteps(make: (p: Tensor) => Optimizer): [number[], number[]] {
  const p = param(P0);
  const opt = make(p);
  setGrad(p, G1);
  opt.step();
  const a = vals(p);
  setGrad(p, G2);
  opt.step();
  const b = vals(p);
  opt.dispose();
  p.dispose();
  return [a, b];
}

const map3 = (f: (k: number) => number): number[] => [0, 1, 2].map(f);

test('SGD plain: p -= lr * g', () => {
  const lr = 0.1;
  const [s1, s2] = twoSteps((p) => new SGD([p], { lr }));
  const e1 = map3((k) => P0[k]! - lr * G1[k]!);
  assertClose(s1, e1, { rtol: 1e-15 });
  assertClose(s2, map3((k) => e1[k]! - lr * G2[k]!), { rtol: 1e-15 });
});

test('SGD momentum: the buffer starts as the first gradient, then buf = m * buf + g', () => {
  const [lr, m] = [0.1, 0.9];
  const [s1, s2] = twoSteps((p) => new SGD([p], { lr, momentum: m }));
  // step 1: buf = g1 (not (1 - dampening) * g1 or m * 0 + g1 scaled), p1 = p0 - lr * g1
  const e1 = map3((k) => P0[k]! - lr * G1[k]!);
  assertClose(s1, e1, { rtol: 1e-15 });
  // step 2: buf = 0.9 g1 + g2
  assertClose(s2, map3((k) => e1[k]! - lr * (m * G1[k]! + G2[k]!)), { rtol: 1e-14 });
});

test('SGD dampening scales new gradients from the second step on', () => {
  const [lr, m, d] = [0.1, 0.9, 0.5];
  const [s1, s2] = twoSteps((p) => new SGD([p], { lr, momentum: m, dampening: d }));
  const e1 = map3((k) => P0[k]! - lr * G1[k]!); // the first buffer is the undamped gradient
  assertClose(s1, e1, { rtol: 1e-15 });
  assertClose(s2, map3((k) => e1[k]! - lr * (m * G1[k]! + (1 - d) * G2[k]!)), { rtol: 1e-14 });
});

test('SGD nesterov: step with g + m * buf', () => {
  const [lr, m] = [0.1, 0.9];
  const [s1, s2] = twoSteps((p) => new SGD([p], { lr, momentum: m, nesterov: true }));
  const e1 = map3((k) => P0[k]! - lr * (G1[k]! + m * G1[k]!));
  assertClose(s1, e1, { rtol: 1e-14 });
  const buf2 = map3((k) => m * G1[k]! + G2[k]!);
  assertClose(s2, map3((k) => e1[k]! - lr * (G2[k]! + m * buf2[k]!)), { rtol: 1e-14 });
  assert.throws(() => new SGD([param([1])], { lr, momentum: 0, nesterov: true }), RangeError);
  assert.throws(() => new SGD([param([1])], { lr, momentum: m, dampening: 0.1, nesterov: true }), RangeError);
});

test('SGD weight decay adds wd * p to the gradient (before momentum)', () => {
  const [lr, m, wd] = [0.1, 0.9, 0.01];
  const [s1, s2] = twoSteps((p) => new SGD([p], { lr, momentum: m, weightDecay: wd }));
  const d1 = map3((k) => G1[k]! + wd * P0[k]!);
  const e1 = map3((k) => P0[k]! - lr * d1[k]!);
  assertClose(s1, e1, { rtol: 1e-14 });
  const d2 = map3((k) => G2[k]! + wd * e1[k]!);
  assertClose(s2, map3((k) => e1[k]! - lr * (m * d1[k]! + d2[k]!)), { rtol: 1e-14 });
  const [w1] = twoSteps((p) => new SGD([p], { lr, weightDecay: wd }));
  assertClose(w1, map3((k) => P0[k]! - lr * (G1[k]! + wd * P0[k]!)), { rtol: 1e-14 });
});

test('SGD skips parameters without a gradient; a buffer starts at that parameter\'s first gradient', () => {
  const [lr, m, d] = [0.1, 0.9, 0.5];
  const a = param(P0);
  const b = param(P0);
  const opt = new SGD([a, b], { lr, momentum: m, dampening: d });
  setGrad(a, G1);
  opt.step(); // b has no gradient yet
  assert.deepEqual(vals(b), P0, 'untouched');
  setGrad(a, G2);
  setGrad(b, G2);
  opt.step();
  // torch keeps b's buffer unset until b has a gradient, then sets it to that gradient (no dampening)
  assertClose(vals(b), map3((k) => P0[k]! - lr * G2[k]!), { rtol: 1e-15 });
  const a1 = map3((k) => P0[k]! - lr * G1[k]!);
  assertClose(vals(a), map3((k) => a1[k]! - lr * (m * G1[k]! + (1 - d) * G2[k]!)), { rtol: 1e-14 });
  opt.dispose();
  a.dispose();
  b.dispose();
});

/** One Adam update from the paper's formulas: bias-corrected moments, p -= lr * mhat / (sqrt(vhat) + eps). */
function adamRef(
  p: number[], grads: number[][], o: { lr: number; b1: number; b2: number; eps: number; wd?: number; decoupled?: boolean },
): number[][] {
  const m = p.map(() => 0);
  const v = p.map(() => 0);
  let cur = p.slice();
  const out: number[][] = [];
  grads.forEach((gRaw, i) => {
    const t = i + 1;
    if (o.decoupled && o.wd) cur = cur.map((x) => x * (1 - o.lr * o.wd!));
    const g = gRaw.map((x, k) => (!o.decoupled && o.wd ? x + o.wd * cur[k]! : x));
    for (let k = 0; k < p.length; k++) {
      m[k] = o.b1 * m[k]! + (1 - o.b1) * g[k]!;
      v[k] = o.b2 * v[k]! + (1 - o.b2) * g[k]! * g[k]!;
      const mhat = m[k]! / (1 - o.b1 ** t);
      const vhat = v[k]! / (1 - o.b2 ** t);
      cur[k] = cur[k]! - (o.lr * mhat) / (Math.sqrt(vhat) + o.eps);
    }
    out.push(cur.slice());
  });
  return out;
}

test('Adam: two steps with bias correction', () => {
  const o = { lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8 };
  const [s1, s2] = twoSteps((p) => new Adam([p], { lr: o.lr }));
  const [e1, e2] = adamRef(P0, [G1, G2], o);
  assertClose(s1, e1!, { rtol: 1e-12 });
  assertClose(s2, e2!, { rtol: 1e-12 });
  // the first step moves every coordinate by about lr (mhat / sqrt(vhat) = sign(g))
  assertClose(s1.map((x, k) => Math.abs(x - P0[k]!)), [o.lr, o.lr, o.lr], { rtol: 1e-5 });
  const custom = { lr: 0.05, b1: 0.5, b2: 0.9, eps: 1e-3 };
  const [c1, c2] = twoSteps((p) => new Adam([p], { lr: custom.lr, betas: [custom.b1, custom.b2], eps: custom.eps }));
  const [r1, r2] = adamRef(P0, [G1, G2], custom);
  assertClose(c1, r1!, { rtol: 1e-12 });
  assertClose(c2, r2!, { rtol: 1e-12 });
});

test('Adam with L2 weight decay vs AdamW with decoupled decay', () => {
  const o = { lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.1 };
  const [s1, s2] = twoSteps((p) => new Adam([p], { lr: o.lr, weightDecay: o.wd }));
  const [e1, e2] = adamRef(P0, [G1, G2], o);
  assertClose(s1, e1!, { rtol: 1e-12 });
  assertClose(s2, e2!, { rtol: 1e-12 });
  const [w1, w2] = twoSteps((p) => new AdamW([p], { lr: o.lr, weightDecay: o.wd }));
  const [d1, d2] = adamRef(P0, [G1, G2], { ...o, decoupled: true });
  assertClose(w1, d1!, { rtol: 1e-12 });
  assertClose(w2, d2!, { rtol: 1e-12 });
  assert.ok(Math.abs(w2[0]! - s2[0]!) > 1e-6, 'the two decays differ');
  // AdamW's default weight decay is 1e-2
  const [x1] = twoSteps((p) => new AdamW([p], { lr: o.lr }));
  assertClose(x1, adamRef(P0, [G1], { ...o, wd: 1e-2, decoupled: true })[0]!, { rtol: 1e-12 });
});

test('Adam counts steps per parameter: bias correction starts at a parameter\'s first gradient', () => {
  const o = { lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-8 };
  const a = param(P0);
  const b = param(P0);
  const opt = new Adam([a, b], { lr: o.lr });
  setGrad(a, G1);
  opt.step();
  assert.deepEqual(vals(b), P0);
  setGrad(a, G2);
  setGrad(b, G2);
  opt.step();
  assertClose(vals(a), adamRef(P0, [G1, G2], o)[1]!, { rtol: 1e-12 });
  assertClose(vals(b), adamRef(P0, [G2], o)[0]!, { rtol: 1e-12 }, 'b takes a first step');
  opt.dispose();
  a.dispose();
  b.dispose();
});

test('parameter groups: lrMult 10 moves 10x as far; per-group lr and weight decay', () => {
  const a = param(P0);
  const b = param(P0);
  const c = param(P0);
  const opt = new SGD([{ params: [a] }, { params: [b], lrMult: 10, name: 'head' }, { params: [c], lr: 0.5, weightDecay: 0.1 }],
    { lr: 0.01 });
  assert.deepEqual(opt.groups.map((g) => [g.lr, g.initialLr, g.name, g.weightDecay]),
    [[0.01, 0.01, '0', 0], [0.1, 0.1, 'head', 0], [0.5, 0.5, '2', 0.1]]);
  for (const p of [a, b, c]) setGrad(p, G1);
  opt.step();
  const da = vals(a).map((x, k) => x - P0[k]!);
  const db = vals(b).map((x, k) => x - P0[k]!);
  assertClose(db, da.map((x) => 10 * x), { rtol: 1e-12 });
  assertClose(vals(c), map3((k) => P0[k]! - 0.5 * (G1[k]! + 0.1 * P0[k]!)), { rtol: 1e-14 });
  assert.throws(() => new SGD([{ params: [a] }, { params: [a] }], { lr: 0.1 }), /more than one group/);
  assert.throws(() => new SGD([a], { lr: -1 }), RangeError);
  opt.dispose();
  for (const p of [a, b, c]) p.dispose();
});

test('zeroGrad sets gradients to none, or to zeros', () => {
  const a = param([1, 2]);
  const opt = new SGD([a], { lr: 0.1 });
  setGrad(a, [3, 4]);
  opt.zeroGrad(false);
  tidy(() => assert.deepEqual(vals(a.grad!), [0, 0]));
  opt.zeroGrad();
  tidy(() => assert.equal(a.grad, null));
  // after zeroGrad a backward pass starts from scratch (no accumulation)
  tidy(() => a.mul(3).sum().backward());
  opt.zeroGrad();
  tidy(() => a.mul(2).sum().backward());
  tidy(() => assert.deepEqual(vals(a.grad!), [2, 2]));
  opt.step();
  assertClose(vals(a), [0.8, 1.8], { rtol: 1e-15 });
  a.dispose();
});

test('schedules: poly, step, cosine and warmup factors at known steps', () => {
  const p = poly(100, 0.9);
  assert.equal(p(0), 1);
  assertClose([p(50)], [0.5 ** 0.9], { rtol: 1e-15 });
  assert.equal(p(100), 0);
  assert.equal(p(150), 0, 'clamped past the end');
  const s = stepDecay(10, 0.1);
  assert.deepEqual([s(0), s(9)], [1, 1]);
  assertClose([s(10), s(25)], [0.1, 0.01], { rtol: 1e-15 });
  const c = cosine(100);
  assertClose([c(0), c(50), c(100), c(200)], [1, 0.5, 0, 0], { atol: 1e-15 });
  assertClose([c(25)], [0.5 * (1 + Math.SQRT1_2)], { rtol: 1e-15 });
  assertClose([cosine(100, 0.1)(100), cosine(100, 0.1)(50)], [0.1, 0.55], { rtol: 1e-15 });
  const w = withWarmup(poly(100), 10, 0.1);
  assertClose([w(0)], [0.1], { rtol: 1e-15 });
  assertClose([w(5)], [(0.1 + 0.9 * 0.5) * 0.95 ** 0.9], { rtol: 1e-15 });
  assertClose([w(10)], [0.9 ** 0.9], { rtol: 1e-15 });
  assertClose([w(60)], [0.4 ** 0.9], { rtol: 1e-15 });
});

test('LrScheduler sets each group\'s lr = initialLr * factor(step)', () => {
  const a = param([1]);
  const b = param([1]);
  const opt = new SGD([{ params: [a] }, { params: [b], lrMult: 10 }], { lr: 0.01 });
  const sched = new LrScheduler(opt, poly(10, 1));
  assert.deepEqual(opt.groups.map((g) => g.lr), [0.01, 0.1], 'step 0');
  sched.next();
  assertClose(opt.groups.map((g) => g.lr), [0.009, 0.09], { rtol: 1e-14 });
  sched.next();
  assertClose(opt.groups.map((g) => g.lr), [0.008, 0.08], { rtol: 1e-14 });
  sched.setStep(5);
  assertClose(opt.groups.map((g) => g.lr), [0.005, 0.05], { rtol: 1e-14 });
  assert.deepEqual(opt.groups.map((g) => g.initialLr), [0.01, 0.1], 'initial rates untouched');
  // the rewritten rate is what the next step uses
  setGrad(a, [1]);
  opt.step();
  assertClose(vals(a), [1 - 0.005], { rtol: 1e-15 });
  opt.dispose();
  a.dispose();
  b.dispose();
});

test('clipGradNorm returns the total norm and scales gradients down to maxNorm', () => {
  const a = param([0, 0]);
  const b = param([0]);
  const reset = () => { setGrad(a, [3, 4]); setGrad(b, [12]); };
  reset();
  // total 2-norm: sqrt(9 + 16 + 144) = 13
  assertClose([clipGradNorm([a, b], 6.5)], [13], { rtol: 1e-15 });
  const coef = 6.5 / (13 + 1e-6);
  tidy(() => {
    assertClose(vals(a.grad!), [3 * coef, 4 * coef], { rtol: 1e-12 });
    assertClose(vals(b.grad!), [12 * coef], { rtol: 1e-12 });
    assertClose([Math.hypot(...vals(a.grad!), ...vals(b.grad!))], [6.5], { rtol: 1e-6 });
  });
  reset();
  assertClose([clipGradNorm([a, b], 100)], [13], { rtol: 1e-15 });
  tidy(() => assert.deepEqual([...vals(a.grad!), ...vals(b.grad!)], [3, 4, 12], 'unchanged below the limit'));
  reset();
  assert.equal(clipGradNorm([a, b], 6, Infinity), 12);
  tidy(() => assertClose(vals(b.grad!), [12 * (6 / (12 + 1e-6))], { rtol: 1e-12 }));
  reset();
  assertClose([clipGradNorm([a, b], 100, 1)], [19], { rtol: 1e-15 });
  const c = param([1]);
  assert.equal(clipGradNorm([c], 1), 0, 'no gradients: norm 0');
  for (const p of [a, b, c]) p.dispose();
});
