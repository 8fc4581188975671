// Multi-scale + flip inference: the average of softmaxes over scales and flips (checked on a toy network whose
// logits are known in closed form), flip inference of a flip-equivariant network, argmax and the dense CRF.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type Tensor, manualSeed, randn, tensor, tidy } from '../../src/engine/index.js';
import { Conv2d } from '../../src/nn/index.js';
import type { RgbImage } from '../../src/data/index.js';
import { labelsFromProbabilities, multiScaleProbabilities, predictMask, type SegmentationNet } from '../../src/segmentation/index.js';
import { assertClose, vals } from '../helpers.js';
import { TinyBackbone } from '../methods/tiny.js';

const softmax = (z: number[]): number[] => {
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

/**
 * Logits constant over space, at a quarter of the input size: z_k = a_k * H' / 10 + b_k for an H' x W' input,
 * so every scale gives a different, known probability vector. Records the input sizes it saw.
 */
class ConstantLogitNet implements SegmentationNet {
  readonly seen: number[][] = [];
  constructor(readonly a: number[], readonly b: number[]) {}
  logits(h: number): number[] {
    return this.a.map((a, k) => (a * h) / 10 + this.b[k]!);
  }
  forward(images: Tensor): Tensor {
    const [n, , h, w] = images.shape as [number, number, number, number];
    this.seen.push([n, h, w]);
    const [hh, ww] = [Math.ceil(h / 4), Math.ceil(w / 4)];
    const z = this.logits(h);
    const data = new Float32Array(n * z.length * hh * ww);
    for (let i = 0; i < n; i++) for (let k = 0; k < z.length; k++) data.fill(z[k]!, (i * z.length + k) * hh * ww, (i * z.length + k + 1) * hh * ww);
    return tensor(data, { shape: [n, z.length, hh, ww] });
  }
}

test('multi-scale: the probabilities are the average over scales (and flips) of each pass\'s softmax', () => {
  const net = new ConstantLogitNet([1, -0.5, 0.2], [0, 0.3, -1]);
  tidy(() => {
    const image = randn([1, 3, 20, 30]);
    for (const flip of [true, false]) {
      net.seen.length = 0;
      const scales = [0.5, 0.75, 1, 1.5];
      const p = multiScaleProbabilities(net, image, { scales, flip });
      assert.deepEqual(p.shape, [3, 20, 30]);
      // Resized to round(20 s) x round(30 s), flipped copies batched with the originals.
      assert.deepEqual(net.seen, scales.map((s) => [flip ? 2 : 1, Math.round(20 * s), Math.round(30 * s)]));
      const expected = [0, 0, 0];
      for (const s of scales) softmax(net.logits(Math.round(20 * s))).forEach((v, k) => { expected[k]! += v / scales.length; });
      const want = expected.flatMap((v) => new Array<number>(20 * 30).fill(v));
      assertClose(p, want, { rtol: 1e-5, atol: 1e-6 }, `flip=${flip}`);
    }
  });
});

/** Tiny flip-equivariant network: symmetric 3x3 kernels at stride 1, then a 1x1 classifier. */
function equivariantNet(): SegmentationNet & { dispose(): void } {
  const backbone = new TinyBackbone({ channels: 6, flipEquivariant: true });
  const cls = new Conv2d(6, 4, 1);
  return {
    forward: (x) => cls.forward(backbone.forward(x).features),
    dispose: () => { backbone.dispose(); cls.dispose(); },
  };
}

test('flip: for a flip-equivariant network, inference with flips equals the single pass; otherwise it differs', () => {
  manualSeed(7);
  const sym = equivariantNet();
  const backbone = new TinyBackbone({ channels: 6, strided: 1 }); // not flip-equivariant
  const cls = new Conv2d(6, 4, 1);
  const asym: SegmentationNet = { forward: (x) => cls.forward(backbone.forward(x).features) };
  tidy(() => {
    const image = randn([1, 3, 17, 22]);
    const options = { scales: [0.5, 1, 1.25] };
    const withFlip = multiScaleProbabilities(sym, image, { ...options, flip: true });
    const single = multiScaleProbabilities(sym, image, { ...options, flip: false });
    assertClose(withFlip, vals(single), { rtol: 1e-4, atol: 1e-6 });
    // The test can fail: a generic network's flipped pass is not its mirror image.
    const a = multiScaleProbabilities(asym, image, { ...options, flip: true });
    const b = multiScaleProbabilities(asym, image, { ...options, flip: false });
    assert.ok(a.sub(b).abs().max().item() > 1e-3);
    // And flip inference is itself flip-equivariant for any network.
    const mirrored = multiScaleProbabilities(asym, image.flip(3), { ...options, flip: true });
    assertClose(mirrored, vals(a.flip(2)), { rtol: 1e-4, atol: 1e-6 });
  });
  sym.dispose();
  backbone.dispose();
  cls.dispose();
});

test('labels: argmax of the probabilities without a CRF; predictMask = labels of the fused probabilities', () => {
  manualSeed(8);
  const head = new Conv2d(3, 4, 1);
  tidy(() => {
    const probs = randn([5, 7, 9]).softmax(0);
    const p = vals(probs);
    const labels = labelsFromProbabilities(probs);
    assert.deepEqual([labels.width, labels.height], [9, 7]);
    for (let i = 0; i < 63; i++) {
      let best = 0;
      for (let k = 1; k < 5; k++) if (p[k * 63 + i]! > p[best * 63 + i]!) best = k;
      assert.equal(labels.data[i], best, `pixel ${i}`);
    }
    // predictMask: the per-pixel argmax (by hand) of the probabilities fused over the same scales, for a net whose
    // label follows each pixel's colour (a 1x1 convolution), so that the labels vary over the image.
    const image = randn([1, 3, 12, 10]);
    const pixelwise: SegmentationNet = { forward: (x) => head.forward(x) };
    const fused = vals(multiScaleProbabilities(pixelwise, image, { scales: [0.5, 1] }));
    const K = fused.length / 120;
    const argmax = Array.from({ length: 120 }, (_, i) => {
      let best = 0;
      for (let k = 1; k < K; k++) if (fused[k * 120 + i]! > fused[best * 120 + i]!) best = k;
      return best;
    });
    const predicted = predictMask(pixelwise, image, { scales: [0.5, 1] });
    assert.deepEqual([predicted.width, predicted.height], [10, 12]);
    assert.deepEqual([...predicted.data], argmax);
    assert.ok(new Set(argmax).size > 1, 'more than one label predicted, so the order of the planes matters');
  });
  head.dispose();
});

test('labels: the dense CRF overrules a weakly wrong pixel inside a uniform region; it needs the RGB image', () => {
  // Left half black with label 0, right half white with label 1 (probability 0.8); pixel (3, 3), on the black
  // side, leans to label 1 (0.6). Argmax keeps the outlier; the CRF's bilateral kernel pulls it back to 0.
  const [W, H] = [12, 12];
  const rgb: RgbImage = { width: W, height: H, channels: 3, data: new Uint8Array(W * H * 3) };
  const prob = new Float32Array(2 * W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const p = y * W + x;
      const right = x >= W / 2;
      if (right) rgb.data.fill(255, 3 * p, 3 * p + 3);
      const p1 = x === 3 && y === 3 ? 0.6 : right ? 0.8 : 0.2;
      prob[p] = 1 - p1;
      prob[W * H + p] = p1;
    }
  }
  tidy(() => {
    const probs = tensor(prob, { shape: [2, H, W] });
    const plain = labelsFromProbabilities(probs);
    const crf = labelsFromProbabilities(probs, { crf: 'psa', rgb });
    assert.equal(plain.data[3 * W + 3], 1);
    assert.equal(crf.data[3 * W + 3], 0);
    const expected = Uint8Array.from({ length: W * H }, (_, p) => (p % W >= W / 2 ? 1 : 0));
    assert.deepEqual(crf.data, expected);
    assert.throws(() => labelsFromProbabilities(probs, { crf: 'psa' }), /needs the RGB image/);
    assert.throws(() => labelsFromProbabilities(probs, { crf: 'deeplab', rgb: { ...rgb, width: 6 } }), /RGB image is 6x12x3 but the probabilities are 12x12/);
  });
});

