// The sparse random walk against infer_aff.py's dense construction (A from PSA's index lists, A^beta, column
// normalisation, logt squarings) built explicitly in float64, plus the walk's input and output on hand cases.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { CamRecord } from '../../src/cams/format.js';
import { pairOffsets } from '../../src/refine/affinity-labels.js';
import {
  type AffinityField, propagate, propagateSnapshots, randomWalk, randomWalkMask, randomWalkMaskGrid, transition, walkInput, walkedScoresToPlanes,
} from '../../src/refine/random-walk.js';
import { CRF_PRESETS } from '../../src/refine/crf-presets.js';
import { assertClose, rng } from '../helpers.js';

/** infer_aff.py `get_indices_in_radius` + resnet38_aff.py's to_dense: the dense affinity matrix, self-affinity 1. */
function denseAffinity(field: AffinityField): Float64Array {
  const { height: h, width: w, radius: r } = field;
  const n = h * w;
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) A[i * n + i] = 1;
  const floor = r - 1;
  const rows = h - floor;
  const cols = w - 2 * floor;
  let k = 0;
  for (const [dy, dx] of pairOffsets(r)) {
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < cols; x++) {
        const from = y * w + (x + floor);
        const to = (y + dy) * w + (x + floor + dx);
        const a = field.weights[k++]!;
        A[from * n + to] = a;
        A[to * n + from] = a;
      }
    }
  }
  return A;
}

function matmul(a: Float64Array, b: Float64Array, n: number, m: number, p: number): Float64Array {
  const out = new Float64Array(n * p);
  for (let i = 0; i < n; i++) for (let k = 0; k < m; k++) {
    const v = a[i * m + k]!;
    if (v !== 0) for (let j = 0; j < p; j++) out[i * p + j] += v * b[k * p + j]!;
  }
  return out;
}

/** x T^(2^logt) with T = A^beta / column sums, squared logt times, as infer_aff.py does it. */
function denseWalk(x: Float32Array, channels: number, field: AffinityField, beta: number, logt: number): Float64Array {
  const n = field.height * field.width;
  const A = denseAffinity(field).map((v) => v ** beta);
  const col = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) col[j] += A[i * n + j]!;
  let T: Float64Array = A.map((v, idx) => v / col[idx % n]!);
  for (let s = 0; s < logt; s++) T = matmul(T, T, n, n, n);
  return matmul(Float64Array.from(x), T, channels, n, n);
}

function randomField(height: number, width: number, radius: number, seed: number): AffinityField {
  const rand = rng(seed);
  const count = pairOffsets(radius).length * (height - radius + 1) * (width - 2 * radius + 2);
  return { height, width, radius, weights: Float32Array.from({ length: count }, () => 0.2 + 0.8 * rand()) };
}

test('sparse propagation equals the dense power T^(2^logt) on small grids', () => {
  for (const [h, w, radius, beta, logt] of [[5, 6, 2, 8, 3], [5, 6, 3, 2, 4], [6, 9, 5, 8, 2], [5, 6, 2, 1, 0]] as const) {
    const field = randomField(h, w, radius, h * 100 + radius);
    const channels = 3;
    const rand = rng(radius);
    const x = Float32Array.from({ length: channels * h * w }, () => rand());
    const want = denseWalk(x, channels, field, beta, logt);
    assertClose(randomWalk(x, channels, field, { beta, logt }), want, { rtol: 1e-5, atol: 1e-7 }, `${h}x${w} r${radius} beta ${beta} logt ${logt}`);
  }
});

test('the transition is column-stochastic: a constant vector stays constant', () => {
  const field = randomField(7, 9, 3, 5);
  const ones = new Float32Array(2 * 63).fill(1);
  assertClose(propagate(ones, 2, transition(field, 8), 16), new Float32Array(2 * 63).fill(1), { rtol: 1e-6 });
  // Zero affinities: T is the identity and nothing moves.
  const still = { ...field, weights: new Float32Array(field.weights.length) };
  const x = Float32Array.from({ length: 63 }, (_, i) => i);
  assertClose(randomWalk(x, 1, still, { beta: 8, logt: 3 }), x);
  assert.throws(() => transition({ ...field, weights: new Float32Array(5) }, 8), /5 weights, expected/);
  assert.throws(() => transition({ ...field, weights: field.weights.map(() => NaN) }, 8), /not a non-negative number/);
});

function record(width: number, height: number, labels: number[], planes: number[][]): CamRecord {
  return { id: 'hand', labels, width, height, cams: Float32Array.from(planes.flat()), metadata: {} };
}

test('walk input: [bg, cams] zero-padded to the stride and average-pooled', () => {
  // 3 x 3 image, one label, stride 2 -> 2 x 2 cells. cam = 0.5 everywhere but (0,0) = 1 -> bg (alpha 1) 0.5, 0 there.
  const r = record(3, 3, [4], [[1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]]);
  const input = walkInput(r, 1, 2);
  assert.deepEqual([input.channels, input.height, input.width], [2, 2, 2]);
  // bg cells: (0,0) (0 + 0.5*3)/4, (0,1) (0.5*2)/4 (two pixels, two of padding), (1,0) 0.5*2/4, (1,1) 0.5/4.
  // cam cells: (0,0) (1 + 1.5)/4, (0,1) 1/4, (1,0) 1/4, (1,1) 0.5/4.
  assertClose(input.scores, [0.375, 0.25, 0.25, 0.125, 0.625, 0.25, 0.25, 0.125]);
});

