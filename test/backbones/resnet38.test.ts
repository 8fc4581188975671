// ResNet-38 "d": the official resnet38d.py parameter names and shapes, dilations, the pre-activation blocks'
// shortcut, output and tap shapes (conv3/conv4/conv5 as SEAM's PCM reads them), dropout, freezing.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { F, noGrad, randn, tidy } from '../../src/engine/index.js';
import { ResBlock, ResNet38, createBackbone } from '../../src/backbones/index.js';
import { assertClose, vals } from '../helpers.js';
import { checkShapes } from './util.js';

/**
 * The names of the official network/resnet38d.py Net, from its __init__ (registration order): conv1a; ResBlocks
 * bn_branch2a, conv_branch2a, bn_branch2b1, conv_branch2b1 [, conv_branch1 when the shape changes: b2, b3, b4,
 * b5]; ResBlock_bot b6/b7 bn_branch2a, conv_branch2a, bn_branch2b1, conv_branch2b1, bn_branch2b2,
 * conv_branch2b2, conv_branch1; bn7. These are also the names convert_mxnet_to_torch produces.
 */
function officialKeys(): string[] {
  const bn = (p: string) => ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'].map((s) => `${p}.${s}`);
  const keys = ['conv1a.weight'];
  const blocks: [string, boolean][] = [
    ['b2', true], ['b2_1', false], ['b2_2', false], ['b3', true], ['b3_1', false], ['b3_2', false],
    ['b4', true], ['b4_1', false], ['b4_2', false], ['b4_3', false], ['b4_4', false], ['b4_5', false],
    ['b5', true], ['b5_1', false], ['b5_2', false],
  ];
  for (const [b, proj] of blocks) {
    keys.push(...bn(`${b}.bn_branch2a`), `${b}.conv_branch2a.weight`, ...bn(`${b}.bn_branch2b1`), `${b}.conv_branch2b1.weight`);
    if (proj) keys.push(`${b}.conv_branch1.weight`);
  }
  for (const b of ['b6', 'b7']) {
    keys.push(...bn(`${b}.bn_branch2a`), `${b}.conv_branch2a.weight`, ...bn(`${b}.bn_branch2b1`), `${b}.conv_branch2b1.weight`,
      ...bn(`${b}.bn_branch2b2`), `${b}.conv_branch2b2.weight`, `${b}.conv_branch1.weight`);
  }
  keys.push(...bn('bn7'));
  return keys;
}

let shared: ResNet38 | null = null;
function net(): ResNet38 {
  return (shared ??= new ResNet38());
}

test('state-dict keys are the official resnet38d names, with the official shapes', () => {
  const m = net();
  const sd = m.stateDict();
  assert.deepEqual([...sd.keys()], officialKeys());
  const shapes: [string, number[]][] = [
    ['conv1a.weight', [64, 3, 3, 3]],
    ['b2.conv_branch2a.weight', [128, 64, 3, 3]],
    ['b2.conv_branch1.weight', [128, 64, 1, 1]],
    ['b4_5.conv_branch2b1.weight', [512, 512, 3, 3]],
    ['b5.conv_branch2a.weight', [512, 512, 3, 3]],
    ['b5.conv_branch2b1.weight', [1024, 512, 3, 3]],
    ['b5.conv_branch1.weight', [1024, 512, 1, 1]],
    ['b5_1.conv_branch2a.weight', [512, 1024, 3, 3]],
    ['b6.conv_branch2a.weight', [512, 1024, 1, 1]],
    ['b6.conv_branch2b1.weight', [1024, 512, 3, 3]],
    ['b6.conv_branch2b2.weight', [2048, 1024, 1, 1]],
    ['b6.conv_branch1.weight', [2048, 1024, 1, 1]],
    ['b7.bn_branch2a.running_var', [2048]],
    ['b7.conv_branch2b1.weight', [2048, 1024, 3, 3]],
    ['b7.conv_branch2b2.weight', [4096, 2048, 1, 1]],
    ['b7.conv_branch1.weight', [4096, 2048, 1, 1]],
    ['bn7.weight', [4096]],
  ];
  for (const [k, s] of shapes) assert.deepEqual(sd.get(k)!.shape, s, k);
  // Dilation: b5's first conv undilated, then 2 for the rest of b5; 4 in b6/b7. Only b2-b4 stride.
  const conv = (k: string) => [...m.namedModules()].find(([n]) => n === k)![1] as unknown as { opts: { stride: number; dilation: number; padding: number } };
  const cfg = (k: string) => { const o = conv(k).opts; return `${o.stride}/${o.dilation}/${o.padding}`; };
  assert.equal(cfg('b4.conv_branch2a'), '2/1/1');
  assert.equal(cfg('b5.conv_branch2a'), '1/1/1');
  assert.equal(cfg('b5.conv_branch2b1'), '1/2/2');
  assert.equal(cfg('b5_2.conv_branch2a'), '1/2/2');
  assert.equal(cfg('b6.conv_branch2b1'), '1/4/4');
  assert.equal(cfg('b7.conv_branch2b1'), '1/4/4');
  assert.equal(m.inputNorm.mean[0], 0.485);
  assert.throws(() => new ResNet38({ outputStride: 16 as 8 }), /outputStride must be one of 8, got 16/);
});

