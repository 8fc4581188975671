// Repeat-factor sampling (LVIS): the factors of a hand-counted dataset, the per-epoch counts, and the loader's
// epochs under them (seeded, N items each, repeats augmented independently).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchLoader, type Batch, type ItemTransform } from '../../src/data/loader.js';
import { epochRepeats, repeatFactors } from '../../src/data/sampling.js';

// Classes a (0), b (1), c (2) over 10 images: a in 8 (f 0.8), b in 2 (f 0.2), c in 1 (f 0.1); one image has none.
const LABELS = [[0], [0], [0], [0], [0], [0], [0, 1], [0, 2], [1], []];
const items = LABELS.map((labels, i) => ({ id: `i${i}`, imagePath: `/nowhere/${i}.jpg`, labels }));

test('repeat factors: r_c = max(1, sqrt(t / f_c)), an image takes the largest of its classes, 1 without classes', () => {
  // t = 0.5: r_a = max(1, sqrt(0.5 / 0.8)) = 1, r_b = sqrt(0.5 / 0.2) = sqrt(2.5), r_c = sqrt(0.5 / 0.1) = sqrt(5).
  const r = repeatFactors(items, 3, 0.5);
  const expected = [1, 1, 1, 1, 1, 1, Math.sqrt(2.5), Math.sqrt(5), Math.sqrt(2.5), 1];
  r.forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) < 1e-12, `image ${i}: ${v} vs ${expected[i]}`));
  // t = 0.1: only c (f = t) is at the threshold, so nothing is repeated.
  assert.deepEqual(repeatFactors(items, 3, 0.1), new Array(10).fill(1));
  assert.throws(() => repeatFactors(items, 3, 0), /threshold must be in \(0, 1\]/);
});

test('epoch repeats: N items per epoch, each image floor or ceil of N r_i / sum r, on average exactly that, seeded', () => {
  const r = repeatFactors(items, 3, 0.5);
  const total = r.reduce((a, b) => a + b, 0);
  const expected = r.map((f) => (10 * f) / total); // 0.807 for r = 1, 1.275 for b, 1.804 for c
  const sums = new Array(10).fill(0);
  const epochs = 4000;
  for (let e = 0; e < epochs; e++) {
    const counts = epochRepeats(r, 7, e);
    assert.equal(counts.reduce((a, b) => a + b, 0), 10);
    counts.forEach((c, i) => {
      assert.ok(c === Math.floor(expected[i]!) || c === Math.ceil(expected[i]!), `epoch ${e} image ${i}: ${c} for ${expected[i]}`);
      sums[i] += c;
    });
  }
  sums.forEach((s, i) => assert.ok(Math.abs(s / epochs - expected[i]!) < 0.03, `image ${i}: mean ${s / epochs} vs ${expected[i]}`));
  assert.deepEqual(epochRepeats(r, 7, 3), epochRepeats(r, 7, 3));
  assert.ok(Array.from({ length: 20 }, (_, e) => epochRepeats(r, 7, e).join()).some((c, _, all) => c !== all[0]), 'epochs differ');
  // Equal factors: every image exactly once.
  assert.deepEqual(epochRepeats(new Array(10).fill(2), 7, 0), new Array(10).fill(1));
  assert.throws(() => epochRepeats([0, 0], 0, 0), /not all 0/);
});

/** One 1x1x2 sample: the item index and a draw of its generator. */
const drawTransform: ItemTransform = async (_item, { index, rng }) => ({
  image: Float32Array.of(index, rng.float()), channels: 1, height: 1, width: 2,
});

async function epochOf(loader: BatchLoader, epoch: number): Promise<{ index: number; draw: number }[]> {
  const out: { index: number; draw: number }[] = [];
  for await (const b of loader.epoch(epoch) as AsyncGenerator<Batch>) {
    b.indices.forEach((index, k) => out.push({ index, draw: b.images[2 * k + 1]! }));
  }
  return out;
}

test('loader with repeat factors: the epoch holds the drawn counts in a seeded order; repeats get their own draws', async () => {
  const dataset = { classes: ['a', 'b', 'c'], items };
  const r = repeatFactors(items, 3, 0.5);
  const loader = new BatchLoader(dataset, drawTransform, { batchSize: 5, seed: 7, repeatFactors: r, dropLast: true });
  assert.equal(loader.batchesPerEpoch, 2, 'an epoch keeps its N items');
  for (const epoch of [0, 1, 2]) {
    const seen = await epochOf(loader, epoch);
    const counts = new Array(10).fill(0);
    for (const { index } of seen) counts[index]++;
    assert.deepEqual(counts, epochRepeats(r, 7, epoch));
    const again = await epochOf(new BatchLoader(dataset, drawTransform, { batchSize: 5, seed: 7, repeatFactors: r }), epoch);
    assert.deepEqual(again, seen, 'the same seed gives the same order and augmentation');
    const byIndex = new Map<number, number[]>();
    for (const { index, draw } of seen) byIndex.set(index, [...(byIndex.get(index) ?? []), draw]);
    for (const [index, draws] of byIndex) assert.equal(new Set(draws).size, draws.length, `repeats of ${index} are augmented differently`);
  }
  const other = await epochOf(new BatchLoader(dataset, drawTransform, { batchSize: 5, seed: 8, repeatFactors: r }), 0);
  assert.notDeepEqual(other.map((s) => s.index), (await epochOf(loader, 0)).map((s) => s.index));
  assert.throws(() => new BatchLoader(dataset, drawTransform, { batchSize: 5, repeatFactors: [1, 2] }), /2 factors for 10 items/);
  assert.throws(() => new BatchLoader(dataset, drawTransform, { batchSize: 5, repeatFactors: r, shuffle: false }), /needs shuffle/);
});
