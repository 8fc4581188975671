// AffinityNet labels, pairs and loss (methods-reference.md section 2.6) on hand-made inputs whose answers are
// worked out in the comments, and the pair extraction against a loop-by-loop transcription of PSA's
// ExtractAffinityLabelInRadius.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { manualSeed, noGrad, tensor, tidy } from '../../src/engine/index.js';
import type { CamRecord } from '../../src/cams/format.js';
import type { RgbImage } from '../../src/data/index.js';
import { crfParams } from '../../src/refine/crf-presets.js';
import {
  LabelShareCounter, affinityLabelMap, affinityPairLabels, alphaForThreshold, camsWithBackground, combineAffinityLabels, labelsOnFeatureGrid,
  pairOffsets,
} from '../../src/refine/affinity-labels.js';
import { AffinityNet, affinityLoss, affinityTaps, pairAffinities } from '../../src/refine/affinity-net.js';
import { MobileNetV2 } from '../../src/backbones/mobilenet_v2.js';
import { TinyBackbone } from '../methods/tiny.js';
import { assertClose, rng, vals } from '../helpers.js';

function record(width: number, height: number, labels: number[], planes: number[][]): CamRecord {
  return { id: 'hand', labels, width, height, cams: Float32Array.from(planes.flat()), metadata: {} };
}

const grey = (width: number, height: number): RgbImage => ({ width, height, channels: 3, data: new Uint8Array(width * height * 3).fill(128) });

test('pair offsets: radius 5 gives the 34 of the half-neighbourhood in PSA order, each unordered pair once', () => {
  const offsets = pairOffsets(5);
  assert.equal(offsets.length, 34);
  assert.deepEqual(offsets.slice(0, 4), [[0, 1], [0, 2], [0, 3], [0, 4]]);
  // dy = 1: dx -4..4 (9), dy = 2: -4..4 (9, 16 + 4 < 25), dy = 3: -3..3 (7), dy = 4: -2..2 (5): 4 + 9 + 9 + 7 + 5.
  assert.deepEqual(offsets.slice(4, 13).map(([, dx]) => dx), [-4, -3, -2, -1, 0, 1, 2, 3, 4]);
  assert.deepEqual(offsets.filter(([dy]) => dy === 3).map(([, dx]) => dx), [-3, -2, -1, 0, 1, 2, 3]);
  assert.deepEqual(offsets.filter(([dy]) => dy === 4).map(([, dx]) => dx), [-2, -1, 0, 1, 2]);
  const key = ([dy, dx]: readonly number[]) => `${dy},${dx}`;
  const set = new Set(offsets.map(key));
  assert.equal(set.size, 34);
  for (let dy = -5; dy <= 5; dy++) {
    for (let dx = -5; dx <= 5; dx++) {
      if ((dy === 0 && dx === 0) || dx * dx + dy * dy >= 25) continue;
      const inSet = Number(set.has(key([dy, dx]))) + Number(set.has(key([-dy, -dx])));
      assert.equal(inSet, 1, `(${dy}, ${dx}) or its mirror exactly once`);
    }
  }
  assert.deepEqual(pairOffsets(2), [[0, 1], [1, -1], [1, 0], [1, 1]]);
  assert.throws(() => pairOffsets(1), /radius must be an integer >= 2/);
});

test('background plane (1 - max fg)^alpha in front of the CAM planes', () => {
  const r = record(3, 1, [0, 4], [[0.5, 0.2, 0], [0.25, 0.6, 0]]);
  assertClose(camsWithBackground(r, 2), [0.25, 0.16, 1, 0.5, 0.2, 0, 0.25, 0.6, 0]);
  assertClose(camsWithBackground(record(2, 1, [], []), 4), [1, 1], {}, 'no labels: all background');
  // Several exponents: one background plane each, in front of the CAM planes (max fg 0.5 and 0.6 at pixel 0 and 1).
  assertClose(camsWithBackground(r, [1, 2]), [0.5, 0.4, 1, 0.25, 0.16, 1, 0.5, 0.2, 0, 0.25, 0.6, 0]);
});

