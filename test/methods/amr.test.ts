// AMR (src/methods/amr.ts): the Gaussian modulation and the AMM on hand-computed tensors, the spotlight's detach
// semantics under both variants, the CPS term, the learning-rate groups, the builder's spotlight loading and the
// AMM keys being the only ones missing when ImageNet-layout weights load.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { F, type Tensor, cat, manualSeed, noGrad, randn, tensor, tidy, zeros } from '../../src/engine/index.js';
import { decodeImage } from '../../src/data/index.js';
import { saveSafetensors } from '../../src/engine/serialize/index.js';
import type { Linear } from '../../src/nn/index.js';
import { existsSync } from 'node:fs';
import { mobilenetV2, resnet50 } from '../../src/backbones/index.js';
import { SHARED } from '../backbones/util.js';
import {
  Amm, AmrMethod, ChannelAmm, SpatialAmm, amr, ammBlocks, flipCombine, gaussModulation, gaussProjection, gradCamMaps,
} from '../../src/methods/amr.js';
import { CamNet } from '../../src/methods/cam.js';
import { methodNames } from '../../src/methods/index.js';
import type { Method, MethodContext } from '../../src/methods/method.js';
import { loadModelWeights } from '../../src/train/checkpoint.js';
import { assertClose, vals } from '../helpers.js';
import { TinyBackbone, synthDataset, synthTransform } from './tiny.js';
import { imageCams, localizeContexts } from '../../src/cams/localize.js';
import { multiScaleCam } from '../../src/cams/infer.js';

const SQRT_2PI = Math.sqrt(2 * Math.PI);
const gauss = (x: number, m: number, s: number) => Math.exp(-((x - m) ** 2) / (2 * s * s)) / (SQRT_2PI * s);
const meanOf = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
const stdOf = (v: number[]) => Math.sqrt(v.reduce((a, b) => a + (b - meanOf(v)) ** 2, 0) / (v.length - 1));

test('AMR is registered', () => {
  assert.ok(methodNames().includes('amr'));
});

test('Gaussian modulation: the scalar mean of the whole tensor gets the peak weight 1/(sqrt(2 pi) std), std unbiased', () => tidy(() => {
  const a = [1, 2, 3, 4, 5, 3];
  const t = tensor(a, { dtype: 'float32', shape: [2, 3] });
  const w = vals(gaussModulation(t));
  const m = meanOf(a);
  const s = stdOf(a);
  assert.equal(m, 3);
  assertClose(w, a.map((x) => gauss(x, m, s)), { rtol: 1e-6 }, 'G(a)');
  const peak = 1 / (SQRT_2PI * s);
  assertClose([w[2]!, w[5]!], [peak, peak], { rtol: 1e-6 }, 'entries at the mean');
  assert.ok(w.every((v, i) => a[i] === 3 || v < peak), 'every other entry is damped');
  assert.ok(w[0]! < w[1]! && Math.abs(w[0]! - w[4]!) < 1e-9, 'symmetric, falling away from the mean');
  assertClose(gaussProjection(tensor([0, 2], { dtype: 'float32' }), 0, 2), [1 / (2 * SQRT_2PI), Math.exp(-0.5) / (2 * SQRT_2PI)], { rtol: 1e-6 }, 'G with numbers');
}));

test("Gaussian modulation, gaussianScale 'mean': the code's weights divided by their mean (unit mean, the same ratios, the divisor detached)", () => tidy(() => {
  const a = [1, 2, 3, 4, 5, 3];
  const m = meanOf(a);
  const s = stdOf(a);
  const g = a.map((x) => gauss(x, m, s));
  const gm = meanOf(g);
  const t = tensor(a, { dtype: 'float32', shape: [2, 3] }).requiresGrad_(true);
  const w = gaussModulation(t, 'mean');
  assertClose(w, g.map((v) => v / gm), { rtol: 1e-6 }, 'G / mean(G)');
  assertClose([meanOf(vals(w))], [1], { rtol: 1e-6 }, 'unit mean');
  w.sum().backward();
  // with the divisor a constant, d/dx (G(x) / gm) = -G(x) (x - m) / (s^2 gm)
  assertClose(t.grad!, a.map((x) => (-gauss(x, m, s) * (x - m)) / (s * s * gm)), { rtol: 1e-5 }, 'dG/da');
}));

