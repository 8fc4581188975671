import { test } from 'node:test';
import assert from 'node:assert/strict';

import { type Tensor, manualSeed, randn, rand, tensor, tidy, noGrad, ones } from '../../src/engine/index.js';
import { Module } from '../../src/nn/index.js';
import { type Backbone, type BackboneOutput, IMAGENET_NORM } from '../../src/backbones/backbone.js';
import {
  SeamMethod, keepTopForeground, maxNorm, minPoolLoss, pcmAffinityBytes, pcmSeed, topMean, withBackground,
} from '../../src/methods/seam.js';
import { TinyBackbone } from './tiny.js';

const close = (a: number, b: number, tol = 1e-6, what = '') =>
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

function flat(t: Tensor): number[] {
  return Array.from(t.toFloat32Array());
}

/** The input itself is the feature map (stride 1), with the two taps = the input too. */
class IdentityBackbone extends Module implements Backbone {
  readonly name = 'identity';
  readonly outChannels = 3;
  readonly outputStride = 1;
  readonly taps = [{ name: 'a', channels: 3, stride: 1 }, { name: 'b', channels: 3, stride: 1 }];
  readonly inputNorm = IMAGENET_NORM;
  forward(x: Tensor, taps?: string[]): BackboneOutput {
    const m = new Map<string, Tensor>();
    for (const t of taps ?? []) m.set(t, x);
    return { features: x, taps: m };
  }
}

function tinySeam(o: Partial<ConstructorParameters<typeof SeamMethod>[1]> = {}) {
  manualSeed(3);
  const bb = new TinyBackbone({ channels: 6, strided: 1 });
  return new SeamMethod(bb, { numClasses: 3, pcmTaps: ['conv1', 'conv1'], pcmProjChannels: [4, 5], pcmEmbedChannels: 6, ...o });
}

test('maxNorm follows the code: ReLU(ReLU(p) - min - e) / (max - min + e)', () => {
  tidy(() => {
    // one image, one channel, values -1, 1, 3, 5: ReLU -> 0,1,3,5; min 0, max 5
    const p = tensor([-1, 1, 3, 5], { dtype: 'float32', shape: [1, 1, 2, 2] });
    const out = flat(maxNorm(p));
    const e = 1e-5;
    [0, 1, 3, 5].forEach((v, i) => close(out[i]!, Math.max(0, v - 0 - e) / (5 + e), 1e-7, `element ${i}`));
  });
});

test('pcmSeed: per-channel max normalisation, background = 1 - max fg, only the top fg class kept', () => {
  tidy(() => {
    // 3 channels (bg + 2 fg) x 1 x 2 pixels. Channel maxima: bg 2, fg1 4, fg2 1.
    const cam = tensor([[[[2, -1]], [[4, 2]], [[1, 1]]]], { dtype: 'float32' });
    const s = pcmSeed(cam).tolist() as number[][][][];
    const e = 1e-5;
    const fg1 = [(4 - e) / (4 + e), (2 - e) / (4 + e)];
    const fg2 = [(1 - e) / (1 + e), (1 - e) / (1 + e)];
    // pixel 0: fg1 wins; pixel 1: fg2 (0.99998) beats fg1 (0.49999)
    close(s[0]![0]![0]![0]!, 1 - fg1[0]!, 1e-6, 'bg pixel 0');
    close(s[0]![0]![0]![1]!, 1 - fg2[1]!, 1e-6, 'bg pixel 1');
    close(s[0]![1]![0]![0]!, fg1[0]!, 1e-6, 'fg1 pixel 0 kept');
    assert.equal(s[0]![1]![0]![1], 0, 'fg1 pixel 1 dropped');
    assert.equal(s[0]![2]![0]![0], 0, 'fg2 pixel 0 dropped');
    close(s[0]![2]![0]![1]!, fg2[1]!, 1e-6, 'fg2 pixel 1 kept');
  });
});

test('keepTopForeground, withBackground and topMean on hand cases', () => {
  tidy(() => {
    const x = tensor([[[[0.7]], [[0.2]], [[0.5]]]], { dtype: 'float32' });  // bg, fg1, fg2 at one pixel
    assert.deepEqual(flat(keepTopForeground(x)).map((v) => +v.toFixed(5)), [0.7, 0, 0.5]);
    assert.deepEqual(flat(withBackground(x)).map((v) => +v.toFixed(5)), [0.5, 0.2, 0.5]);
    // topMean over 10 entries per image with ratio 0.2: mean of the two largest
    const err = tensor([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [0, 0, 0, 0, 0, 0, 0, 0, 1, 3]], { dtype: 'float32' });
    close(topMean(err, 0.2).item(), ((10 + 9) / 2 + (3 + 1) / 2) / 2, 1e-6, 'OHEM mean');
    close(topMean(err, 1).item(), (55 + 4) / 20, 1e-6, 'plain mean');
  });
});