test('the background exponent of a threshold: the argmax of [bg, cams] is the seed rule max cam > t', () => {
  for (const t of [0.05, 0.2219, 0.39, 0.7]) {
    const alpha = alphaForThreshold(t);
    assert.ok(Math.abs((1 - t) ** alpha - t) < 1e-12, `(1 - t)^alpha = t at t = ${t}`);
    // Just below t the background plane wins, just above it the class does.
    const planes = camsWithBackground(record(2, 1, [7], [[t - 1e-6, t + 1e-6]]), alpha);
    assert.ok(planes[0]! > planes[2]!, `background wins below t = ${t}`);
    assert.ok(planes[1]! < planes[3]!, `the class wins above t = ${t}`);
  }
  // PSA/SEAM's random-walk exponent 6 is this rule at t = 0.2219: ln 0.2219 / ln 0.7781 = 6.000.
  assert.ok(Math.abs(alphaForThreshold(0.2219) - 6) < 0.01);
  for (const bad of [0, 1, -0.1, Number.NaN]) assert.throws(() => alphaForThreshold(bad), /strictly between 0 and 1/);
});

test('affinity labels: la foreground kept, la background uncertain, ha background background (CRF bypassed)', () => {
  // One class (index 2, mask id 3), cams 0.9 / 0.5 / 0.2 / 0.
  //   la (alpha 4):  bg = 1e-4, 0.0625, 0.4096, 1    -> fg, fg, bg, bg
  //   ha (alpha 24): bg = 1e-24, 6e-8, 0.0047, 1     -> fg, fg, fg, bg   (CRF clips scores to 1e-5 first)
  //   label = la (3, 3, 0, 0) -> la bg uncertain (3, 3, 255, 255) -> ha bg background (3, 3, 255, 0)
  const crf = crfParams('psa', { iterations: 0 });
  const r = record(4, 1, [2], [[0.9, 0.5, 0.2, 0]]);
  const labels = affinityLabelMap(grey(4, 1), r, { alphaLow: 4, alphaHigh: 24, crf });
  assert.deepEqual([labels.width, labels.height], [4, 1]);
  assert.deepEqual(Array.from(labels.data), [3, 3, 255, 0]);

  // Two classes (indices 0 and 4: mask ids 1 and 5); the larger CAM wins where both are high.
  //   pixel 0: 0.8 vs 0.3 -> id 1; pixel 1: 0.2 vs 0.7 -> id 5; pixel 2: 0.3 vs 0.3, la bg 0.7^4 = 0.24 < 0.3 -> tie
  //   between the classes goes to the first plane (id 1); ha bg 0.7^24 = 1.9e-4 < 0.3 -> id 1;
  //   pixel 3: 0.1 / 0.05: la bg 0.9^4 = 0.66 -> uncertain; ha bg 0.9^24 = 0.08 < 0.1 -> la's uncertainty stays: 255.
  const two = record(4, 1, [0, 4], [[0.8, 0.2, 0.3, 0.1], [0.3, 0.7, 0.3, 0.05]]);
  assert.deepEqual(Array.from(affinityLabelMap(grey(4, 1), two, { alphaLow: 4, alphaHigh: 24, crf }).data), [1, 5, 1, 255]);
  assert.throws(() => affinityLabelMap(grey(3, 1), two, { alphaLow: 4, alphaHigh: 24, crf }), /CAM is 4x1 but the image 3x1/);
});

test('la/ha combination rules, ha background overriding la foreground', () => {
  const la = Uint8Array.from([0, 2, 2, 0, 3, 0]);
  const ha = Uint8Array.from([0, 0, 2, 2, 3, 5]);
  assert.deepEqual(Array.from(combineAffinityLabels(la, ha)), [0, 0, 2, 255, 3, 255]);
  const counter = new LabelShareCounter();
  counter.add(combineAffinityLabels(la, ha));
  assert.deepEqual(counter.shares, { pixels: 6, uncertain: 2 / 6, background: 2 / 6, foreground: 2 / 6 });
});

