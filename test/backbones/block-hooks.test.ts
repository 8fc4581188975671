// Per-block module hooks (ResNet bottlenecks, MobileNetV2 inverted residuals): where the module is applied, the keys
// it is registered under, and weight loading that lets exactly those keys be missing.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { type Tensor, manualSeed, noGrad, randn, tidy } from '../../src/engine/index.js';
import { saveSafetensors } from '../../src/engine/serialize/index.js';
import { Conv2d, Layer, StateDictError } from '../../src/nn/index.js';
import { type BlockHook, type BlockInfo, Bottleneck, InvertedResidual, mobilenetV2, resnet50 } from '../../src/backbones/index.js';
import { vals } from '../helpers.js';

/** A 1x1 convolution (so it has keys) that scales its input by `scale` (weights set, not learned). */
class Scale extends Layer {
  readonly proj: Conv2d;
  constructor(channels: number, scale: number) {
    super();
    this.proj = this.registerModule('proj', new Conv2d(channels, channels, 1, { bias: false }));
    noGrad(() => tidy(() => this.proj.weight.copy_(randn([channels, channels, 1, 1]).mul(0))));
    noGrad(() => {
      for (let c = 0; c < channels; c++) this.proj.weight.select(0, c).select(0, c).fill_(scale);
    });
  }
  forward(x: Tensor): Tensor {
    return this.proj.forward(x);
  }
}

function hook(scale: number, only?: (i: BlockInfo) => boolean): { hook: BlockHook; seen: BlockInfo[] } {
  const seen: BlockInfo[] = [];
  return {
    seen,
    hook: { name: 'amm', create: (info) => { seen.push(info); return !only || only(info) ? new Scale(info.channels, scale) : null; } },
  };
}

test('ResNet: the hook sees every bottleneck, its module sits after bn3 before the residual add, keys layerN.i.amm.*', () => tidy(() => {
  manualSeed(0);
  const { hook: h, seen } = hook(0, (i) => i.path === 'layer3.2');
  const net = resnet50({ outputStride: 16, blocks: h });
  assert.equal(seen.length, 3 + 4 + 6 + 3);
  assert.deepEqual(seen.find((i) => i.path === 'layer3.2'), { stage: 'layer3', index: 2, path: 'layer3.2', channels: 1024, stride: 1, dilation: 1, residual: true });
  assert.ok(seen.every((i) => i.residual), 'every bottleneck has a shortcut (identity or downsample)');
  const keys = [...net.stateDict().keys()].filter((k) => k.includes('amm'));
  assert.deepEqual(keys, ['layer3.2.amm.proj.weight']);
  // A zero module on the residual branch leaves relu(identity): the block passes its (non-negative) input through.
  const block = net.layers[2].layers[2] as Bottleneck;
  net.eval();
  const x = randn([1, 1024, 4, 4]).relu();
  assert.deepEqual(vals(noGrad(() => block.forward(x))), vals(x));
  net.dispose();
}));

test('MobileNetV2: the module sits after the projection, before the residual add, keys features.i.amm.*', () => tidy(() => {
  manualSeed(0);
  const { hook: h, seen } = hook(0);
  const net = mobilenetV2({ outputStride: 8, blocks: h });
  assert.deepEqual(seen.map((i) => i.index), Array.from({ length: 17 }, (_, i) => i + 1), 'features.1 .. features.17');
  for (const info of seen) {
    assert.equal(info.residual, (net.features.layers[info.index] as InvertedResidual).useResConnect, `${info.path}: residual`);
  }
  // MobileNetV2's inverted residuals that add their input back (stride 1, channels kept), at output stride 8 too.
  assert.deepEqual(seen.filter((i) => i.residual).map((i) => i.index), [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]);
  assert.ok([...net.stateDict().keys()].includes('features.6.amm.proj.weight'));
  net.eval();
  const residual = net.features.layers[6] as InvertedResidual;
  assert.ok(residual.useResConnect);
  const x = randn([1, 32, 5, 5]);
  assert.deepEqual(vals(noGrad(() => residual.forward(x))), vals(x), 'zeroed branch + residual = the input');
  const strided = net.features.layers[2] as InvertedResidual;
  assert.ok(!strided.useResConnect);
  assert.deepEqual(vals(noGrad(() => strided.forward(randn([1, 16, 8, 8])))).every((v) => v === 0), true, 'no residual: zero');
  net.dispose();
}));

test('weights load into a hooked backbone with only the hook keys missing; any other missing key is still an error', (t) => tidy(() => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-hooks-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  manualSeed(5);
  const plain = mobilenetV2({ outputStride: 16 });
  const file = join(dir, 'w.safetensors');
  saveSafetensors(file, plain.stateDict());
  const hooked = mobilenetV2({ outputStride: 16, weights: file, blocks: hook(1).hook });
  assert.deepEqual(vals(hooked.features.layers[3]!.stateDict().get('conv.0.0.weight')!), vals(plain.stateDict().get('features.3.conv.0.0.weight')!));
  assert.equal(hooked.loadReport!.missing.length, 0);
  assert.equal(hooked.loadReport!.allowedMissing!.length, 17, 'one amm weight per inverted residual');
  hooked.dispose();

  const partial = new Map(plain.stateDict());
  partial.delete('features.4.conv.1.0.weight');
  const broken = join(dir, 'broken.safetensors');
  saveSafetensors(broken, partial);
  assert.throws(() => mobilenetV2({ outputStride: 16, weights: broken, blocks: hook(1).hook }),
    (e: unknown) => e instanceof StateDictError && e.report.missing.join() === 'features.4.conv.1.0.weight');
  plain.dispose();
}));
