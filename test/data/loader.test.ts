import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { Dataset, DatasetItem } from '../../src/data/dataset.js';
import { BadFileLog, DataError } from '../../src/data/errors.js';
import { BatchLoader, type Batch, type ItemTransform } from '../../src/data/loader.js';
import { encodeMask } from '../../src/data/mask.js';
import { evalTransform, trainTransform } from '../../src/data/transforms.js';
import { solidJpeg, tempDir, truncatedJpeg, writeFileDeep } from './helpers.js';

async function collect(loader: BatchLoader, epoch: number): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const batch of loader.epoch(epoch)) out.push(batch);
  return out;
}

/** A dataset of `n` in-memory items (no files) with labels [i % 3]. */
function fakeDataset(n: number): Dataset {
  return {
    classes: ['a', 'b', 'c'],
    items: Array.from({ length: n }, (_, i) => ({ id: `item${i}`, imagePath: `/nowhere/${i}.jpg`, labels: [i % 3] })),
  };
}

/** One 1x2x2 sample whose pixels all hold the item index. */
const indexTransform: ItemTransform = async (_item, { index }) => ({
  image: new Float32Array(4).fill(index),
  channels: 1,
  height: 2,
  width: 2,
});

test('batches: shapes, multi-hot labels, each item once per epoch, seeded order', async () => {
  const ds = fakeDataset(10);
  const loader = new BatchLoader(ds, indexTransform, { batchSize: 4, seed: 1 });
  assert.equal(loader.batchesPerEpoch, 3);
  const batches = await collect(loader, 0);
  assert.deepEqual(batches.map((b) => b.shape), [[4, 1, 2, 2], [4, 1, 2, 2], [2, 1, 2, 2]]);
  const order = batches.flatMap((b) => b.indices);
  assert.deepEqual([...order].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.notDeepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const first = batches[0] as Batch;
  first.indices.forEach((index, k) => {
    assert.equal(first.ids[k], `item${index}`);
    assert.equal(first.images[k * 4], index, 'image k belongs to item k');
    const row = [...first.labels.subarray(k * 3, k * 3 + 3)];
    assert.deepEqual(row, [0, 1, 2].map((c) => (c === index % 3 ? 1 : 0)));
  });

  // Same seed and epoch: same order; another epoch: another order; no shuffle: dataset order.
  const again = (await collect(new BatchLoader(ds, indexTransform, { batchSize: 4, seed: 1 }), 0)).flatMap((b) => b.indices);
  assert.deepEqual(again, order);
  assert.notDeepEqual((await collect(loader, 1)).flatMap((b) => b.indices), order);
  const plain = new BatchLoader(ds, indexTransform, { batchSize: 4, shuffle: false, dropLast: true });
  assert.equal(plain.batchesPerEpoch, 2);
  assert.deepEqual((await collect(plain, 0)).map((b) => b.indices), [[0, 1, 2, 3], [4, 5, 6, 7]]);
});

test('each item gets its own seeded rng, independent of scheduling', async () => {
  const draws = async (seed: number, epoch: number) => {
    const seen = new Map<number, number>();
    const transform: ItemTransform = async (item, { rng, index }) => {
      // Finish in scrambled order.
      await new Promise((r) => setTimeout(r, (index * 7) % 5));
      seen.set(index, rng.nextUint32());
      return indexTransform(item, { rng, index, epoch });
    };
    await collect(new BatchLoader(fakeDataset(8), transform, { batchSize: 3, seed, prefetch: 3 }), epoch);
    return [...seen.entries()].sort((a, b) => a[0] - b[0]);
  };
  assert.deepEqual(await draws(5, 0), await draws(5, 0));
  assert.notDeepEqual(await draws(5, 0), await draws(5, 1));
});

test('prefetch bounds the work in flight, and consumer waits are measured', async () => {
  let inFlight = 0;
  let peak = 0;
  const slow: ItemTransform = async (item, ctx) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await new Promise((r) => setTimeout(r, 15));
    inFlight--;
    return indexTransform(item, ctx);
  };
  const loader = new BatchLoader(fakeDataset(12), slow, { batchSize: 2, prefetch: 1 });
  for await (const batch of loader.epoch(0)) {
    assert.equal(batch.shape[0], 2);
  }
  assert.ok(peak <= 4, `at most (prefetch + 1) * batchSize = 4 items in flight, saw ${peak}`);
  assert.ok(peak >= 3, `items are transformed concurrently, saw ${peak}`);
  const stats = loader.stats;
  assert.equal(stats.batches, 6);
  assert.ok(stats.waitMsTotal > 0 && stats.waitMsMax >= stats.waitMsMean);
  // The consumer does nothing, so it spends nearly all its time waiting.
  assert.ok(stats.waitShare > 0.5 && stats.waitShare <= 1, `waitShare ${stats.waitShare}`);
  loader.resetStats();
  assert.equal(loader.stats.batches, 0);
});

