// nn.Module: dotted names, train/eval, freezing, frozen BatchNorm, state dicts (strict and not, dtype
// conversion on load), the layers' forward passes and the initialisers' statistics.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { F, type Tensor, empty, manualSeed, memory, noGrad, ones, tensor, tidy, zeros } from '../../src/engine/index.js';
import {
  BatchNorm2d, Conv2d, Dropout, Identity, Layer, Linear, MaxPool2d, Module, ReLU, Sequential, StateDictError, init,
} from '../../src/nn/index.js';
import { assertClose, f32, randArray, vals } from '../helpers.js';

function net(): Sequential {
  return new Sequential(
    new Sequential(new Conv2d(3, 4, 3, { padding: 1 }), new BatchNorm2d(4), new ReLU()),
    new Conv2d(4, 2, 1, { bias: false }),
  );
}

function snapshot(m: Module): Map<string, number[]> {
  return new Map([...m.stateDict()].map(([k, t]) => [k, vals(t)]));
}

test('named parameters and buffers use dotted keys for nested Sequential', () => {
  const m = net();
  assert.deepEqual([...m.namedParameters()].map(([k]) => k), ['0.0.weight', '0.0.bias', '0.1.weight', '0.1.bias', '1.weight']);
  assert.deepEqual([...m.namedBuffers()].map(([k]) => k), ['0.1.running_mean', '0.1.running_var', '0.1.num_batches_tracked']);
  assert.deepEqual([...m.stateDict().keys()], [
    '0.0.weight', '0.0.bias', '0.1.weight', '0.1.bias', '0.1.running_mean', '0.1.running_var', '0.1.num_batches_tracked',
    '1.weight',
  ]);
  assert.deepEqual([...m.namedModules()].map(([k]) => k), ['', '0', '0.0', '0.1', '0.2', '1']);
  const flat = new Sequential(new Conv2d(1, 2, 3), new BatchNorm2d(2));
  assert.deepEqual([...flat.stateDict().keys()],
    ['0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', '1.running_var', '1.num_batches_tracked']);
  assert.equal(m.numParameters(), 4 * 3 * 9 + 4 + 4 + 4 + 2 * 4);
  assert.deepEqual(m.stateDict().get('0.0.weight')!.shape, [4, 3, 3, 3]);
  assert.ok(m.parameters().every((p) => p.requiresGrad && p.isLeaf));
  m.dispose();
});

test('custom modules register parameters, buffers and children; names are validated', () => {
  class Head extends Layer {
    readonly fc = this.registerModule('fc', new Linear(3, 2));
    constructor() {
      super();
      this.registerParameter('scale', ones([1]));
      this.registerBuffer('count', zeros([1]));
    }
    forward(x: Tensor): Tensor { return this.fc.forward(x).mul(this.param('scale')); }
    tryRegister(name: string): void { this.registerParameter(name, zeros([1])); }
  }
  const h = new Head();
  assert.deepEqual([...h.stateDict().keys()], ['scale', 'count', 'fc.weight', 'fc.bias']);
  assert.throws(() => h.tryRegister('a.b'), TypeError);
  assert.throws(() => h.tryRegister('scale'), TypeError);
  assert.throws(() => h.tryRegister(''), TypeError);
  h.dispose();
});

test('train / eval propagate to every submodule', () => {
  const m = net();
  assert.ok([...m.namedModules()].every(([, s]) => s.training));
  assert.equal(m.eval(), m);
  assert.ok([...m.namedModules()].every(([, s]) => !s.training));
  m.train();
  assert.ok([...m.namedModules()].every(([, s]) => s.training));
  m.train(false);
  assert.ok([...m.namedModules()].every(([, s]) => !s.training));
  m.dispose();
});

