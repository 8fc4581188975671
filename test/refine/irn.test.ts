// IRN's pieces on hand-made inputs: the IR labels from CAM seeds, the paths and the boundary-derived affinities,
// the displacement targets and loss, and the walk on a boundary map.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { manualSeed, noGrad, tensor, tidy } from '../../src/engine/index.js';
import { saveSafetensors } from '../../src/engine/serialize/index.js';
import { mobilenetV2 } from '../../src/backbones/index.js';
import { buildIrNet } from '../../src/pipeline/irn.js';
import { resolveConfig } from '../../src/pipeline/index.js';
import { tempDir } from '../data/helpers.js';
import type { CamRecord } from '../../src/cams/format.js';
import { crfParams } from '../../src/refine/crf-presets.js';
import { affinityPairLabels, pairOffsets } from '../../src/refine/affinity-labels.js';
import { boundaryAffinityField, irLabelMap, irnMasks, irnWalk, irnWalkSnapshots, pathPoints, thresholdArgmax } from '../../src/refine/irn.js';
import { IrNet, boundaryAffinities, displacementTargets, irnLoss, pairDisplacements } from '../../src/refine/irn-net.js';
import { TinyBackbone } from '../methods/tiny.js';
import { assertClose, rng } from '../helpers.js';

function record(width: number, height: number, labels: number[], planes: number[][]): CamRecord {
  return { id: 'hand', labels, width, height, cams: Float32Array.from(planes.flat()), metadata: {} };
}

const grey = (width: number, height: number) => ({ width, height, rgb: new Uint8Array(width * height * 3).fill(128) });

test('IR labels from CAM seeds: confident foreground kept, confident background 0, the band between 255 (CRF bypassed)', () => {
  // One class (index 2, mask id 3), cams 0.5 / 0.2 / 0.01 / 0.04 / 0.06 / 0.3 with confFg 0.3, confBg 0.05:
  //   fg map (0.3 wins ties): 3, bg, bg, bg, bg, bg    bg map: 3, 3, bg, bg, 3, 3
  //   -> 3 where fg; 0 where both say background; 255 where only the fg map does.
  const crf = crfParams('irn', { iterations: 0 });
  const r = record(6, 1, [2], [[0.5, 0.2, 0.01, 0.04, 0.06, 0.3]]);
  assert.deepEqual(Array.from(thresholdArgmax(r, 0.3)), [1, 0, 0, 0, 0, 0]);
  assert.deepEqual(Array.from(irLabelMap(grey(6, 1), r, { confFg: 0.3, confBg: 0.05, crf }).data), [3, 255, 0, 0, 255, 255]);
  // Two classes (0 and 4: ids 1 and 5): the larger CAM wins; below confBg everywhere is background.
  const two = record(4, 1, [0, 4], [[0.8, 0.1, 0.2, 0.01], [0.4, 0.6, 0.1, 0.02]]);
  assert.deepEqual(Array.from(irLabelMap(grey(4, 1), two, { confFg: 0.3, confBg: 0.05, crf }).data), [1, 5, 255, 0]);
  // With the CRF on, seeds that follow the image's colour regions are kept (left half red, right half blue).
  const wide = record(8, 8, [1], [Array.from({ length: 64 }, (_, i) => (i % 8 < 4 ? 0.9 : 0.0))]);
  const halves = { width: 8, height: 8, rgb: Uint8Array.from({ length: 192 }, (_, k) => ((Math.floor(k / 3) % 8 < 4) === (k % 3 === 0) ? 220 : 20)) };
  const labels = irLabelMap(halves, wide, { confFg: 0.3, confBg: 0.05, crf: crfParams('irn') }).data;
  assert.ok(labels.every((v, i) => v === (i % 8 < 4 ? 2 : 0)), Array.from(labels).join(','));
  assert.throws(() => irLabelMap(grey(3, 1), two, { confFg: 0.3, confBg: 0.05, crf }), /CAM is 4x1 but the image 3x1/);
  assert.throws(() => irLabelMap(grey(4, 1), two, { confFg: 0.05, confBg: 0.3, crf }), /confBg \(0\.3\) must not exceed confFg/);
});

test('paths: the cells within one cell of the line between both ends, ends included', () => {
  const sorted = (ps: [number, number][]) => ps.map((p) => p.join(',')).sort();
  assert.deepEqual(sorted(pathPoints([0, 3])), ['0,0', '0,1', '0,2', '0,3']);
  assert.deepEqual(sorted(pathPoints([2, 0])), ['0,0', '1,0', '2,0']);
  // (2, 3): (2x - 3y)^2 / 13 < 1 keeps 8 of the 12 cells of the box (hand-computed).
  assert.deepEqual(sorted(pathPoints([2, 3])), ['0,0', '0,1', '1,0', '1,1', '1,2', '1,3', '2,2', '2,3']);
  assert.deepEqual(sorted(pathPoints([1, -2])), ['0,-1', '0,-2', '0,0', '1,-1', '1,-2', '1,0']);
});