test('Gaussian modulation: mean and std are detached (the gradient is the Gaussian\'s own derivative only)', () => tidy(() => {
  const a = tensor([0, 1, 4], { dtype: 'float32', shape: [3] }).requiresGrad_(true);
  gaussModulation(a).sum().backward();
  const m = 5 / 3;
  const s = stdOf([0, 1, 4]);
  // d/dx G(x) = -G(x) (x - m) / s^2 with m and s constants
  assertClose(a.grad!, [0, 1, 4].map((x) => (-gauss(x, m, s) * (x - m)) / (s * s)), { rtol: 1e-5 }, 'dG/da');
}));

test('ChannelAMM: x G(MLP(GAP(x))) on a hand-set identity MLP', () => tidy(() => {
  const gate = new ChannelAmm(3, 1);
  noGrad(() => {
    for (const i of [1, 3]) {
      const lin = gate.mlp.at(i) as Linear;
      lin.weight.copy_(tensor([1, 0, 0, 0, 1, 0, 0, 0, 1], { dtype: 'float32', shape: [3, 3] }));
      lin.bias!.zero_();
    }
  });
  // channels constant 1, 2, 3 over a 2x2 map: a = [1, 2, 3], mean 2, std 1
  const x = tensor([1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3], { dtype: 'float32', shape: [1, 3, 2, 2] });
  const out = vals(gate.forward(x));
  const w = [1, 2, 3].map((c) => gauss(c, 2, 1));
  assertClose(out, [1, 2, 3].flatMap((c, i) => Array(4).fill(c * w[i]!)), { rtol: 1e-6 });
  assert.ok(w[1]! > w[0]! && w[1]! > w[2]!, 'the mean channel gets the most weight');
}));

test('SpatialAMM: x G(BN(conv7x7([max, mean]))) with batch statistics (the code), on a conv that picks the mean', () => tidy(() => {
  const gate = new SpatialAmm(true);
  noGrad(() => {
    const w = zeros([1, 2, 7, 7]);
    w.select(1, 1).select(1, 3).select(1, 3).fill_(1);
    gate.spatial.conv.weight.copy_(w);
  });
  gate.eval(); // the code's BN still uses the batch statistics
  // two channels, 1 x 4 pixels: channel mean per pixel = [1, 2, 3, 6]
  const x = tensor([0, 2, 2, 4, 2, 2, 4, 8], { dtype: 'float32', shape: [1, 2, 1, 4] });
  const m = [1, 2, 3, 6];
  const mu = meanOf(m);
  const varB = m.reduce((a, b) => a + (b - mu) ** 2, 0) / m.length;
  const s = m.map((v) => (v - mu) / Math.sqrt(varB + 1e-5));
  const w = s.map((v) => gauss(v, meanOf(s), stdOf(s)));
  const expected = [0, 2, 2, 4, 2, 2, 4, 8].map((v, i) => v * w[i % 4]!);
  assertClose(gate.forward(x), expected, { rtol: 1e-5, atol: 1e-6 });
  // the paper variant's BN uses its running statistics (mean 0, var 1 at init) in eval mode
  const paper = new SpatialAmm(false);
  noGrad(() => paper.spatial.conv.weight.copy_(gate.spatial.conv.weight));
  paper.eval();
  const sr = m.map((v) => v / Math.sqrt(1 + 1e-5));
  assertClose(paper.forward(x), [0, 2, 2, 4, 2, 2, 4, 8].map((v, i) => v * gauss(sr[i % 4]!, meanOf(sr), stdOf(sr))), { rtol: 1e-5, atol: 1e-6 });
}));

test('AMM: channel then spatial modulation, keys as net/amm.py', () => tidy(() => {
  manualSeed(1);
  const amm = new Amm(32);
  assert.deepEqual([...amm.stateDict().keys()].sort(), [
    'ChannelAMM.mlp.1.bias', 'ChannelAMM.mlp.1.weight', 'ChannelAMM.mlp.3.bias', 'ChannelAMM.mlp.3.weight',
    'SpatialAMM.spatial.bn.bias', 'SpatialAMM.spatial.bn.num_batches_tracked', 'SpatialAMM.spatial.bn.running_mean',
    'SpatialAMM.spatial.bn.running_var', 'SpatialAMM.spatial.bn.weight', 'SpatialAMM.spatial.conv.weight',
  ]);
  assert.deepEqual(amm.stateDict().get('ChannelAMM.mlp.1.weight')!.shape, [2, 32]);
  const x = randn([2, 32, 5, 5]);
  assertClose(amm.forward(x), vals(amm.spatialGate.forward(amm.channel.forward(x))), { rtol: 1e-6 });
}));