test('freeze stops gradients to every parameter; unfreeze restores them', () => tidy(() => {
  const m = net();
  const first = m.at(0) as Sequential;
  first.freeze();
  assert.ok(first.parameters().every((p) => !p.requiresGrad));
  assert.ok((m.at(1) as Conv2d).weight.requiresGrad);
  assert.equal(m.trainableParameters().length, 1);
  const y = m.forward(ones([1, 3, 4, 4]));
  y.sum().backward();
  assert.equal((first.at(0) as Conv2d).weight.grad, null, 'no grad to frozen weights');
  assert.notEqual((m.at(1) as Conv2d).weight.grad, null);
  first.freeze(false);
  assert.ok(first.parameters().every((p) => p.requiresGrad));
  m.dispose();
}));

test('layers compute what F computes; Sequential chains them', () => tidy(() => {
  manualSeed(0);
  const conv = new Conv2d(2, 3, 3, { padding: 1, stride: 2 });
  const x = f32(randArray(2 * 2 * 5 * 5, 1), [2, 2, 5, 5]);
  assert.ok(conv.forward(x).equal(F.conv2d(x, conv.weight, conv.bias, { padding: 1, stride: 2 })));
  const fc = new Linear(4, 3);
  const v = f32(randArray(8, 2), [2, 4]);
  assert.ok(fc.forward(v).equal(F.linear(v, fc.weight, fc.bias)));
  const seq = new Sequential(conv, new ReLU(), new MaxPool2d(3), new Identity());
  const y = seq.forward(x);
  assert.ok(y.equal(F.maxPool2d(F.conv2d(x, conv.weight, conv.bias, { padding: 1, stride: 2 }).relu(), 3)));
  const d = new Dropout(0.5);
  d.eval();
  assert.ok(d.forward(x).equal(x));
  assert.throws(() => seq.at(9), RangeError);
  assert.throws(() => new Conv2d(3, 4, 3, { groups: 2 }), RangeError);
  seq.dispose();
  fc.dispose();
}));

test('default Conv2d / Linear init: kaiming uniform with a = sqrt(5) gives weights within 1/sqrt(fan_in)', () => tidy(() => {
  manualSeed(1);
  const conv = new Conv2d(16, 32, 3);
  const fanIn = 16 * 9;
  const w = vals(conv.weight);
  const bound = 1 / Math.sqrt(fanIn); // sqrt(3) * gain(leaky_relu, sqrt 5) / sqrt(fan_in), gain = sqrt(2 / 6)
  assert.ok(w.every((v) => Math.abs(v) <= bound * (1 + 1e-6)));
  assert.ok(Math.max(...w.map(Math.abs)) > 0.95 * bound, 'the range is used');
  assert.ok(vals(conv.bias!).every((v) => Math.abs(v) <= bound));
  const fc = new Linear(50, 10);
  assert.ok(vals(fc.weight).every((v) => Math.abs(v) <= 1 / Math.sqrt(50)));
  conv.dispose();
  fc.dispose();
}));

test('BatchNorm2d: training updates running stats and the counter; eval uses them', () => tidy(() => {
  const bn = new BatchNorm2d(2, { momentum: 0.1 });
  const xd = randArray(4 * 2 * 3, 5, -1, 3);
  const x = f32(xd, [4, 2, 3, 1]);
  bn.forward(x);
  const mean = [0, 1].map((c) => {
    let s = 0;
    for (let n = 0; n < 4; n++) for (let k = 0; k < 3; k++) s += xd[(n * 2 + c) * 3 + k]!;
    return s / 12;
  });
  const sd = bn.stateDict();
  assertClose(sd.get('running_mean')!, mean.map((m) => 0.1 * m), { rtol: 1e-5 });
  assert.equal(sd.get('num_batches_tracked')!.item(), 1);
  bn.eval();
  const rm = vals(sd.get('running_mean')!);
  const rv = vals(sd.get('running_var')!);
  const y = bn.forward(x);
  assertClose(y, xd.map((v, k) => {
    const c = Math.floor(k / 3) % 2;
    return (v - rm[c]!) / Math.sqrt(rv[c]! + 1e-5);
  }), { rtol: 1e-5, atol: 1e-5 });
  assert.equal(sd.get('num_batches_tracked')!.item(), 1, 'eval does not count');
  assert.deepEqual(vals(sd.get('running_mean')!), rm, 'eval does not update');
  bn.dispose();
}));

