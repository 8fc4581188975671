// AdvCAM (src/cams/advcam.ts) on a tiny network: every climbing step raises the target class's score, the held term
// keeps the already-high region, the half scale and the code's multiplier quirk weight the scales as documented,
// and the CAM stage's entry point runs it for any method without touching the parameters' gradients.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { type Tensor, cat, eye, manualSeed, noGrad, randn, tensor, tidy } from '../../src/engine/index.js';
import { Module } from '../../src/nn/index.js';
import { type Backbone, type BackboneOutput, IMAGENET_NORM } from '../../src/backbones/backbone.js';
import { type ClimbStep, advCamMap, climbClass } from '../../src/cams/advcam.js';
import { imageCams } from '../../src/cams/localize.js';
import { CamMethod } from '../../src/methods/cam.js';
import { assertClose, vals } from '../helpers.js';
import { TinyBackbone } from '../methods/tiny.js';

function tinyCam(): CamMethod {
  manualSeed(4);
  const m = new CamMethod(new TinyBackbone({ channels: 8, strided: 1 }), { numClasses: 3 });
  m.model.eval();
  return m;
}
const O = { iterations: 10, stepSize: 0.08, heldThreshold: 0.5, multiplier: 1, flip: true };

function climb(m: CamMethod, image: Tensor, heldWeight: number): { steps: ClimbStep[]; acc: number[] } {
  const steps: ClimbStep[] = [];
  const batch = noGrad(() => tidy(() => image.expand(2, 3, image.size(2), image.size(3)).contiguous()));
  noGrad(() => batch.select(0, 1).copy_(image.select(0, 0).flip(2)));
  const acc = climbClass(batch, 1, { cams: (x) => m.cams(x) }, { ...O, heldWeight }, (s) => steps.push(s));
  const out = vals(acc);
  acc.dispose();
  batch.dispose();
  return { steps, acc: out };
}

/** CAM = the input itself (3 classes = 3 channels, stride 1): the climbing arithmetic can be followed by hand. */
class IdentityBackbone extends Module implements Backbone {
  readonly name = 'identity';
  readonly outChannels = 3;
  readonly outputStride = 1;
  readonly taps = [];
  readonly inputNorm = IMAGENET_NORM;
  forward(x: Tensor): BackboneOutput {
    return { features: x, taps: new Map() };
  }
}

test('AdvCAM raises the target class score at every iteration and keeps the held region (an identity CAM network)', () => tidy(() => {
  const m = new CamMethod(new IdentityBackbone(), { numClasses: 3 });
  noGrad(() => m.model.classifier.weight.copy_(eye(3).view(3, 3, 1, 1)));
  // class 1: a held 2 x 4 block at the image's maximum 1, a weak positive row at 0.05, the rest at the minimum -0.5;
  // class 0 positive (0.3) everywhere; class 2 at the minimum. Symmetric left-right, so the flip-combine doubles it.
  const H = 6;
  const W = 8;
  const img = new Float32Array(3 * H * W).fill(-0.5);
  for (let p = 0; p < H * W; p++) img[p] = 0.3;
  for (let y = 1; y < 3; y++) for (let x = 2; x < 6; x++) img[H * W + y * W + x] = 1;
  for (let x = 0; x < W; x++) img[H * W + 4 * W + x] = 0.05;
  const image = tensor(img, { shape: [1, 3, H, W] });
  const steps: ClimbStep[] = [];
  const batch = cat([image, image.flip(3)]);
  const acc = climbClass(batch, 1, { cams: (x) => m.cams(x) }, { ...O, iterations: 6, heldWeight: 7 }, (s) => steps.push(s));
  // Each step moves the weak row up by 0.08 (every non-zero gradient entry has the same magnitude, so the max-abs
  // normalised step is 0.08 everywhere); the held block sits at the clamp's upper bound and does not move.
  steps.forEach((s, i) => {
    assertClose([s.score], [2 * (8 * 1 + 8 * (0.05 + 0.08 * i)) / (H * W)], { rtol: 1e-5 }, `score at step ${i}`);
    if (i > 0) assert.ok(s.score > steps[i - 1]!.score, `step ${i} raised the score`);
    assert.equal(s.heldPixels, 8, 'the held region is the block');
    assert.equal(s.heldChange, 0, 'the held region is unchanged');
  });
  // The accumulated map: the block at 2 per step, the weak row at 2 (0.05 + 0.08 i) summed over the 6 steps.
  const a = vals(acc);
  assertClose([a[1 * W + 2]!, a[4 * W]!, a[0]!], [12, 2 * (6 * 0.05 + 0.08 * 15), 0], { rtol: 1e-5 });
}));

