// Frozen BatchNorm (the default on every backbone): no BN parameter requires grad, running statistics and
// the batch counter are unchanged by a training-mode forward and backward, while the convolutions still get
// gradients. With frozenBatchNorm: false BN trains as usual.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { randn, tidy } from '../../src/engine/index.js';
import { BatchNorm2d } from '../../src/nn/index.js';
import { type Backbone, createBackbone, setBatchNormFrozen } from '../../src/backbones/index.js';
import { vals } from '../helpers.js';
import './util.js'; // test settings (threads)

function bnBuffers(b: Backbone): Map<string, number[]> {
  return new Map([...b.namedBuffers()].map(([k, t]) => [k, vals(t)]));
}

function batchNorms(b: Backbone): [string, BatchNorm2d][] {
  return [...b.namedModules()].filter((e): e is [string, BatchNorm2d] => e[1] instanceof BatchNorm2d);
}

const CASES = [
  ['mobilenet_v2', { outputStride: 8 }, 33],
  ['resnet50', { outputStride: 16 }, 33],
  ['resnet38', {}, 17],
] as const;

for (const [name, opts, size] of CASES) {
  test(`${name}: frozen BN has no trainable parameters and keeps its statistics in training mode`, () => {
    const b = createBackbone(name, opts);
    const bns = batchNorms(b);
    assert.ok(bns.length > 0);
    for (const [k, bn] of bns) {
      assert.ok(bn.frozen, `${k} frozen`);
      for (const [p, t] of bn.namedParameters()) assert.equal(t.requiresGrad, false, `${k}.${p} requires grad`);
    }
    const before = bnBuffers(b);
    b.train();
    tidy(() => {
      const out = b.forward(randn([2, 3, size, size]));
      out.features.mean().backward();
    });
    assert.deepEqual(bnBuffers(b), before, 'running_mean, running_var and num_batches_tracked unchanged');
    const convs = [...b.namedParameters()].filter(([k]) => !bns.some(([n]) => k.startsWith(`${n}.`)));
    assert.ok(convs.length > 0 && convs.every(([, t]) => t.requiresGrad));
    tidy(() => {
      assert.ok(convs.some(([, t]) => t.grad !== null), 'convolutions receive gradients');
      for (const [k, bn] of bns) for (const [, t] of bn.namedParameters()) assert.equal(t.grad, null, `${k} got a gradient`);
    });
    b.dispose();
  });
}

test('frozenBatchNorm: false trains BN (statistics move, parameters require grad); setBatchNormFrozen refreezes', () => {
  const b = createBackbone('mobilenet_v2', { outputStride: 32, frozenBatchNorm: false });
  const [, bn] = batchNorms(b)[0]!;
  assert.ok(!bn.frozen);
  assert.ok(bn.parameters().every((t) => t.requiresGrad));
  const before = bnBuffers(b);
  b.train();
  tidy(() => { b.forward(randn([2, 3, 32, 32])); });
  const after = bnBuffers(b);
  assert.notDeepEqual(after.get('features.0.1.running_mean'), before.get('features.0.1.running_mean'));
  assert.deepEqual(after.get('features.0.1.num_batches_tracked'), [1]);
  setBatchNormFrozen(b, true);
  assert.ok(batchNorms(b).every(([, m]) => m.frozen && m.parameters().every((t) => !t.requiresGrad)));
  tidy(() => { b.forward(randn([2, 3, 32, 32])); });
  assert.deepEqual(bnBuffers(b), after);
  b.dispose();
});
