// Data-parallel training over loopback: 2 processes x batch 4 reproduce 1 process x batch 8 (same seed, same global
// data order): the same loss curve, and parameters equal to float32 reduction-order tolerance. Rank 0 alone writes
// the run's files. Then a resume on the other world size: a run stopped at step 2 by 2 ranks goes on in 1 process
// from its checkpoint and ends where the uninterrupted run did. CAMs made by 2 ranks are the files 1 process makes.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { distBackends, tidy } from '../../src/engine/index.js';
import { loadSafetensors } from '../../src/engine/serialize/index.js';
import { makeSyntheticDataset } from '../../src/data/index.js';
import { tempDir } from '../data/helpers.js';
import { runWorkers } from './workers.js';

const skip = distBackends().includes('gloo') ? false : 'the native engine was built without Gloo (apt-get install libgloo-dev, then npm run build:native)';

/** max over tensors of |a - b| / |b| (Frobenius norms). */
function maxRelDiff(a: string, b: string): number {
  return tidy(() => {
    const ta = loadSafetensors(a).tensors;
    const tb = loadSafetensors(b).tensors;
    assert.deepEqual([...ta.keys()].sort(), [...tb.keys()].sort());
    let worst = 0;
    for (const [k, x] of ta) {
      const y = tb.get(k)!;
      if (x.dtype !== 'float32') continue;
      const norm = y.norm().item();
      worst = Math.max(worst, x.sub(y).norm().item() / Math.max(norm, 1e-12));
    }
    return worst;
  });
}

const losses = (r: { json: unknown }) => (r.json as { stepLosses: number[] }).stepLosses;

test('2 ranks x batch 4 == 1 process x batch 8: loss curve and parameters; a resume on another world size', { skip }, async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'data');
  await makeSyntheticDataset({ root: data, seed: 2, train: 24, scored: 4, val: 4, size: 64 });
  const [one, two, twoStopped] = await Promise.all([
    runWorkers('train-worker.js', 1, { args: [data, join(dir, 'one'), '8'] }),
    runWorkers('train-worker.js', 2, { args: [data, join(dir, 'two'), '8'] }),
    runWorkers('train-worker.js', 2, { args: [data, join(dir, 'resumed'), '8'], env: () => ({ MAX_STEPS: '2' }) }),
  ]);
  for (const w of [...one, ...two, ...twoStopped]) assert.equal(w.code, 0, `rank ${w.rank}: ${w.out}${w.err}`);
  const curve = losses(one[0]!);
  assert.equal(curve.length, 6); // 24 images / 8 per step x 2 epochs
  for (const w of two) {
    assert.equal(losses(w).length, 6);
    losses(w).forEach((l, i) => assert.ok(Math.abs(l - curve[i]!) <= 1e-5 * Math.abs(curve[i]!), `rank ${w.rank} step ${i}: ${l} vs ${curve[i]}`));
  }
  const diff = maxRelDiff(join(dir, 'two', 'model.safetensors'), join(dir, 'one', 'model.safetensors'));
  assert.ok(diff < 1e-6, `max parameter relative difference ${diff}`);
  // Rank 0 wrote one log: every step once.
  const steps = readFileSync(join(dir, 'two', 'train.log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.type === 'step');
  assert.deepEqual(steps.map((e) => e.step), [1, 2, 3, 4, 5, 6]);

  // The stopped run left its step-2 checkpoint; 1 process resumes it with the whole batch of 8.
  assert.ok(existsSync(join(dir, 'resumed', 'checkpoints', 'last.safetensors')));
  const [resumed] = await runWorkers('train-worker.js', 1, { args: [data, join(dir, 'resumed'), '8', 'resume'] });
  assert.equal(resumed!.code, 0, `${resumed!.out}${resumed!.err}`);
  losses(resumed!).forEach((l, i) => assert.ok(Math.abs(l - curve[i + 2]!) <= 1e-5 * Math.abs(curve[i + 2]!), `resumed step ${i + 2}: ${l} vs ${curve[i + 2]}`));
  const resumedDiff = maxRelDiff(join(dir, 'resumed', 'model.safetensors'), join(dir, 'one', 'model.safetensors'));
  assert.ok(resumedDiff < 1e-6, `resumed: max parameter relative difference ${resumedDiff}`);

  // CAMs of one model, by 1 process and by 2 ranks (each 1 thread): the same files, byte for byte.
  const weights = join(dir, 'one', 'model.safetensors');
  const [camsOne, camsTwo] = await Promise.all([
    runWorkers('train-worker.js', 1, { args: [data, join(dir, 'one'), '8', 'cams', weights] }),
    runWorkers('train-worker.js', 2, { args: [data, join(dir, 'two'), '8', 'cams', weights] }),
  ]);
  for (const w of [...camsOne, ...camsTwo]) assert.equal(w.code, 0, `cams rank ${w.rank}: ${w.out}${w.err}`);
  let files = 0;
  for (const split of readdirSync(join(dir, 'one', 'cams'))) {
    const a = join(dir, 'one', 'cams', split);
    const b = join(dir, 'two', 'cams', split);
    assert.deepEqual(readdirSync(b).sort(), readdirSync(a).sort(), split);
    for (const f of readdirSync(a)) {
      assert.ok(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), `${split}/${f} differs`);
      files++;
    }
  }
  assert.ok(files >= 10, `${files} files compared`); // 4 + 4 images and an index per split
});