test('AdvCAM on a random tiny network: the held term keeps the high region closer to where it started', () => tidy(() => {
  const m = tinyCam();
  manualSeed(9);
  const image = randn([1, 3, 12, 12]);
  const held = climb(m, image, 7);
  const free = climb(m, image, 0);
  const last = (r: { steps: ClimbStep[] }) => r.steps[r.steps.length - 1]!.heldChange / r.steps[r.steps.length - 1]!.heldPixels;
  assert.ok(held.steps.every((s) => s.heldPixels > 0), 'a held region exists at every step');
  assert.equal(held.steps[0]!.heldChange, 0, 'the first step is the reference');
  assert.ok(last(held) < last(free), `held ${last(held)} vs free ${last(free)} per held pixel`);
  assert.ok(free.steps[free.steps.length - 1]!.score > free.steps[0]!.score, 'climbing raised the target score');
  m.model.dispose();
}));

test("AdvCAM's half scale runs first with half the iterations at x2; the code's quirk carries the x2 to later scales", () => tidy(() => {
  const m = tinyCam();
  manualSeed(10);
  const image = randn([1, 3, 16, 16]);
  const source = { cams: (x: Tensor) => m.cams(x) };
  const base = { iterations: 12, stepSize: 0.08, heldThreshold: 0.5, heldWeight: 7, flip: true, numClasses: 3 };
  const quirk = advCamMap(image, [0, 2], source, { ...base, halfScale: 0.5, multiplierQuirk: true, scales: [1, 0.5] });
  const fixed = advCamMap(image, [0, 2], source, { ...base, halfScale: 0.5, multiplierQuirk: false, scales: [1, 0.5] });
  const full = advCamMap(image, [0, 2], source, { ...base, halfScale: null, multiplierQuirk: false, scales: [1] });
  const half = advCamMap(image, [0, 2], source, { ...base, iterations: 6, halfScale: null, multiplierQuirk: false, scales: [0.5] });
  assertClose(quirk.sub(fixed), vals(full), { rtol: 1e-4, atol: 1e-5 }, 'quirk - fixed = the 1x scale once more');
  assertClose(fixed, vals(full.add(half.mul(2))), { rtol: 1e-4, atol: 1e-5 }, 'fixed = 1x scale + 2 x (6 iterations at 0.5)');
  assert.deepEqual(vals(quirk.select(0, 1)).every((v) => v === 0), true, 'classes not in the image stay zero');
  m.model.dispose();
}));

test('imageCams with advcam: any method, normalised maps, parameters untouched and still trainable after', async () => {
  const m = tinyCam();
  const image = randn([1, 3, 12, 12]);
  const cams = await imageCams(m, image, [1], {
    scales: [1], flip: true, advcam: { iterations: 3, stepSize: 0.08, heldThreshold: 0.5, heldWeight: 7, halfScale: 0.5, multiplierQuirk: true },
  });
  assert.deepEqual(cams.shape, [3, 12, 12]);
  assertClose([cams.select(0, 1).max().item()], [1], { rtol: 1e-5 });
  assert.ok(m.model.parameters().every((p) => p.grad === null), 'no parameter gradient accumulated');
  assert.ok(m.model.parameters().every((p) => p.requiresGrad), 'parameters require grad again');
  cams.dispose();
  image.dispose();
  m.model.dispose();
});
