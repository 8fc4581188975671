// DeepLab: the ignore-255 cross entropy against hand-computed values, the heads' shapes, ASPP as the sum of its
// branches, LargeFOV's rate-12 receptive field, the two dilated-conv implementations, and the parameter groups.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { F, type Tensor, manualSeed, noGrad, randn, tensor, tidy } from '../../src/engine/index.js';
import { AsppHead, AtrousConv2d, DeepLab, LargeFovHead, segmentationLoss } from '../../src/segmentation/index.js';
import { assertClose, randArray, vals } from '../helpers.js';
import { TinyBackbone } from '../methods/tiny.js';

const masksOf = (values: number[], shape: number[]): Tensor => tensor(BigInt64Array.from(values.map(BigInt)), { shape });

/** -log softmax(z)[t] in doubles. */
function nll(z: number[], t: number): number {
  const m = Math.max(...z);
  const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
  return lse - z[t]!;
}

test('loss: cross entropy averaged over the labelled pixels only (255 ignored), no upsampling needed', () => {
  tidy(() => {
    // N = 2, K = 3, 2 x 2 pixels; logits[n][k][y][x]
    const z = randArray(2 * 3 * 4, 11, -2, 2);
    const masks = [0, 2, 255, 1, /* image 2 */ 255, 255, 1, 0];
    const loss = segmentationLoss(tensor(Float32Array.from(z), { shape: [2, 3, 2, 2] }), masksOf(masks, [2, 2, 2]));
    let sum = 0;
    let count = 0;
    for (let n = 0; n < 2; n++) {
      for (let p = 0; p < 4; p++) {
        const t = masks[n * 4 + p]!;
        if (t === 255) continue;
        sum += nll([0, 1, 2].map((k) => z[(n * 3 + k) * 4 + p]!), t);
        count++;
      }
    }
    assertClose(loss, [sum / count], { rtol: 1e-5 });
  });
});

test('loss: logits are upsampled bilinearly with aligned corners to the mask size before the cross entropy', () => {
  tidy(() => {
    // 1 x 2 x 2 x 2 logits -> 5 x 5: with aligned corners, output (i, j) samples input (i / 4, j / 4).
    // (Half-pixel sampling would read (0.4 i - 0.3, ...), clamped: a different answer.)
    const z = [0.5, -1, 2, 0.25, /* class 1 */ -0.5, 1.5, 0, 1];
    const up = (k: number, i: number, j: number): number => {
      const g = (y: number, x: number) => z[k * 4 + y * 2 + x]!;
      const [y, x] = [i / 4, j / 4];
      const [y0, x0] = [Math.floor(y), Math.floor(x)];
      const [y1, x1] = [Math.min(1, y0 + 1), Math.min(1, x0 + 1)];
      const [fy, fx] = [y - y0, x - x0];
      return (1 - fy) * ((1 - fx) * g(y0, x0) + fx * g(y0, x1)) + fy * ((1 - fx) * g(y1, x0) + fx * g(y1, x1));
    };
    const masks = randArray(25, 12, 0, 2.6).map((v) => (v >= 2 ? 255 : Math.floor(v)));
    assert.ok(masks.includes(255) && masks.includes(0) && masks.includes(1));
    let sum = 0;
    let count = 0;
    masks.forEach((t, p) => {
      if (t === 255) return;
      const [i, j] = [Math.floor(p / 5), p % 5];
      sum += nll([up(0, i, j), up(1, i, j)], t);
      count++;
    });
    const loss = segmentationLoss(tensor(Float32Array.from(z), { shape: [1, 2, 2, 2] }), masksOf(masks, [1, 5, 5]));
    assertClose(loss, [sum / count], { rtol: 1e-5 });
  });
});

test('loss: a batch with every pixel ignored gives 0 and zero gradients, not NaN', () => {
  tidy(() => {
    const z = randn([2, 4, 3, 3]).requiresGrad_(true);
    const loss = segmentationLoss(z, masksOf(new Array(2 * 5 * 5).fill(255), [2, 5, 5]));
    assert.equal(loss.item(), 0);
    loss.backward();
    assert.ok(vals(z.grad!).every((g) => g === 0));
  });
});

test('loss: bad shapes and dtypes are reported with the tensors\' shapes', () => {
  tidy(() => {
    assert.throws(() => segmentationLoss(randn([2, 3, 4, 4]), masksOf([0, 0, 0, 0], [1, 2, 2])), /N x K x h x w logits and N x H x W masks, got \[2,3,4,4\] and \[1,2,2\]/);
    assert.throws(() => segmentationLoss(randn([1, 3, 2, 2]), tensor(new Float32Array(4), { shape: [1, 2, 2] })), /masks must be int64, got float32/);
  });
});

