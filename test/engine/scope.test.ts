// Deterministic memory: tidy / keep / dispose, checked through the native live-handle count.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { F, type Tensor, cat, dispose, keep, memory, ones, tensor, tidy, zeros } from '../../src/engine/index.js';
import { vals } from '../helpers.js';

const live = (): number => memory().liveTensors;

test('nothing created inside tidy survives except what is returned', () => {
  const before = live();
  const out = tidy(() => {
    const a = ones([4, 4]);
    const b = a.mul(2);
    const parts = b.split(1); // four more handles
    const c = parts[0]!.add(b.sum());
    assert.ok(live() >= before + 7, 'the intermediates are alive inside');
    return c;
  });
  assert.equal(live(), before + 1, 'only the result is left');
  assert.deepEqual(vals(out), [34, 34, 34, 34], 'and it is usable: 2 + 32');
  out.dispose();
  assert.equal(live(), before);
});

test('returned tensors inside arrays, plain objects and Maps stay usable; the rest is freed', () => {
  const before = live();
  const r = tidy(() => {
    const a = tensor([1, 2]);
    const b = tensor([3]);
    const c = tensor([4]);
    const d = tensor([5]);
    zeros([10]); // not returned
    return { list: [a, { inner: b }], map: new Map([['c', c]]), nested: [[d]], label: 'x', n: 3 };
  });
  assert.equal(live(), before + 4);
  assert.deepEqual(vals(r.list[0] as Tensor), [1, 2]);
  assert.deepEqual(vals((r.list[1] as { inner: Tensor }).inner), [3]);
  assert.deepEqual(vals(r.map.get('c')!), [4]);
  assert.deepEqual(vals(r.nested[0]![0]!), [5]);
  assert.equal(r.label, 'x');
  dispose(r);
  assert.equal(live(), before, 'dispose() finds tensors in the same containers');
});

test('nested tidy moves returned tensors to the parent scope', () => {
  const before = live();
  let inner: Tensor | undefined;
  const outer = tidy(() => {
    inner = tidy(() => {
      zeros([3]);
      return ones([3]);
    });
    assert.equal(inner.isDisposed, false, 'alive after the inner scope');
    const kept = inner.add(1);
    return kept;
  });
  assert.ok(inner!.isDisposed, 'freed when the parent scope ends (it was not returned from it)');
  assert.deepEqual(vals(outer), [2, 2, 2]);
  outer.dispose();
  assert.equal(live(), before);
});

test('a tensor returned through two levels survives both', () => {
  const before = live();
  const t = tidy(() => tidy(() => ones([2])));
  assert.equal(t.isDisposed, false);
  assert.equal(live(), before + 1);
  t.dispose();
});

test('keep() exempts tensors from every enclosing scope', () => {
  const before = live();
  let k: Tensor | undefined;
  tidy(() => {
    tidy(() => {
      k = keep(ones([2]));
      zeros([2]);
    });
    assert.equal(k!.isDisposed, false);
  });
  assert.equal(k!.isDisposed, false, 'survives the outer scope too');
  assert.equal(live(), before + 1);
  assert.deepEqual(vals(k!), [1, 1]);
  k!.dispose();
  assert.equal(live(), before);
});

test('tensors from outside the scope are not touched by it', () => {
  const outside = ones([3]);
  const before = live();
  tidy(() => {
    outside.add(1);
    outside.mul_(2); // in place: no new handle
  });
  assert.equal(live(), before);
  assert.equal(outside.isDisposed, false);
  assert.deepEqual(vals(outside), [2, 2, 2]);
  outside.dispose();
});

test('an exception inside tidy frees the scope\'s tensors and rethrows', () => {
  const before = live();
  const created: Tensor[] = [];
  assert.throws(() => tidy(() => {
    created.push(ones([5]), zeros([5]));
    throw new RangeError('from inside');
  }), RangeError);
  assert.equal(live(), before);
  assert.ok(created.every((t) => t.isDisposed));
  // a libtorch error inside nested scopes
  assert.throws(() => tidy(() => {
    ones([2]);
    return tidy(() => ones([2, 3]).matmul(ones([2, 3])));
  }), /matmul/);
  assert.equal(live(), before);
});

