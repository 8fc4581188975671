import assert from 'node:assert/strict';
import { test } from 'node:test';

import { F, manualSeed, memory, randn, tensor, tidy } from '../../src/engine/index.js';
import { BatchLoader } from '../../src/data/index.js';
import { CamMethod } from '../../src/methods/index.js';
import { train } from '../../src/train/index.js';
import { TinyBackbone, synthDataset, synthTransform } from './tiny.js';

test('CAM method: logits are GAP of the CAM (1x1 head without bias), loss is the multilabel soft margin', () => {
  manualSeed(0);
  const m = new CamMethod(new TinyBackbone(), { numClasses: 3 });
  tidy(() => {
    const x = randn([2, 3, 16, 16]);
    const y = tensor([[1, 0, 1], [0, 1, 0]], { dtype: 'float32' });
    const cams = m.cams(x);
    assert.deepEqual(cams.shape, [2, 3, 4, 4]);
    const f = m.backbone.forward(x).features;
    const z = m.model.classifier.logits(f);
    assert.ok(z.allclose(cams.mean([2, 3]), 1e-4, 1e-5), 'W.GAP(f) == GAP(W*f)');
    assert.ok(m.classify(x).allclose(z, 1e-6, 1e-7), 'classify gives the logits the loss trains');
    const { loss, parts } = m.loss({ images: x, labels: y, ids: ['a', 'b'] });
    assert.ok(Math.abs(loss.item() - F.multilabelSoftMarginLoss(z, y).item()) < 1e-6);
    assert.ok(parts && 'cls' in parts);
  });
  assert.equal(m.model.classifier.conv.bias, null, 'the head has no bias');
  const groups = m.paramGroups();
  assert.deepEqual(groups.map((g) => [g.name, g.lrMult]), [['backbone', 1], ['head', 10]]);
  assert.equal(groups[1]!.params.length, 1);
  m.model.dispose();
});

test('a few training steps on tiny synthetic data lower the loss (memory flat)', async () => {
  manualSeed(1);
  const method = new CamMethod(new TinyBackbone({ channels: 16 }), { numClasses: 3 });
  const dataset = synthDataset(32);
  const loader = new BatchLoader(dataset, synthTransform(24), { batchSize: 8, seed: 3, dropLast: true });
  const before = memory().liveTensors;
  const result = await train({
    method, loader, epochs: 12,
    optimizer: { lr: 0.2, momentum: 0.9, weightDecay: 1e-4, polyPower: 0.9 },
  });
  const after = memory().liveTensors;
  const first = result.epochLosses.slice(0, 2).reduce((a, b) => a + b) / 2;
  const last = result.epochLosses.slice(-2).reduce((a, b) => a + b) / 2;
  assert.equal(result.steps, 12 * 4);
  assert.ok(last < first * 0.5, `loss should fall: first epochs ${first.toFixed(4)}, last ${last.toFixed(4)}`);
  assert.ok(after - before <= 2, `live tensors grew from ${before} to ${after}`);
  method.model.dispose();
});
