// The loader's shard option: ranks together see exactly the global batches of one process.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BatchLoader, type ItemTransform } from '../../src/data/index.js';

const ds = { classes: ['a'], items: Array.from({ length: 23 }, (_, i) => ({ id: `i${i}`, imagePath: `/nowhere/${i}.jpg`, labels: [0] })) };
const t: ItemTransform = async (_item, { index }) => ({ image: new Float32Array([index]), channels: 1, height: 1, width: 1 });

async function indices(loader: BatchLoader, epoch: number, skipBatches = 0): Promise<number[][]> {
  const out: number[][] = [];
  for await (const b of loader.epoch(epoch, { skipBatches })) out.push(b.indices);
  return out;
}

test('2 ranks x batch 3 reproduce 1 process x batch 6: same global batches, each rank its half, resumable', async () => {
  const one = new BatchLoader(ds, t, { batchSize: 6, seed: 5, dropLast: true });
  const ranks = [0, 1].map((rank) => new BatchLoader(ds, t, { batchSize: 3, seed: 5, dropLast: true, shard: { rank, worldSize: 2 } }));
  assert.equal(one.batchesPerEpoch, 3); // floor(23 / 6)
  for (const r of ranks) assert.equal(r.batchesPerEpoch, 3);
  for (const epoch of [0, 1]) {
    const global = await indices(one, epoch);
    const [a, b] = await Promise.all(ranks.map((r) => indices(r, epoch)));
    assert.deepEqual(a!.map((x, k) => [...x, ...b![k]!]), global, `epoch ${epoch}`);
    // Resuming two batches in gives the same last batch.
    assert.deepEqual(await indices(ranks[1]!, epoch, 2), [b![2]]);
  }
  // 4 ranks x batch 1: whole global batches of 4 (the 3 left over are dropped, as by one process).
  const four = await Promise.all([0, 1, 2, 3].map((rank) =>
    indices(new BatchLoader(ds, t, { batchSize: 1, seed: 5, dropLast: true, shard: { rank, worldSize: 4 } }), 0)));
  assert.equal(four[0]!.length, 5);
  const byFour = await indices(new BatchLoader(ds, t, { batchSize: 4, seed: 5, dropLast: true }), 0);
  assert.deepEqual(four[0]!.map((_, k) => four.flatMap((r) => r[k]!)), byFour);
  assert.throws(() => new BatchLoader(ds, t, { batchSize: 3, shard: { rank: 2, worldSize: 2 }, dropLast: true }), /rank 2 of world size 2/);
  assert.throws(() => new BatchLoader(ds, t, { batchSize: 3, shard: { rank: 0, worldSize: 2 } }), /needs dropLast/);
});
