// Gradients against float64 central finite differences (see gradcheck in ../helpers.ts), and the
// autograd API: requiresGrad_, backward with retainGraph, grad accumulation, detach, noGrad, leaves.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  type Tensor, F, einsum, enableGrad, isGradEnabled, noGrad, ones, tensor, tidy, where, zeros,
} from '../../src/engine/index.js';
import { assertClose, distinctArray, f64, gradcheck, prod, randF64, vals } from '../helpers.js';

/** Values in [lo, hi) far (>= 1e-3) from each other, so max/sort/clamp kinks are not crossed by eps. */
function distinctF64(shape: number[], seed: number, lo = -1, hi = 1): Tensor {
  return f64(distinctArray(prod(shape), seed, lo, hi), shape);
}

// ---------------------------------------------------------------------------------------------
// the checker itself

test('gradcheck detects a wrong gradient', () => tidy(() => {
  // x * x.detach() computes x^2, but autograd sees one factor only (gradient x instead of 2x).
  const x = f64([0.5, -0.7, 0.9]);
  assert.throws(() => gradcheck((a) => a.mul(a.detach()), [x]), /gradcheck/);
  gradcheck((a) => a.mul(a), [x]);
}));

// ---------------------------------------------------------------------------------------------
// nn ops

test('grad: conv2d with stride, padding, dilation and groups (input, weight, bias)', () => tidy(() => {
  gradcheck((x, w, b) => F.conv2d(x, w, b, { stride: 2, padding: 1, dilation: 2, groups: 2 }),
    [randF64([1, 4, 5, 5], 1), randF64([4, 2, 2, 2], 2), randF64([4], 3)]);
  gradcheck((x, w) => F.conv2d(x, w, null, { padding: 1, groups: 3 }), [randF64([1, 3, 4, 4], 4), randF64([3, 1, 3, 3], 5)]);
}));

test('grad: linear', () => tidy(() => {
  gradcheck((x, w, b) => F.linear(x, w, b), [randF64([3, 4], 1), randF64([2, 4], 2), randF64([2], 3)]);
}));

test('grad: batchNorm in training mode (through the batch statistics)', () => tidy(() => {
  gradcheck((x, w, b) => F.batchNorm(x, null, null, { weight: w, bias: b, training: true }),
    [randF64([3, 2, 2, 2], 1), randF64([2], 2, 0.5, 1.5), randF64([2], 3)]);
  // with running buffers (they are updated but are not differentiated)
  const rm = zeros([2], { dtype: 'float64' });
  const rv = ones([2], { dtype: 'float64' });
  gradcheck((x) => F.batchNorm(x, rm, rv, { training: true }), [randF64([4, 2, 1, 2], 4)]);
}));

test('grad: maxPool2d and avgPool2d', () => tidy(() => {
  gradcheck((x) => F.maxPool2d(x, 2), [distinctF64([1, 2, 4, 4], 1)]);
  gradcheck((x) => F.maxPool2d(x, 3, { stride: 1, padding: 1 }), [distinctF64([1, 1, 4, 5], 2)]);
  gradcheck((x) => F.avgPool2d(x, 3, { stride: 2, padding: 1 }), [randF64([1, 2, 5, 5], 3)]);
  gradcheck((x) => F.avgPool2d(x, 2, { countIncludePad: false, padding: 1 }), [randF64([1, 1, 3, 4], 4)]);
  gradcheck((x) => F.adaptiveAvgPool2d(x, [2, 3]), [randF64([1, 2, 5, 4], 5)]);
}));

test('grad: bilinear interpolate with alignCorners true and false', () => tidy(() => {
  for (const alignCorners of [true, false]) {
    gradcheck((x) => F.interpolate(x, { size: [5, 7], mode: 'bilinear', alignCorners }), [randF64([1, 2, 3, 4], 1)]);
    gradcheck((x) => F.interpolate(x, { size: [2, 3], mode: 'bilinear', alignCorners }), [randF64([1, 1, 4, 5], 2)]);
  }
  gradcheck((x) => F.interpolate(x, { scaleFactor: 1.5, mode: 'bilinear' }), [randF64([1, 1, 3, 3], 3)]);
  gradcheck((x) => F.interpolate(x, { size: [5, 5], mode: 'bicubic', alignCorners: false }), [randF64([1, 1, 3, 3], 4)]);
}));

test('grad: softmax and logSoftmax', () => tidy(() => {
  gradcheck((x) => x.softmax(1), [randF64([3, 4], 1, -2, 2)]);
  gradcheck((x) => x.logSoftmax(0), [randF64([3, 4], 2, -2, 2)]);
  gradcheck((x) => x.logsumexp(1), [randF64([3, 4], 3, -2, 2)]);
}));

