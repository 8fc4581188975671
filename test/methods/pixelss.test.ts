// Pixel-level self-supervision (src/methods/pixelss.ts): its pieces on hand-made tensors against values computed
// here by hand or in plain JS (prototypes as masked means, the region labels' ignore band, the InfoNCE, MAM's
// weight and loss, the EMA update), and its networks: a frozen SupportNet stays in eval mode and gets no gradient,
// is loaded once, and the MainNet's inference does not touch it.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { type Tensor, manualSeed, noGrad, rand, tensor, tidy } from '../../src/engine/index.js';
import { Module } from '../../src/nn/index.js';
import {
  CamNet, IGNORE, PixelSsMethod, emaUpdate, mamLoss, mamWeight, prototypeContrast, regionLabels, regionPrototypes,
} from '../../src/methods/index.js';
import { TinyBackbone } from './tiny.js';

const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);
const flat = (t: Tensor) => Array.from(t.float().toFloat32Array());
const norm2 = (v: number[]) => { const n = Math.hypot(...v); return v.map((x) => x / n); };

test('regionLabels: a class above high, background at or below low, the band between ignored, padding ignored', () => {
  tidy(() => {
    // 1 image, 2 classes, 1 x 5 pixels; per pixel (P_1, P_2)
    const p = tensor([[[[0.9, 0.1, 0.3, 0.45, 0.5]], [[0.2, 0.05, 0.35, 0.6, 0.4]]]], { dtype: 'float32' });
    assert.deepEqual(flat(regionLabels(p, 0.2, 0.4)), [1, 0, IGNORE, 2, 1]);
    // low = high = t: the seed convention (foreground iff the best class score exceeds t), no ignored pixel
    assert.deepEqual(flat(regionLabels(p, 0.4, 0.4)), [1, 0, 0, 2, 1]);
    assert.deepEqual(flat(regionLabels(p, 0.5, 0.5)), [1, 0, 0, 2, 0], 'a score equal to t is background');
    const valid = tensor([[[true, true, true, false, true]]]);
    assert.deepEqual(flat(regionLabels(p, 0.2, 0.4, valid)), [1, 0, IGNORE, IGNORE, 1]);
    assert.throws(() => regionLabels(p, 0.5, 0.4), /low 0.5 must not exceed high 0.4/);
  });
});

test('regionPrototypes: L2-normalised masked means per image and over the batch; ignored pixels in no region', () => {
  tidy(() => {
    // 2 images, D = 2, 1 x 3 pixels. Features per pixel (columns), regions per pixel.
    const g = tensor([
      [[[1, 3, 0]], [[0, 1, 5]]],      // image 0: pixels (1,0), (3,1), (0,5)
      [[[2, 0, 4]], [[2, 1, 0]]],      // image 1: pixels (2,2), (0,1), (4,0)
    ], { dtype: 'float32' });
    const r = tensor([[[0, 0, IGNORE]], [[1, 0, 1]]], { dtype: 'int64' });
    const img = regionPrototypes(g, r, 3, 'image');
    assert.deepEqual(img.protos.shape, [2, 3, 2]);
    assert.deepEqual(flat(img.present), [1, 0, 0, 1, 1, 0]);
    const P = img.protos.tolist() as number[][][];
    const want0 = norm2([(1 + 3) / 2, (0 + 1) / 2]);       // image 0, region 0: pixels 0 and 1 (pixel 2 ignored)
    const want1r0 = norm2([0, 1]);                          // image 1, region 0: pixel 1
    const want1r1 = norm2([(2 + 4) / 2, (2 + 0) / 2]);      // image 1, region 1: pixels 0 and 2
    P[0]![0]!.forEach((v, i) => close(v, want0[i]!, 1e-6, `image 0 region 0 [${i}]`));
    P[1]![0]!.forEach((v, i) => close(v, want1r0[i]!, 1e-6, `image 1 region 0 [${i}]`));
    P[1]![1]!.forEach((v, i) => close(v, want1r1[i]!, 1e-6, `image 1 region 1 [${i}]`));

    const batch = regionPrototypes(g, r, 3, 'batch');
    assert.deepEqual(flat(batch.present), [1, 1, 0, 1, 1, 0]);
    const B = batch.protos.tolist() as number[][][];
    const bg = norm2([(1 + 3 + 0) / 3, (0 + 1 + 1) / 3]);   // region 0 over the batch: three pixels
    for (const n of [0, 1]) {
      B[n]![0]!.forEach((v, i) => close(v, bg[i]!, 1e-6, `batch region 0, image ${n} [${i}]`));
      B[n]![1]!.forEach((v, i) => close(v, want1r1[i]!, 1e-6, `batch region 1, image ${n} [${i}]`));
    }
  });
});