test('BatchNorm2d frozen: running stats in training mode, no grad to its params, stats unchanged', () => tidy(() => {
  const bn = new BatchNorm2d(2, { frozen: true });
  noGrad(() => {
    bn.stateDict().get('running_mean')!.copy_(f32([0.5, -0.5]));
    bn.stateDict().get('running_var')!.copy_(f32([4, 0.25]));
    bn.stateDict().get('weight')!.copy_(f32([2, 1]));
    bn.stateDict().get('bias')!.copy_(f32([0, 1]));
  });
  bn.train();
  assert.ok(!bn.training && bn.frozen, 'a frozen module stays in eval mode when train() is called');
  assert.ok(bn.parameters().every((p) => !p.requiresGrad));
  const xd = randArray(2 * 2 * 2, 6);
  const x = f32(xd, [2, 2, 2, 1]).requiresGrad_();
  const y = bn.forward(x);
  const ref = xd.map((v, k) => {
    const c = Math.floor(k / 2) % 2;
    return ((v - [0.5, -0.5][c]!) / Math.sqrt([4, 0.25][c]! + 1e-5)) * [2, 1][c]! + [0, 1][c]!;
  });
  assertClose(y, ref, { rtol: 1e-5, atol: 1e-6 });
  y.sum().backward();
  assert.equal(bn.stateDict().get('weight')!.grad, null);
  assert.equal(bn.stateDict().get('bias')!.grad, null);
  // the input still gets a gradient: weight / sqrt(var + eps) per channel
  assertClose(x.grad!, xd.map((_, k) => {
    const c = Math.floor(k / 2) % 2;
    return [2, 1][c]! / Math.sqrt([4, 0.25][c]! + 1e-5);
  }), { rtol: 1e-5 });
  assert.deepEqual(vals(bn.stateDict().get('running_mean')!), [0.5, -0.5]);
  assert.deepEqual(vals(bn.stateDict().get('running_var')!), [4, 0.25]);
  assert.equal(bn.stateDict().get('num_batches_tracked')!.item(), 0);
  bn.setFrozen(false);
  assert.ok(bn.parameters().every((p) => p.requiresGrad));
  bn.forward(x);
  assert.notDeepEqual(vals(bn.stateDict().get('running_mean')!), [0.5, -0.5], 'unfrozen training updates again');
  bn.dispose();
}));

test('a frozen BatchNorm2d stays frozen when an enclosing module is unfrozen', () => tidy(() => {
  const bn = new BatchNorm2d(3, { frozen: true });
  const conv = new Conv2d(2, 3, 1);
  const m = new Sequential(conv, bn);
  m.freeze();
  assert.ok(m.parameters().every((p) => !p.requiresGrad));
  m.freeze(false);
  assert.ok(conv.parameters().every((p) => p.requiresGrad), 'the conv is trainable again');
  assert.ok(bn.parameters().every((p) => !p.requiresGrad), 'the frozen BatchNorm is not');
  assert.deepEqual(m.trainableParameters().length, 2);
  m.forward(ones([1, 2, 2, 2])).sum().backward();
  assert.equal(bn.stateDict().get('weight')!.grad, null);
  bn.setFrozen(false);
  m.freeze(false);
  assert.ok(bn.parameters().every((p) => p.requiresGrad));
  m.dispose();
}));