function tinyAmr(variant: 'code' | 'paper') {
  manualSeed(7);
  return new AmrMethod(new TinyBackbone({ channels: 6 }), new TinyBackbone({ channels: 6 }), { numClasses: 3, variant, frozenStem: [] });
}

const grads = (ps: Tensor[]) => ps.map((p) => p.grad ? vals(p.grad).reduce((a, b) => a + Math.abs(b), 0) : 0);

test("spotlight detach (variant 'code'): its backbone gets no gradient and no lr group, its classifier learns through L_cps only", () => tidy(() => {
  const m = tinyAmr('code');
  m.model.train();
  const images = randn([2, 3, 16, 16]);
  const labels = tensor([1, 0, 1, 0, 1, 1], { dtype: 'float32', shape: [2, 3] });
  const out = m.loss({ images, labels, ids: ['a', 'b'] }, { epoch: 0, step: 0, totalSteps: 1 });
  out.loss.backward();
  const { spotlight, compensation } = m.model;
  assert.ok(grads(spotlight.backbone.parameters()).every((g) => g === 0), 'spotlight backbone: no gradient');
  assert.ok(grads(compensation.backbone.parameters()).every((g) => g > 0), 'compensation backbone learns');
  assert.ok(grads([spotlight.classifier.weight])[0]! > 0, 'spotlight classifier learns');
  // its gradient is the CPS term's alone: 0.05 d L_cps / d W_s
  const wGrad = vals(spotlight.classifier.weight.grad!);
  spotlight.classifier.weight.grad = null;
  const { camS, camC } = m.forwardBranches(images);
  m.cpsLoss(camS, camC).mul(0.05).backward();
  assertClose(vals(spotlight.classifier.weight.grad!), wGrad, { rtol: 1e-5, atol: 1e-9 }, 'W_s gradient = 0.05 dL_cps/dW_s');
  const groups = m.paramGroups();
  assert.deepEqual(groups.map((g) => [g.name, g.params.length, g.lrMult]), [['spotlight', 0, 1], ['compensation', 4, 10], ['spotlight classifier', 1, 1], ['compensation classifier', 1, 1]]);
  assert.equal(out.parts!.clsS!.requiresGrad, false, 'the spotlight logits are detached');
}));

test("variant 'paper': both branches learn (mutual supervision)", () => tidy(() => {
  const m = tinyAmr('paper');
  m.model.train();
  const out = m.loss({ images: randn([2, 3, 16, 16]), labels: tensor([1, 0, 1, 0, 1, 1], { dtype: 'float32', shape: [2, 3] }), ids: ['a', 'b'] });
  out.loss.backward();
  assert.ok(grads(m.model.spotlight.backbone.parameters()).every((g) => g > 0));
  assert.equal(m.paramGroups()[0]!.params.length, 4);
}));

test('L_cps: the code flip-combines items 0 and 1; the paper averages |cam_s - cam_c| over every image', () => tidy(() => {
  // 3 images, 1 class, 1 x 2 maps
  const camS = tensor([1, 2, 3, 4, 5, 6], { dtype: 'float32', shape: [3, 1, 1, 2] });
  const camC = tensor([0, 0, 1, 1, 9, 9], { dtype: 'float32', shape: [3, 1, 1, 2] });
  // code: P(S) = [1 + 4, 2 + 3] = [5, 5], P(C) = [0 + 1, 0 + 1] = [1, 1]: mean |.| = 4; image 2 is ignored
  assertClose(tinyAmr('code').cpsLoss(camS, camC), [4], { rtol: 1e-6 });
  // paper: |1|,|2|,|2|,|3|,|4|,|3| -> 15 / 6
  assertClose(tinyAmr('paper').cpsLoss(camS, camC), [15 / 6], { rtol: 1e-6 });
  assertClose(flipCombine(camS), [5, 5]);
  assert.throws(() => flipCombine(camS.narrow(0, 0, 1)), /batch items 0 and 1/);
}));

test('total loss = 0.5 cls_s + 0.5 cls_c + 0.05 cps', () => tidy(() => {
  const m = tinyAmr('code');
  const out = m.loss({ images: randn([2, 3, 16, 16]), labels: tensor([1, 0, 1, 0, 1, 1], { dtype: 'float32', shape: [2, 3] }), ids: ['a', 'b'] });
  const p = out.parts!;
  assertClose(out.loss, [0.5 * p.clsS!.item() + 0.5 * p.clsC!.item() + 0.05 * p.cps!.item()], { rtol: 1e-5 });
}));