test('grad: crossEntropy with ignore index and class weights', () => tidy(() => {
  const target = tensor([0, 255, 2, 1]);
  const w = f64([1, 2, 0.5]);
  gradcheck((x) => F.crossEntropy(x, target, { ignoreIndex: 255 }), [randF64([4, 3], 1, -2, 2)]);
  gradcheck((x) => F.crossEntropy(x, target, { ignoreIndex: 255, weight: w }), [randF64([4, 3], 2, -2, 2)]);
  // the ignored row gets exactly zero gradient
  const x = randF64([4, 3], 3).requiresGrad_();
  F.crossEntropy(x, target, { ignoreIndex: 255 }).backward();
  assert.deepEqual(vals(x.grad!).slice(3, 6), [0, 0, 0]);
  const pix = tensor([[[0, 255], [1, 2]]]);
  gradcheck((l) => F.crossEntropy(l, pix, { ignoreIndex: 255 }), [randF64([1, 3, 2, 2], 4, -2, 2)]);
}));

test('grad: multilabelSoftMarginLoss and BCE with logits', () => tidy(() => {
  const y = f64([1, 0, 1, 0, 0, 1], [2, 3]);
  gradcheck((x) => F.multilabelSoftMarginLoss(x, y), [randF64([2, 3], 1, -3, 3)]);
  gradcheck((x) => F.binaryCrossEntropyWithLogits(x, y, { posWeight: f64([2, 1, 0.5]) }), [randF64([2, 3], 2, -3, 3)]);
}));

test('grad: normalize and cosineSimilarity', () => tidy(() => {
  gradcheck((x) => F.normalize(x), [randF64([3, 4], 1)]);
  gradcheck((x) => F.normalize(x, { p: 2, dim: 0 }), [randF64([3, 4], 2)]);
  gradcheck((a, b) => F.cosineSimilarity(a, b), [randF64([2, 4], 3), randF64([2, 4], 4)]);
}));

test('grad: matmul, bmm and einsum', () => tidy(() => {
  gradcheck((a, b) => a.matmul(b), [randF64([3, 4], 1), randF64([4, 2], 2)]);
  gradcheck((a, b) => a.matmul(b), [randF64([2, 3, 4], 3), randF64([4], 4)]);
  gradcheck((a, b) => a.bmm(b), [randF64([2, 3, 4], 5), randF64([2, 4, 2], 6)]);
  gradcheck((a, b) => einsum('bij,bjk->bik', a, b), [randF64([2, 2, 3], 7), randF64([2, 3, 2], 8)]);
  gradcheck((a, b) => einsum('nc,nchw->nhw', a, b), [randF64([2, 3], 9), randF64([2, 3, 2, 2], 10)]);
}));

test('grad: gather, where, clamp, topk values, pad reflect', () => tidy(() => {
  const idx = tensor([[0, 2, 2], [1, 0, 1]]);
  gradcheck((x) => x.gather(1, idx), [randF64([2, 3], 1)]);
  const cond = tensor([[true, false, true], [false, false, true]]);
  gradcheck((a, b) => where(cond, a, b), [randF64([2, 3], 2), randF64([2, 3], 3)]);
  gradcheck((a) => where(cond, a, 0), [randF64([2, 3], 4)]);
  gradcheck((x) => x.clamp(-0.5, 0.5), [distinctF64([3, 4], 5)]);
  gradcheck((x) => x.clamp(0.1), [distinctF64([3, 4], 6)]);
  gradcheck((x) => x.topk(3, 1)[0], [distinctF64([2, 5], 7)]);
  gradcheck((x) => x.sort(1, true)[0], [distinctF64([2, 4], 8)]);
  gradcheck((x) => x.amax(1), [distinctF64([3, 4], 9)]);
  gradcheck((x) => F.pad(x, [2, 1, 1, 2], 'reflect'), [randF64([1, 1, 4, 4], 10)]);
  gradcheck((x) => F.pad(x, [1, 0, 2, 1], 'replicate'), [randF64([1, 1, 3, 3], 11)]);
  gradcheck((x) => F.pad(x, [1, 2, 0, 1], 'constant', 3), [randF64([1, 1, 2, 3], 12)]);
}));

test('grad: elementwise math and reductions', () => tidy(() => {
  gradcheck((x) => x.exp().add(x.sigmoid()).mul(x.tanh()), [randF64([5], 1)]);
  gradcheck((x) => x.abs().add(0.5).log().add(x.abs().sqrt()), [distinctF64([6], 2)]);
  gradcheck((x) => F.gelu(x).add(F.elu(x)).add(F.leakyRelu(x, 0.1)), [distinctF64([6], 3)]);
  gradcheck((x) => x.pow(3).sum(0), [randF64([3, 2], 4)]);
  gradcheck((x) => x.mean(1, true).mul(x), [randF64([3, 2], 5)]);
  gradcheck((x) => x.std(1), [randF64([3, 4], 6)]);
  gradcheck((x) => x.var(0, { unbiased: false }), [randF64([3, 4], 7)]);
  gradcheck((x) => x.norm(2, 1), [randF64([3, 4], 8)]);
  gradcheck((x) => x.permute(1, 0).reshape(-1).slice(0, 1, 11, 3), [randF64([3, 4], 9)]);
}));

