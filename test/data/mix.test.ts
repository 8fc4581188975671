// Extra training sources mixed by weight (src/data/mix.ts and the loader's `sources`), and the readers' dropping of
// unknown tags (noisy web tags).
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import {
  type Batch, BadFileLog, BatchLoader, type Dataset, drawsPerEpoch, mixDatasets, mixedEpochOrder, readFolder, readVoc,
} from '../../src/data/index.js';
import { synthDataset, synthTransform } from '../methods/tiny.js';
import { solidJpeg, tempDir, writeFileDeep } from './helpers.js';

const main = synthDataset(40, 3);
const web = synthDataset(100, 7);
const few = synthDataset(5, 11);

async function epochBatches(loader: BatchLoader, epoch: number, skipBatches = 0): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of loader.epoch(epoch, { skipBatches })) out.push(b);
  return out;
}

test('mix: items concatenated main first, extra ids prefixed by their source, masks left behind; spans and draws', () => {
  const withMask: Dataset = { classes: web.classes, items: web.items.map((i) => ({ ...i, maskPath: '/m.png' })) };
  const mixed = mixDatasets(main, [{ name: 'data.extra[0]', dataset: withMask, weight: 0.5 }]);
  assert.equal(mixed.items.length, 140);
  assert.equal(mixed.items[0]!.id, 'img0');
  assert.equal(mixed.items[40]!.id, 'data.extra[0]/img0');
  assert.equal(mixed.items[40]!.maskPath, undefined, 'extra sources are never scored');
  assert.deepEqual(mixed.items[40]!.labels, web.items[0]!.labels);
  assert.deepEqual(mixed.sources.map((s) => [s.start, s.count, s.weight]), [[0, 40, 1], [40, 100, 0.5]]);
  assert.deepEqual(drawsPerEpoch(mixed.sources), [40, 20]);
  assert.throws(() => mixDatasets(main, [{ name: 'data.extra[0]', dataset: { classes: ['a', 'b', 'c'], items: web.items }, weight: 1 }]),
    /data\.extra\[0\]: its classes \(a, b, c\) are not the main dataset's \(red, green, blue\)/);
  assert.throws(() => mixDatasets(main, [{ name: 'data.extra[1]', dataset: web, weight: 0 }]), /data\.extra\[1\]: weight must be positive/);
});

test('mix: the share of extra draws follows the weights; main items once per epoch; extra items evenly; seeded', () => {
  const mixed = mixDatasets(main, [{ name: 'a', dataset: web, weight: 0.5 }, { name: 'b', dataset: few, weight: 0.25 }]);
  const sourceOf = (i: number) => (i < 40 ? 0 : i < 140 ? 1 : 2);
  const counts = [0, 0, 0];
  const webUses = new Array<number>(100).fill(0);
  for (let epoch = 0; epoch < 50; epoch++) {
    const order = mixedEpochOrder(mixed.sources, 5, epoch);
    assert.equal(order.length, 40 + 20 + 10);
    // every main item exactly once per epoch
    assert.deepEqual(order.filter((i) => i < 40).sort((a, b) => a - b), Array.from({ length: 40 }, (_, i) => i));
    for (const i of order) {
      counts[sourceOf(i)]!++;
      if (sourceOf(i) === 1) webUses[i - 40]!++;
    }
  }
  const total = counts.reduce((a, b) => a + b, 0);
  // weight share: 0.5 / (1 + 0.5 + 0.25) and 0.25 / 1.75
  assert.ok(Math.abs(counts[1]! / total - 0.5 / 1.75) < 0.01, `share of source a ${counts[1]! / total}`);
  assert.ok(Math.abs(counts[2]! / total - 0.25 / 1.75) < 0.01, `share of source b ${counts[2]! / total}`);
  // 50 epochs x 20 draws = 10 whole cycles through the 100 web items: each used exactly 10 times
  assert.ok(webUses.every((u) => u === 10), `web items used ${Math.min(...webUses)}..${Math.max(...webUses)} times`);
  // same seed, same order; another seed or epoch, another
  assert.deepEqual(mixedEpochOrder(mixed.sources, 5, 3), mixedEpochOrder(mixed.sources, 5, 3));
  assert.notDeepEqual(mixedEpochOrder(mixed.sources, 6, 3), mixedEpochOrder(mixed.sources, 5, 3));
  assert.notDeepEqual(mixedEpochOrder(mixed.sources, 5, 4), mixedEpochOrder(mixed.sources, 5, 3));
});

test('mix through the loader: batches per epoch, a resumed epoch sees the same batches, repeated draws differ', async () => {
  const mixed = mixDatasets(main, [{ name: 'x', dataset: few, weight: 0.5 }]); // 20 draws of 5 items: each 4 times
  const make = () => new BatchLoader(mixed, synthTransform(8), { batchSize: 6, seed: 2, dropLast: true, prefetch: 1, sources: mixed.sources });
  const loader = make();
  assert.equal(loader.batchesPerEpoch, 10);
  const full = await epochBatches(loader, 1);
  assert.equal(full.length, 10);
  const ids = full.flatMap((b) => b.ids);
  assert.equal(ids.filter((id) => id.startsWith('x/')).length, 20);
  const resumed = await epochBatches(make(), 1, 4);
  assert.equal(resumed.length, 6);
  resumed.forEach((b, k) => {
    assert.deepEqual(b.ids, full[k + 4]!.ids);
    assert.deepEqual(b.images, full[k + 4]!.images);
  });
  // an item drawn several times in one epoch gets a fresh augmentation each time
  const views = new Map<string, Float32Array[]>();
  for (const b of full) {
    b.ids.forEach((id, k) => {
      const plane = b.images.length / b.ids.length;
      views.set(id, [...(views.get(id) ?? []), b.images.slice(k * plane, (k + 1) * plane)]);
    });
  }
  const repeated = [...views.entries()].filter(([id]) => id.startsWith('x/'));
  assert.ok(repeated.every(([, v]) => v.length >= 2));
  for (const [id, v] of repeated) assert.notDeepEqual(v[0], v[1], `${id}: its draws are augmented apart`);
  // and without sources the loader is as it was: the sources option only changes the order
  assert.throws(() => new BatchLoader(mixed, synthTransform(8), { batchSize: 6, shuffle: false, sources: mixed.sources }), /need shuffle/);
  assert.throws(() => new BatchLoader(main, synthTransform(8), { batchSize: 6, sources: mixed.sources }), /span 45 items, the dataset has 40/);
});

test('mix: two data-parallel ranks together see the single process\'s batches', async () => {
  const mixed = mixDatasets(main, [{ name: 'x', dataset: web, weight: 0.3 }]);
  const one = await epochBatches(new BatchLoader(mixed, synthTransform(8), { batchSize: 4, seed: 1, dropLast: true, sources: mixed.sources }), 0);
  const ranks = await Promise.all([0, 1].map((rank) => epochBatches(new BatchLoader(mixed, synthTransform(8),
    { batchSize: 2, seed: 1, dropLast: true, sources: mixed.sources, shard: { rank, worldSize: 2 } }), 0)));
  assert.equal(ranks[0]!.length, one.length);
  one.forEach((b, k) => assert.deepEqual([...ranks[0]![k]!.ids, ...ranks[1]![k]!.ids], b.ids));
});

test('mix: partners of a pairs method are drawn across sources, sharing a class', async () => {
  const mixed = mixDatasets(main, [{ name: 'x', dataset: web, weight: 1 }]);
  const loader = new BatchLoader(mixed, synthTransform(8), { batchSize: 5, seed: 3, dropLast: true, pairs: { shareClass: 1 }, sources: mixed.sources });
  let mainWithExtra = 0;
  let extraWithMain = 0;
  for (const b of await epochBatches(loader, 0)) {
    b.indices.forEach((i, k) => {
      const p = b.partner!.indices[k]!;
      const [li, lp] = [mixed.items[i]!.labels, mixed.items[p]!.labels];
      assert.ok(li.some((c) => lp.includes(c)), 'a partner shares a class');
      if (i < 40 && p >= 40) mainWithExtra++;
      if (i >= 40 && p < 40) extraWithMain++;
    });
  }
  assert.ok(mainWithExtra > 5 && extraWithMain > 5, `cross-source pairs: ${mainWithExtra} main->extra, ${extraWithMain} extra->main`);
});

test('readers: unknownTags "drop" keeps the known tags, lists the dropped ones, and leaves out an item with none left', async (t) => {
  const root = await tempDir(t);
  for (const p of ['a.jpg', 'b.jpg', 'c.jpg', 'd.jpg']) await writeFileDeep(join(root, p), await solidJpeg(4, 4));
  await writeFileDeep(join(root, 'labels.csv'), 'path,tags\na.jpg,cat;kitty\nb.jpg,dog\nc.jpg,puppy\nd.jpg,\n');
  const labels = join(root, 'labels.csv');
  const classes = ['cat', 'dog'];
  const read = await readFolder({ root, labels, classes, unknownTags: 'drop' });
  assert.deepEqual(read.items.map((i) => [i.id, i.labels]), [['a', [0]], ['b', [1]], ['d', []]]);
  assert.deepEqual(read.droppedTags, [
    { path: labels, where: 'line 2 ("a.jpg")', tag: 'kitty' }, { path: labels, where: 'line 4 ("c.jpg")', tag: 'puppy' },
  ]);
  assert.deepEqual(read.droppedItems, ['c']);
  await assert.rejects(readFolder({ root, labels, classes }), /labels\.csv: line 2 \("a\.jpg"\): unknown tag "kitty"/);
  // skip mode without drop: the item with an unknown tag is a bad file
  const log = new BadFileLog(() => {});
  const skipped = await readFolder({ root, labels, classes, onBadFile: 'skip', badFiles: log });
  assert.deepEqual(skipped.items.map((i) => i.id), ['b', 'd']);

  // VOC with a labels JSON
  const voc = join(root, 'voc');
  for (const id of ['x1', 'x2']) await writeFileDeep(join(voc, 'JPEGImages', `${id}.jpg`), await solidJpeg(4, 4));
  await writeFileDeep(join(voc, 'ImageSets', 'Segmentation', 'web.txt'), 'x1\nx2\n');
  await writeFileDeep(join(voc, 'image_labels.json'), JSON.stringify({ labels: { x1: ['dog', 'wolf'], x2: ['wolf'] } }));
  const v = await readVoc({ root: voc, split: 'web', classes, unknownTags: 'drop' });
  assert.deepEqual(v.items.map((i) => [i.id, i.labels]), [['x1', [1]]]);
  assert.deepEqual(v.droppedTags!.map((d) => [d.where, d.tag]), [['labels["x1"]', 'wolf'], ['labels["x2"]', 'wolf']]);
  assert.deepEqual(v.droppedItems, ['x2']);
  await assert.rejects(readVoc({ root: voc, split: 'web', classes }), /image_labels\.json: labels\["x1"\]: unknown tag "wolf"/);
});