test('output and tap shapes (conv3, conv4, conv5) at OS 8 on a 3x65x97 input', () => {
  const m = net().eval();
  assert.deepEqual(m.taps.map((t) => [t.name, t.channels, t.stride]), [['conv3', 256, 4], ['conv4', 512, 8], ['conv5', 1024, 8]]);
  checkShapes(m, 65, 97);
});

test('taps are the pre-activations: conv4 = ReLU(b5.bn_branch2a(output of b4_5)), conv6 = ReLU(bn7(b7))', () => {
  const m = net().eval();
  noGrad(() => tidy(() => {
    const x = randn([1, 3, 33, 41]);
    const out = m.forward(x, ['conv4']);
    let cur = m.conv1a.forward(x);
    let conv4 = null;
    for (const [name, block] of m.blocks) {
      if (name === 'b5') conv4 = block.bn_branch2a.forward(cur).relu();
      cur = block.forward(cur);
    }
    assertClose(out.taps.get('conv4')!, vals(conv4!), { rtol: 1e-5, atol: 1e-6 });
    assertClose(out.features, vals(m.bn7.forward(cur).relu()), { rtol: 1e-5, atol: 1e-6 });
  }));
});

test('ResBlock shortcut: the input itself when the shape is kept, conv_branch1 of the pre-activation otherwise', () => {
  noGrad(() => tidy(() => {
    const same = new ResBlock(4, 3, 4, { frozen: true });
    const proj = new ResBlock(4, 3, 6, { stride: 2, frozen: true });
    for (const b of [same, proj]) b.conv_branch2b1.weight.zero_();
    assert.equal(same.conv_branch1, null);
    const x = randn([1, 4, 7, 9]);
    assert.deepEqual(vals(same.forward(x)), vals(x));
    const pre = x.relu(); // a fresh BN is the identity up to 1/sqrt(1 + eps)
    const expected = F.conv2d(pre.div(Math.sqrt(1 + 1e-5)), proj.conv_branch1!.weight, null, { stride: 2 });
    assertClose(proj.forward(x), vals(expected), { rtol: 1e-5, atol: 1e-6 });
    same.dispose();
    proj.dispose();
  }));
});

test('b6/b7 dropout acts in training mode only; freezeUpTo b2_2 freezes conv1a and b2* as SEAM does', () => {
  const m = net();
  noGrad(() => tidy(() => {
    const x = randn([1, 3, 17, 17]);
    m.train();
    const a = m.forward(x).features;
    const b = m.forward(x).features;
    assert.ok(!a.allclose(b), 'dropout makes training-mode forwards differ');
    m.eval();
    assert.ok(m.forward(x).features.equal(m.forward(x).features));
  }));
  const seam = createBackbone('resnet38', { freezeUpTo: 'b2_2', frozenBatchNorm: false });
  const trainable = [...seam.namedParameters()].filter(([, t]) => t.requiresGrad).map(([k]) => k);
  assert.ok(trainable.every((k) => !/^(conv1a|b2|b2_1|b2_2)\./.test(k)));
  assert.equal(trainable[0], 'b3.bn_branch2a.weight');
  seam.dispose();
  m.dispose();
  shared = null;
});