async function fileDataset(root: string): Promise<Dataset> {
  const items: DatasetItem[] = [];
  for (let i = 0; i < 6; i++) {
    const imagePath = join(root, `${i}.jpg`);
    await writeFileDeep(imagePath, i === 2 ? await truncatedJpeg() : await solidJpeg(16, 12, [i * 40, 0, 0]));
    items.push({ id: String(i), imagePath, labels: [i % 2] });
  }
  return { classes: ['x', 'y'], items };
}

test('a corrupt image fails the epoch with its path, or is skipped, counted and replaced', async (t) => {
  const ds = await fileDataset(await tempDir(t));
  const transform = trainTransform({ cropSize: 8 });
  const failing = new BatchLoader(ds, transform, { batchSize: 2, shuffle: false });
  // The cause text is libvips's and not stable when images decode concurrently: the same truncated file gave
  // "premature end of JPEG" and, in one CI run, "Input buffer has corrupt header:" (libvips's error buffer is
  // shared across threads). Either way it must be a DataError naming the file; image.test.ts checks the cause.
  await assert.rejects(collect(failing, 0), (e: unknown) => e instanceof DataError && e.path === ds.items[2]?.imagePath && /cannot decode image/.test(e.message));

  const log = new BadFileLog(() => {});
  const skipping = new BatchLoader(ds, transform, { batchSize: 2, shuffle: false, onBadFile: 'skip', badFiles: log });
  const batches = await collect(skipping, 0);
  assert.deepEqual(batches.map((b) => b.ids), [['0', '1'], ['3', '4'], ['5']]);
  assert.equal(skipping.badFiles.count, 1);
  assert.equal(log.entries[0]?.id, '2');
  assert.deepEqual((batches[0] as Batch).shape, [2, 3, 8, 8]);
  assert.equal((batches[0] as Batch).valid?.length, 2 * 64);
});

test('eval batches carry masks; items without one are all 255', async (t) => {
  const root = await tempDir(t);
  const items: DatasetItem[] = [];
  for (let i = 0; i < 2; i++) {
    const imagePath = join(root, `${i}.jpg`);
    await writeFileDeep(imagePath, await solidJpeg(3, 2));
    items.push({ id: String(i), imagePath, labels: [0] });
  }
  const maskPath = join(root, '0.png');
  await writeFileDeep(maskPath, encodeMask({ width: 3, height: 2, data: new Uint8Array([0, 1, 1, 0, 255, 1]) }));
  (items[0] as DatasetItem).maskPath = maskPath;
  const loader = new BatchLoader({ classes: ['obj'], items }, evalTransform(), { batchSize: 2, shuffle: false });
  const [batch] = await collect(loader, 0);
  assert.ok(batch?.masks);
  assert.deepEqual([...batch.masks], [0, 1, 1, 0, 255, 1, 255, 255, 255, 255, 255, 255]);
  assert.deepEqual(batch.shape, [2, 3, 2, 3]);

  // A mask that does not match its image is refused rather than misaligned.
  await writeFileDeep(maskPath, encodeMask({ width: 2, height: 2, data: new Uint8Array(4) }));
  await assert.rejects(collect(loader, 0), /0\.png: mask is 2x2 but image .*0\.jpg is 3x2/);
});

test('samples of different sizes cannot be batched', async () => {
  const ragged: ItemTransform = async (_item, { index }) => ({ image: new Float32Array(index + 1), channels: 1, height: 1, width: index + 1 });
  await assert.rejects(collect(new BatchLoader(fakeDataset(2), ragged, { batchSize: 2, shuffle: false }), 0), /item "item1" was transformed to 1x1x2/);
});
