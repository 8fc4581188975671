// MobileNetV2: torchvision's key layout, the DeepLab output-stride rule, output and tap shapes on an odd-sized
// input at OS 8/16/32, and loading (strictness, num_batches_tracked, float16, metadata).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { type Tensor, noGrad, randn, tidy } from '../../src/engine/index.js';
import { readSafetensorsHeader, saveSafetensors } from '../../src/engine/serialize/index.js';
import { StateDictError } from '../../src/nn/index.js';
import { BackboneConv2d, IMAGENET_NORM, MobileNetV2, mobilenetV2 } from '../../src/backbones/index.js';
import { vals } from '../helpers.js';
import { MOBILENET_WEIGHTS, checkShapes, needsShared } from './util.js';

const TMP = mkdtempSync(join(tmpdir(), 'weakseg-mobilenet-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

/** torchvision's mobilenet_v2 state-dict keys, written out from its architecture (not from our model). */
function torchvisionKeys(withClassifier: boolean): string[] {
  const bn = (p: string) => ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'].map((s) => `${p}.${s}`);
  const convBn = (p: string) => [`${p}.0.weight`, ...bn(`${p}.1`)];
  const keys = convBn('features.0');
  const expand = [1, 6, 6, 6, 6, 6, 6];
  const repeats = [1, 2, 3, 4, 3, 3, 1];
  let i = 1;
  expand.forEach((t, s) => {
    for (let r = 0; r < repeats[s]!; r++, i++) {
      const p = `features.${i}.conv`;
      const units = t === 1 ? [`${p}.0`] : [`${p}.0`, `${p}.1`];
      for (const u of units) keys.push(...convBn(u));
      const k = units.length;
      keys.push(`${p}.${k}.weight`, ...bn(`${p}.${k + 1}`));
    }
  });
  keys.push(...convBn('features.18'));
  if (withClassifier) keys.push('classifier.1.weight', 'classifier.1.bias');
  return keys;
}

test('state-dict keys are torchvision mobilenet_v2 keys, in its order', () => {
  const m = new MobileNetV2({ withClassifier: true, numClasses: 1001 });
  const keys = [...m.stateDict().keys()];
  assert.equal(keys.length, 314);
  assert.deepEqual(keys, torchvisionKeys(true));
  assert.deepEqual(m.stateDict().get('features.1.conv.0.0.weight')!.shape, [32, 1, 3, 3]);
  assert.deepEqual(m.stateDict().get('features.17.conv.2.weight')!.shape, [320, 960, 1, 1]);
  assert.deepEqual(m.stateDict().get('features.18.0.weight')!.shape, [1280, 320, 1, 1]);
  assert.deepEqual(m.stateDict().get('classifier.1.weight')!.shape, [1001, 1280]);
  m.dispose();
  const headless = new MobileNetV2();
  assert.deepEqual([...headless.stateDict().keys()], torchvisionKeys(false));
  headless.dispose();
});

test('output stride follows DeepLab: OS 8 turns features.7 and .14 to stride 1, rate 2 for 8-14, 4 for 15-17', () => {
  const cfg = (os: 8 | 16 | 32) => {
    const m = new MobileNetV2({ outputStride: os });
    const c = m.blockConfig.map((b) => `${b.stride}/${b.dilation}`);
    m.dispose();
    return c;
  };
  //            0      1      2      3      4      5      6      7      8      9      10     11     12     13     14     15     16     17     18
  assert.deepEqual(cfg(32), ['2/1', '1/1', '2/1', '1/1', '2/1', '1/1', '1/1', '2/1', '1/1', '1/1', '1/1', '1/1', '1/1', '1/1', '2/1', '1/1', '1/1', '1/1', '1/1']);
  assert.deepEqual(cfg(16), ['2/1', '1/1', '2/1', '1/1', '2/1', '1/1', '1/1', '2/1', '1/1', '1/1', '1/1', '1/1', '1/1', '1/1', '1/1', '1/2', '1/2', '1/2', '1/1']);
  assert.deepEqual(cfg(8), ['2/1', '1/1', '2/1', '1/1', '2/1', '1/1', '1/1', '1/1', '1/2', '1/2', '1/2', '1/2', '1/2', '1/2', '1/2', '1/4', '1/4', '1/4', '1/1']);
  // The dilation sits on the depthwise convolution of each block.
  const m = new MobileNetV2({ outputStride: 8 });
  const dw = [...m.namedModules()].find(([k]) => k === 'features.15.conv.1.0')![1] as BackboneConv2d;
  assert.deepEqual(dw.opts.dilation, [4, 4]);
  assert.ok(dw.isDepthwise);
  m.dispose();
  assert.throws(() => new MobileNetV2({ outputStride: 4 as 8 }), /outputStride must be one of 8, 16, 32, got 4/);
});

for (const os of [8, 16, 32] as const) {
  for (const padding of ['same', 'symmetric'] as const) {
    test(`output and tap shapes at OS ${os}, ${padding} padding, on a 3x225x301 input`, () => {
      const m = new MobileNetV2({ outputStride: os, padding });
      m.eval();
      assert.deepEqual(m.taps, [
        { name: 'features.3', channels: 24, stride: 4 },
        { name: 'features.6', channels: 32, stride: 8 },
        { name: 'features.13', channels: 96, stride: Math.min(16, os) },
        { name: 'features.17', channels: 320, stride: os },
      ]);
      checkShapes(m, 225, 301);
      checkShapes(m, 64, 50, 2); // even sizes, where SAME padding differs from symmetric
      m.dispose();
    });
  }
}

test("features: 'features.17' returns the 320-channel map of the last inverted residual", () => {
  const m = new MobileNetV2({ outputStride: 16, features: 'features.17' }).eval();
  assert.equal(m.outChannels, 320);
  assert.deepEqual(m.taps.map((t) => t.name), ['features.3', 'features.6', 'features.13']);
  checkShapes(m, 65, 97);
  assert.equal(m.stateDict().size, 312, 'features.18 is still built, so the same weights load');
  m.dispose();
});

test('SAME and symmetric padding give different maps on even inputs, and the same on inputs where no pad is asymmetric', () => {
  const m = new MobileNetV2({ outputStride: 32, padding: 'same' });
  m.eval();
  // Relative differences: with random weights the maps are small, so compare against their scale.
  const relDiff = (a: Tensor, b: Tensor) => a.sub(b).abs().max().item() / b.abs().max().item();
  noGrad(() => tidy(() => {
    const x = randn([1, 3, 64, 64]);
    const same = m.forward(x, ['features.3']);
    m.setPadding('symmetric');
    assert.equal(m.padding, 'symmetric');
    const sym = m.forward(x, ['features.3']);
    // Even input: SAME pads bottom/right, symmetric padding in effect top/left.
    assert.ok(relDiff(same.taps.get('features.3')!, sym.taps.get('features.3')!) > 1e-2);
    assert.ok(relDiff(same.features, sym.features) > 1e-2);
    // 65 -> 33 -> 17 -> 9 -> 5 -> 3: every stride-2 conv sees an odd size, so SAME pads [1, 1] too.
    const odd = randn([1, 3, 65, 65]);
    const a = m.forward(odd).features;
    m.setPadding('same');
    assert.ok(relDiff(m.forward(odd).features, a) < 1e-5);
  }));
  m.dispose();
});

test('loader: strict by default, listing missing and unexpected keys; tolerates absent num_batches_tracked', () => {
  const src = new MobileNetV2({ withClassifier: true, numClasses: 10 });
  const sd = new Map([...src.stateDict()].filter(([k]) => !k.endsWith('num_batches_tracked')));
  const half = new Map([...sd].map(([k, t]) => [k, t.dtype === 'float32' ? t.half() : t]));
  const file = join(TMP, 'mnv2.safetensors');
  saveSafetensors(file, half, { input_mean: '0.5,0.5,0.5', input_std: '0.5,0.5,0.5', padding: 'TensorFlow SAME' });
  for (const [k, t] of half) if (t !== sd.get(k)) t.dispose();

  const m = mobilenetV2({ weights: file, withClassifier: true, numClasses: 10 });
  assert.deepEqual(m.loadReport, { missing: [], unexpected: [], mismatched: [], loaded: 314 });
  assert.equal(m.padding, 'same', 'padding from the metadata');
  assert.deepEqual(m.inputNorm, { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  const w = m.stateDict().get('features.5.conv.1.0.weight')!;
  assert.equal(w.dtype, 'float32', 'float16 converted to float32');
  const expected = src.stateDict().get('features.5.conv.1.0.weight')!.half().float();
  assert.deepEqual(vals(w), vals(expected));
  expected.dispose();
  m.dispose();

  // A headless model ignores the file's classifier; explicit options beat the metadata.
  const headless = mobilenetV2({ weights: file, padding: 'symmetric', inputNorm: IMAGENET_NORM });
  assert.deepEqual(headless.loadReport!.unexpected, []);
  assert.equal(headless.padding, 'symmetric');
  assert.deepEqual(headless.inputNorm, IMAGENET_NORM);
  headless.dispose();

  // A model with a different head: strict loading fails, naming the keys; nothing is left allocated.
  assert.throws(() => mobilenetV2({ weights: file, withClassifier: true, numClasses: 1001 }), (e: unknown) => {
    assert.ok(e instanceof StateDictError);
    assert.match(e.message, /wrongly shaped keys \(2\): classifier\.1\.weight: checkpoint \[10, 1280\] vs model \[1001, 1280\]/);
    return true;
  });
  const wrong = join(TMP, 'renamed.safetensors');
  const renamed = new Map([...sd].map(([k, t]) => [k.replace('features.18.', 'features.19.'), t]));
  saveSafetensors(wrong, renamed);
  assert.throws(() => mobilenetV2({ weights: wrong, withClassifier: true, numClasses: 10 }),
    /missing keys \(5\): features\.18\.0\.weight, features\.18\.1\.weight.*unexpected keys \(5\): features\.19\.0\.weight/);
  const lax = mobilenetV2({ weights: wrong, withClassifier: true, numClasses: 10, strict: false });
  assert.equal(lax.loadReport!.missing.length, 5);
  lax.dispose();
  assert.throws(() => mobilenetV2({ weights: join(TMP, 'weights.npz') }), /unknown weights format '\.npz'/);
  src.dispose();
});

test('the shared ImageNet weights load with no missing or unexpected keys', { skip: needsShared(MOBILENET_WEIGHTS) }, () => {
  const header = readSafetensorsHeader(MOBILENET_WEIGHTS);
  const fileKeys = header.entries.map((e) => e.name).sort();
  assert.deepEqual(fileKeys, torchvisionKeys(true).filter((k) => !k.endsWith('num_batches_tracked')).sort());
  const m = mobilenetV2({ weights: MOBILENET_WEIGHTS, withClassifier: true, numClasses: 1001 });
  assert.deepEqual(m.loadReport, { missing: [], unexpected: [], mismatched: [], loaded: 314 });
  assert.equal(m.padding, 'same');
  assert.deepEqual(m.inputNorm, { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  m.dispose();
  const headless = mobilenetV2({ weights: MOBILENET_WEIGHTS, outputStride: 8 });
  assert.deepEqual(headless.loadReport!.missing, []);
  assert.equal(headless.loadReport!.loaded, 312);
  headless.dispose();
});