test('labels on the feature grid: the vote of the real pixels of each stride x stride cell', () => {
  // 4 x 6 pixels, stride 2 -> 2 x 3 cells:
  //   (0,0) 1 1 / 1 255 -> 1          (0,1) 2 2 / 255 255 -> tie, the class wins   (0,2) 0 3 / 3 0 -> tie, lower id 0
  //   (1,0) 255 255 / 255 1 -> 255    (1,1) all padding -> 255                     (1,2) 3 3 (padding) / 0 255 -> tie -> 0
  const masks = [
    1, 1, 2, 2, 0, 3,
    1, 255, 255, 255, 3, 0,
    255, 255, 1, 1, 3, 3,
    255, 1, 1, 1, 0, 255,
  ];
  const valid = [
    1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1,
    1, 1, 0, 0, 0, 0,
    1, 1, 0, 0, 1, 1,
  ];
  tidy(() => {
    const m = tensor(masks, { shape: [1, 4, 6], dtype: 'int64' });
    const v = tensor(valid, { shape: [1, 4, 6], dtype: 'bool' });
    const grid = labelsOnFeatureGrid(m, v, { stride: 2, height: 2, width: 3, numClasses: 3 });
    assert.deepEqual(grid.shape, [1, 2, 3]);
    assert.deepEqual(vals(grid), [1, 2, 0, 255, 255, 0]);
    // Without a validity map every pixel votes: cell (1,1) is 1, cell (1,2) 3 (two votes).
    assert.deepEqual(vals(labelsOnFeatureGrid(m, undefined, { stride: 2, height: 2, width: 3, numClasses: 3 })), [1, 2, 0, 255, 1, 3]);
    // A crop whose side is not a multiple of the stride: 3 rows -> the second row of cells sees one pixel row.
    const odd = labelsOnFeatureGrid(m.narrow(1, 0, 3), undefined, { stride: 2, height: 2, width: 3, numClasses: 3 });
    assert.deepEqual(vals(odd), [1, 2, 0, 255, 1, 3]);
    assert.throws(() => labelsOnFeatureGrid(m.add(4).maskedFill(m.eq(255), 255), v, { stride: 2, height: 2, width: 3, numClasses: 3 }),
      /mask id 7 is not a class id \(3 classes\) nor 255/);
  });
});