test('affinities from a boundary: 0 across or on the boundary, 1 elsewhere; the padded field agrees inside', () => {
  // 3 x 5 map, boundary in column 2; radius 2: offsets (0,1), (1,-1), (1,0), (1,1); "from" cells are rows 0-1,
  // columns 1-3.
  const b = new Float32Array(15);
  for (let y = 0; y < 3; y++) b[y * 5 + 2] = 1;
  assert.deepEqual(pairOffsets(2), [[0, 1], [1, -1], [1, 0], [1, 1]]);
  const aff = tidy(() => Array.from(boundaryAffinities(tensor(b, { shape: [1, 1, 3, 5] }), 2).toFloat32Array()));
  // per offset, rows 0-1 x columns 1..3
  const expected = [
    [0, 0, 1, 0, 0, 1], // (0,1): col1->2 crosses, col2 is on it, col3->4 free
    [1, 0, 0, 1, 0, 0], // (1,-1): col1->0 free, col2 on it, col3->2 onto it
    [1, 0, 1, 1, 0, 1], // (1,0): only column 2
    [0, 0, 1, 0, 0, 1], // (1,1): col1->2, col2, col3->4 free
  ].flat();
  assert.deepEqual(aff, expected);
  // A soft boundary: the largest value on the path counts.
  // 2 x 3 map, one "from" cell (0, 1); paths (0,1): 0.4 0.2; (1,-1): 0.4 0.1 0.3 0.05; (1,0): 0.4 0.05;
  // (1,1): 0.4 0.2 0.05 0.6.
  const soft = Float32Array.from([0.1, 0.4, 0.2, 0.3, 0.05, 0.6]);
  assertClose(tidy(() => Array.from(boundaryAffinities(tensor(soft, { shape: [1, 1, 2, 3] }), 2).toFloat32Array())), [0.6, 0.6, 0.6, 0.4], { atol: 1e-6 });

  // The walk's field pads with boundary 1: padded pairs have affinity 0, the real ones equal the tensor version.
  const field = boundaryAffinityField(b, 3, 5, 2);
  assert.deepEqual([field.height, field.width], [4, 7]);
  const rows = 3;
  const cols = 5;
  for (const [k] of pairOffsets(2).entries()) {
    for (let r = 0; r < 2; r++) {
      for (let c = 1; c < 4; c++) assert.equal(field.weights[(k * rows + r) * cols + c], expected[k * 6 + r * 3 + (c - 1)], `offset ${k} cell ${r},${c}`);
    }
    // Column 0 of the field is the real column 0: its (0,1) pair goes to column 1, free of the boundary.
  }
  assert.equal(field.weights[0], 1);
  // Row 2 (the last real row) starts pairs into the padding below: affinity 0.
  assert.equal(field.weights[(2 * rows + 2) * cols + 0], 0);
});

test('displacement targets: a field pointing at the object centre costs nothing; a zero field costs the mean offset', () => {
  const radius = 2;
  const offsets = pairOffsets(radius);
  assert.deepEqual(Array.from(tidy(() => displacementTargets(radius).toFloat32Array())), [...offsets.map((o) => o[0]), ...offsets.map((o) => o[1])]);
  tidy(() => {
    const [h, w] = [4, 6];
    // One object covering the grid (label 1), centre (1.5, 2.5): D(y, x) = centre - (y, x).
    const labels = tensor(new Array(h * w).fill(1), { shape: [1, h, w], dtype: 'int64' });
    const pairs = affinityPairLabels(labels, radius);
    const d = new Float32Array(2 * h * w);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) { d[y * w + x] = 1.5 - y; d[h * w + y * w + x] = 2.5 - x; }
    const field = tensor(d, { shape: [1, 2, h, w] });
    const pd = pairDisplacements(field, radius).toFloat32Array();
    // D_i - D_j = j - i = the offset, for every pair.
    const P = offsets.length;
    const cells = pd.length / (2 * P);
    for (let k = 0; k < P; k++) {
      for (let c = 0; c < cells; c++) {
        assertClose([pd[k * cells + c]!, pd[(P + k) * cells + c]!], offsets[k]!, { atol: 1e-6 });
      }
    }
    const boundary = tensor(new Float32Array(h * w), { shape: [1, 1, h, w] });
    const centred = irnLoss(boundary, field, pairs, radius);
    assertClose([centred.dpFg.item(), centred.dpBg.item(), centred.neg.item()], [0, 0, 0], { atol: 1e-6 });
    // No boundary anywhere: affinity 1 -> -log(1 + 1e-5) for the positive pairs.
    assertClose([centred.fgPos.item()], [-Math.log(1 + 1e-5)], { atol: 1e-6 });
    // D = 0: every pair misses its offset by |dy| + |dx|, summed over both channels and halved.
    const zero = irnLoss(boundary, tensor(new Float32Array(2 * h * w), { shape: [1, 2, h, w] }), pairs, radius);
    const expected = offsets.reduce((s, [dy, dx]) => s + Math.abs(dy) + Math.abs(dx), 0) / P / 2;
    assertClose([zero.dpFg.item()], [expected], { atol: 1e-5 });
    // Background pairs want equal displacements: the centred field is penalised there by the same amount.
    const bgPairs = affinityPairLabels(tensor(new Array(h * w).fill(0), { shape: [1, h, w], dtype: 'int64' }), radius);
    assertClose([irnLoss(boundary, field, bgPairs, radius).dpBg.item()], [expected], { atol: 1e-5 });
  });
});