test('minPoolLoss: ReLU-mean of the smallest quarter of the per-pixel class maxima', () => {
  tidy(() => {
    // 1 image, 2 classes, 2x4 pixels; class maxima per pixel: [-1, 2, 3, 0.5, 4, 5, 6, 7]; k = 8/4 = 2
    const a = tensor([-1, 2, 3, 0.5, 4, 5, 6, 7], { dtype: 'float32', shape: [1, 1, 2, 4] });
    const b = tensor([-2, 1, 1, 0.25, 1, 1, 1, 1], { dtype: 'float32', shape: [1, 1, 2, 4] });
    const both = tensor([[...a.toFloat32Array()], [...b.toFloat32Array()]], { dtype: 'float32' }).view(1, 2, 2, 4);
    // two smallest maxima: -1 and 0.5 -> ReLU -> 0 and 0.5 -> sum / (k * n) = 0.5 / 2
    close(minPoolLoss(both).item(), 0.25, 1e-7, 'min-pool');
  });
});

test('PCM propagating a CAM with constant features gives the spatial mean everywhere', () => {
  const seam = tinySeam();
  tidy(() => noGrad(() => {
    const cam = rand([2, 4, 3, 5]);
    const feats = ones([2, 3 + 4 + 5, 3, 5]).mul(0.3);  // the same feature vector at every pixel
    const out = seam.model.pcm(cam, feats);
    const mean = cam.mean([2, 3], true);
    const hw = 15;
    // A_ij = 1 / (HW + e) for every i, j: cam_rv = sum_i cam_i / (HW + e)
    const expected = mean.mul(hw / (hw + 1e-5)).expandAs(cam);
    assert.ok(out.sub(expected).abs().max().item() < 1e-5, 'PCM output equals the spatial mean');
  }));
});

test('ER is zero for a network that is equivariant by construction (1x1 CAM head on the input itself)', () => {
  for (const transform of ['flip', 'rescale'] as const) {
    manualSeed(5);
    const seam = new SeamMethod(new IdentityBackbone(), { numClasses: 2, pcmTaps: ['a', 'b'], transform, scaleFactor: 0.5 });
    tidy(() => {
      // A positive linear ramp and a positive 1x1 head: the CAM is affine in x, so bilinear rescaling (align
      // corners keeps the extremes at the corners) commutes with maxnorm exactly; flipping commutes with anything.
      noGrad(() => seam.model.fc8.weight.copy_(rand([3, 3, 1, 1]).add(0.1)));
      const W = 9;
      const ramp = tensor(Array.from({ length: 3 * 5 * W }, (_, i) => 1 + (i % W) / W), { dtype: 'float32', shape: [1, 3, 5, W] });
      const out = seam.loss({ images: ramp, labels: tensor([[1, 1]], { dtype: 'float32' }), ids: ['x'] },
        { epoch: 0, step: 0, totalSteps: 1 });
      assert.ok(out.parts!.er!.item() < 1e-6, `${transform}: ER ${out.parts!.er!.item()}`);
    });
  }
  // Control: a backbone that adds a fixed position-dependent pattern breaks equivariance, and ER sees it.
  class Skewed extends IdentityBackbone {
    override forward(x: Tensor, taps?: string[]): BackboneOutput {
      const r = super.forward(x, taps);
      const pattern = tensor(Array.from({ length: x.size(3) }, (_, i) => (i * 7919) % 5), { dtype: 'float32' });
      return { ...r, features: x.add(pattern.view(1, 1, 1, -1)) };
    }
  }
  manualSeed(5);
  const skewed = new SeamMethod(new Skewed(), { numClasses: 2, pcmTaps: ['a', 'b'], transform: 'flip' });
  tidy(() => {
    const x = rand([1, 3, 5, 9]);
    const out = skewed.loss({ images: x, labels: tensor([[1, 1]], { dtype: 'float32' }), ids: ['x'] }, { epoch: 0, step: 0, totalSteps: 1 });
    assert.ok(out.parts!.er!.item() > 1e-3, `a non-equivariant net must have ER > 0 (got ${out.parts!.er!.item()})`);
  });
});

