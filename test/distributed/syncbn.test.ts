// SyncBatchNorm over loopback, 2 processes x 1 thread: 2 ranks with 3 images each and synchronised BatchNorm give the
// outputs, input gradients, parameter gradients (summed over the ranks) and running statistics of 1 process with
// the 6 images and libtorch's own batch_norm, to float32 tolerance, over two passes. The input gradients check the
// backward's cross-rank part: each image's gradient includes the other rank's loss through the shared statistics.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { distBackends } from '../../src/engine/index.js';
import { GLOBAL_BATCH, type SyncBnResult, syncBnCase } from './syncbn-case.js';
import { runWorkers } from './workers.js';

const skip = distBackends().includes('gloo') ? false : 'the native engine was built without Gloo (apt-get install libgloo-dev, then npm run build:native)';

function close(a: number[], b: number[], what: string, tol = 1e-4): void {
  assert.equal(a.length, b.length, what);
  const scale = Math.max(1, ...b.map(Math.abs));
  const worst = Math.max(0, ...a.map((v, i) => Math.abs(v - b[i]!)));
  assert.ok(worst <= tol * scale, `${what}: max difference ${worst} (scale ${scale})`);
}

test('SyncBatchNorm on 2 ranks x 3 images == BatchNorm on 1 process x 6 images: outputs, gradients, running statistics', { skip }, async () => {
  const workers = await runWorkers('syncbn-worker.js', 2, { args: ['syncbn'] });
  for (const w of workers) assert.equal(w.code, 0, `rank ${w.rank}: ${w.out}${w.err}`);
  const [r0, r1] = workers.map((w) => w.json as SyncBnResult);
  const one = syncBnCase(0, GLOBAL_BATCH, null);
  const half = (xs: number[], rank: number) => xs.slice((rank * xs.length) / 2, ((rank + 1) * xs.length) / 2);
  one.outputs.forEach((o, s) => {
    close(r0!.outputs[s]!, half(o, 0), `pass ${s} outputs, rank 0`);
    close(r1!.outputs[s]!, half(o, 1), `pass ${s} outputs, rank 1`);
  });
  close(r0!.inputGrad, half(one.inputGrad, 0), 'input gradient, rank 0');
  close(r1!.inputGrad, half(one.inputGrad, 1), 'input gradient, rank 1');
  for (const r of [r0!, r1!]) {
    assert.deepEqual(Object.keys(r.grads).sort(), Object.keys(one.grads).sort());
    for (const [name, g] of Object.entries(one.grads)) close(r.grads[name]!, g, `gradient of ${name}`);
    for (const [name, b] of Object.entries(one.buffers)) close(r.buffers[name]!, b, name);
  }
  // Not trivially equal: the running variance moved away from 1 (the inputs' spread is ~2 before the first conv).
  assert.ok(one.buffers['bn_fov.running_var']!.some((v) => Math.abs(v - 1) > 0.05));
});

test('per-rank BatchNorm (no group) differs from the global batch: the test above can fail', () => {
  const one = syncBnCase(0, GLOBAL_BATCH, null, 1);
  const part = syncBnCase(0, GLOBAL_BATCH / 2, null, 1);
  const worst = Math.max(...part.outputs[0]!.map((v, i) => Math.abs(v - one.outputs[0]![i]!)));
  assert.ok(worst > 1e-3, `the 3-image batch's statistics should differ from the 6-image batch's (${worst})`);
});