test('heads: LargeFOV and ASPP map N x C x h x w features to N x K x h x w logits', () => {
  manualSeed(1);
  const largefov = new LargeFovHead(6, 4, { channels: 16 });
  const aspp = new AsppHead(6, 4);
  tidy(() => {
    for (const [h, w] of [[13, 11], [5, 3], [41, 41]] as const) {
      const x = randn([2, 6, h, w]);
      assert.deepEqual(largefov.forward(x).shape, [2, 4, h, w]);
      assert.deepEqual(aspp.forward(x).shape, [2, 4, h, w]);
    }
  });
  largefov.dispose();
  aspp.dispose();
});

test('ASPP: the output is the sum of four 3x3 convolutions at rates 6, 12, 18, 24 (each to K classes)', () => {
  manualSeed(2);
  const aspp = new AsppHead(5, 3);
  tidy(() => {
    // Weights N(0, 0.01) are tiny; scale them up so that a wrong rate or a missing branch shows.
    noGrad(() => { for (const c of aspp.branches) c.weight.mul_(100); });
    const x = randn([2, 5, 30, 27]);
    let expected: Tensor | null = null;
    for (const [i, r] of [6, 12, 18, 24].entries()) {
      const c = aspp.branches[i]!;
      assert.deepEqual(c.weight.shape, [3, 5, 3, 3]);
      const y = F.conv2d(x, c.weight, c.bias, { padding: r, dilation: r });
      expected = expected ? expected.add(y) : y;
    }
    assertClose(aspp.forward(x), vals(expected!), { rtol: 1e-4, atol: 1e-5 });
    assert.deepEqual([...aspp.stateDict().keys()].sort(), ['c0.bias', 'c0.weight', 'c1.bias', 'c1.weight', 'c2.bias', 'c2.weight', 'c3.bias', 'c3.weight']);
  });
  aspp.dispose();
});

test('LargeFOV: an output pixel sees the input only at offsets 0 and +-12 (one 3x3 conv at rate 12, then 1x1s)', () => {
  manualSeed(3);
  const head = new LargeFovHead(4, 3, { channels: 8 });
  head.eval(); // BN with running statistics and no dropout: a per-pixel map after the dilated conv
  tidy(() => {
    const x = randn([1, 4, 25, 25]);
    const bumped = x.clone();
    noGrad(() => bumped.select(2, 0).select(2, 0).add_(5)); // input pixel (0, 0)
    const diff = head.forward(bumped).sub(head.forward(x)).abs().amax(1).select(0, 0); // 25 x 25
    const d = vals(diff);
    for (let y = 0; y < 25; y++) {
      for (let xx = 0; xx < 25; xx++) {
        const inField = (y === 0 || y === 12) && (xx === 0 || xx === 12);
        if (inField) assert.ok(d[y * 25 + xx]! > 1e-4, `output (${y}, ${xx}) should change`);
        else assert.ok(d[y * 25 + xx]! === 0, `output (${y}, ${xx}) should not change, changed by ${d[y * 25 + xx]}`);
      }
    }
  });
  head.dispose();
});

test('LargeFOV classifier init: N(0, 0.01) and zero bias by default (first loss ~ ln K); the codebase\'s Kaiming on request', () => {
  manualSeed(5);
  const K = 21;
  const normal = new LargeFovHead(16, K, { channels: 512 });
  const kaiming = new LargeFovHead(16, K, { channels: 512, classifierInit: 'kaiming' });
  const std = (t: Tensor) => noGrad(() => t.std().item());
  // 512 x 21 weights: the sample standard deviation is within 5 % of the target.
  assert.ok(Math.abs(std(normal.cls_conv.weight) - 0.01) < 5e-4, `normal: std ${std(normal.cls_conv.weight)}`);
  assert.deepEqual(vals(normal.cls_conv.bias!), new Array(K).fill(0));
  const kaimingStd = Math.sqrt(2 / K); // fan_out = K outputs x 1 x 1
  assert.ok(Math.abs(std(kaiming.cls_conv.weight) / kaimingStd - 1) < 0.05, `kaiming: std ${std(kaiming.cls_conv.weight)}`);
  // What the default buys: the first cross entropy on random features is within 0.05 of ln K (uniform logits).
  normal.train();
  tidy(() => {
    const f = randn([2, 16, 9, 9]);
    const masks = masksOf(Array.from({ length: 2 * 81 }, (_, i) => i % K), [2, 9, 9]);
    const loss = segmentationLoss(normal.forward(f), masks).item();
    assert.ok(Math.abs(loss - Math.log(K)) < 0.05, `first loss ${loss} vs ln K ${Math.log(K)}`);
  });
  normal.dispose();
  kaiming.dispose();
});

