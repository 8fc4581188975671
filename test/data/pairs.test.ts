// The loader's partner sampler: partners share a class (with probability shareClass), are never the item itself,
// are the same after a mid-epoch resume, and leave every item's own augmentation exactly as without pairs.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type Batch, BatchLoader } from '../../src/data/index.js';
import { synthDataset, synthTransform } from '../methods/tiny.js';

const dataset = synthDataset(40, 3);

async function epochBatches(loader: BatchLoader, epoch: number, skipBatches = 0): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of loader.epoch(epoch, { skipBatches })) out.push(b);
  return out;
}

const labelsOf = (i: number) => dataset.items[i]!.labels;

test('pairs: with shareClass 1 every partner shares a class with its item, is another image, and its labels ride along', async () => {
  const loader = new BatchLoader(dataset, synthTransform(8), { batchSize: 5, seed: 4, pairs: { shareClass: 1 } });
  for (const epoch of [0, 1]) {
    for (const b of await epochBatches(loader, epoch)) {
      assert.ok(b.partner, 'the batch carries partners');
      assert.equal(b.partner.images.length, b.images.length);
      b.indices.forEach((i, k) => {
        const p = b.partner!.indices[k]!;
        assert.notEqual(p, i, 'never paired with itself');
        assert.ok(labelsOf(p).some((c) => labelsOf(i).includes(c)), `item ${i} ${labelsOf(i)} and partner ${p} ${labelsOf(p)} share a class`);
        assert.equal(b.partner!.ids[k], dataset.items[p]!.id);
        const row = Array.from(b.partner!.labels.subarray(k * 3, k * 3 + 3));
        assert.deepEqual(row, [0, 1, 2].map((c) => (labelsOf(p).includes(c) ? 1 : 0)));
      });
    }
  }
});

test('pairs: shareClass 0 draws any other image; the share of class-sharing partners follows the probability', () => {
  // Over many (epoch, item) draws: with p = 0.5 the sharing share is 0.5 + 0.5 * (share among random partners).
  const loader = (p: number) => new BatchLoader(dataset, synthTransform(8), { batchSize: 5, seed: 4, pairs: { shareClass: p } });
  const share = (l: BatchLoader) => {
    let n = 0;
    let shared = 0;
    for (let e = 0; e < 50; e++) {
      for (let i = 0; i < dataset.items.length; i++) {
        const p = l.partnerOf(i, e);
        assert.notEqual(p, i);
        n++;
        if (labelsOf(p).some((c) => labelsOf(i).includes(c))) shared++;
      }
    }
    return shared / n;
  };
  const random = share(loader(0));
  const half = share(loader(0.5));
  assert.ok(share(loader(1)) === 1);
  assert.ok(random < 0.9, `random partners share a class less often (${random})`);
  assert.ok(Math.abs(half - (0.5 + 0.5 * random)) < 0.05, `p 0.5: ${half} vs ${0.5 + 0.5 * random}`);
});

test('pairs: a resumed epoch (skipBatches) sees the same pairs and the same partner pixels', async () => {
  const make = () => new BatchLoader(dataset, synthTransform(8), { batchSize: 5, seed: 9, pairs: { shareClass: 0.7 }, prefetch: 1 });
  const full = await epochBatches(make(), 2);
  const resumed = await epochBatches(make(), 2, 3);
  assert.equal(resumed.length, full.length - 3);
  resumed.forEach((b, k) => {
    const a = full[k + 3]!;
    assert.deepEqual(b.indices, a.indices);
    assert.deepEqual(b.partner!.indices, a.partner!.indices);
    assert.deepEqual(b.partner!.images, a.partner!.images);
    assert.deepEqual(b.images, a.images);
  });
});

test('pairs off: the batches are bit-identical to the loader without the option, and pairs leave the items themselves unchanged', async () => {
  const plain = await epochBatches(new BatchLoader(dataset, synthTransform(8), { batchSize: 5, seed: 6 }), 1);
  const paired = await epochBatches(new BatchLoader(dataset, synthTransform(8), { batchSize: 5, seed: 6, pairs: { shareClass: 1 } }), 1);
  assert.equal(plain.length, paired.length);
  plain.forEach((b, k) => {
    assert.equal(b.partner, undefined);
    assert.deepEqual(b.indices, paired[k]!.indices);
    assert.deepEqual(b.images, paired[k]!.images, 'an item is augmented from the same stream with or without a partner');
    assert.deepEqual(b.labels, paired[k]!.labels);
  });
});

test('pairs: bad options are errors', () => {
  assert.throws(() => new BatchLoader(dataset, synthTransform(8), { batchSize: 5, pairs: { shareClass: 1.5 } }), /probability/);
  assert.throws(() => new BatchLoader({ classes: ['a'], items: [dataset.items[0]!] }, synthTransform(8), { batchSize: 1, pairs: { shareClass: 1 } }), /two images/);
});