test('walked scores upsample bilinearly (align corners off), crop, argmax; uncertainBelow leaves pixels unclaimed', () => {
  // 1 x 2 cells, stride 2 -> 2 x 4 pixels. Along x the source coordinate is (x + 0.5) / 2 - 0.5:
  // -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1), so channel 0 reads 1, 0.75, 0.25, 0 and channel 1 the rest.
  const scores = Float32Array.from([1, 0, 0, 1]);
  const planes = walkedScoresToPlanes(scores, 2, { height: 1, width: 2 }, 2, { width: 3, height: 2 });
  assert.deepEqual(Array.from(planes), [0, 0, 1, 0, 0, 1]);
  // u = 0.8: a plane claims only where it reaches 0.8 of its peak (1): x = 0 for channel 0, x = 3 for channel 1.
  const strict = walkedScoresToPlanes(scores, 2, { height: 1, width: 2 }, 2, { width: 4, height: 1 }, 0.8);
  assert.deepEqual(Array.from(strict), [0, 255, 255, 1]);
});

test('walked scores through a dense CRF: a weakly wrong cell inside a uniform region follows its region; 255 stays 255', () => {
  // Stride 1 (no upsampling): a 12 x 12 grid, black left half scored for plane 0, white right half for plane 1
  // (0.8 against 0.2); cell (3, 3) on the black side leans to plane 1 (0.6). Argmax keeps it, the CRF does not.
  const [W, H] = [12, 12];
  const rgb = new Uint8Array(W * H * 3);
  const scores = new Float32Array(2 * W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const p = y * W + x;
      if (x >= W / 2) rgb.fill(255, 3 * p, 3 * p + 3);
      const s1 = x === 3 && y === 3 ? 0.6 : x >= W / 2 ? 0.8 : 0.2;
      scores[p] = 1 - s1;
      scores[W * H + p] = s1;
    }
  }
  const grid = { height: H, width: W };
  const image = { width: W, height: H };
  const crf = { params: CRF_PRESETS.psa, image: { rgb, width: W, height: H } };
  const plain = walkedScoresToPlanes(scores, 2, grid, 1, image);
  const refined = walkedScoresToPlanes(scores, 2, grid, 1, image, 0, crf);
  assert.equal(plain[3 * W + 3], 1);
  assert.deepEqual(Array.from(refined), Array.from({ length: W * H }, (_, p) => (p % W >= W / 2 ? 1 : 0)));
  // uncertainBelow 0.9: plane 0 peaks at 0.8 (claims >= 0.72), plane 1 at 0.8 too; cell (3, 3) (0.4 / 0.6) is
  // claimed by neither and stays 255 after the CRF.
  const strict = walkedScoresToPlanes(scores, 2, grid, 1, image, 0.9, crf);
  assert.equal(strict[3 * W + 3], 255);
  assert.equal(strict[0], 0);
  assert.throws(() => walkedScoresToPlanes(scores, 2, grid, 1, image, 0, { ...crf, image: { rgb, width: 6, height: 24 } }),
    /the image is 6x24, the scores 12x12/);
});

test('random-walk mask: with zero affinities the walk keeps the pooled CAM decision; mask ids of the labels', () => {
  // 4 x 16 image, stride 2 -> a 2 x 8 grid (radius 2 needs 2 rows and 3 columns). Class index 1 (id 2) on the
  // left half at 0.9, class index 6 (id 7) on columns 8..11 at 0.8, nothing on the last 4 columns.
  const W = 16;
  const H = 4;
  const a = new Array<number>(W * H).fill(0);
  const b = new Array<number>(W * H).fill(0);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    if (x < 8) a[y * W + x] = 0.9;
    else if (x < 12) b[y * W + x] = 0.8;
  }
  const r = record(W, H, [1, 6], [a, b]);
  const field: AffinityField = { height: 2, width: 8, radius: 2, weights: new Float32Array(4 * 1 * 6) };
  const mask = randomWalkMask(r, field, { beta: 8, logt: 2, bgAlpha: 6, stride: 2 });
  const row = Array.from(mask.data.subarray(0, W));
  assert.deepEqual(row, [2, 2, 2, 2, 2, 2, 2, 2, 7, 7, 7, 7, 0, 0, 0, 0]);
  assert.throws(() => randomWalkMask(r, { ...field, width: 7 }, { beta: 8, logt: 2, bgAlpha: 6, stride: 2 }), /pool to 2x8 at stride 2, the affinity field is 2x7/);
});