test('Grad-CAM in closed form equals autograd of the sum-pooled ReLU(cam) with the code\'s positive-count weights', () => tidy(() => {
  manualSeed(2);
  const f = randn([2, 5, 3, 4]).relu();
  const w = randn([3, 5, 1, 1]);
  const { maps } = gradCamMaps(f, w);
  for (let c = 0; c < 3; c++) {
    const g = tidy(() => {
      const ff = f.detach().requiresGrad_(true);
      const score = ff.mul(w.select(0, c).view(1, 5, 1, 1)).sum(1).relu().sum();
      score.backward();
      return ff.grad!;
    });
    const gv = vals(g);
    const positive = gv.filter((v) => v > 0).length;
    const fv = vals(f.detach());
    for (let n = 0; n < 2; n++) {
      const alpha = Array.from({ length: 5 }, (_, k) => {
        let s = 0;
        for (let p = 0; p < 12; p++) s += gv[n * 60 + k * 12 + p]!;
        return s / (positive + 1e-12);
      });
      const expected = Array.from({ length: 12 }, (_, p) => Math.max(0, alpha.reduce((a, al, k) => a + al * fv[n * 60 + k * 12 + p]!, 0)));
      assertClose(maps.select(0, n).select(0, c), expected, { rtol: 1e-5, atol: 1e-6 }, `class ${c} image ${n}`);
    }
  }
}));

test('the builder loads the spotlight from a CAM model file and demands one; ImageNet weights miss only the AMM keys', (t) => tidy(() => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-amr-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  manualSeed(11);
  const camRun = new CamNet(new TinyBackbone({ channels: 6 }), 3);
  const file = join(dir, 'model.safetensors');
  saveSafetensors(file, camRun.stateDict());
  const context: MethodContext = {
    numClasses: 3, headLrMult: 10,
    backbone: () => new TinyBackbone({ channels: 6 }),
    loadModel: (into, source, o) => { loadModelWeights(source, into, o); },
  };
  assert.throws(() => amr.build(amr.settings.parse({ frozenStem: [] }), context), /method\.spotlight must name a trained CAM run/);
  const m = amr.build(amr.settings.parse({ frozenStem: [], spotlight: dir }), context) as AmrMethod;
  for (const [k, v] of camRun.stateDict()) assert.deepEqual(vals(m.model.spotlight.stateDict().get(k)!), vals(v), k);
  assert.throws(() => amr.build(amr.settings.parse({ frozenStem: [], spotlight: join(dir, 'none') }), context), /no trained model|no such model file/);

  // A torchvision-layout ResNet-50 state dict loads into the AMM backbone with exactly the AMM keys missing: 16 blocks
  // x 9 (num_batches_tracked counters are filled in, as torch does for files without them).
  const plain = resnet50({ outputStride: 16 });
  const weights = join(dir, 'resnet50.safetensors');
  saveSafetensors(weights, plain.stateDict());
  plain.dispose();
  const hooked = resnet50({ outputStride: 16, weights, blocks: ammBlocks() });
  const missing = hooked.loadReport!.allowedMissing ?? [];
  assert.equal(missing.length, 16 * 9);
  assert.ok(missing.every((k) => /^layer[1-4]\.\d+\.amm\.(ChannelAMM|SpatialAMM)\./.test(k)), missing.find((k) => !k.includes('.amm.')));
  assert.deepEqual(hooked.loadReport!.missing, []);
  assert.ok(missing.includes('layer4.2.amm.SpatialAMM.spatial.conv.weight') && missing.includes('layer1.0.amm.ChannelAMM.mlp.3.bias'));
  hooked.dispose();
}));

test('AMR inference: each branch normalised on its own, fused with its weight (0.5 / 0.5 by default, as settings)', async () => {
  const m = new AmrMethod(new TinyBackbone({ channels: 6 }), new TinyBackbone({ channels: 6 }),
    { numClasses: 3, frozenStem: [], spotlightWeight: 0.3, compensationWeight: 0.7 });
  m.model.eval();
  const data = synthDataset(4);
  const contexts = localizeContexts(data, synthTransform(16), { scales: [1, 0.5], flip: true });
  const item = data.items[0]!;
  const ctx = contexts(item);
  const image = await ctx.loadImage(item);
  const fused = await imageCams(m, image, item.labels, { context: ctx });
  const branchCam = (net: CamNet) => multiScaleCam({ numClasses: 3, cams: (x: Tensor) => net.classifier.cams(net.backbone.forward(x).features) } as unknown as Method,
    image, item.labels, { scales: [1, 0.5], flip: true, normalization: 'max' });
  const s = branchCam(m.model.spotlight);
  const c = branchCam(m.model.compensation);
  assertClose(fused, vals(s.mul(0.3).add(c.mul(0.7))), { rtol: 1e-5, atol: 1e-6 });
  // Grad-CAM per branch: the maps come from gradCamMaps instead of ReLU(CAM)
  const g = new AmrMethod(new TinyBackbone({ channels: 6 }), new TinyBackbone({ channels: 6 }), { numClasses: 3, frozenStem: [], branchMap: 'gradcam' });
  const src = g.branchSource(g.model.spotlight);
  assert.ok(src.maps);
  const x = randn([2, 3, 16, 16]);
  const f = g.model.spotlight.backbone.forward(x).features;
  assertClose(src.maps(x).maps, vals(gradCamMaps(f, g.model.spotlight.classifier.weight).maps), { rtol: 1e-6 });
  for (const t of [fused, s, c, image, x, f]) t.dispose();
});

