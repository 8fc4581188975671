// ResNet-50/101: torchvision key layout, strides and dilations at OS 8/16/32 (torchvision's
// replace_stride_with_dilation, and IRN's stride-only variant), output and tap shapes on an odd-sized
// input, freezing the stem, and a weights round trip through safetensors.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { noGrad, randn, tidy } from '../../src/engine/index.js';
import { saveSafetensors } from '../../src/engine/serialize/index.js';
import { StateDictError } from '../../src/nn/index.js';
import { ResNet, resnet101, resnet50 } from '../../src/backbones/index.js';
import { vals } from '../helpers.js';
import { checkShapes } from './util.js';

const TMP = mkdtempSync(join(tmpdir(), 'weakseg-resnet-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

/** torchvision resnet keys, written out from its architecture. */
function torchvisionKeys(depths: number[], withFc: boolean): string[] {
  const bn = (p: string) => ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'].map((s) => `${p}.${s}`);
  const keys = ['conv1.weight', ...bn('bn1')];
  depths.forEach((n, l) => {
    for (let b = 0; b < n; b++) {
      const p = `layer${l + 1}.${b}`;
      for (const i of [1, 2, 3]) keys.push(`${p}.conv${i}.weight`, ...bn(`${p}.bn${i}`));
      if (b === 0) keys.push(`${p}.downsample.0.weight`, ...bn(`${p}.downsample.1`));
    }
  });
  if (withFc) keys.push('fc.weight', 'fc.bias');
  return keys;
}

test('state-dict keys are torchvision resnet50/resnet101 keys, in its order', () => {
  const r50 = new ResNet('resnet50', { withClassifier: true });
  assert.deepEqual([...r50.stateDict().keys()], torchvisionKeys([3, 4, 6, 3], true));
  assert.equal(r50.stateDict().size, 320);
  assert.equal(r50.numParameters(), 25557032, 'torchvision resnet50 parameter count');
  assert.deepEqual(r50.stateDict().get('layer3.0.conv2.weight')!.shape, [256, 256, 3, 3]);
  assert.deepEqual(r50.stateDict().get('layer4.0.downsample.0.weight')!.shape, [2048, 1024, 1, 1]);
  r50.dispose();
  const r101 = new ResNet('resnet101');
  assert.deepEqual([...r101.stateDict().keys()], torchvisionKeys([3, 4, 23, 3], false));
  assert.equal(r101.numParameters(), 44549160 - 2049000, 'torchvision resnet101 parameter count without fc');
  r101.dispose();
});

test('strides and dilations follow replace_stride_with_dilation (and IRN with dilate: false)', () => {
  const cfg = (o: ConstructorParameters<typeof ResNet>[1]) => {
    const m = new ResNet('resnet50', o);
    const c = m.layerConfig.map((l) => `${l.stride}/${l.firstDilation}/${l.dilation}`);
    const conv2 = (k: string) => [...m.namedModules()].find(([n]) => n === k)![1] as unknown as { opts: { dilation: number; stride: number } };
    const d = [conv2('layer4.0.conv2').opts, conv2('layer4.2.conv2').opts].map((x) => `${x.stride}/${x.dilation}`);
    m.dispose();
    return [c, d];
  };
  assert.deepEqual(cfg({ outputStride: 32 }), [['1/1/1', '2/1/1', '2/1/1', '2/1/1'], ['2/1', '1/1']]);
  assert.deepEqual(cfg({ outputStride: 16 }), [['1/1/1', '2/1/1', '2/1/1', '1/1/2'], ['1/1', '1/2']]);
  assert.deepEqual(cfg({ outputStride: 8 }), [['1/1/1', '2/1/1', '1/1/2', '1/2/4'], ['1/2', '1/4']]);
  assert.deepEqual(cfg({ outputStride: 16, dilate: false }), [['1/1/1', '2/1/1', '2/1/1', '1/1/1'], ['1/1', '1/1']]);
});

for (const os of [8, 16, 32] as const) {
  test(`resnet50 and resnet101 output and tap shapes at OS ${os} on a 3x65x97 input`, () => {
    for (const name of ['resnet50', 'resnet101'] as const) {
      if (name === 'resnet101' && os === 8) continue; // same code path as resnet50; the slowest case, left out
      const m = new ResNet(name, { outputStride: os }).eval();
      assert.equal(m.name, name);
      assert.deepEqual(m.taps, [
        { name: 'layer1', channels: 256, stride: 4 },
        { name: 'layer2', channels: 512, stride: 8 },
        { name: 'layer3', channels: 1024, stride: Math.min(16, os) },
      ]);
      checkShapes(m, 65, 97);
      m.dispose();
    }
  });
}

test('freezeUpTo stops gradients to the stem (and following stages) only', () => {
  const m = new ResNet('resnet50', { freezeUpTo: 'conv1', frozenBatchNorm: false });
  const trainable = new Set([...m.namedParameters()].filter(([, t]) => t.requiresGrad).map(([k]) => k));
  assert.ok(!trainable.has('conv1.weight') && !trainable.has('bn1.weight'));
  assert.ok(trainable.has('layer1.0.conv1.weight') && trainable.has('layer1.0.bn1.weight'));
  m.dispose();
  const l1 = new ResNet('resnet50', { freezeUpTo: 'layer1' });
  const names = [...l1.namedParameters()].filter(([, t]) => t.requiresGrad).map(([k]) => k);
  assert.ok(names.every((k) => /^layer[234]\.\d+\.(conv|downsample\.0)/.test(k)), names.join(', '));
  assert.ok(names.includes('layer2.0.conv1.weight'));
  l1.dispose();
  assert.throws(() => new ResNet('resnet50', { freezeUpTo: 'layer9' as 'layer1' }), /freezeUpTo must be one of conv1, layer1/);
});

test('weights round trip through safetensors (and a torchvision file with fc loads into a headless model)', () => {
  const src = new ResNet('resnet50', { withClassifier: true, outputStride: 16 }).eval();
  // Non-default BN statistics and affine parameters, so that loading buffers is checked too.
  noGrad(() => {
    for (const [k, t] of src.stateDict()) {
      if (/\.running_var$|(bn\d|downsample\.1)\.weight$/.test(k)) t.uniform_(0.5, 1.5);
      else if (/\.(running_mean|bias)$/.test(k)) t.uniform_(-0.1, 0.1);
    }
  });
  const file = join(TMP, 'r50.safetensors');
  saveSafetensors(file, src.stateDict());
  const m = resnet50({ weights: file, outputStride: 16 }).eval();
  assert.deepEqual(m.loadReport, { missing: [], unexpected: [], mismatched: [], loaded: 318 });
  const loaded = m.stateDict();
  for (const [k, t] of src.stateDict()) if (!k.startsWith('fc.')) assert.deepEqual(vals(loaded.get(k)!), vals(t), k);
  noGrad(() => tidy(() => {
    const x = randn([1, 3, 33, 45]);
    assert.deepEqual(vals(m.forward(x).features), vals(src.forward(x).features));
  }));
  const withFc = resnet50({ weights: file, withClassifier: true });
  assert.equal(withFc.loadReport!.loaded, 320);
  withFc.dispose();
  // A ResNet-101 model cannot take ResNet-50 weights: the error lists the missing blocks (15 keys each,
  // num_batches_tracked aside), and the half-built model is freed.
  assert.throws(() => resnet101({ weights: file }), (e: unknown) => {
    assert.ok(e instanceof StateDictError);
    assert.match(e.message, /missing keys \(255\): layer3\.6\.conv1\.weight, layer3\.6\.bn1\.weight/);
    return true;
  });
  m.dispose();
  src.dispose();
});