test('AtrousConv2d: the space-to-batch rewrite gives the direct kernel\'s values and gradients', () => {
  manualSeed(4);
  const a = new AtrousConv2d(3, 5, 12, { impl: 'direct' });
  const b = new AtrousConv2d(3, 5, 12, { impl: 'space-to-batch' });
  b.loadStateDict(a.stateDict());
  tidy(() => {
    const x = randn([2, 3, 17, 14]);
    const xa = x.clone().requiresGrad_(true);
    const xb = x.clone().requiresGrad_(true);
    const g = randn([2, 5, 17, 14]);
    const ya = a.forward(xa);
    const yb = b.forward(xb);
    assertClose(yb, vals(ya), { rtol: 1e-4, atol: 1e-5 });
    ya.mul(g).sum().backward();
    yb.mul(g).sum().backward();
    assertClose(xb.grad!, vals(xa.grad!), { rtol: 1e-4, atol: 1e-5 }, 'input grad');
    assertClose(b.weight.grad!, vals(a.weight.grad!), { rtol: 1e-4, atol: 1e-4 }, 'weight grad');
  });
  a.dispose();
  b.dispose();
});

test('DeepLab: K = classes + 1 logits at the output stride, its loss is the segmentation loss, head at headLrMult', () => {
  manualSeed(5);
  for (const head of ['largefov', 'aspp'] as const) {
    const net = new DeepLab(new TinyBackbone({ channels: 6, strided: 1 }), { numClasses: 3, head, headLrMult: 7 });
    assert.equal(net.numLabels, 4);
    net.model.eval(); // deterministic (no dropout, running BN statistics)
    tidy(() => {
      const images = randn([2, 3, 16, 12]);
      const logits = net.forward(images);
      assert.deepEqual(logits.shape, [2, 4, 8, 6]);
      const masks = masksOf(randArray(2 * 16 * 12, 9, 0, 5).map((v) => (v >= 4 ? 255 : Math.floor(v))), [2, 16, 12]);
      const { loss } = net.loss({ images, labels: randn([2, 3]), masks, ids: ['a', 'b'] }, { epoch: 0, step: 0, totalSteps: 1 });
      assertClose(loss, [segmentationLoss(logits, masks).item()], { rtol: 1e-6 });
      assert.throws(() => net.loss({ images, labels: randn([2, 3]), ids: ['a', 'b'] }, { epoch: 0, step: 0, totalSteps: 1 }), /withMask: true/);
    });
    const groups = net.paramGroups();
    assert.deepEqual(groups.map((g) => [g.name, g.lrMult]), [['backbone', 1], ['head', 7]]);
    const backbone = new Set(net.backbone.trainableParameters());
    const headParams = new Set(net.model.head.trainableParameters());
    assert.deepEqual(new Set(groups[0]!.params), backbone);
    assert.deepEqual(new Set(groups[1]!.params), headParams);
    assert.equal(backbone.size + headParams.size, net.model.trainableParameters().length, 'every parameter in exactly one group');
    assert.ok([...net.model.stateDict().keys()].every((k) => k.startsWith('backbone.') || k.startsWith('head.')));
    net.model.dispose();
  }
  assert.throws(() => new DeepLab(new TinyBackbone(), { numClasses: 0 }), /numClasses must be a positive integer/);
});

test("DeepLab headBatchNorm 'frozen': the head's BatchNorms are the identity in training, untrained, their statistics kept", () => {
  manualSeed(3);
  const frozen = new DeepLab(new TinyBackbone({ channels: 4 }), { numClasses: 2, dropout: 0, headBatchNorm: 'frozen' });
  const batch = new DeepLab(new TinyBackbone({ channels: 4 }), { numClasses: 2, dropout: 0 });
  const head = frozen.model.head as LargeFovHead;
  frozen.model.train();
  batch.model.train();
  tidy(() => {
    const f = randn([2, 4, 5, 5]);
    const conv = head.conv_fov.forward(f);
    // In training mode the frozen BN gives x / sqrt(1 + eps): the identity up to eps = 1e-5.
    assertClose(head.bn_fov.forward(conv), vals(conv.div(Math.sqrt(1 + 1e-5))), { rtol: 1e-5, atol: 1e-6 });
    const stats = head.bn_fov.stateDict();
    assertClose(stats.get('running_mean')!, new Array(512).fill(0));
    assertClose(stats.get('running_var')!, new Array(512).fill(1));
    // Training and inference compute the same logits; with batch statistics they do not.
    const x = randn([2, 3, 16, 16]);
    const trainOut = vals(frozen.forward(x));
    frozen.model.eval();
    assertClose(frozen.forward(x), trainOut, { rtol: 1e-5, atol: 1e-6 });
    const batchTrain = vals(batch.forward(x));
    batch.model.eval();
    const batchEval = vals(batch.forward(x));
    assert.ok(batchTrain.some((v, i) => Math.abs(v - batchEval[i]!) > 1e-3), 'batch statistics differ from the running ones');
  });
  const trainable = new Set(frozen.paramGroups()[1]!.params);
  for (const bn of [head.bn_fov, head.bn_fov2]) for (const p of bn.parameters()) assert.ok(!trainable.has(p), 'frozen BN parameters are not trained');
  assert.ok(trainable.has(head.conv_fov.weight) && trainable.has(head.cls_conv.weight));
  frozen.model.dispose();
  batch.model.dispose();
});