test('tidy rejects async functions and frees what they created', async () => {
  const before = live();
  assert.throws(() => tidy(() => {
    ones([2]);
    return Promise.resolve(1);
  }), TypeError);
  assert.equal(live(), before);
});

test('a disposed tensor used in an op throws an Error mentioning "disposed"; the process continues', () => {
  const t = ones([2]);
  t.dispose();
  assert.equal(t.isDisposed, true);
  t.dispose(); // twice is safe
  assert.throws(() => t.add(1), (e: unknown) => e instanceof Error && /^add: .*disposed/.test(e.message));
  assert.throws(() => ones([2]).add(t), (e: unknown) => e instanceof Error && /disposed/.test(e.message));
  assert.throws(() => t.shape, /disposed/);
  assert.throws(() => cat([t]), /disposed/);
  const escaped = tidy(() => {
    const x = ones([2]);
    return () => x; // a closure is not a returned tensor
  })();
  assert.throws(() => escaped.sum(), /disposed/);
  tidy(() => assert.deepEqual(vals(ones([2]).add(1)), [2, 2]));
});

test('grad handles created inside a scope are freed without losing the gradient', () => {
  const x = keep(ones([2], { requiresGrad: true }));
  const before = live();
  tidy(() => {
    x.mul(3).sum().backward();
    assert.deepEqual(vals(x.grad!), [3, 3]);
  });
  assert.equal(live(), before);
  tidy(() => assert.deepEqual(vals(x.grad!), [3, 3]));
  x.dispose();
});

test('a loop of tidy steps keeps the handle count flat', () => {
  const w = keep(ones([8, 8]));
  const before = live();
  for (let i = 0; i < 50; i++) {
    tidy(() => {
      const y = w.matmul(ones([8, 8])).relu().softmax(1);
      y.sum().item();
    });
    assert.equal(live(), before);
  }
  w.dispose();
});

test('ops built from several native calls free their temporaries', () => {
  const x = tensor([[1.5, -2, 3], [0.5, 0.2, 9]]).float();
  const x4 = x.view(1, 1, 2, 3);
  const y = tensor([[1, 0, 1], [0, 1, 1]]).float();
  const lo = zeros([2, 3]);
  const w = ones([3]);
  const logp = x.logSoftmax(1);
  const half = x.half();
  const ops: [string, () => Tensor | Float32Array][] = [
    ['clamp(tensor, number)', () => x.clamp(lo, 1)],
    ['clamp(number, tensor)', () => x.clamp(-1, lo)],
    ['normalize', () => F.normalize(x)],
    ['multilabelSoftMarginLoss', () => F.multilabelSoftMarginLoss(x, y)],
    ['multilabelSoftMarginLoss weighted', () => F.multilabelSoftMarginLoss(x, y, { weight: w, reduction: 'none' })],
    ['klDiv batchmean', () => F.klDiv(logp, y, 'batchmean')],
    ['interpolate area', () => F.interpolate(x4, { size: 1, mode: 'area' })],
    ['interpolate bilinear', () => F.interpolate(x4, { scaleFactor: 2, mode: 'bilinear' })],
    ['pad reflect', () => F.pad(x4, [1, 1, 1, 1], 'reflect')],
    ['toFloat32Array of float16', () => half.toFloat32Array()],
    ['tensor() as float16', () => tensor([1, 2], { dtype: 'float16' })],
    ['tensor() typed array as float64', () => tensor(Float32Array.from([1, 2]), { dtype: 'float64' })],
  ];
  for (const [name, fn] of ops) {
    const before = live();
    const r = fn();
    if (!(r instanceof Float32Array)) r.dispose();
    assert.equal(live(), before, name);
  }
  dispose([x, x4, y, lo, w, logp, half]);
});