test('prototypeContrast: InfoNCE over the present prototypes, mean over the labelled pixels', () => {
  tidy(() => {
    const tau = 0.5;
    // 1 image, D = 2, 1 x 3 pixels with unit embeddings; 3 prototypes, the third absent.
    const zs = [[1, 0], [0.6, 0.8], [0, 1]];
    const protos = [[1, 0], [0, 1], [-1, 0]];
    const z = tensor([[[zs.map((v) => v[0]!)], [zs.map((v) => v[1]!)]]], { dtype: 'float32' });   // 1 x 2 x 1 x 3
    const P = tensor([protos], { dtype: 'float32' });
    const present = tensor([[true, true, false]]);
    const r = tensor([[[0, IGNORE, 1]]], { dtype: 'int64' });
    const nll = (zi: number[], k: number, ks: number[]) => {
      const s = ks.map((j) => Math.exp((zi[0]! * protos[j]![0]! + zi[1]! * protos[j]![1]!) / tau));
      return -Math.log(s[ks.indexOf(k)]! / s.reduce((a, b) => a + b, 0));
    };
    const want = (nll(zs[0]!, 0, [0, 1]) + nll(zs[2]!, 1, [0, 1])) / 2;
    close(prototypeContrast(z, r, P, present, tau).item(), want, 1e-5, 'two pixels, prototypes 0 and 1');
    // With the third prototype present the denominators grow.
    const all = (nll(zs[0]!, 0, [0, 1, 2]) + nll(zs[2]!, 1, [0, 1, 2])) / 2;
    close(prototypeContrast(z, r, P, tensor([[true, true, true]]), tau).item(), all, 1e-5, 'three prototypes');
    assert.ok(all > want);
    // Every pixel ignored: zero, not NaN.
    const none = prototypeContrast(z, tensor([[[IGNORE, IGNORE, IGNORE]]], { dtype: 'int64' }), P, present, tau);
    assert.equal(none.item(), 0);
  });
});

test('MAM: the weight is zero where MainNet and SupportNet agree and grows with their difference', () => {
  tidy(() => {
    // 1 image, 2 classes, 1 x 3 pixels: agree at pixel 0; main below at pixel 1 (by 0.5 in class 0); above at 2.
    const main = tensor([[[[0.4, 0.2, 0.9]], [[0.1, 0.3, 0.2]]]], { dtype: 'float32' });
    const sup = tensor([[[[0.4, 0.7, 0.5]], [[0.1, 0.4, 0.2]]]], { dtype: 'float32' });
    const w = flat(mamWeight(main, sup, 1));
    close(w[0]!, 0, 0, 'agreement: weight 0');
    close(w[1]!, 0.5, 1e-6, 'pixel 1: max |S - M| over the classes');
    close(w[2]!, 0.4, 1e-6, 'pixel 2');
    const w2 = flat(mamWeight(main, sup, 2));
    close(w2[1]!, 0.25, 1e-6, 'gamma 2');
    // up: only where the main is below: pixel 1 (0.5 and 0.1, weight 0.5); mean over 2 x 3 entries
    close(mamLoss(main, sup, { mode: 'up', gamma: 1 }).item(), (0.5 * 0.5 + 0.5 * 0.1) / 6, 1e-6, 'up');
    close(mamLoss(main, sup, { mode: 'symmetric', gamma: 1 }).item(), (0.5 * 0.6 + 0.4 * 0.4) / 6, 1e-6, 'symmetric');
    close(mamLoss(sup, sup, { mode: 'symmetric', gamma: 1 }).item(), 0, 0, 'identical maps');
    const valid = tensor([[[true, false, true]]]);
    close(mamLoss(main, sup, { mode: 'up', gamma: 1, valid }).item(), 0, 0, 'padding left out');
    // The gradient pulls the main upward where it is below, and nowhere else.
    const m = main.clone().requiresGrad_(true);
    mamLoss(m, sup, { mode: 'up', gamma: 1 }).backward();
    const g = flat(m.grad!);
    assert.deepEqual(g.map((v) => (v < 0 ? -1 : v > 0 ? 1 : 0)), [0, -1, 0, 0, -1, 0]);
  });
});