test('stateDict / loadStateDict round trip keeps tensor identity', () => tidy(() => {
  manualSeed(2);
  const a = net();
  manualSeed(3);
  const b = net();
  const before = [...b.stateDict().values()];
  assert.ok(!a.stateDict().get('0.0.weight')!.equal(b.stateDict().get('0.0.weight')!));
  const report = b.loadStateDict(a.stateDict());
  assert.deepEqual(report, { missing: [], unexpected: [], mismatched: [], loaded: 8 });
  for (const [k, t] of a.stateDict()) assert.ok(t.equal(b.stateDict().get(k)!), k);
  const after = [...b.stateDict().values()];
  assert.ok(before.every((t, i) => t === after[i]), 'the same Tensor objects, so optimizers stay valid');
  assert.ok(b.parameters().every((p) => p.requiresGrad && p.isLeaf), 'still trainable leaves');
  // from a plain object too
  const obj = Object.fromEntries(a.stateDict());
  assert.equal(b.loadStateDict(obj).loaded, 8);
  a.dispose();
  b.dispose();
}));

test('strict loadStateDict lists missing, unexpected and wrongly shaped keys and changes nothing', () => tidy(() => {
  manualSeed(4);
  const src = net();
  const dst = net();
  const snap = snapshot(dst);
  const sd = new Map(src.stateDict());
  sd.delete('0.1.running_var');
  sd.set('extra.weight', zeros([1]));
  sd.set('1.weight', zeros([2, 4, 3, 3]));
  assert.throws(() => dst.loadStateDict(sd, { source: 'ckpt.pth' }), (e: unknown) => {
    assert.ok(e instanceof StateDictError);
    assert.match(e.message, /ckpt\.pth/);
    assert.match(e.message, /missing keys \(1\): 0\.1\.running_var/);
    assert.match(e.message, /unexpected keys \(1\): extra\.weight/);
    assert.match(e.message, /1\.weight: checkpoint \[2, 4, 3, 3\] vs model \[2, 4, 1, 1\]/);
    assert.deepEqual(e.report.missing, ['0.1.running_var']);
    assert.deepEqual(e.report.unexpected, ['extra.weight']);
    assert.equal(e.report.mismatched.length, 1);
    return true;
  });
  assert.deepEqual(snapshot(dst), snap, 'nothing was modified');
  // non-strict: loads what matches and reports the rest
  const report = dst.loadStateDict(sd, { strict: false });
  assert.deepEqual(report.missing, ['0.1.running_var']);
  assert.deepEqual(report.unexpected, ['extra.weight']);
  assert.equal(report.mismatched.length, 1);
  assert.equal(report.loaded, 6);
  assert.ok(dst.stateDict().get('0.0.weight')!.equal(src.stateDict().get('0.0.weight')!));
  assert.deepEqual(vals(dst.stateDict().get('0.1.running_var')!), snap.get('0.1.running_var'), 'missing key untouched');
  assert.deepEqual(vals(dst.stateDict().get('1.weight')!), snap.get('1.weight'), 'mismatched key untouched');
  src.dispose();
  dst.dispose();
}));

test('loading converts dtypes: a float16 checkpoint into a float32 model', () => tidy(() => {
  manualSeed(5);
  const src = net();
  const dst = net();
  const half = new Map([...src.stateDict()].map(([k, t]) => [k, t.dtype === 'float32' ? t.half() : t]));
  assert.equal(half.get('0.0.weight')!.dtype, 'float16');
  dst.loadStateDict(half);
  for (const [k, t] of dst.stateDict()) {
    const s = src.stateDict().get(k)!;
    assert.equal(t.dtype, s.dtype, `${k} keeps the model's dtype`);
    // the values are the float16 roundings of the source
    assert.deepEqual(vals(t), vals(half.get(k)!), k);
  }
  const w = vals(dst.stateDict().get('0.0.weight')!);
  const orig = vals(src.stateDict().get('0.0.weight')!);
  assert.ok(w.every((v, i) => Math.abs(v - orig[i]!) <= Math.abs(orig[i]!) * 2 ** -11 + 1e-7), 'within half precision');
  src.dispose();
  dst.dispose();
}));