test('the walk spreads a class inside its region and never across a closed boundary', () => {
  // A 3 x 7 grid at stride 1, a boundary wall in column 3. The CAM lights one cell of the left part.
  const [h, w] = [3, 7];
  const boundary = new Float32Array(h * w);
  for (let y = 0; y < h; y++) boundary[y * w + 3] = 1;
  const cam = new Array(h * w).fill(0);
  cam[1 * w + 0] = 1;
  const r = record(w, h, [5], [cam]);
  const walked = irnWalk(r, boundary, { height: h, width: w }, { radius: 3, beta: 10, expTimes: 6, stride: 1 });
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = walked[y * w + x]!;
      if (x < 3) assert.ok(v > 0.01, `left cell ${y},${x} reached: ${v}`);
      else assert.equal(v, 0, `cell ${y},${x} behind the wall stays 0`);
    }
  }
  // Scores are max-normalised and the background is a constant: the left part is class 5 (id 6) at a low threshold.
  const [mask] = irnMasks(r, walked, { height: h, width: w }, 1, [0.05]);
  assert.deepEqual(Array.from(mask!.data), Array.from({ length: h * w }, (_, i) => (i % w < 3 ? 6 : 0)));
  // Without labels every pixel is background.
  assert.deepEqual(Array.from(irnMasks(record(w, h, [], []), new Float32Array(0), { height: h, width: w }, 1, [0.25])[0]!.data), new Array(h * w).fill(0));
});

test('the walk of several lengths at once gives each length what its own walk gives', () => {
  const [h, w] = [4, 6];
  const boundary = Float32Array.from({ length: h * w }, (_, i) => (i % w === 3 ? 0.7 : 0.05 * (i % 3)));
  const cams = [Array.from({ length: h * w }, (_, i) => (i === 0 ? 1 : 0)), Array.from({ length: h * w }, (_, i) => (i === h * w - 1 ? 0.8 : 0.1))];
  const r = record(w, h, [1, 4], cams);
  const o = { radius: 2, beta: 10, stride: 1 };
  const grid = { height: h, width: w };
  const [one, four, eight] = irnWalkSnapshots(r, boundary, grid, o, [0, 2, 3]);
  for (const [e, got] of [[0, one], [2, four], [3, eight]] as const) {
    assert.deepEqual(Array.from(got!), Array.from(irnWalk(r, boundary, grid, { ...o, expTimes: e })), `2^${e} steps`);
  }
  assert.notDeepEqual(Array.from(one!), Array.from(eight!), 'the walk moves the scores');
  assert.throws(() => irnWalkSnapshots(r, boundary, grid, o, [1.5]), /non-negative integers/);
});

test("the CAM exponent (AMR's 1.5) walks the CAMs raised to it", () => {
  // At stride 1 the pooling is the identity, so CAMs^1.5 walked at exponent 1 is what exponent 1.5 must give.
  const [h, w] = [4, 6];
  const boundary = Float32Array.from({ length: h * w }, (_, i) => (i % w === 2 ? 0.6 : 0.1));
  const cams = [Array.from({ length: h * w }, (_, i) => (i % 5) / 4), Array.from({ length: h * w }, (_, i) => ((i * 7) % 3) / 2)];
  const grid = { height: h, width: w };
  const o = { radius: 2, beta: 10, expTimes: 3, stride: 1 };
  const got = irnWalk(record(w, h, [0, 3], cams), boundary, grid, { ...o, camExponent: 1.5 });
  const want = irnWalk(record(w, h, [0, 3], cams.map((c) => c.map((v) => v ** 1.5))), boundary, grid, o);
  assertClose(Array.from(got), Array.from(want), { atol: 1e-6 });
  assert.notDeepEqual(Array.from(got), Array.from(irnWalk(record(w, h, [0, 3], cams), boundary, grid, o)), 'the exponent changes the walk');
  assert.throws(() => irnWalk(record(w, h, [0, 3], cams), boundary, grid, { ...o, camExponent: 0 }), /camExponent must be positive/);
});

