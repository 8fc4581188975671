// TinyNet (the demo's from-scratch backbone): output and tap shapes at each output stride, the stride/dilation
// schedule, registry options, He initialisation, weights round trip, and one SGD step lowering a loss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { F, type Tensor, manualSeed, noGrad, randn, tensor, tidy } from '../../src/engine/index.js';
import { saveSafetensors } from '../../src/engine/serialize/index.js';
import { SGD } from '../../src/nn/index.js';
import { IMAGENET_NORM, TinyNet, createBackbone } from '../../src/backbones/index.js';
import { checkShapes } from './util.js';

test('features and taps have the declared channels and strides at output stride 8, 16 and 32', () => {
  for (const os of [8, 16, 32] as const) {
    const net = new TinyNet({ outputStride: os });
    assert.equal(net.outputStride, os);
    assert.equal(net.outChannels, 64);
    assert.deepEqual(net.taps, [
      { name: 'stem', channels: 16, stride: 2 },
      { name: 'layer1', channels: 32, stride: 4 },
      { name: 'layer2', channels: 64, stride: 8 },
      { name: 'layer3', channels: 64, stride: Math.min(16, os) },
    ]);
    checkShapes(net, 80, 80, 2);
    checkShapes(net, 67, 45); // odd sizes: every stride-2 step rounds up
    net.dispose();
  }
});

test('past the output stride a stage keeps stride 1, undilated by default, dilated as torchvision with dilate: true', () => {
  const schedule = (os: 8 | 16 | 32, dilate = false) => {
    const net = new TinyNet({ outputStride: os, dilate });
    const s = net.stageConfig.map((c) => [c.stride, c.dilations]);
    net.dispose();
    return s;
  };
  assert.deepEqual(schedule(32), [[2, [1]], [2, [1, 1]], [2, [1, 1]], [2, [1]], [2, [1]]]);
  assert.deepEqual(schedule(16), [[2, [1]], [2, [1, 1]], [2, [1, 1]], [2, [1]], [1, [1]]]);
  assert.deepEqual(schedule(8), [[2, [1]], [2, [1, 1]], [2, [1, 1]], [1, [1]], [1, [1]]]);
  // torchvision: the first conv of a stage that stops striding keeps the previous rate; the rate then doubles.
  assert.deepEqual(schedule(8, true), [[2, [1]], [2, [1, 1]], [2, [1, 1]], [1, [1]], [1, [2]]]);
  assert.deepEqual(schedule(16, true), [[2, [1]], [2, [1, 1]], [2, [1, 1]], [2, [1]], [1, [1]]]);
  // The dilated net keeps the shapes.
  const dilated = new TinyNet({ outputStride: 8, dilate: true });
  checkShapes(dilated, 40, 56);
  dilated.dispose();
});

test('the registry builds it by name with the options it accepts, and refuses others', () => {
  const net = createBackbone('tinynet', { outputStride: 16, weights: undefined });
  assert.ok(net instanceof TinyNet);
  assert.equal(net.name, 'tinynet');
  assert.equal(net.outputStride, 16);
  assert.deepEqual(net.inputNorm, IMAGENET_NORM);
  net.dispose();
  assert.throws(() => createBackbone('tinynet', { padding: 'same' }), /backbone 'tinynet': unknown option 'padding'/);
  assert.throws(() => createBackbone('tinynet', { outputStride: 4 }), /tinynet: outputStride must be one of 8, 16, 32, got 4/);
});

test('random init: He normal on the convolutions (std sqrt(2 / fan_out)), BN at identity, BN trainable', () => {
  manualSeed(3);
  const net = new TinyNet();
  const sd = net.stateDict();
  // layer2.1.conv: 64 -> 64, 3x3: fan_out = 64 * 9; 36,864 draws, so the sample std is within ~1 % of it.
  const w = sd.get('layer2.1.conv.weight')!;
  assert.deepEqual(w.shape, [64, 64, 3, 3]);
  const std = Math.sqrt(w.square().mean().item());
  const expected = Math.sqrt(2 / (64 * 9));
  assert.ok(Math.abs(std / expected - 1) < 0.03, `std ${std} vs ${expected}`);
  assert.deepEqual([...sd.get('stem.0.bn.weight')!.toFloat32Array()], new Array(16).fill(1));
  assert.ok(!sd.has('stem.0.conv.bias'), 'convolutions before BN have no bias');
  // 7 convolutions and 7 BNs (weight and bias each) train.
  assert.equal(net.trainableParameters().length, 21);
  net.dispose();
});

test('weights saved from one TinyNet, or a weakseg model file on a TinyNet, load by name (strict)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-tinynet-'));
  try {
    manualSeed(1);
    const a = new TinyNet();
    const path = join(dir, 'tiny.safetensors');
    saveSafetensors(path, a.stateDict());
    manualSeed(2);
    const b = createBackbone('tinynet', { weights: path }) as TinyNet;
    assert.equal(b.loadReport?.missing.length, 0);
    a.eval();
    b.eval();
    noGrad(() => tidy(() => {
      const x = randn([1, 3, 32, 32]);
      assert.ok(a.forward(x).features.allclose(b.forward(x).features, 0, 0), 'same weights, same output');
    }));
    // A weakseg model file (weakseg train's model.safetensors): its backbone.* tensors load, the head is ignored.
    const modelPath = join(dir, 'model.safetensors');
    const sd = new Map<string, Tensor>([...a.stateDict()].map(([k, v]) => [`backbone.${k}`, v]));
    sd.set('classifier.conv.weight', randn([4, 64, 1, 1]));
    saveSafetensors(modelPath, sd, { format: 'weakseg-model/1', method: 'cam', backbone: 'tinynet' });
    manualSeed(4);
    const c = createBackbone('tinynet', { weights: modelPath }) as TinyNet;
    c.eval();
    noGrad(() => tidy(() => {
      const x = randn([1, 3, 24, 40]);
      assert.ok(a.forward(x).features.allclose(c.forward(x).features, 0, 0), 'the model file\'s backbone');
    }));
    saveSafetensors(modelPath, sd, { format: 'weakseg-model/1', method: 'cam', backbone: 'mobilenet_v2' });
    assert.throws(() => createBackbone('tinynet', { weights: modelPath }), /a weakseg model on backbone 'mobilenet_v2', not tinynet/);
    a.dispose();
    b.dispose();
    c.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('one SGD step on a tiny batch lowers a classification loss computed on its features', () => {
  manualSeed(5);
  const net = new TinyNet();
  // A linear readout of the pooled features, 2 classes; the loss before and after one step on the same batch.
  const head = randn([2, 64]).mul(0.1).requiresGrad_(true);
  const x = randn([4, 3, 48, 48]);
  const y = tensor([0, 1, 1, 0], { dtype: 'int64' });
  const opt = new SGD([{ params: [...net.trainableParameters(), head], lrMult: 1 }], { lr: 0.1, momentum: 0 });
  const lossOf = () => F.crossEntropy(F.linear(F.globalAvgPool(net.forward(x).features), head), y);
  const before = tidy(() => {
    const l = lossOf();
    opt.zeroGrad();
    l.backward();
    opt.step();
    return l.item();
  });
  // BN in training mode normalises with the batch's statistics both times, so the losses are comparable.
  const after = tidy(() => lossOf().item());
  assert.ok(after < before, `loss should fall after one step: ${before} -> ${after}`);
  net.dispose();
});