class Two extends Module {
  readonly a: Tensor;
  readonly count: Tensor;
  constructor(a: number[], count: number) {
    super();
    this.a = this.registerParameter('a', tensor(a, { dtype: 'float32' }));
    this.count = this.registerBuffer('count', tensor([count], { dtype: 'int64' }));
  }
}

test('emaUpdate: target <- m target + (1 - m) source; integer buffers copied', () => {
  const target = new Two([1, 2], 3);
  const source = new Two([3, -2], 7);
  emaUpdate(target, source, 0.9);
  const a = flat(target.a);
  close(a[0]!, 0.9 * 1 + 0.1 * 3, 1e-6, 'a[0]');
  close(a[1]!, 0.9 * 2 + 0.1 * -2, 1e-6, 'a[1]');
  assert.deepEqual(flat(target.count), [7]);
  assert.deepEqual(flat(source.a), [3, -2], 'the source is unchanged');
  target.dispose();
  source.dispose();
});

const tinyBackbone = () => new TinyBackbone({ channels: 6, strided: 1 });

function batchOf(n: number, size: number) {
  const images = rand([n, 3, size, size]);
  const labels = tensor(Array.from({ length: n }, (_, i) => [i % 3 === 0 ? 1 : 0, 1, i % 2]), { dtype: 'float32' });
  return { images, labels, ids: Array.from({ length: n }, (_, i) => `i${i}`) };
}