test('IRNet: a frozen backbone, the boundary and displacement groups, a finite loss and a flip-averaged boundary map', () => {
  manualSeed(2);
  const net = new IrNet(new TinyBackbone({ channels: 8 }), { numClasses: 2, radius: 2 });
  assert.equal(net.stride, 4);
  assert.deepEqual(net.paramGroups().map((g) => [g.name, g.lrMult]), [['boundary', 1], ['displacement', 10]]);
  assert.ok(net.backbone.trainableParameters().length === 0, 'the backbone is frozen');
  tidy(() => {
    const rand = rng(5);
    const masks = tensor(Array.from({ length: 2 * 32 * 32 }, () => [0, 1, 2, 255][Math.floor(rand() * 4)]!), { shape: [2, 32, 32], dtype: 'int64' });
    const images = tensor(Array.from({ length: 2 * 3 * 32 * 32 }, () => rand() - 0.5), { shape: [2, 3, 32, 32] });
    const out = net.loss({ images, labels: tensor([1, 0, 1, 1], { shape: [2, 2] }), masks, ids: ['a', 'b'] }, { epoch: 0, step: 0, totalSteps: 1 });
    assert.ok(Number.isFinite(out.loss.item()) && out.loss.item() > 0);
    assert.deepEqual(Object.keys(out.parts ?? {}), ['bgPos', 'fgPos', 'neg', 'dpFg', 'dpBg']);
  });
  noGrad(() => tidy(() => {
    const rand = rng(6);
    const image = tensor(Array.from({ length: 3 * 16 * 24 }, () => rand()), { shape: [1, 3, 16, 24] });
    const a = net.boundaryMap(image);
    const b = net.boundaryMap(image.flip(3));
    assert.deepEqual([a.height, a.width], [4, 6]);
    // Averaged over the image and its mirror: the mirror image's map is the map mirrored.
    for (let y = 0; y < 4; y++) for (let x = 0; x < 6; x++) assertClose([b.boundary[y * 6 + x]!], [a.boundary[y * 6 + 5 - x]!], { atol: 1e-5 });
    assert.throws(() => net.boundaryMap(tensor(new Float32Array(3 * 15 * 24), { shape: [1, 3, 15, 24] })), /multiple of 4/);
  }));
  net.model.dispose();
});

test("refine.irn.weights: a classifier's model file gives IRNet that classifier's backbone; other keys are left, a wrong file is refused", async (t) => {
  const dir = await tempDir(t);
  manualSeed(4);
  // MobileNetV2 (random weights) reads backbone files only, so the classifier's file goes through IRN's own loading.
  const classifier = mobilenetV2();
  const model = join(dir, 'model.safetensors');
  // As `weakseg train` writes it: the backbone under 'backbone.', the method's own layers beside it.
  const state = new Map([...classifier.stateDict()].map(([k, v]) => [`backbone.${k}`, v]));
  state.set('fc8.weight', tensor(new Float32Array(6), { shape: [3, 2] }));
  saveSafetensors(model, state, { format: 'weakseg-model/1', method: 'cam', backbone: 'mobilenet_v2' });
  const config = (weights: string) => resolveConfig({ runDir: dir, data: { root: dir }, model: { backbone: 'mobilenet_v2' }, refine: { irn: { weights } } });
  manualSeed(5);
  const net = buildIrNet(config(model), 3, {});
  const key = [...classifier.stateDict().keys()].find((k) => k.endsWith('weight'))!;
  assert.deepEqual([...net.backbone.stateDict().get(key)!.dataSync()], [...classifier.stateDict().get(key)!.dataSync()]);
  net.model.dispose();
  // A model file of another architecture names the setting and the keys that do not match.
  saveSafetensors(model, new Map([['backbone.other.weight', tensor(new Float32Array(2), { shape: [2] })]]), { format: 'weakseg-model/1' });
  assert.throws(() => buildIrNet(config(model), 3, {}), /refine\.irn\.weights: .*missing keys/);
  classifier.dispose();
});
