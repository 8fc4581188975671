// Process groups over loopback, 2 processes x 1 thread: the collectives' results against hand-computed values,
// and the failures (a killed rank, a wrong port, a missing rank) as prompt errors naming what went wrong.
// The two launches run side by side (process start-up, loading libtorch, is most of their time).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { distBackends } from '../../src/engine/index.js';
import { type WorkerResult, freePort, runWorkers } from './workers.js';

const skip = distBackends().includes('gloo') ? false : 'the native engine was built without Gloo (apt-get install libgloo-dev, then npm run build:native)';

const lines = (w: WorkerResult) => w.out.trim().split('\n').flatMap((l) => { try { return [JSON.parse(l)]; } catch { return []; } });

// Launch 1: the collectives, then the last rank kills itself while rank 0 is in an all-reduce (timeout 30 s).
const opsAndKill = skip ? null : runWorkers('collectives-worker.js', 2, { args: ['ops+kill'], env: () => ({ DIST_TIMEOUT_MS: '30000' }) });
// Launch 2: rank 1 is given a port nobody listens on (timeout 3 s): rank 0 misses it, rank 1 finds no store.
const wrongPort = skip ? null : freePort().then((wrong) => runWorkers('collectives-worker.js', 2, {
  args: ['ops'], env: (rank) => ({ DIST_TIMEOUT_MS: '3000', ...(rank === 1 ? { MASTER_PORT: String(wrong) } : {}) }),
}).then((res) => ({ res, wrong })));

test('all-reduce (sum, avg, max; several buckets and dtypes), broadcast, all-gather and barrier over 2 ranks', { skip }, async () => {
  const res = await opsAndKill!;
  for (const w of res) {
    const j = lines(w).find((l) => l.scenario === 'ops');
    assert.ok(j, `rank ${w.rank} reported no results: ${w.err}${w.out}`);
    // rank 0 holds [1,2,3],[10],[0,0]; rank 1 holds [2,3,4],[20],[1,-1]
    assert.deepEqual(j.sum, [3, 5, 7, 30]);
    assert.deepEqual(j.sumInt, [1, -1]);
    assert.deepEqual(j.avg, [1, 1]); // (0 + 2) / 2, (1 + 1) / 2
    assert.deepEqual(j.max, [1, 0]);
    assert.deepEqual(j.broadcast, [1, 1, 1]); // rank 1's values
    assert.equal(j.requiresGrad, true);
    assert.deepEqual(j.gathered, [[0, 0], [1, 1]]);
  }
});

test('a rank killed with SIGKILL: the survivor fails promptly, naming the lost rank', { skip }, async () => {
  const res = await opsAndKill!;
  assert.equal(res[1]!.signal, 'SIGKILL');
  const j = lines(res[0]!).find((l) => l.scenario === 'kill');
  assert.ok(j?.error, `rank 0 should fail: ${res[0]!.out}${res[0]!.err}`);
  assert.match(j.error, /allreduce \(rank 0 of 2, gloo\) failed/);
  assert.match(j.error, /rank 1 stopped responding \(lost\)/);
  assert.ok(j.seconds < 15, `took ${j.seconds} s, the timeout is 30 s`);
});

test('a wrong MASTER_PORT or a missing rank is a clear error after the timeout, not a hang', { skip }, async () => {
  const { res, wrong } = await wrongPort!;
  const [r0, r1] = res.map((w) => w.json as { error: string });
  assert.equal(res[0]!.code, 3, res[0]!.err);
  assert.equal(res[1]!.code, 3, res[1]!.err);
  assert.match(r0!.error, /rendezvous \(rank 0 of 2\) at 127\.0\.0\.1:\d+ failed: rank 1 did not join within 3000 ms/);
  assert.match(r1!.error, new RegExp(`rendezvous \\(rank 1 of 2\\) at 127\\.0\\.0\\.1:${wrong} failed: .*MASTER_ADDR/MASTER_PORT`));
  // Process start-up (loading libtorch) is most of it on a loaded machine; a hang would run into the runner.
  for (const w of res) assert.ok(w.seconds < 45, `rank ${w.rank} took ${w.seconds} s`);
});