test('one walk for several background exponents equals a walk per exponent (the walk is linear)', () => {
  const rand = rng(7);
  const W = 20;
  const H = 12;
  const r = record(W, H, [3, 9], [Array.from({ length: W * H }, () => rand()), Array.from({ length: W * H }, () => rand() ** 2)]);
  const field = randomField(6, 10, 2, 11);
  const alphas = [0.5, 2, 6, 24];
  const together = randomWalkMaskGrid(r, field, { betas: [8], logts: [3], bgAlphas: alphas, stride: 2 });
  assert.equal(together.length, alphas.length);
  alphas.forEach((bgAlpha, k) => {
    assert.equal(together[k]!.bgAlpha, bgAlpha);
    const alone = randomWalkMask(r, field, { beta: 8, logt: 3, bgAlpha, stride: 2 });
    assert.deepEqual(together[k]!.mask.data, alone.data, `exponent ${bgAlpha}`);
  });
  // Larger exponents shrink the background: more foreground pixels.
  const fg = together.map((m) => m.mask.data.filter((v) => v !== 0).length);
  for (let k = 1; k < fg.length; k++) assert.ok(fg[k]! >= fg[k - 1]!, `foreground pixels per exponent ${fg}`);
  assert.throws(() => randomWalkMaskGrid(r, field, { betas: [8], logts: [3], bgAlphas: [], stride: 2 }), /no background exponent/);
  assert.throws(() => randomWalkMaskGrid(r, field, { betas: [8], logts: [1.5], bgAlphas: [6], stride: 2 }), /logt must be a non-negative integer/);
});

test('a grid of betas, step counts and exponents: each point equals its own walk, in beta, logt, exponent order', () => {
  const rand = rng(9);
  const W = 20;
  const H = 12;
  const r = record(W, H, [4, 11], [Array.from({ length: W * H }, () => rand() ** 3), Array.from({ length: W * H }, () => rand() ** 2)]);
  const field = randomField(6, 10, 2, 5);
  // Step counts out of order and repeated: the walk runs to the longest once and snapshots the shorter ones.
  const grid = { betas: [2, 8], logts: [4, 0, 2, 4], bgAlphas: [1, 6] };
  const masks = randomWalkMaskGrid(r, field, { ...grid, stride: 2 });
  assert.equal(masks.length, 2 * 4 * 2);
  let k = 0;
  for (const beta of grid.betas) for (const logt of grid.logts) for (const bgAlpha of grid.bgAlphas) {
    const m = masks[k++]!;
    assert.deepEqual([m.beta, m.logt, m.bgAlpha], [beta, logt, bgAlpha]);
    assert.deepEqual(m.mask.data, randomWalkMask(r, field, { beta, logt, bgAlpha, stride: 2 }).data, `beta ${beta}, logt ${logt}, exponent ${bgAlpha}`);
  }
  // The settings matter on this field: not every point gives the same mask.
  assert.ok(new Set(masks.map((m) => m.mask.data.join(''))).size > 2);
});

test('propagateSnapshots: each snapshot equals a walk of that many steps; step counts must not decrease', () => {
  const field = randomField(5, 7, 2, 3);
  const t = transition(field, 4);
  const rand = rng(2);
  const x = Float32Array.from({ length: 2 * 35 }, () => rand());
  const snaps = propagateSnapshots(x, 2, t, [0, 1, 1, 5]);
  assert.deepEqual(snaps[0], x);
  [1, 1, 5].forEach((s, i) => assertClose(snaps[i + 1]!, propagate(x, 2, t, s), { rtol: 0, atol: 0 }, `${s} steps`));
  assert.throws(() => propagateSnapshots(x, 2, t, [3, 2]), /non-decreasing/);
});

test('random walk spreads a label along strong affinities and not across weak ones', () => {
  // 2 x 8 grid, radius 2. Columns 0-3 and 4-7 are two regions: affinity 1 inside a region, 0 across. The CAM
  // is confident only in column 1 (class) and column 6 (background); the walk should fill each region.
  const h = 2;
  const w = 8;
  const radius = 2;
  const offsets = pairOffsets(radius);
  const rows = h - radius + 1;
  const cols = w - 2 * radius + 2;
  const weights = new Float32Array(offsets.length * rows * cols);
  offsets.forEach(([, dx], k) => {
    for (let c = 0; c < cols; c++) {
      const x = c + radius - 1;
      weights[k * cols + c] = (x < 4) === (x + dx < 4) ? 1 : 0;
    }
  });
  const bg = new Float32Array(h * w).fill(0.1);
  const fg = new Float32Array(h * w).fill(0);
  for (let y = 0; y < h; y++) {
    fg[y * w + 1] = 1;
    bg[y * w + 6] = 1;
  }
  const walked = randomWalk(Float32Array.from([...bg, ...fg]), 2, { height: h, width: w, radius, weights }, { beta: 8, logt: 6 });
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = y * w + x;
      const label = walked[h * w + p]! > walked[p]! ? 1 : 0;
      // PSA's pair set starts pairs only in columns r-1..w-r of the top h-r+1 rows, so the top-left cell is in
      // no pair at radius 2 and keeps its own scores (background here).
      const want = y === 0 && x === 0 ? 0 : x < 4 ? 1 : 0;
      assert.equal(label, want, `pixel (${y}, ${x}): bg ${walked[p]}, fg ${walked[h * w + p]}`);
    }
  }
});