test('gradients reach what the code says: PCM only through ECR/min-pool, backbone and fc8 not through the PCM', () => {
  const seam = tinySeam();
  const ctx = { epoch: 0, step: 0, totalSteps: 1 };
  const batch = () => ({ images: randn([2, 3, 16, 16]), labels: tensor([[1, 0, 1], [0, 1, 0]], { dtype: 'float32' }), ids: ['a', 'b'] });
  const m = seam.model;
  const pcmParams = [m.f8_3, m.f8_4, m.f9].flatMap((l) => l.parameters());
  const clsParams = [...m.backbone.parameters(), ...m.fc8.parameters()];
  const gradNorm = (ps: Tensor[]) => tidy(() => ps.reduce((s, p) => s + (p.grad ? p.grad.abs().sum().item() : 0), 0));
  const clear = () => { for (const p of [...pcmParams, ...clsParams]) p.grad = null; };

  for (const [name, pick] of [
    ['ecr', (p: Record<string, Tensor>) => p.ecr!],
    ['min', (p: Record<string, Tensor>) => p.min!],
  ] as const) {
    clear();
    tidy(() => pick(seam.loss(batch(), ctx).parts!).backward());
    assert.ok(gradNorm(pcmParams) > 0, `${name} trains the PCM`);
    assert.equal(gradNorm(clsParams), 0, `${name} must not reach the backbone or fc8`);
  }
  for (const name of ['cls', 'er'] as const) {
    clear();
    tidy(() => seam.loss(batch(), ctx).parts![name]!.backward());
    assert.ok(gradNorm(clsParams) > 0, `${name} trains the backbone and fc8`);
    assert.equal(gradNorm(pcmParams), 0, `${name} must not reach the PCM`);
  }
});

test('training a few SEAM steps runs, every part is finite, and cams() come from the PCM at the feature grid', () => {
  const seam = tinySeam({ transform: 'rescale', scaleFactor: 0.5 });
  tidy(() => {
    const out = seam.loss({ images: randn([2, 3, 24, 24]), labels: tensor([[1, 0, 1], [0, 1, 0]], { dtype: 'float32' }), ids: ['a', 'b'] },
      { epoch: 0, step: 0, totalSteps: 1 });
    for (const [k, v] of Object.entries(out.parts!)) assert.ok(Number.isFinite(v.item()), `${k} finite`);
    out.loss.backward();
    const cams = seam.cams(randn([1, 3, 24, 24]));
    assert.deepEqual(cams.shape, [1, 3, 12, 12]);
  });
});

test("cams(): the PCM output by default, fc8's raw CAM with camSource 'cam'", () => {
  const x = randn([1, 3, 24, 24]);
  const fg = (t: Tensor) => flat(t.narrow(1, 1, 3).contiguous());
  const pcm = tinySeam();
  const fromPcm = flat(pcm.cams(x));
  assert.deepEqual(fromPcm, noGrad(() => fg(pcm.model.forwardGrid(x).camRv)));
  const raw = tinySeam({ camSource: 'cam' });  // the same seed, so the same weights
  const fromCam = flat(raw.cams(x));
  assert.deepEqual(fromCam, noGrad(() => fg(raw.model.forwardGrid(x).cam)));
  assert.ok(fromCam.some((v, i) => Math.abs(v - fromPcm[i]!) > 1e-4), 'the two sources differ');
});

test("classify: fc8's logits W.GAP(f) without the background, not the mean of the PCM's rectified CAMs", () => {
  const m = tinySeam();
  m.model.eval();
  tidy(() => noGrad(() => {
    manualSeed(5);
    const x = randn([2, 3, 16, 16]);
    const z = m.classify(x);
    assert.deepEqual(z.shape, [2, 3]);
    // 1x1 convolution without bias commutes with the spatial mean: fc8(GAP(f)), rows 1..C of fc8's weight.
    const f = m.backbone.forward(x).features.mean([2, 3]);
    const w = m.model.fc8.weight.view(4, -1).narrow(0, 1, 3);
    const expected = f.matmul(w.t());
    assert.ok(z.allclose(expected, 1e-5, 1e-6), `${flat(z)} vs ${flat(expected)}`);
    // The PCM's output is rectified: its mean can never say "absent" (sigmoid < 0.5), the logits here do.
    assert.ok(flat(m.cams(x).mean([2, 3])).every((v) => v >= 0));
    assert.ok(flat(z).some((v) => v < 0), 'random fc8 gives some negative logits');
  }));
  m.model.dispose();
});

test('the affinity memory is planned: 448 crop at output stride 8 is 3136^2 float32 per image', () => {
  assert.equal(pcmAffinityBytes(448, 8), 3136 * 3136 * 4);  // 39.3 MB
  assert.equal(pcmAffinityBytes(224, 8), 784 * 784 * 4);    // 2.5 MB
});