test('pair labels on a hand-made grid (radius 2)', () => {
  // Radius 2: offsets (0,1), (1,-1), (1,0), (1,1); a 2 x 5 grid has "from" cells (0,1), (0,2), (0,3).
  //   row 0:  2   0   1  255 255
  //   row 1:  0  255  1   2   0
  // from (0,1) = 0:   (0,2) 1 neg,     (1,0) 0 bg_pos,  (1,1) 255 -,     (1,2) 1 neg
  // from (0,2) = 1:   (0,3) 255 -,     (1,1) 255 -,     (1,2) 1 fg_pos,  (1,3) 2 neg
  // from (0,3) = 255: (0,4) 255 -,     (1,2) 1 -,       (1,3) 2 -,       (1,4) 0 -
  tidy(() => {
    const labels = tensor([2, 0, 1, 255, 255, 0, 255, 1, 2, 0], { shape: [1, 2, 5], dtype: 'int64' });
    const p = affinityPairLabels(labels, 2);
    assert.deepEqual(p.bgPos.shape, [1, 4, 1, 3]);
    // Offset-major: [k0: c0 c1 c2, k1: ..., k2: ..., k3: ...].
    assert.deepEqual(vals(p.bgPos), [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.deepEqual(vals(p.fgPos), [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert.deepEqual(vals(p.neg), [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0]);
    assert.throws(() => affinityPairLabels(labels.narrow(2, 0, 2), 2), /too small for pairs within radius 2/);
  });
});

test('pair labels at radius 5 equal a loop-by-loop transcription of ExtractAffinityLabelInRadius', () => {
  const H = 9;
  const W = 13;
  const rand = rng(11);
  const values = [0, 0, 1, 2, 255];
  const grid = Array.from({ length: H * W }, () => values[Math.floor(rand() * values.length)]!);
  // PSA: labels_from = label[:-4, 4:-4]; labels_to = label[dy:dy+H-4, 4+dx:4+dx+W-8] for each (dy, dx).
  const offsets = pairOffsets(5);
  const rows = H - 4;
  const cols = W - 8;
  const want = { bg: [] as number[], fg: [] as number[], neg: [] as number[] };
  for (const [dy, dx] of offsets) {
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < cols; x++) {
        const a = grid[y * W + x + 4]!;
        const b = grid[(y + dy) * W + x + 4 + dx]!;
        const valid = a < 255 && b < 255;
        want.bg.push(Number(a === b && a === 0));
        want.fg.push(Number(a === b && a !== 0 && valid));
        want.neg.push(Number(a !== b && valid));
      }
    }
  }
  tidy(() => {
    const p = affinityPairLabels(tensor(grid, { shape: [1, H, W], dtype: 'int64' }), 5);
    assert.deepEqual(p.neg.shape, [1, 34, rows, cols]);
    assert.deepEqual(vals(p.bgPos), want.bg);
    assert.deepEqual(vals(p.fgPos), want.fg);
    assert.deepEqual(vals(p.neg), want.neg);
  });
});

test('affinities exp(-mean |f_i - f_j|), the loss by hand and the direction of its gradient', () => {
  // Radius 2 on a 2 x 3 grid: one "from" cell (0,1), "to" cells (0,2), (1,0), (1,1), (1,2). Features (2 channels):
  //   from (0,1) = (0, 0); (0,2) = (1, 1): d 1;  (1,0) = (0.5, 0.5): d 0.5;  (1,1) = (0, 0.2): d 0.1;  (1,2) = (3, 1): d 2
  // Labels: from 1; (0,2) 1 fg_pos, (1,0) 0 neg, (1,1) 1 fg_pos, (1,2) 255 none; no bg_pos pair.
  const f0 = [9, 0, 1, 0.5, 0, 3]; // channel 0 of rows 0 and 1
  const f1 = [9, 0, 1, 0.5, 0.2, 1];
  const eps = 1e-5;
  const a = [Math.exp(-1), Math.exp(-0.5), Math.exp(-0.1), Math.exp(-2)];
  const fg = -(Math.log(a[0]! + eps) + Math.log(a[2]! + eps)) / (2 + eps);
  const neg = -Math.log(1 + eps - a[1]!) / (1 + eps);
  const want = fg / 4 + neg / 2;
  tidy(() => {
    const features = tensor([...f0, ...f1], { shape: [1, 2, 2, 3] }).requiresGrad_();
    const aff = pairAffinities(features, 2);
    assert.deepEqual(aff.shape, [1, 4, 1, 1]);
    assertClose(aff, a, { rtol: 1e-6 });
    const labels = tensor([9, 1, 1, 0, 1, 255].map((v) => (v === 9 ? 2 : v)), { shape: [1, 2, 3], dtype: 'int64' });
    const terms = affinityLoss(aff, affinityPairLabels(labels, 2));
    assertClose([terms.bg.item(), terms.fg.item(), terms.neg.item(), terms.loss.item()], [0, fg, neg, want], { rtol: 1e-5 });
    terms.loss.backward();
    const g = vals(features.grad!); // [c][y][x]
    const at = (c: number, y: number, x: number) => g[c * 6 + y * 3 + x]!;
    // dL/df_to = (1/4)/(2+eps) * a/(a+eps) * sign(f_to - f_from) / C for a positive pair: pulls (0,2) towards (0,1).
    const pull = (0.25 / (2 + eps)) * (a[0]! / (a[0]! + eps)) / 2;
    assertClose([at(0, 0, 2), at(1, 0, 2)], [pull, pull], { rtol: 1e-4 });
    // A negative pair is pushed apart: the loss falls as (1,0) moves away from (0,0).
    assert.ok(at(0, 1, 0) < 0 && at(1, 1, 0) < 0, `negative pair gradient ${at(0, 1, 0)}, ${at(1, 1, 0)}`);
    assert.equal(at(0, 1, 2), 0, 'an uncertain pair gives no gradient');
    assert.equal(at(0, 0, 0), 0, 'a pixel in no pair gives no gradient');
  });
});

test('the loss guards empty pair sets (all uncertain: zero loss, no NaN)', () => {
  tidy(() => {
    const aff = tensor([0.5, 0.5, 0.5, 0.5], { shape: [1, 4, 1, 1] });
    const labels = tensor([255, 255, 255, 255, 255, 255], { shape: [1, 2, 3], dtype: 'int64' });
    assert.equal(Math.abs(affinityLoss(aff, affinityPairLabels(labels, 2)).loss.item()), 0);
  });
});

test('taps: per-backbone defaults, "name:width" overrides, clear errors', () => {
  const tiny = new TinyBackbone({ channels: 8 });
  assert.deepEqual(affinityTaps(tiny, ['conv1:4', 'output']), [{ name: 'conv1', width: 4 }, { name: 'output', width: 1 }]);
  assert.throws(() => affinityTaps(tiny), /no default taps for backbone 'tiny'; set refine.affinity.taps/);
  assert.throws(() => affinityTaps(tiny, ['conv9']), /has no tap 'conv9' \(it has output, conv1\)/);
  assert.throws(() => affinityTaps(tiny, ['conv1:x']), /is not "name" or "name:width"/);
  const mobilenet = new MobileNetV2({ outputStride: 8 });
  assert.deepEqual(affinityTaps(mobilenet).map((t) => `${t.name}:${t.width}`), ['features.6:32', 'features.13:64', 'output:128']);
  assert.deepEqual(affinityTaps(mobilenet, ['features.13', 'output:16']), [{ name: 'features.13', width: 64 }, { name: 'output', width: 16 }]);
  for (const t of ['features.6', 'features.13']) assert.equal(mobilenet.taps.find((x) => x.name === t)?.stride, 8, `${t} at stride 8`);
  mobilenet.dispose();
  tiny.dispose();
});

test('AffinityNet: the loss of a batch of crop-size labels is finite and trains only what it should', () => {
  manualSeed(1);
  const net = new AffinityNet(new TinyBackbone({ channels: 8 }), { numClasses: 3, radius: 2, taps: [{ name: 'conv1', width: 4 }, { name: 'output', width: 4 }] });
  const groups = net.paramGroups();
  assert.deepEqual(groups.map((g) => [g.name, g.lrMult]), [['backbone', 1], ['new', 10]]);
  assert.equal(groups[1]!.params.length, 3, 'f8_3, f8_4 and f9');
  const keys = [...net.model.stateDict().keys()];
  for (const k of ['f8_3.weight', 'f8_4.weight', 'f9.weight', 'backbone.conv1.weight']) assert.ok(keys.includes(k), `state dict has ${k}`);
  tidy(() => {
    const rand = rng(3);
    const masks = tensor(Array.from({ length: 2 * 24 * 24 }, () => [0, 1, 3, 255][Math.floor(rand() * 4)]!), { shape: [2, 24, 24], dtype: 'int64' });
    const images = tensor(Array.from({ length: 2 * 3 * 24 * 24 }, () => rand() - 0.5), { shape: [2, 3, 24, 24] });
    const out = net.loss({ images, labels: tensor([1, 0, 1, 0, 1, 1], { shape: [2, 3] }), masks, ids: ['a', 'b'] }, { epoch: 0, step: 0, totalSteps: 1 });
    const v = out.loss.item();
    assert.ok(Number.isFinite(v) && v > 0, `loss ${v}`);
    assert.deepEqual(Object.keys(out.parts ?? {}), ['bg', 'fg', 'neg']);
  });
  noGrad(() => tidy(() => {
    const field = net.affinityField(tensor(new Float32Array(3 * 16 * 20), { shape: [1, 3, 16, 20] }));
    assert.deepEqual([field.height, field.width, field.radius], [4, 5, 2]);
    assert.equal(field.weights.length, 4 * 3 * 3);
    // A constant image gives constant features away from the borders; every affinity lies in (0, 1].
    for (const w of field.weights) assert.ok(w > 0 && w <= 1);
    assert.throws(() => net.affinityField(tensor(new Float32Array(3 * 15 * 20), { shape: [1, 3, 15, 20] })), /multiple of 4/);
  }));
  net.model.dispose();
});
