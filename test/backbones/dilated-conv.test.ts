// The space-to-batch rewrite of dilated convolutions equals libtorch's direct dilated convolution (values and
// gradients, float64), and TensorFlow SAME padding is computed as TensorFlow does.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { F, type Tensor, tidy } from '../../src/engine/index.js';
import { BackboneConv2d, type Pads4, dilatedConv2d, samePadding } from '../../src/backbones/index.js';
import { assertClose, randF64, vals } from '../helpers.js';
import './util.js'; // test settings (threads)

interface Case {
  n: number; c: number; oc: number; h: number; w: number; k: number;
  d: [number, number]; groups: number; pads: Pads4;
}

const sym = (ph: number, pw: number): Pads4 => [pw, pw, ph, ph];

const CASES: Case[] = [
  // depthwise 3x3, the MobileNetV2 case: padding = dilation, odd and even sizes, sizes not multiples of d
  { n: 2, c: 4, oc: 4, h: 9, w: 10, k: 3, d: [2, 2], groups: 4, pads: sym(2, 2) },
  { n: 1, c: 3, oc: 3, h: 11, w: 8, k: 3, d: [4, 4], groups: 3, pads: sym(4, 4) },
  { n: 2, c: 2, oc: 2, h: 3, w: 5, k: 3, d: [4, 4], groups: 2, pads: sym(4, 4) }, // smaller than the rate
  // sizes multiples of the rates with padding rate * (k - 1) / 2: the fast path without a padding copy
  { n: 1, c: 3, oc: 3, h: 12, w: 12, k: 3, d: [4, 4], groups: 3, pads: sym(4, 4) },
  { n: 2, c: 2, oc: 2, h: 12, w: 9, k: 3, d: [2, 3], groups: 2, pads: sym(2, 3) },
  { n: 1, c: 2, oc: 4, h: 12, w: 10, k: 5, d: [2, 2], groups: 1, pads: sym(4, 4) },
  // dense and grouped convolutions, other kernels, anisotropic rates, no / asymmetric padding
  { n: 2, c: 3, oc: 5, h: 7, w: 7, k: 3, d: [3, 3], groups: 1, pads: sym(3, 3) },
  { n: 1, c: 4, oc: 6, h: 13, w: 9, k: 5, d: [2, 3], groups: 2, pads: sym(4, 6) },
  { n: 1, c: 2, oc: 2, h: 10, w: 11, k: 3, d: [2, 2], groups: 2, pads: [0, 0, 0, 0] },
  { n: 1, c: 2, oc: 3, h: 10, w: 9, k: 3, d: [2, 2], groups: 1, pads: [1, 3, 0, 2] },
];

function direct(x: Tensor, w: Tensor, b: Tensor, c: Case): Tensor {
  const [pl, pr, pt, pb] = c.pads;
  const xp = pl === pr && pt === pb ? x : F.pad(x, c.pads);
  const padding: [number, number] = pl === pr && pt === pb ? [pt, pl] : [0, 0];
  return F.conv2d(xp, w, b, { padding, dilation: c.d, groups: c.groups });
}

for (const c of CASES) {
  const label = `${c.c}->${c.oc} ch, ${c.h}x${c.w}, k${c.k}, rate ${c.d.join('x')}, groups ${c.groups}, pads [${c.pads}]`;
  test(`dilatedConv2d equals the direct dilated conv (values and gradients): ${label}`, () => {
    tidy(() => {
      const seed = c.h * 100 + c.w * 10 + c.d[0];
      const mk = () => ({
        x: randF64([c.n, c.c, c.h, c.w], seed).requiresGrad_(),
        w: randF64([c.oc, c.c / c.groups, c.k, c.k], seed + 1).requiresGrad_(),
        b: randF64([c.oc], seed + 2).requiresGrad_(),
      });
      const a = mk();
      const r = mk();
      const ya = dilatedConv2d(a.x, a.w, a.b, { padding: c.pads, dilation: c.d, groups: c.groups });
      const yr = direct(r.x, r.w, r.b, c);
      assert.deepEqual(ya.shape, yr.shape);
      assertClose(ya, vals(yr), { rtol: 1e-12, atol: 1e-12 }, 'output');
      // A non-uniform upstream gradient, so every output position is weighted differently.
      const g = randF64(yr.shape, seed + 3);
      ya.backward(g);
      yr.backward(g);
      assertClose(a.x.grad!, vals(r.x.grad!), { rtol: 1e-12, atol: 1e-12 }, 'dL/dx');
      assertClose(a.w.grad!, vals(r.w.grad!), { rtol: 1e-12, atol: 1e-12 }, 'dL/dw');
      assertClose(a.b.grad!, vals(r.b.grad!), { rtol: 1e-12, atol: 1e-12 }, 'dL/db');
    });
  });
}