test('labels: allowed labels (an image\'s tags) restrict the argmax and the CRF; bad lists are named', () => {
  // Three labels over four pixels, label-major: the plain argmax is 1, 0, 1, 2.
  const p = [
    0.1, 0.5, 0.0, 0.2,
    0.7, 0.3, 0.9, 0.1,
    0.2, 0.2, 0.1, 0.7,
  ];
  tidy(() => {
    const probs = tensor(Float32Array.from(p), { shape: [3, 1, 4] });
    assert.deepEqual([...labelsFromProbabilities(probs).data], [1, 0, 1, 2]);
    // Without label 1 each pixel takes its best of 0 and 2 (by hand: 0.2 > 0.1, 0.5 > 0.2, 0.1 > 0.0, 0.7 > 0.2).
    assert.deepEqual([...labelsFromProbabilities(probs, { allowed: [0, 2] }).data], [2, 0, 2, 2]);
    // One label allowed: it is everywhere, even where its probability is 0.
    assert.deepEqual([...labelsFromProbabilities(probs, { allowed: [0] }).data], [0, 0, 0, 0]);
    assert.deepEqual([...labelsFromProbabilities(probs, { allowed: [0, 1, 2] }).data], [1, 0, 1, 2]);
    assert.throws(() => labelsFromProbabilities(probs, { allowed: [0, 3] }), /allowed labels must be a non-empty list of ids in 0\.\.2, got \[0, 3\]/);
    assert.throws(() => labelsFromProbabilities(probs, { allowed: [] }), /non-empty list/);
  });
  // Through the CRF: the right half is confidently label 1; with label 1 ruled out it never appears, and the
  // left half (label 0, uncontested) keeps its label.
  const [W, H] = [8, 6];
  const rgb: RgbImage = { width: W, height: H, channels: 3, data: new Uint8Array(W * H * 3) };
  const prob = new Float32Array(3 * W * H);
  for (let q = 0; q < W * H; q++) {
    const right = q % W >= W / 2;
    if (right) rgb.data.fill(255, 3 * q, 3 * q + 3);
    const [p0, p1, p2] = right ? [0.15, 0.7, 0.15] : [0.8, 0.1, 0.1];
    prob[q] = p0;
    prob[W * H + q] = p1;
    prob[2 * W * H + q] = p2;
  }
  tidy(() => {
    const probs = tensor(prob, { shape: [3, H, W] });
    const all = labelsFromProbabilities(probs, { crf: 'psa', rgb });
    assert.deepEqual([...all.data], Array.from({ length: W * H }, (_, q) => (q % W >= W / 2 ? 1 : 0)));
    const told = labelsFromProbabilities(probs, { crf: 'psa', rgb, allowed: [0, 2] });
    assert.ok(told.data.every((v) => v !== 1), 'a disallowed label never comes out of the CRF');
    assert.deepEqual([...told.data].filter((_, q) => q % W < W / 2), new Array(W * H / 2).fill(0));
  });
});

test('inference: bad inputs are reported with their shapes', () => {
  const net = new ConstantLogitNet([1], [0]);
  tidy(() => {
    assert.throws(() => multiScaleProbabilities(net, randn([2, 3, 8, 8])), /expected a 1 x C x H x W image, got \[2,3,8,8\]/);
    assert.throws(() => multiScaleProbabilities(net, randn([1, 3, 8, 8]), { scales: [1, 0] }), /scales must be positive/);
  });
});
