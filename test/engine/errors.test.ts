// Failures are JS exceptions the process survives: libtorch errors become Errors named after the op and
// without the C++ backtrace, wrong argument types become TypeErrors, and nothing leaks on the way.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { F, type Tensor, arange, cat, memory, ones, tensor, tidy, zeros } from '../../src/engine/index.js';
import { vals } from '../helpers.js';

/** Asserts fn throws a plain Error (not a TypeError) whose message starts with `op: ` and has no C++ trace. */
function assertTorchError(fn: () => unknown, op: string, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Error, 'an Error');
    assert.ok(!(e instanceof TypeError), `not a TypeError: ${e.message}`);
    assert.ok(e.message.startsWith(`${op}: `), `prefixed with the op name: ${e.message}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes('Exception raised from'), `no C++ backtrace: ${e.message}`);
    assert.ok(!/\.(cpp|h):\d+/.test(e.message), `no C++ source locations: ${e.message}`);
    return true;
  });
}

/** The engine still works: a fresh op computes the right value. */
function stillWorks(): void {
  tidy(() => {
    assert.deepEqual(vals(tensor([1, 2]).add(tensor([3, 4]))), [4, 6]);
  });
}

test('shape errors carry libtorch\'s message prefixed by the op name, and the next op works', () => tidy(() => {
  assertTorchError(() => zeros([2, 3]).matmul(zeros([2, 3])), 'matmul', /shapes cannot be multiplied \(2x3 and 2x3\)/);
  stillWorks();
  assertTorchError(() => zeros([2]).add(zeros([3])), 'add', /size of tensor a \(2\) must match the size of tensor b \(3\)/);
  stillWorks();
  assertTorchError(() => F.conv2d(zeros([1, 3, 4, 4]), zeros([2, 2, 3, 3])), 'conv2d', /expected input\[1, 3, 4, 4\] to have 2 channels, but got 3/);
  stillWorks();
  assertTorchError(() => zeros([2, 3]).view(4), 'view', /shape '\[4\]' is invalid for input of size 6/);
  stillWorks();
  assertTorchError(() => cat([zeros([2, 2]), zeros([2, 3])]), 'cat', /Sizes of tensors must match/);
  assertTorchError(() => zeros([2, 2]).bmm(zeros([2, 2])), 'bmm', /3D/);
  assertTorchError(() => zeros([2, 3]).expand(3, 3), 'expand', /expanded size/);
  assertTorchError(() => F.linear(zeros([2, 3]), zeros([4, 2])), 'linear', /cannot be multiplied/);
  assertTorchError(() => zeros([2, 3]).permute(0), 'permute', /number of dimensions/);
  stillWorks();
}));

test('out-of-range indices throw instead of crashing', () => tidy(() => {
  assertTorchError(() => zeros([2, 3]).indexSelect(0, tensor([5])), 'indexSelect', /out of range/);
  assertTorchError(() => zeros([2, 3]).indexSelect(0, tensor([-3])), 'indexSelect', /out of range/);
  assertTorchError(() => zeros([2, 2]).gather(1, tensor([[5, 0], [0, 0]])), 'gather', /out of bounds/);
  assertTorchError(() => zeros([2, 2]).index([tensor([7])]), 'index', /out of bounds/);
  assertTorchError(() => zeros([3]).select(0, 3), 'select', /out of range/);
  assertTorchError(() => F.crossEntropy(zeros([2, 3]), tensor([0, 5])), 'crossEntropy', /out of bounds/);
  assertTorchError(() => zeros([3]).scatterAdd(0, tensor([4]), ones([1])), 'scatterAdd', /out of bounds/);
  stillWorks();
}));

test('item() on a multi-element tensor throws', () => tidy(() => {
  assertTorchError(() => zeros([2, 3]).item(), 'item', /6 elements cannot be converted to Scalar/);
  assert.equal(zeros([1, 1]).item(), 0);
}));

test('wrong argument types throw TypeError naming the op and argument', () => tidy(() => {
  // The typed API rules these out at compile time; plain JS callers get TypeErrors.
  const x = zeros([2]) as unknown as { [k: string]: (...a: unknown[]) => unknown };
  assert.throws(() => x.add!('a'), (e: unknown) => e instanceof TypeError && /^add: argument 2 must be a number, got string/.test(e.message));
  assert.throws(() => x.view!('a'), (e: unknown) => e instanceof TypeError && /^view: argument 2/.test(e.message));
  assert.throws(() => x.sum!(0.5), (e: unknown) => e instanceof TypeError && /^sum: argument 2 must be an integer/.test(e.message));
  assert.throws(() => x.matmul!({}), (e: unknown) => e instanceof TypeError && /^matmul: argument 2 must be a Tensor/.test(e.message));
  assert.throws(() => zeros(['a' as unknown as number]), TypeError);
  assert.throws(() => zeros([1.5]), TypeError);
  assert.throws(() => x.clamp_!('a'), TypeError);
  assert.throws(() => F.crossEntropy(zeros([2, 3]), tensor([0, 1]), { reduction: 'avg' as 'mean' }), /reduction|'none', 'mean' or 'sum'/);
  assert.throws(() => tensor([[1, 2], [3]]), (e: unknown) => e instanceof TypeError && /ragged/.test(e.message));
  assert.throws(() => tensor(Uint16Array.from([1])), TypeError, 'Uint16Array needs an explicit half dtype');
  assert.throws(() => tensor([1, 2, 3], { shape: [2, 2] }), RangeError);
  stillWorks();
}));

test('bad dtype strings give a clear TypeError', () => tidy(() => {
  const bad = 'float8' as 'float32';
  for (const fn of [
    () => zeros([2], { dtype: bad }),
    () => ones([2], { dtype: bad }),
    () => arange(3, undefined, 1, { dtype: bad }),
    () => tensor([1, 2], { dtype: bad }),
    () => tensor(Float32Array.from([1, 2]), { dtype: bad }),
    () => zeros([2]).to({ dtype: bad }),
    () => zeros([2]).sum(undefined, false, bad),
  ]) {
    assert.throws(fn, (e: unknown) => e instanceof TypeError && /dtype/.test(e.message) && e.message.includes('float8'), String(fn));
  }
  assert.throws(() => zeros([2]).to(bad), (e: unknown) => e instanceof TypeError && /neither a dtype .* nor a device/.test(e.message));
}));

test("device 'cuda' on a CPU-only build gives a clear error", (t) => tidy(() => {
  const noCuda = (() => { try { zeros([1], { device: 'cuda' }).dispose(); return false; } catch { return true; } })();
  if (!noCuda) { t.skip('this build has CUDA'); return; }
  const clear = /device 'cuda(:0)?' requested, but this libtorch build has no CUDA support or no GPU is visible/;
  assert.throws(() => zeros([2], { device: 'cuda' }), (e: unknown) => e instanceof Error && /^zeros: /.test(e.message) && clear.test(e.message));
  assert.throws(() => tensor([1, 2], { device: 'cuda' }), (e: unknown) => e instanceof Error && clear.test(e.message));
  assert.throws(() => zeros([2]).to('cuda:0'), (e: unknown) => e instanceof Error && clear.test(e.message));
  assert.throws(() => zeros([2]).cuda(), (e: unknown) => e instanceof Error && clear.test(e.message));
  assert.throws(() => zeros([2], { device: 'tpu' }), (e: unknown) => e instanceof Error && /tpu/.test(e.message));
  stillWorks();
}));

test('failed creations and conversions do not leak native handles', () => {
  const live = () => memory().liveTensors;
  const before = live();
  const attempts: (() => unknown)[] = [
    () => tensor([1, 2], { device: 'cuda' }),
    () => tensor(Float32Array.from([1, 2]), { dtype: 'float8' as 'float32' }),
    () => tensor([1, 2], { dtype: 'float8' as 'float32' }),
    () => tensor([1, 2, 3], { shape: [2, 2] }),
    () => tensor(Float32Array.from([1, 2, 3]), { shape: [2, 2] }),
  ];
  for (const fn of attempts) {
    try {
      const r = fn() as Tensor;
      r.dispose();
    } catch {
      // expected
    }
  }
  assert.equal(live(), before);
});

test('errors thrown inside tidy propagate and the scope is cleaned up', () => {
  const before = memory().liveTensors;
  assert.throws(() => tidy(() => {
    const a = zeros([2, 3]);
    const b = ones([3, 3]);
    return a.add(b);
  }), (e: unknown) => e instanceof Error && /^add: /.test(e.message));
  assert.equal(memory().liveTensors, before);
  stillWorks();
});

test('many failing calls in a row leave the engine usable', () => {
  const before = memory().liveTensors;
  for (let i = 0; i < 25; i++) {
    tidy(() => {
      try { zeros([2, 3]).matmul(zeros([2, 3])); } catch { /* expected */ }
    });
  }
  assert.equal(memory().liveTensors, before);
  stillWorks();
});

test('maskedFill refuses a non-bool mask, as PyTorch does, and a bool mask still works', () => tidy(() => {
  const x = tensor([1, 2, 3]);
  for (const dtype of ['int64', 'uint8', 'float32'] as const) {
    const mask = tensor([1, 0, 1], { dtype });
    assert.throws(() => x.maskedFill(mask, 0), new RegExp(`maskedFill: only supports boolean masks, but got mask of dtype ${dtype}`));
    assert.throws(() => x.clone().maskedFill_(mask, 0), /maskedFill_: only supports boolean masks/);
  }
  assert.deepEqual(vals(x), [1, 2, 3]);
  assert.deepEqual(vals(x.maskedFill(tensor([true, false, true]), 0)), [0, 2, 0]);
}));