test('dilatedConv2d takes symmetric padding as a number or [h, w], and falls back to the direct conv for strides', () => {
  tidy(() => {
    const x = randF64([1, 3, 9, 8], 7);
    const w = randF64([3, 1, 3, 3], 8);
    assertClose(dilatedConv2d(x, w, null, { padding: 2, dilation: 2, groups: 3 }),
      vals(F.conv2d(x, w, null, { padding: 2, dilation: 2, groups: 3 })), { rtol: 1e-12, atol: 1e-12 });
    assertClose(dilatedConv2d(x, w, null, { padding: [2, 1], dilation: [2, 1], groups: 3 }),
      vals(F.conv2d(x, w, null, { padding: [2, 1], dilation: [2, 1], groups: 3 })), { rtol: 1e-12, atol: 1e-12 });
    assertClose(dilatedConv2d(x, w, null, { padding: 2, dilation: 2, groups: 3, stride: 2 }),
      vals(F.conv2d(x, w, null, { padding: 2, dilation: 2, groups: 3, stride: 2 })), { rtol: 1e-12, atol: 1e-12 });
    assert.throws(() => dilatedConv2d(randF64([1, 3, 2, 2], 1), w, null, { dilation: 4, groups: 3 }), /smaller than the 3x3 kernel/);
  });
});

test('samePadding follows TensorFlow: stride-2 on an even size pads bottom/right only', () => {
  assert.deepEqual(samePadding(224, 3, 2), [0, 1]);
  assert.deepEqual(samePadding(225, 3, 2), [1, 1]);
  assert.deepEqual(samePadding(112, 3, 1), [1, 1]);
  assert.deepEqual(samePadding(28, 3, 1, 4), [4, 4]);
  assert.deepEqual(samePadding(28, 1, 1), [0, 0]);
  assert.deepEqual(samePadding(7, 1, 2), [0, 0]);
  assert.deepEqual(samePadding(8, 7, 2), [2, 3]);
  // Output sizes are ceil(size / stride) for every size.
  for (let size = 1; size < 20; size++) {
    const [a, b] = samePadding(size, 3, 2);
    assert.equal(Math.floor((size + a + b - 3) / 2) + 1, Math.ceil(size / 2), `size ${size}`);
  }
});

test('BackboneConv2d: SAME and symmetric padding, and the rewrite switched on only for dilated depthwise convs', () => {
  tidy(() => {
    const conv = new BackboneConv2d(3, 4, 3, { stride: 2, padding: 'same', bias: true });
    const w = conv.weight.double();
    const b = conv.bias!.double();
    const x = randF64([1, 3, 8, 7], 3).float();
    // even height: bottom only; odd width: both sides
    assert.deepEqual(conv.padsFor(8, 7), [1, 1, 0, 1]);
    const ref = F.conv2d(F.pad(x.double(), [1, 1, 0, 1]), w, b, { stride: 2 });
    assertClose(conv.forward(x), vals(ref), { rtol: 1e-5, atol: 1e-5 });
    conv.padding = 'symmetric';
    assert.deepEqual(conv.padsFor(8, 7), [1, 1, 1, 1]);
    assertClose(conv.forward(x), vals(F.conv2d(x.double(), w, b, { stride: 2, padding: 1 })), { rtol: 1e-5, atol: 1e-5 });

    const dw = new BackboneConv2d(6, 6, 3, { dilation: 4, groups: 6, bias: false });
    assert.ok(dw.isDepthwise);
    const grouped = new BackboneConv2d(6, 12, 3, { dilation: 4, groups: 2 });
    assert.ok(!grouped.isDepthwise);
    const xd = randF64([2, 6, 11, 10], 4).float();
    // 'auto' takes the rewrite when autograd records (its last op is a reshape, not the convolution) ...
    assert.equal(dw.dilatedImpl, 'auto');
    const auto = dw.forward(xd);
    assert.notEqual(auto.gradFn, 'ConvolutionBackward0');
    dw.dilatedImpl = 'space-to-batch';
    const viaRewrite = dw.forward(xd);
    dw.dilatedImpl = 'direct';
    const viaDirect = dw.forward(xd);
    assert.equal(viaDirect.gradFn, 'ConvolutionBackward0');
    assertClose(viaRewrite, vals(viaDirect), { rtol: 1e-5, atol: 1e-5 });
    assertClose(auto, vals(viaDirect), { rtol: 1e-5, atol: 1e-5 });
    assert.deepEqual(viaRewrite.shape, [2, 6, 11, 10]);
    // ... and the direct kernel when nothing needs a gradient (same values).
    dw.dilatedImpl = 'auto';
    dw.freeze();
    assertClose(dw.forward(xd), vals(viaDirect), { rtol: 1e-5, atol: 1e-5 });
    for (const m of [conv, dw, grouped]) m.dispose();
  });
});
