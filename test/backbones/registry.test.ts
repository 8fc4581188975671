// createBackbone: every name builds the right backbone with its options; unknown names and options are
// clear errors; normalizeInput maps [0, 1] pixels with a backbone's InputNorm.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { dispose, memory, noGrad, randn, tensor, tidy } from '../../src/engine/index.js';
import {
  BACKBONE_NAMES, IMAGENET_NORM, MobileNetV2, ResNet, ResNet38, createBackbone, isBackboneName, normalizeInput,
} from '../../src/backbones/index.js';
import { assertClose } from '../helpers.js';
import './util.js'; // test settings (threads)

test('createBackbone builds each registered backbone with its options', () => {
  assert.deepEqual(BACKBONE_NAMES, ['mobilenet_v2', 'resnet50', 'resnet101', 'resnet38', 'tinynet', 'vgg16']);
  const mnv2 = createBackbone('mobilenet_v2', { outputStride: 16, padding: 'same' });
  assert.ok(mnv2 instanceof MobileNetV2);
  assert.equal(mnv2.name, 'mobilenet_v2');
  assert.equal(mnv2.outputStride, 16);
  assert.equal(mnv2.outChannels, 1280);
  assert.equal((mnv2 as MobileNetV2).padding, 'same');
  mnv2.dispose();
  for (const name of ['resnet50', 'resnet101'] as const) {
    const r = createBackbone(name, { outputStride: 8 });
    assert.ok(r instanceof ResNet);
    assert.equal(r.name, name);
    assert.equal(r.outputStride, 8);
    assert.equal(r.outChannels, 2048);
    r.dispose();
  }
  const r38 = createBackbone('resnet38');
  assert.ok(r38 instanceof ResNet38);
  assert.equal(r38.outputStride, 8);
  assert.equal(r38.outChannels, 4096);
  assert.deepEqual(r38.inputNorm, IMAGENET_NORM);
  r38.dispose();
  const vgg = createBackbone('vgg16', { outputStride: 8 });
  assert.deepEqual([vgg.name, vgg.outputStride, vgg.outChannels], ['vgg16', 8, 512]);
  vgg.dispose();
  // Default output strides: 8 for MobileNetV2 (the reference implementation's), 16 for ResNets (IRN's).
  const d1 = createBackbone('mobilenet_v2');
  const d2 = createBackbone('resnet50');
  assert.deepEqual([d1.outputStride, d2.outputStride], [8, 16]);
  d1.dispose();
  d2.dispose();
});

test('unknown names and options are errors that list the known ones', () => {
  assert.throws(() => createBackbone('resnet18'),
    /unknown backbone 'resnet18' \(known: mobilenet_v2, resnet50, resnet101, resnet38, tinynet, vgg16\)/);
  assert.throws(() => createBackbone('resnet50', { outputstride: 8 }),
    /backbone 'resnet50': unknown option 'outputstride' \(options: weights, strict, outputStride, dilate/);
  assert.throws(() => createBackbone('resnet38', { padding: 'same', dilate: true }),
    /unknown options 'padding', 'dilate'/);
  assert.throws(() => createBackbone('resnet50', { outputStride: 4 }), /outputStride must be one of 8, 16, 32, got 4/);
  assert.throws(() => createBackbone('mobilenet_v2', { weights: '/nonexistent/weights.safetensors' }), /nonexistent/);
  assert.ok(isBackboneName('resnet38'));
  assert.ok(!isBackboneName('toString'));
});

test('normalizeInput: (x - mean) / std per channel', () => {
  tidy(() => {
    const x = tensor([[[[0, 1]], [[0.5, 0.25]], [[1, 0]]]]); // 1 x 3 x 1 x 2
    assertClose(normalizeInput(x, { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] }), [-1, 1, 0, -0.5, 1, -1]);
    assertClose(normalizeInput(x, IMAGENET_NORM), [
      -0.485 / 0.229, (1 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.25 - 0.456) / 0.224,
      (1 - 0.406) / 0.225, -0.406 / 0.225,
    ], { rtol: 1e-5, atol: 1e-6 });
    assert.throws(() => normalizeInput(tensor([[1, 2]]), IMAGENET_NORM), /expected N x 3 x H x W/);
  });
});

test('forward frees its intermediates: only the features and the requested taps stay alive', () => {
  for (const [name, size] of [['mobilenet_v2', 37], ['resnet50', 37], ['resnet38', 21]] as const) {
    const b = createBackbone(name, name === 'resnet50' ? { outputStride: 8 } : {});
    const x = randn([1, 3, size, size]);
    const taps = b.taps.slice(0, 2).map((t) => t.name);
    for (const mode of ['eval', 'train'] as const) {
      b[mode]();
      const before = memory().liveTensors;
      const out = mode === 'eval' ? noGrad(() => b.forward(x, taps)) : b.forward(x, taps);
      assert.equal(memory().liveTensors - before, 1 + taps.length, `${name} ${mode}: live tensors after forward`);
      dispose(out);
      assert.equal(memory().liveTensors, before);
    }
    x.dispose();
    b.dispose();
  }
});