test('AMMs go only into blocks with a shortcut: MobileNetV2 keeps 10 of 17, and its compensation features stay alive', (t) => tidy(() => {
  manualSeed(0);
  const net = mobilenetV2({ outputStride: 8, blocks: ammBlocks() });
  const withAmm = [...net.stateDict().keys()].filter((k) => k.endsWith('.amm.SpatialAMM.spatial.conv.weight')).map((k) => Number(k.split('.')[1]));
  assert.deepEqual(withAmm.sort((a, b) => a - b), [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]);
  net.dispose();
  // With an AMM in a block without a shortcut, the unscaled Gaussian (peak 1/(sqrt(2 pi) std)) scaled the whole
  // signal; after MobileNetV2's 7 such blocks the ImageNet network's features were exactly 0.
  const weights = join(SHARED, 'weights', 'mobilenet_v2_imagenet.safetensors');
  if (!existsSync(weights)) {
    t.skip(`needs ${weights} (../shared is absent)`);
    return;
  }
  const plain = mobilenetV2({ outputStride: 8, weights });
  const hooked = mobilenetV2({ outputStride: 8, weights, blocks: ammBlocks() });
  plain.eval();
  hooked.eval();
  const x = randn([2, 3, 64, 64]).clamp(-1, 1);
  const [a, b] = noGrad(() => [plain.forward(x).features, hooked.forward(x).features]);
  const mean = b.abs().mean().item();
  assert.ok(mean > 0.05 * a.abs().mean().item(), `compensation features ${mean} against ${a.abs().mean().item()} without AMMs`);
  plain.dispose();
  hooked.dispose();
}));

test("gaussianScale 'mean' keeps MobileNetV2's ImageNet features at their size on real images; the code's scale shrinks them", async (t) => {
  // At initialisation the code's Gaussian damps every residual branch (its peak is 1/(sqrt(2 pi) sigma)); 'mean'
  // keeps the relative weighting at the branch's own scale (README, AMR; bench/amr-probe.ts measures more).
  const weights = join(SHARED, 'weights', 'mobilenet_v2_imagenet.safetensors');
  const images = ['2007_000063', '2007_000332'].map((id) => join(SHARED, 'data', 'voc-mini', 'JPEGImages', `${id}.jpg`));
  if (!existsSync(weights) || !images.every(existsSync)) {
    t.skip(`needs ${weights} and voc-mini images (../shared is absent)`);
    return;
  }
  const decoded = await Promise.all(images.map((p) => decodeImage(p)));
  tidy(() => {
    const x = cat(decoded.map((im) => F.interpolate(
      tensor(im.data, { shape: [1, im.height, im.width, 3] }).permute([0, 3, 1, 2]).float().div(127.5).sub(1),
      { size: [160, 160], mode: 'bilinear' })), 0);
    const size = (o: { gaussianScale?: 'code' | 'mean' } | null) => {
      manualSeed(0);
      const net = mobilenetV2({ outputStride: 8, weights, ...(o ? { blocks: ammBlocks(o) } : {}) }).eval();
      const v = noGrad(() => net.forward(x).features.abs().mean().item());
      net.dispose();
      return v;
    };
    const plain = size(null);
    const code = size({ gaussianScale: 'code' });
    const mean = size({ gaussianScale: 'mean' });
    assert.ok(code < 0.75 * plain, `code's scale: mean |feature| ${code} against the plain network's ${plain}`);
    assert.ok(Math.abs(Math.log(mean / plain)) < Math.log(1.25), `scale 'mean': mean |feature| ${mean} against the plain network's ${plain}`);
  });
});