test('modules survive tidy scopes; dispose frees every parameter and buffer', () => {
  const before = memory().liveTensors;
  const m = tidy(() => net());
  const count = [...m.stateDict()].length;
  assert.equal(memory().liveTensors, before + count);
  tidy(() => { m.forward(ones([1, 3, 4, 4])); });
  assert.equal(memory().liveTensors, before + count);
  assert.equal(m.to('cpu'), m);
  m.dispose();
  assert.equal(memory().liveTensors, before);
});

test('init: kaimingNormal_ std is sqrt(2 / fan_in); fan_out mode; uniform and xavier bounds', () => tidy(() => {
  manualSeed(6);
  const stdOf = (v: number[]) => {
    const m = v.reduce((s, x) => s + x, 0) / v.length;
    return { mean: m, std: Math.sqrt(v.reduce((s, x) => s + (x - m) ** 2, 0) / v.length) };
  };
  const w = empty([64, 32, 3, 3]); // fan_in = 32 * 9 = 288, fan_out = 64 * 9 = 576
  assert.deepEqual(init.fans(w), [288, 576]);
  init.kaimingNormal_(w);
  const s = stdOf(vals(w));
  assert.ok(Math.abs(s.std / Math.sqrt(2 / 288) - 1) < 0.03, `std ${s.std} vs ${Math.sqrt(2 / 288)}`);
  assert.ok(Math.abs(s.mean) < 0.003);
  init.kaimingNormal_(w, { mode: 'fan_out', nonlinearity: 'relu' });
  assert.ok(Math.abs(stdOf(vals(w)).std / Math.sqrt(2 / 576) - 1) < 0.03);
  init.kaimingUniform_(w, { nonlinearity: 'relu' });
  const bound = Math.sqrt(3) * Math.sqrt(2 / 288);
  const v = vals(w);
  assert.ok(v.every((x) => Math.abs(x) <= bound * (1 + 1e-6)));
  assert.ok(Math.abs(stdOf(v).std / (bound / Math.sqrt(3)) - 1) < 0.03, 'uniform(-b, b) has std b / sqrt 3');
  init.xavierUniform_(w);
  const xb = Math.sqrt(6 / (288 + 576));
  assert.ok(vals(w).every((x) => Math.abs(x) <= xb * (1 + 1e-6)));
  init.constant_(w, 0.25);
  assert.ok(vals(w).every((x) => x === 0.25));
  assert.equal(init.calculateGain('tanh'), 5 / 3);
  assert.equal(init.calculateGain('leaky_relu', 0.2), Math.sqrt(2 / 1.04));
  assert.throws(() => init.fans(tensor([1, 2])), TypeError);
  // initialisers run without recording gradients, so they work on parameters
  const p = ones([4, 4], { requiresGrad: true });
  init.normal_(p, 0, 1);
  assert.ok(p.isLeaf && p.requiresGrad);
}));

test('a state dict of another architecture is summarised: counts and the first keys of each kind', () => tidy(() => {
  const dst = net();
  const own = [...dst.stateDict().keys()];
  // 400 keys of some other network, none of them this one's.
  const sd = new Map(Array.from({ length: 400 }, (_, i) => [`backbone.layer${i}.conv.weight`, zeros([1])] as const));
  assert.throws(() => dst.loadStateDict(sd, { source: 'resnet.pth' }), (e: unknown) => {
    assert.ok(e instanceof StateDictError);
    assert.ok(e.message.length < 800, `short message (${e.message.length} chars): ${e.message}`);
    assert.match(e.message, new RegExp(`missing keys \\(${own.length}\\): ${own.slice(0, 5).join(', ').replace(/\./g, '\\.')}, \\.\\.\\. \\(${own.length - 5} more\\)`));
    assert.match(e.message, /unexpected keys \(400\): backbone\.layer0\.conv\.weight, .*backbone\.layer4\.conv\.weight, \.\.\. \(395 more\)/);
    assert.match(e.message, /another architecture/);
    assert.equal(e.report.unexpected.length, 400, 'the full lists stay on the report');
    return true;
  });
}));