// ---------------------------------------------------------------------------------------------
// the autograd API

test('requiresGrad_, leaves, gradFn and the grad getter', () => tidy(() => {
  const x = f64([1, 2, 3]);
  assert.equal(x.requiresGrad, false);
  assert.equal(x.requiresGrad_(), x, 'returns this');
  assert.equal(x.requiresGrad, true);
  assert.equal(x.isLeaf, true);
  assert.equal(x.gradFn, null);
  assert.equal(x.grad, null, 'no grad before backward');
  const y = x.mul(x).sum();
  assert.equal(y.isLeaf, false);
  assert.equal(y.requiresGrad, true);
  assert.match(y.gradFn!, /Sum/);
  y.backward();
  assert.deepEqual(vals(x.grad!), [2, 4, 6], 'd/dx sum(x^2) = 2x');
  // a non-leaf has no .grad unless retained
  const a = f64([1, 2]).requiresGrad_();
  const b = a.mul(3).retainGrad();
  b.sum().backward();
  assert.deepEqual(vals(b.grad!), [1, 1]);
  assert.deepEqual(vals(a.grad!), [3, 3]);
  // grad setter
  a.grad = null;
  assert.equal(a.grad, null);
  a.grad = f64([5, 6]);
  assert.deepEqual(vals(a.grad!), [5, 6]);
  assert.equal(zeros([2], { requiresGrad: true }).grad, null);
  x.requiresGrad_(false);
  assert.equal(x.requiresGrad, false);
}));

test('backward with retainGraph twice accumulates; without it the graph is freed', () => tidy(() => {
  const x = f64([1, 2]).requiresGrad_();
  const y = x.mul(x).sum(); // dy/dx = 2x
  y.backward(undefined, { retainGraph: true });
  assert.deepEqual(vals(x.grad!), [2, 4]);
  y.backward();
  assert.deepEqual(vals(x.grad!), [4, 8], 'gradients accumulate');
  assert.throws(() => y.backward(), /backward/, 'a second pass over a freed graph fails');
  // an explicit output gradient for a non-scalar
  const z = f64([1, 2, 3]).requiresGrad_();
  z.mul(2).backward(f64([1, 10, 100]));
  assert.deepEqual(vals(z.grad!), [2, 20, 200]);
  // backward of a non-scalar without a gradient is an error
  assert.throws(() => z.mul(2).backward(), /backward/);
}));

test('detach cuts the graph and shares storage', () => tidy(() => {
  const x = f64([1, 2]).requiresGrad_();
  const d = x.detach();
  assert.equal(d.requiresGrad, false);
  assert.ok(d.sharesStorageWith(x));
  const y = x.mul(d).sum(); // gradient only through the first factor: d
  y.backward();
  assert.deepEqual(vals(x.grad!), [1, 2]);
}));

test('noGrad produces tensors without grad; enableGrad re-enables inside', () => tidy(() => {
  const x = f64([1, 2]).requiresGrad_();
  assert.equal(isGradEnabled(), true);
  const y = noGrad(() => {
    assert.equal(isGradEnabled(), false);
    const inner = enableGrad(() => x.mul(2));
    assert.equal(inner.requiresGrad, true);
    return x.mul(2);
  });
  assert.equal(isGradEnabled(), true, 'restored');
  assert.equal(y.requiresGrad, false);
  assert.equal(y.gradFn, null);
  assert.throws(() => noGrad(() => { throw new Error('boom'); }), /boom/);
  assert.equal(isGradEnabled(), true, 'restored after an exception');
}));

test('in-place ops on leaves requiring grad are rejected; under noGrad they are allowed', () => tidy(() => {
  const w = f64([1, 2]).requiresGrad_();
  assert.throws(() => w.add_(1), /leaf|in-place/);
  noGrad(() => w.add_(1));
  assert.deepEqual(vals(w), [2, 3]);
}));

test('gradient of a composite expression by hand', () => tidy(() => {
  // f(a, b) = sum(a * b + a^2 / b): df/da = b + 2a/b, df/db = a - a^2/b^2
  const av = [1, -2, 0.5];
  const bv = [2, 4, -1];
  const a = f64(av).requiresGrad_();
  const b = f64(bv).requiresGrad_();
  a.mul(b).add(a.pow(2).div(b)).sum().backward();
  assertClose(a.grad!, av.map((x, i) => bv[i]! + (2 * x) / bv[i]!), { rtol: 1e-14 });
  assertClose(b.grad!, av.map((x, i) => x - (x * x) / bv[i]! ** 2), { rtol: 1e-14 });
}));