test('a frozen SupportNet: loaded once at the first step, eval mode, no gradient; the MainNet trains', () => {
  manualSeed(5);
  // The "earlier run": a CAM network whose state the support loads.
  const earlier = new CamNet(tinyBackbone(), 3);
  let loads = 0;
  const method = new PixelSsMethod(tinyBackbone, {
    numClasses: 3, base: 'seam', pcmTaps: ['conv1', 'conv1'], support: 'frozen', supportMethod: 'cam',
    loadSupport: (into) => { loads++; into.loadStateDict(earlier.stateDict()); into.setFrozen(true); },
    mamScales: [0.5, 1],
  });
  const support = method.model.support;
  assert.ok(support instanceof CamNet);
  method.model.train();
  assert.equal(support.training, false, 'eval mode under model.train()');
  assert.ok(support.parameters().every((p) => !p.requiresGrad));
  const trainable = new Set(method.paramGroups().flatMap((g) => g.params));
  assert.ok(support.parameters().every((p) => !trainable.has(p)), 'no support parameter in the optimizer groups');
  assert.ok(method.model.main.proj.parameters().every((p) => trainable.has(p)), 'the projection head trains');

  const b = batchOf(4, 24);
  tidy(() => {
    const { loss, parts } = method.loss(b, { epoch: 0, step: 0, totalSteps: 1 });
    assert.deepEqual(Object.keys(parts!).sort(), ['cls', 'ecr', 'er', 'mam', 'min', 'rcm']);
    loss.backward();
  });
  assert.equal(loads, 1);
  tidy(() => {
    const { loss } = method.loss(b, { epoch: 0, step: 1, totalSteps: 2 });
    loss.backward();
  });
  assert.equal(loads, 1, 'loaded once');
  const theirs = earlier.stateDict();
  for (const [k, t] of support.stateDict()) assert.deepEqual(flat(t), flat(theirs.get(k)!), `support ${k} as loaded`);
  assert.ok(support.parameters().every((p) => p.grad === null), 'no gradient reached the support');
  assert.equal(support.training, false);
  const g = method.model.main.proj.weight.grad;
  assert.ok(g && flat(g).some((v) => v !== 0), 'the RCM reaches the projection head');
  const fc8 = (method.model.main.base as { fc8: { weight: Tensor } }).fc8.weight.grad;
  assert.ok(fc8 && flat(fc8).some((v) => v !== 0));

  // Inference is the MainNet's (SEAM: from the PCM), at the grid, the support untouched.
  const c = noGrad(() => method.cams(b.images));
  assert.deepEqual(c.shape, [4, 3, 12, 12], "at the grid (stride 2)");
  assert.equal(method.camNormalization, 'minmax');
  c.dispose();
  for (const t of [b.images, b.labels]) t.dispose();
  method.model.dispose();
  earlier.dispose();
});

test('an EMA SupportNet starts as the MainNet and follows it after each step; the ablation weights switch modules off', () => {
  manualSeed(6);
  const method = new PixelSsMethod(tinyBackbone, { numClasses: 3, base: 'cam', support: 'ema', emaMomentum: 0.75, mamScales: [1] });
  const main = method.model.main.stateDict();
  const sup = method.model.support.stateDict();
  assert.deepEqual([...sup.keys()], [...main.keys()]);
  for (const [k, t] of sup) assert.deepEqual(flat(t), flat(main.get(k)!), `${k} starts equal`);
  const before = new Map([...sup].map(([k, t]) => [k, flat(t)]));
  // One hand-made update of the main, then the hook.
  noGrad(() => { for (const p of method.model.main.parameters()) p.add_(0.5); });
  method.afterStep({ epoch: 0, step: 0, totalSteps: 1 });
  for (const [k, t] of sup) {
    const want = before.get(k)!.map((v) => 0.75 * v + 0.25 * (v + 0.5));
    flat(t).forEach((v, i) => close(v, want[i]!, 1e-5, `${k}[${i}]`));
  }
  assert.equal(method.model.support.training, false);
  method.model.dispose();

  const b = batchOf(2, 16);
  for (const [o, names] of [[{ lambdaMam: 0 }, ['cls', 'rcm']], [{ lambdaRcm: 0 }, ['cls', 'mam']]] as const) {
    manualSeed(6);
    const m = new PixelSsMethod(tinyBackbone, { numClasses: 3, base: 'cam', support: 'ema', ...o });
    tidy(() => assert.deepEqual(Object.keys(m.loss(b, { epoch: 0, step: 0, totalSteps: 1 }).parts!).sort(), names));
    m.model.dispose();
  }
  b.images.dispose();
  b.labels.dispose();
});

test('settings are checked: thresholds, momentum, scales, a frozen support without a source', () => {
  assert.throws(() => new PixelSsMethod(tinyBackbone, { numClasses: 3, regionThresholds: [0.5, 0.2] }), /regionThresholds/);
  assert.throws(() => new PixelSsMethod(tinyBackbone, { numClasses: 3, emaMomentum: 1 }), /emaMomentum/);
  assert.throws(() => new PixelSsMethod(tinyBackbone, { numClasses: 3, mamScales: [] }), /mamScales/);
  assert.throws(() => new PixelSsMethod(tinyBackbone, { numClasses: 3, support: 'frozen' }), /supportFrom/);
});
