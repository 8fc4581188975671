// Tensor ops against hand-computed values, identities and plain-JS references: creation, dtypes,
// metadata and memory layout, arithmetic, comparison, reductions, shape ops, indexing, sorting, math and
// linear algebra.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  type Tensor, arange, cat, einsum, eye, full, fullLike, linspace, manualSeed, ones, onesLike, rand, randLike,
  randint, randn, randnLike, stack, tensor, tidy, where, zeros, zerosLike, F,
} from '../../src/engine/index.js';
import { assertClose, assertValues, erf, f32, f64, randArray, randF64, vals } from '../helpers.js';

// ---------------------------------------------------------------------------------------------
// creation

test('zeros, ones, full: shape, dtype and values', () => tidy(() => {
  assertValues(zeros([2, 3]), [2, 3], [0, 0, 0, 0, 0, 0]);
  assert.equal(zeros([2, 3]).dtype, 'float32');
  assertValues(ones([3]), [3], [1, 1, 1]);
  assert.equal(ones([2], { dtype: 'int32' }).dtype, 'int32');
  assertValues(full([2, 2], 7.5), [2, 2], [7.5, 7.5, 7.5, 7.5]);
  const b = full([2], true);
  assert.equal(b.dtype, 'bool');
  assert.deepEqual(b.tolist(), [true, true]);
  const i = full([3], 4, { dtype: 'int64' });
  assert.equal(i.dtype, 'int64');
  assert.deepEqual(vals(i), [4, 4, 4]);
  assert.deepEqual(zeros([0, 3]).shape, [0, 3]);
  assert.equal(zeros([0, 3]).numel, 0);
}));

test('arange infers int64 from integer arguments and float32 otherwise', () => tidy(() => {
  const a = arange(5);
  assert.equal(a.dtype, 'int64');
  assert.deepEqual(vals(a), [0, 1, 2, 3, 4]);
  const b = arange(1, 7, 2);
  assert.equal(b.dtype, 'int64');
  assert.deepEqual(vals(b), [1, 3, 5]);
  const c = arange(0, 1, 0.25);
  assert.equal(c.dtype, 'float32');
  assert.deepEqual(vals(c), [0, 0.25, 0.5, 0.75]);
  const d = arange(0.5, 3);
  assert.equal(d.dtype, 'float32');
  assert.deepEqual(vals(d), [0.5, 1.5, 2.5]);
  const e = arange(0, 3, 1, { dtype: 'float64' });
  assert.equal(e.dtype, 'float64');
  assert.deepEqual(vals(e), [0, 1, 2]);
  assert.deepEqual(vals(arange(5, 0, -2)), [5, 3, 1]);
}));

test('linspace includes both ends with equal spacing', () => tidy(() => {
  assertValues(linspace(0, 1, 5), [5], [0, 0.25, 0.5, 0.75, 1]);
  assertValues(linspace(-1, 1, 3), [3], [-1, 0, 1]);
  const l = linspace(2, 3, 11, { dtype: 'float64' });
  assert.equal(l.dtype, 'float64');
  assertClose(l, Array.from({ length: 11 }, (_, k) => 2 + k / 10), { rtol: 0, atol: 1e-15 });
}));

test('eye: square and rectangular identity', () => tidy(() => {
  assertValues(eye(3), [3, 3], [1, 0, 0, 0, 1, 0, 0, 0, 1]);
  assertValues(eye(2, 3), [2, 3], [1, 0, 0, 0, 1, 0]);
  assert.equal(eye(2, 2, { dtype: 'int64' }).dtype, 'int64');
}));

test('rand: [0, 1) range, uniform statistics, reproducible with manualSeed', () => tidy(() => {
  manualSeed(1234);
  const a = rand([20000]);
  manualSeed(1234);
  const b = rand([20000]);
  const c = rand([20000]);
  assert.ok(a.equal(b), 'same seed gives identical draws');
  assert.ok(!a.equal(c), 'the next draw differs');
  const v = vals(a);
  assert.ok(v.every((x) => x >= 0 && x < 1), 'all in [0, 1)');
  const mean = v.reduce((s, x) => s + x, 0) / v.length;
  const variance = v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length;
  // U(0,1): mean 1/2 (standard error 0.002 here), variance 1/12.
  assert.ok(Math.abs(mean - 0.5) < 0.015, `mean ${mean}`);
  assert.ok(Math.abs(variance - 1 / 12) < 0.005, `variance ${variance}`);
  assert.ok(v.filter((x) => x < 0.25).length / v.length > 0.23 && v.filter((x) => x < 0.25).length / v.length < 0.27);
}));

test('randn: standard normal statistics, reproducible with manualSeed', () => tidy(() => {
  manualSeed(99);
  const a = randn([20000]);
  manualSeed(99);
  assert.ok(a.equal(randn([20000])));
  const v = vals(a);
  const mean = v.reduce((s, x) => s + x, 0) / v.length;
  const sd = Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length);
  assert.ok(Math.abs(mean) < 0.04, `mean ${mean}`);
  assert.ok(Math.abs(sd - 1) < 0.04, `sd ${sd}`);
  // P(|z| < 1) = erf(1/sqrt 2) = 0.6827
  const within = v.filter((x) => Math.abs(x) < 1).length / v.length;
  assert.ok(Math.abs(within - erf(1 / Math.SQRT2)) < 0.02, `within one sd: ${within}`);
}));

test('randint: integers in [low, high), every value reached', () => tidy(() => {
  manualSeed(5);
  const r = randint(3, 7, [2000]);
  assert.equal(r.dtype, 'int64');
  const v = vals(r);
  assert.ok(v.every((x) => Number.isInteger(x) && x >= 3 && x < 7));
  assert.deepEqual([...new Set(v)].sort(), [3, 4, 5, 6]);
  manualSeed(5);
  assert.ok(r.equal(randint(3, 7, [2000])));
}));

test('*_like creation keeps shape and dtype (or takes the given dtype)', () => tidy(() => {
  const x = f64([1, 2, 3, 4, 5, 6], [2, 3]);
  const z = zerosLike(x);
  assert.deepEqual([z.shape, z.dtype], [[2, 3], 'float64']);
  assert.deepEqual(vals(z), [0, 0, 0, 0, 0, 0]);
  const o = onesLike(x, 'int32');
  assert.deepEqual([o.shape, o.dtype], [[2, 3], 'int32']);
  assert.deepEqual(vals(o), [1, 1, 1, 1, 1, 1]);
  const f = fullLike(x, 2.5);
  assert.deepEqual(vals(f), [2.5, 2.5, 2.5, 2.5, 2.5, 2.5]);
  const r = randLike(x);
  assert.deepEqual([r.shape, r.dtype], [[2, 3], 'float64']);
  assert.ok(vals(r).every((v) => v >= 0 && v < 1));
  const n = randnLike(x);
  assert.deepEqual([n.shape, n.dtype], [[2, 3], 'float64']);
  assert.equal(new Set(vals(n)).size, 6);
}));

// ---------------------------------------------------------------------------------------------
// dtypes and data out

/** float32 -> bfloat16 bits with round-to-nearest-even, as the format is defined. */
function bf16Bits(x: number): number {
  const dv = new DataView(new ArrayBuffer(4));
  dv.setFloat32(0, x);
  const bits = dv.getUint32(0);
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

test('dtype round trips through tensor() / dataSync() / toFloat32Array()', () => tidy(() => {
  const f = tensor([1.5, -2.25, 3]);
  assert.equal(f.dtype, 'float32');
  assert.ok(f.dataSync() instanceof Float32Array);
  assert.deepEqual(Array.from(f.dataSync() as Float32Array), [1.5, -2.25, 3]);

  const d = tensor(Float64Array.from([0.1, 1 / 3, -1e300]));
  assert.equal(d.dtype, 'float64');
  assert.deepEqual(Array.from(d.dataSync() as Float64Array), [0.1, 1 / 3, -1e300], 'float64 is exact');
  // the same through float32 loses precision: 0.1 is not representable
  assert.equal(d.toFloat32Array()[0], Math.fround(0.1));

  // float16: 1 = 0x3C00, 0.5 = 0x3800, -2 = 0xC000, 65504 (max) = 0x7BFF,
  // 0.1 -> 2^-4 * (1 + 614/1024) = 0.0999755859375 = 0 01011 1001100110 = 0x2E66
  const h = tensor([1, 0.5, -2, 65504, 0.1], { dtype: 'float16' });
  assert.equal(h.dtype, 'float16');
  assert.deepEqual(Array.from(h.dataSync() as Uint16Array), [0x3c00, 0x3800, 0xc000, 0x7bff, 0x2e66]);
  assert.deepEqual(Array.from(h.toFloat32Array()), [1, 0.5, -2, 65504, 0.0999755859375]);
  const hb = tensor(Uint16Array.from([0x3c00, 0xc000]), { dtype: 'float16' });
  assert.deepEqual(vals(hb), [1, -2]);

  // bfloat16: the top half of float32 bits, rounded to nearest even
  const b = tensor([1, -2, 0.5, 1 / 3], { dtype: 'bfloat16' });
  assert.equal(b.dtype, 'bfloat16');
  assert.deepEqual(Array.from(b.dataSync() as Uint16Array), [1, -2, 0.5, 1 / 3].map(bf16Bits));
  assert.equal(bf16Bits(1 / 3), 0x3eab);
  const dv = new DataView(new ArrayBuffer(4));
  dv.setUint32(0, 0x3eab0000);
  assert.equal(b.toFloat32Array()[3], dv.getFloat32(0));

  const l = tensor([1, -2, 2 ** 40]);
  assert.equal(l.dtype, 'int64');
  assert.deepEqual(Array.from(l.dataSync() as BigInt64Array), [1n, -2n, 2n ** 40n]);

  const i = tensor([1, -2, 3], { dtype: 'int32' });
  assert.ok(i.dataSync() instanceof Int32Array);
  assert.deepEqual(Array.from(i.dataSync() as Int32Array), [1, -2, 3]);
  const i2 = tensor(Int32Array.from([7, 8]));
  assert.equal(i2.dtype, 'int32');

  const u = tensor(Uint8Array.from([0, 255, 7]));
  assert.equal(u.dtype, 'uint8');
  assert.deepEqual(Array.from(u.dataSync() as Uint8Array), [0, 255, 7]);

  const bo = tensor([true, false, true]);
  assert.equal(bo.dtype, 'bool');
  assert.deepEqual(Array.from(bo.dataSync() as Uint8Array), [1, 0, 1]);
  assert.deepEqual(bo.tolist(), [true, false, true]);
  assert.deepEqual(Array.from(bo.toFloat32Array()), [1, 0, 1]);

  const shaped = tensor(Float32Array.from([1, 2, 3, 4, 5, 6]), { shape: [3, 2] });
  assert.deepEqual(shaped.tolist(), [[1, 2], [3, 4], [5, 6]]);
  assert.deepEqual(tensor(7).shape, []);
}));

test('.to() conversions follow C casting rules', () => tidy(() => {
  assert.deepEqual(vals(tensor([1.7, -1.7, 2.5]).to('int64')), [1, -1, 2], 'float -> int truncates toward zero');
  assert.deepEqual(tensor([0, 0.5, -1]).to('bool').tolist(), [false, true, true]);
  assert.deepEqual(vals(tensor([3, 250]).to('uint8')), [3, 250]);
  const i = tensor([1, 2]);
  const fl = i.float();
  assert.equal(fl.dtype, 'float32');
  assert.deepEqual(vals(fl), [1, 2]);
  // 1/3 in float16: 2^-2 * (1 + 341/1024)
  assert.equal(tensor([1 / 3]).half().toFloat32Array()[0], 0.25 * (1 + 341 / 1024));
  assert.equal(tensor([1 / 3]).double().dtype, 'float64');
  assert.equal(tensor([1.5]).long().dtype, 'int64');
  assert.equal(tensor([1.5]).int().dtype, 'int32');
  assert.deepEqual(tensor([2, 0]).bool().tolist(), [true, false]);
  assert.equal(tensor([1]).to({ dtype: 'float64' }).dtype, 'float64');
  const x = tensor([1.5, 2]);
  const same = x.to('float32');
  assert.ok(same.sharesStorageWith(x), 'no-op conversion returns a view');
  const copy = x.to({ dtype: 'float32', copy: true });
  assert.ok(!copy.sharesStorageWith(x), 'copy: true copies');
  assert.equal(x.cpu().device, 'cpu');
}));

test('item() and tolist()', () => tidy(() => {
  assert.equal(tensor(3.5).item(), 3.5);
  assert.equal(tensor([[7]]).item(), 7);
  assert.equal(tensor(2 ** 40).item(), 2 ** 40);
  assert.equal(tensor(true).item(), 1);
  assert.equal(tensor([0.1], { dtype: 'float64' }).item(), 0.1);
  assert.deepEqual(tensor([[1, 2], [3, 4]]).tolist(), [[1, 2], [3, 4]]);
  assert.deepEqual(tensor(5).tolist(), 5);
  assert.deepEqual(tensor([[0.5], [2]], { dtype: 'float16' }).tolist(), [[0.5], [2]]);
  assert.deepEqual(zeros([2, 0]).tolist(), [[], []]);
}));

test('String(t) shows shape, dtype and values', () => tidy(() => {
  const s = String(tensor([[1, 2, 3], [4, 5, 6]]));
  assert.match(s, /shape=\[2, 3\]/);
  assert.match(s, /dtype=int64/);
  assert.match(s, /\[4, 5, 6\]/);
  const f = String(f32([0.5, 1.25]));
  assert.match(f, /dtype=float32/);
  assert.match(f, /0\.5000/);
  assert.match(String(zeros([1], { requiresGrad: true })), /requiresGrad=true/);
  const big = String(zeros([40, 40]));
  assert.match(big, /shape=\[40, 40\]/);
  const d = zeros([2]);
  d.dispose();
  assert.match(String(d), /disposed/);
}));

test('strides, contiguity and channels-last layout', () => tidy(() => {
  const x = arange(120, undefined, 1, { dtype: 'float32' }).view(2, 3, 4, 5);
  assert.deepEqual(x.strides, [60, 20, 5, 1]);
  assert.ok(x.isContiguous());
  assert.ok(!x.isContiguous('channels_last'));
  const cl = x.channelsLast();
  assert.deepEqual(cl.shape, [2, 3, 4, 5], 'shape unchanged');
  // NHWC memory: C varies fastest, then W, then H: strides [H*W*C, 1, W*C, C]
  assert.deepEqual(cl.strides, [60, 1, 15, 3]);
  assert.ok(cl.isContiguous('channels_last'));
  assert.ok(!cl.isContiguous());
  assert.ok(cl.equal(x), 'values unchanged');
  assert.deepEqual(vals(cl), vals(x), 'dataSync reads logical order');
  // An NHWC permutation of channels-last memory is a plain contiguous tensor.
  assert.ok(cl.permute(0, 2, 3, 1).isContiguous());
  assert.ok(!x.permute(0, 2, 3, 1).isContiguous());
  const back = cl.contiguous();
  assert.deepEqual(back.strides, [60, 20, 5, 1]);
  assert.ok(back.equal(x));
  const t = x.transpose(2, 3);
  assert.deepEqual(t.strides, [60, 20, 1, 5]);
  assert.ok(!t.isContiguous());
  assert.equal(x.select(0, 1).storageOffset, 60);
  assert.equal(x.clone('channels_last').isContiguous('channels_last'), true);
}));

// ---------------------------------------------------------------------------------------------
// arithmetic

test('binary arithmetic broadcasts tensors and numbers', () => tidy(() => {
  const a = f32([1, 2, 3, 4, 5, 6], [2, 3]);
  const b = f32([10, 20, 30]);
  assertValues(a.add(b), [2, 3], [11, 22, 33, 14, 25, 36]);
  assertValues(a.sub(b), [2, 3], [-9, -18, -27, -6, -15, -24]);
  assertValues(a.mul(b), [2, 3], [10, 40, 90, 40, 100, 180]);
  assertClose(a.div(b), [0.1, 0.1, 0.1, 0.4, 0.25, 0.2]);
  const col = f32([1, 2], [2, 1]);
  assertValues(a.mul(col), [2, 3], [1, 2, 3, 8, 10, 12]);
  assertValues(col.add(f32([0, 10, 20], [1, 3])), [2, 3], [1, 11, 21, 2, 12, 22]);
  assertValues(a.add(1), [2, 3], [2, 3, 4, 5, 6, 7]);
  assertValues(a.mul(2), [2, 3], [2, 4, 6, 8, 10, 12]);
  assertValues(a.sub(0.5), [2, 3], [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]);
  assertValues(a.add(b, 2), [2, 3], [21, 42, 63, 24, 45, 66], 'alpha');
  assertValues(a.sub(b, 2), [2, 3], [-19, -38, -57, -16, -35, -54], 'sub alpha');
  assertValues(a.rsub(10), [2, 3], [9, 8, 7, 6, 5, 4]);
  assertValues(a.pow(2), [2, 3], [1, 4, 9, 16, 25, 36]);
  assertValues(f32([2, 3]).pow(f32([3, 2])), [2], [8, 9]);
}));

test('integer arithmetic: dtype promotion, true and rounding division, remainder vs fmod', () => tidy(() => {
  const i = tensor([7, -7, 4]);
  assert.equal(i.add(1).dtype, 'int64', 'int + int scalar stays int64');
  assert.equal(i.add(0.5).dtype, 'float32', 'int + float scalar promotes to the default float');
  assert.deepEqual(vals(i.div(2)), [3.5, -3.5, 2], 'true division');
  assert.deepEqual(vals(i.div(2, 'floor')), [3, -4, 2]);
  assert.deepEqual(vals(i.div(2, 'trunc')), [3, -3, 2]);
  // Python semantics: -7 % 3 == 2 (sign of the divisor); C fmod(-7, 3) == -1 (sign of the dividend)
  assert.deepEqual(vals(i.remainder(3)), [1, 2, 1]);
  assert.deepEqual(vals(i.fmod(3)), [1, -1, 1]);
  assert.deepEqual(vals(f32([1, 5, 3]).maximum(f32([4, 2, 3]))), [4, 5, 3]);
  assert.deepEqual(vals(f32([1, 5, 3]).minimum(f32([4, 2, 3]))), [1, 2, 3]);
}));

test('in-place variants return this and mutate', () => tidy(() => {
  const base = [1, 2, 3, 4];
  const x = f32(base);
  const r = x.add_(f32([1, 1, 1, 1]));
  assert.equal(r, x);
  assert.deepEqual(vals(x), [2, 3, 4, 5]);
  assert.equal(x.mul_(2), x);
  assert.deepEqual(vals(x), [4, 6, 8, 10]);
  assert.equal(x.sub_(1, 2), x);
  assert.deepEqual(vals(x), [2, 4, 6, 8]);
  assert.equal(x.div_(f32([2, 4, 6, 8])), x);
  assert.deepEqual(vals(x), [1, 1, 1, 1]);
  x.add_(f32([0, 1, 2, 3])).pow_(2);
  assert.deepEqual(vals(x), [1, 4, 9, 16]);
  assert.equal(x.sqrt_(), x);
  assert.deepEqual(vals(x), [1, 2, 3, 4]);
  assert.equal(x.clamp_(2, 3), x);
  assert.deepEqual(vals(x), [2, 2, 3, 3]);
  assert.equal(x.neg_(), x);
  assert.deepEqual(vals(x), [-2, -2, -3, -3]);
  assert.equal(x.abs_(), x);
  assert.deepEqual(vals(x), [2, 2, 3, 3]);
  assert.equal(x.fill_(5), x);
  assert.deepEqual(vals(x), [5, 5, 5, 5]);
  assert.equal(x.maskedFill_(tensor([true, false, true, false]), -1), x);
  assert.deepEqual(vals(x), [-1, 5, -1, 5]);
  assert.equal(x.copy_(f32([9, 8, 7, 6])), x);
  assert.deepEqual(vals(x), [9, 8, 7, 6]);
  assert.equal(x.zero_(), x);
  assert.deepEqual(vals(x), [0, 0, 0, 0]);
  x.exp_();
  assert.deepEqual(vals(x), [1, 1, 1, 1]);
  x.addcmul_(f32([1, 2, 3, 4]), f32([2, 2, 2, 2]), 0.5);
  assert.deepEqual(vals(x), [2, 3, 4, 5]);
  x.lerp_(f32([4, 5, 6, 7]), 0.5);
  assert.deepEqual(vals(x), [3, 4, 5, 6]);
  // in place on a view writes through to the base
  const m = zeros([2, 3]);
  m.select(0, 1).fill_(5);
  assert.deepEqual(vals(m), [0, 0, 0, 5, 5, 5]);
  m.slice(1, 0, 3, 2).add_(1);
  assert.deepEqual(vals(m), [1, 0, 1, 6, 5, 6]);
}));

// ---------------------------------------------------------------------------------------------
// comparison and logic

test('comparisons give bool tensors; logic ops; nan/finite; equal/allclose', () => tidy(() => {
  const a = f32([1, 2, 3]);
  const b = f32([3, 2, 1]);
  assert.equal(a.eq(b).dtype, 'bool');
  assert.deepEqual(a.eq(b).tolist(), [false, true, false]);
  assert.deepEqual(a.ne(2).tolist(), [true, false, true]);
  assert.deepEqual(a.lt(b).tolist(), [true, false, false]);
  assert.deepEqual(a.le(2).tolist(), [true, true, false]);
  assert.deepEqual(a.gt(b).tolist(), [false, false, true]);
  assert.deepEqual(a.ge(2).tolist(), [false, true, true]);
  const p = tensor([true, true, false, false]);
  const q = tensor([true, false, true, false]);
  assert.deepEqual(p.logicalAnd(q).tolist(), [true, false, false, false]);
  assert.deepEqual(p.logicalOr(q).tolist(), [true, true, true, false]);
  assert.deepEqual(p.logicalXor(q).tolist(), [false, true, true, false]);
  assert.deepEqual(p.logicalNot().tolist(), [false, false, true, true]);
  const s = f32([NaN, Infinity, -Infinity, 1]);
  assert.deepEqual(s.isnan().tolist(), [true, false, false, false]);
  assert.deepEqual(s.isfinite().tolist(), [false, false, false, true]);
  assert.ok(a.equal(f32([1, 2, 3])));
  assert.ok(!a.equal(f32([1, 2, 3.0001])));
  assert.ok(a.allclose(f32([1, 2, 3.00001])));
  assert.ok(!a.allclose(f32([1, 2, 3.01])));
}));

// ---------------------------------------------------------------------------------------------
// reductions

test('sum / mean / prod / cumsum over dims with keepdim', () => tidy(() => {
  const x = f32([1, 5, 3, 4, 2, 6], [2, 3]);
  assertValues(x.sum(), [], [21]);
  assertValues(x.sum(0), [3], [5, 7, 9]);
  assertValues(x.sum(1), [2], [9, 12]);
  assertValues(x.sum(-1, true), [2, 1], [9, 12]);
  assertValues(x.sum([0, 1]), [], [21]);
  assertValues(x.mean(0), [3], [2.5, 3.5, 4.5]);
  assertValues(x.mean(1, true), [2, 1], [3, 4]);
  assertValues(x.mean(), [], [3.5]);
  assertValues(x.prod(1), [2], [15, 48]);
  assertValues(x.cumsum(1), [2, 3], [1, 6, 9, 4, 6, 12]);
  assert.equal(tensor([1, 2]).sum().dtype, 'int64');
  assert.equal(tensor([true, true, false]).sum().item(), 2);
  assert.equal(tensor([1, 2]).sum(undefined, false, 'float64').dtype, 'float64');
  assertValues(x.countNonzero(), [], [6]);
}));

test('max / min with indices, amax / amin, argmax / argmin', () => tidy(() => {
  const x = f32([1, 5, 3, 4, 2, 6], [2, 3]);
  assert.equal(x.max().item(), 6);
  assert.equal(x.min().item(), 1);
  const [mv, mi] = x.max(1);
  assert.deepEqual([vals(mv), vals(mi), mi.dtype], [[5, 6], [1, 2], 'int64']);
  const [kv, ki] = x.max(1, true);
  assert.deepEqual([kv.shape, ki.shape], [[2, 1], [2, 1]]);
  const [nv, ni] = x.min(0);
  assert.deepEqual([vals(nv), vals(ni)], [[1, 2, 3], [0, 1, 0]]);
  assertValues(x.amax(0), [3], [4, 5, 6]);
  assertValues(x.amin(1), [2], [1, 2]);
  assertValues(x.amax([0, 1]), [], [6]);
  assertValues(x.amin(1, true), [2, 1], [1, 2]);
  assertValues(x.argmax(), [], [5]);
  assertValues(x.argmax(1), [2], [1, 2]);
  assertValues(x.argmin(0), [3], [0, 1, 0]);
  assertValues(x.argmin(1, true), [2, 1], [0, 1]);
}));

test('std / var, unbiased and biased', () => tidy(() => {
  // rows [1,5,3] and [4,2,7]: means 3 and 13/3
  const x = f64([1, 5, 3, 4, 2, 7], [2, 3]);
  const ss0 = (1 - 3) ** 2 + (5 - 3) ** 2 + 0; // 8
  const m1 = 13 / 3;
  const ss1 = (4 - m1) ** 2 + (2 - m1) ** 2 + (7 - m1) ** 2;
  assertClose(x.var(1), [ss0 / 2, ss1 / 2], { rtol: 1e-12 });
  assertClose(x.var(1, { unbiased: false }), [ss0 / 3, ss1 / 3], { rtol: 1e-12 });
  assertClose(x.std(1), [Math.sqrt(ss0 / 2), Math.sqrt(ss1 / 2)], { rtol: 1e-12 });
  assertClose(x.std(1, { unbiased: false }), [Math.sqrt(ss0 / 3), Math.sqrt(ss1 / 3)], { rtol: 1e-12 });
  const all = [1, 5, 3, 4, 2, 7];
  const m = all.reduce((s, v) => s + v, 0) / 6;
  const ss = all.reduce((s, v) => s + (v - m) ** 2, 0);
  assertClose(x.var(), [ss / 5], { rtol: 1e-12 });
  assertClose(x.std(undefined, { unbiased: false }), [Math.sqrt(ss / 6)], { rtol: 1e-12 });
  assert.deepEqual(x.var(0, { keepdim: true }).shape, [1, 3]);
  // column 0 is [1, 4]: unbiased var 4.5
  assertClose(x.var(0), [4.5, 4.5, 8], { rtol: 1e-12 });
}));

test('norm p = 1, 2, inf over all elements and along dims', () => tidy(() => {
  const v = f32([3, -4]);
  assert.equal(v.norm().item(), 5);
  assert.equal(v.norm(1).item(), 7);
  assert.equal(v.norm(Infinity).item(), 4);
  const m = f32([3, -4, 1, 0], [2, 2]);
  assertValues(m.norm(2, 1), [2], [5, 1]);
  assertValues(m.norm(1, 0), [2], [4, 4]);
  assertValues(m.norm(Infinity, 1, true), [2, 1], [4, 1]);
  assertClose(m.norm(3), [Math.cbrt(27 + 64 + 1)]);
}));

test('logsumexp equals log(sum(exp)) and is stable for large inputs', () => tidy(() => {
  const data = [0.5, -1, 2, 3, 0, -2];
  const x = f64(data, [2, 3]);
  const ref = [0, 1].map((r) => Math.log(data.slice(3 * r, 3 * r + 3).reduce((s, v) => s + Math.exp(v), 0)));
  assertClose(x.logsumexp(1), ref, { rtol: 1e-12 });
  assert.deepEqual(x.logsumexp(1, true).shape, [2, 1]);
  assertClose(x.logsumexp([0, 1]), [Math.log(data.reduce((s, v) => s + Math.exp(v), 0))], { rtol: 1e-12 });
  assertClose(f32([1000, 1000]).logsumexp(0), [1000 + Math.LN2], { rtol: 1e-6 });
  assertClose(x.logsumexp(1), vals(x.exp().sum(1).log()), { rtol: 1e-12 });
}));

test('any / all', () => tidy(() => {
  const b = tensor([[true, false], [false, false]]);
  assert.equal(b.any().item(), 1);
  assert.equal(b.all().item(), 0);
  assert.deepEqual(b.any(1).tolist(), [true, false]);
  assert.deepEqual(b.any(0).tolist(), [true, false]);
  assert.deepEqual(b.all(0).tolist(), [false, false]);
  assert.deepEqual(b.any(1, true).shape, [2, 1]);
  assert.equal(ones([3]).all().item(), 1);
  assert.equal(zeros([3]).any().item(), 0);
}));

// ---------------------------------------------------------------------------------------------
// shape ops

/** Element at a multi-index of a tensor read through its logical order. */
function at(t: Tensor, ...idx: number[]): number {
  const s = t.shape;
  let k = 0;
  for (let d = 0; d < s.length; d++) k = k * s[d]! + idx[d]!;
  return vals(t)[k]!;
}

test('view / reshape / flatten / squeeze / unsqueeze', () => tidy(() => {
  const x = arange(24, undefined, 1, { dtype: 'float32' }).view(2, 3, 4);
  assert.deepEqual(x.view(6, 4).shape, [6, 4]);
  assert.deepEqual(x.view([-1]).shape, [24]);
  assert.deepEqual(x.view(4, -1).shape, [4, 6]);
  assert.deepEqual(vals(x.view(6, 4)), vals(x));
  assert.deepEqual(x.reshape(3, 8).shape, [3, 8]);
  // reshape of a non-contiguous tensor copies in logical order
  const t = x.transpose(0, 2);
  const r = t.reshape(-1);
  assert.deepEqual(vals(r), vals(t));
  assert.equal(at(t, 3, 1, 0), 7); // x[0][1][3] = 1*4 + 3
  assert.deepEqual(x.flatten().shape, [24]);
  assert.deepEqual(x.flatten(1).shape, [2, 12]);
  assert.deepEqual(x.flatten(0, 1).shape, [6, 4]);
  const z = zeros([1, 3, 1]);
  assert.deepEqual(z.squeeze().shape, [3]);
  assert.deepEqual(z.squeeze(0).shape, [3, 1]);
  assert.deepEqual(z.squeeze(1).shape, [1, 3, 1], 'squeezing a non-1 dim is a no-op');
  assert.deepEqual(zeros([3]).unsqueeze(1).shape, [3, 1]);
  assert.deepEqual(zeros([3]).unsqueeze(-1).shape, [3, 1]);
  assert.deepEqual(zeros([3]).unsqueeze(0).shape, [1, 3]);
}));

test('view shares storage; contiguous() copies a non-contiguous tensor', () => tidy(() => {
  const x = zeros([2, 3]);
  const v = x.view(3, 2);
  assert.ok(v.sharesStorageWith(x));
  v.select(0, 0).fill_(7);
  assert.deepEqual(vals(x), [7, 7, 0, 0, 0, 0], 'writing to the view changes the base');
  const tr = x.t();
  assert.ok(tr.sharesStorageWith(x));
  const c = tr.contiguous();
  assert.ok(!c.sharesStorageWith(x));
  assert.ok(c.isContiguous());
  assert.ok(c.equal(tr));
  c.fill_(1);
  assert.deepEqual(vals(x), [7, 7, 0, 0, 0, 0], 'writing to the copy leaves the base');
  assert.ok(x.contiguous().sharesStorageWith(x), 'contiguous() of a contiguous tensor is itself');
  assert.ok(x.clone().equal(x) && !x.clone().sharesStorageWith(x));
}));

test('permute / transpose move elements as indexed', () => tidy(() => {
  const x = arange(24, undefined, 1, { dtype: 'float32' }).view(2, 3, 4); // x[i][j][k] = 12i + 4j + k
  const p = x.permute(2, 0, 1);
  assert.deepEqual(p.shape, [4, 2, 3]);
  const pv = vals(p);
  for (let k = 0; k < 4; k++) for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) {
    assert.equal(pv[(k * 2 + i) * 3 + j], 12 * i + 4 * j + k);
  }
  assert.deepEqual(x.permute([1, 0, 2]).shape, [3, 2, 4]);
  const t = x.transpose(0, 2);
  assert.deepEqual(t.shape, [4, 3, 2]);
  assert.equal(at(t, 3, 2, 1), 12 + 8 + 3);
  assert.deepEqual(x.transpose(-1, -2).shape, [2, 4, 3]);
}));

test('expand / repeat', () => tidy(() => {
  const c = f32([1, 2], [2, 1]);
  const e = c.expand(2, 3);
  assertValues(e, [2, 3], [1, 1, 1, 2, 2, 2]);
  assert.equal(e.strides[1], 0, 'expand does not copy');
  assert.deepEqual(c.expand(-1, 4).shape, [2, 4]);
  assert.deepEqual(f32([1]).expandAs(zeros([2, 2])).shape, [2, 2]);
  assertValues(f32([1, 2]).repeat(2, 2), [2, 4], [1, 2, 1, 2, 1, 2, 1, 2]);
  assertValues(f32([1, 2]).repeat(3), [6], [1, 2, 1, 2, 1, 2]);
}));

test('cat / stack', () => tidy(() => {
  const a = f32([1, 2, 3, 4], [2, 2]);
  const b = f32([5, 6], [1, 2]);
  assertValues(cat([a, b]), [3, 2], [1, 2, 3, 4, 5, 6]);
  assertValues(cat([a, a], 1), [2, 4], [1, 2, 1, 2, 3, 4, 3, 4]);
  assertValues(cat([a, a], -1), [2, 4], [1, 2, 1, 2, 3, 4, 3, 4]);
  const c = f32([7, 8, 9, 10], [2, 2]);
  assertValues(stack([a, c]), [2, 2, 2], [1, 2, 3, 4, 7, 8, 9, 10]);
  assertValues(stack([a, c], 1), [2, 2, 2], [1, 2, 7, 8, 3, 4, 9, 10]);
  assertValues(stack([a, c], 2), [2, 2, 2], [1, 7, 2, 8, 3, 9, 4, 10]);
}));

test('split by size and by sizes, chunk, narrow, slice with step, select', () => tidy(() => {
  const x = arange(5);
  assert.deepEqual(x.split(2).map(vals), [[0, 1], [2, 3], [4]]);
  assert.deepEqual(x.split([1, 4]).map(vals), [[0], [1, 2, 3, 4]]);
  assert.deepEqual(arange(6).chunk(3).map(vals), [[0, 1], [2, 3], [4, 5]]);
  assert.deepEqual(x.chunk(2).map(vals), [[0, 1, 2], [3, 4]]);
  const m = arange(6).view(2, 3);
  assert.deepEqual(m.split(1, 1).map(vals), [[0, 3], [1, 4], [2, 5]]);
  assert.deepEqual(m.split([2, 1], 1).map((t) => t.shape), [[2, 2], [2, 1]]);
  assert.deepEqual(vals(x.narrow(0, 1, 2)), [1, 2]);
  assert.deepEqual(vals(m.narrow(1, 1, 2)), [1, 2, 4, 5]);
  const y = arange(10);
  assert.deepEqual(vals(y.slice(0, 1, 8, 3)), [1, 4, 7]);
  assert.deepEqual(vals(y.slice(0, null, null, 2)), [0, 2, 4, 6, 8]);
  assert.deepEqual(vals(y.slice(0, -3)), [7, 8, 9]);
  assert.deepEqual(vals(y.slice(0, 2, -5)), [2, 3, 4]);
  assert.ok(y.slice(0, 1, 8, 3).sharesStorageWith(y));
  assert.deepEqual(vals(m.select(1, 2)), [2, 5]);
  assert.deepEqual(vals(m.select(0, -1)), [3, 4, 5]);
  assert.deepEqual(m.select(0, 0).shape, [3]);
}));

test('flip / roll / tril / triu', () => tidy(() => {
  const m = arange(6).view(2, 3);
  assert.deepEqual(vals(m.flip(1)), [2, 1, 0, 5, 4, 3]);
  assert.deepEqual(vals(m.flip([0, 1])), [5, 4, 3, 2, 1, 0]);
  assert.deepEqual(vals(arange(5).roll(2, 0)), [3, 4, 0, 1, 2]);
  const s = ones([3, 3]);
  assert.deepEqual(vals(s.tril()), [1, 0, 0, 1, 1, 0, 1, 1, 1]);
  assert.deepEqual(vals(s.triu(1)), [0, 1, 1, 0, 0, 1, 0, 0, 0]);
}));

// ---------------------------------------------------------------------------------------------
// indexing

test('indexSelect / gather', () => tidy(() => {
  const x = f32([1, 2, 3, 4, 5, 6], [3, 2]);
  assertValues(x.indexSelect(0, tensor([2, 0])), [2, 2], [5, 6, 1, 2]);
  assertValues(x.indexSelect(1, tensor([1, 1, 0])), [3, 3], [2, 2, 1, 4, 4, 3, 6, 6, 5]);
  const g = f32([1, 2, 3, 4], [2, 2]);
  // out[i][j] = g[i][index[i][j]]
  assertValues(g.gather(1, tensor([[0, 0], [1, 0]])), [2, 2], [1, 1, 4, 3]);
  // out[i][j] = g[index[i][j]][j]
  assertValues(g.gather(0, tensor([[1, 0]])), [1, 2], [3, 2]);
}));

test('scatter / scatter_ / scatterAdd', () => tidy(() => {
  const src = arange(1, 11, 1, { dtype: 'float32' }).view(2, 5);
  const idx = tensor([[0, 1, 2, 0]]);
  // out[idx[i][j]][j] = src[i][j]
  assertValues(zeros([3, 5]).scatter(0, idx, src), [3, 5], [1, 0, 0, 4, 0, 0, 2, 0, 0, 0, 0, 0, 3, 0, 0]);
  // out[i][idx[i][j]] = src[i][j]
  assertValues(zeros([2, 4]).scatter(1, tensor([[3], [1]]), src), [2, 4], [0, 0, 0, 1, 0, 6, 0, 0]);
  assertValues(zeros([2, 3]).scatter(1, tensor([[2], [0]]), 9), [2, 3], [0, 0, 9, 9, 0, 0]);
  const z = zeros([3]);
  assert.equal(z.scatter_(0, tensor([1]), 4), z);
  assert.deepEqual(vals(z), [0, 4, 0]);
  assertValues(zeros([3]).scatterAdd(0, tensor([0, 1, 0, 2, 0]), f32([1, 2, 3, 4, 5])), [3], [9, 2, 4]);
}));

test('maskedFill / maskedSelect / boolean mask and advanced indexing / where', () => tidy(() => {
  const x = f32([1, 2, 3, 4, 5, 6], [2, 3]);
  const mask = x.gt(3);
  assertValues(x.maskedFill(mask, -1), [2, 3], [1, 2, 3, -1, -1, -1]);
  assertValues(x.maskedFill(tensor([true, false, true]), 0), [2, 3], [0, 2, 0, 0, 5, 0], 'broadcast mask');
  assertValues(x.maskedSelect(mask), [3], [4, 5, 6]);
  assertValues(x.index([x.remainder(2).eq(0)]), [3], [2, 4, 6]);
  assertValues(x.index([tensor([1, 0]), tensor([2, 0])]), [2], [6, 1]);
  assertValues(x.index([null, tensor([1])]), [2, 1], [2, 5]);
  assertValues(x.index([tensor([1, 1, 0])]), [3, 3], [4, 5, 6, 4, 5, 6, 1, 2, 3]);
  assertValues(where(mask, x, 0), [2, 3], [0, 0, 0, 4, 5, 6]);
  assertValues(where(mask, 1, x), [2, 3], [1, 2, 3, 1, 1, 1]);
  assertValues(where(mask, 1, 0), [2, 3], [0, 0, 0, 1, 1, 1]);
  assertValues(where(mask, x, x.neg()), [2, 3], [-1, -2, -3, 4, 5, 6]);
  assertValues(arange(5).gt(1).nonzero(), [3, 1], [2, 3, 4]);
}));

test('indexPut_ assigns and accumulates duplicates', () => tidy(() => {
  const z = zeros([4]);
  assert.equal(z.indexPut_([tensor([0, 2])], f32([5, 6])), z);
  assert.deepEqual(vals(z), [5, 0, 6, 0]);
  const a = zeros([3]);
  a.indexPut_([tensor([0, 0, 2])], f32([1, 2, 3]), true);
  assert.deepEqual(vals(a), [3, 0, 3], 'accumulate sums repeated indices');
  const m = zeros([2, 3]);
  m.indexPut_([tensor([1, 0]), tensor([2, 1])], f32([7, 8]));
  assert.deepEqual(vals(m), [0, 8, 0, 0, 0, 7]);
  const b = zeros([2, 2]);
  b.indexPut_([tensor([[true, false], [false, true]])], f32([1]));
  assert.deepEqual(vals(b), [1, 0, 0, 1]);
}));

// ---------------------------------------------------------------------------------------------
// sorting

test('topk / sort / argsort / unique', () => tidy(() => {
  const data = [3, 1, 4, 1, 5, 9, 2, 6];
  const x = f32(data);
  const [tv, ti] = x.topk(3);
  assert.deepEqual([vals(tv), vals(ti)], [[9, 6, 5], [5, 7, 4]]);
  const [sv, si] = x.topk(2, -1, false);
  assert.deepEqual(vals(sv), [1, 1]);
  assert.deepEqual(vals(si).sort(), [1, 3]);
  const [v, i] = x.sort();
  assert.deepEqual(vals(v), [...data].sort((p, q) => p - q));
  assert.deepEqual(vals(i).map((k) => data[k]), vals(v), 'indices point at the sorted values');
  const [, stable] = x.sort(-1, false, true);
  assert.deepEqual(vals(stable).slice(0, 2), [1, 3], 'stable sort keeps equal keys in order');
  const [dv] = x.sort(-1, true);
  assert.deepEqual(vals(dv), [...data].sort((p, q) => q - p));
  assert.deepEqual(vals(x.argsort()).map((k) => data[k]), [...data].sort((p, q) => p - q));
  const m = f32([3, 1, 2, 0], [2, 2]);
  const [mv, mi] = m.sort(0);
  assert.deepEqual([vals(mv), vals(mi)], [[2, 0, 3, 1], [1, 1, 0, 0]]);
  const [kv] = m.topk(1, 1);
  assertValues(kv, [2, 1], [3, 2]);
  const u = tensor([3, 1, 3, 2, 1, 3]).unique();
  assert.deepEqual(vals(u.values), [1, 2, 3]);
  assert.deepEqual(vals(u.counts), [2, 1, 3]);
  assert.deepEqual(vals(u.inverse).map((k) => vals(u.values)[k]), [3, 1, 3, 2, 1, 3]);
}));

// ---------------------------------------------------------------------------------------------
// elementwise math and activations

const XS = [-2.5, -1, -0.3, 0.2, 1, 2.7];

test('exp / log / pow / sqrt / abs / sign / rounding match Math', () => tidy(() => {
  const x = f64(XS);
  const pos = f64(XS.map(Math.abs));
  assertClose(x.exp(), XS.map(Math.exp), { rtol: 1e-14 });
  assertClose(pos.log(), XS.map((v) => Math.log(Math.abs(v))), { rtol: 1e-14, atol: 1e-15 });
  assertClose(x.pow(3), XS.map((v) => v ** 3), { rtol: 1e-14 });
  assertClose(pos.pow(0.5), XS.map((v) => Math.sqrt(Math.abs(v))), { rtol: 1e-14 });
  assertClose(pos.sqrt(), XS.map((v) => Math.sqrt(Math.abs(v))), { rtol: 1e-14 });
  assertClose(pos.rsqrt(), XS.map((v) => 1 / Math.sqrt(Math.abs(v))), { rtol: 1e-14 });
  assertClose(x.abs(), XS.map(Math.abs), { rtol: 0 });
  assertClose(x.neg(), XS.map((v) => -v), { rtol: 0 });
  assertClose(x.sign(), XS.map(Math.sign), { rtol: 0 });
  assertClose(x.floor(), XS.map(Math.floor), { rtol: 0 });
  assertClose(x.ceil(), XS.map(Math.ceil), { rtol: 0 });
  assertClose(x.trunc(), XS.map(Math.trunc), { rtol: 0 });
  assertClose(f64([0.5, 1.5, 2.5, -0.5]).round(), [0, 2, 2, -0], { rtol: 0 }); // half to even
  assertClose(x.square(), XS.map((v) => v * v), { rtol: 1e-15 });
  assertClose(x.reciprocal(), XS.map((v) => 1 / v), { rtol: 1e-15 });
  assertClose(x.sin(), XS.map(Math.sin), { rtol: 1e-14 });
  assertClose(x.cos(), XS.map(Math.cos), { rtol: 1e-14 });
  assertClose(x.log1p().isnan(), XS.map((v) => (v < -1 ? 1 : 0)), { rtol: 0 }); // log1p(-1) = -inf, below: NaN
  assertClose(pos.log1p(), XS.map((v) => Math.log1p(Math.abs(v))), { rtol: 1e-14 });
  assertClose(x.expm1(), XS.map(Math.expm1), { rtol: 1e-14 });
  assertClose(x.erf(), XS.map(erf), { rtol: 1e-10, atol: 1e-12 });
  assertClose(f64([2]).pow(f64([0.5, 3])), [Math.SQRT2, 8], { rtol: 1e-15 });
}));

test('clamp with one or both bounds, and tensor bounds', () => tidy(() => {
  const x = f32([-2, -0.5, 0.5, 2]);
  assert.deepEqual(vals(x.clamp(0)), [0, 0, 0.5, 2]);
  assert.deepEqual(vals(x.clamp(null, 1)), [-2, -0.5, 0.5, 1]);
  assert.deepEqual(vals(x.clamp(-1, 1)), [-1, -0.5, 0.5, 1]);
  assert.deepEqual(vals(x.clampMin(-1)), [-1, -0.5, 0.5, 2]);
  assert.deepEqual(vals(x.clampMax(0)), [-2, -0.5, 0, 0]);
  assert.deepEqual(vals(x.clamp(f32([0, 0, 1, 1]), 1.5)), [0, 0, 1, 1.5]);
  assert.deepEqual(vals(x.clamp(null, f32([-3, 0, 0, 3]))), [-3, -0.5, 0, 2]);
}));

test('activations follow their formulas', () => tidy(() => {
  const xs = [...XS, 6.5, -7];
  const x = f64(xs);
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  assertClose(x.sigmoid(), xs.map(sig), { rtol: 1e-14 });
  assertClose(F.sigmoid(x), xs.map(sig), { rtol: 1e-14 });
  assertClose(x.tanh(), xs.map(Math.tanh), { rtol: 1e-14 });
  assertClose(x.relu(), xs.map((v) => Math.max(v, 0)), { rtol: 0 });
  assertClose(F.relu6(x), xs.map((v) => Math.min(Math.max(v, 0), 6)), { rtol: 0 });
  assertClose(F.hardtanh(x), xs.map((v) => Math.min(Math.max(v, -1), 1)), { rtol: 0 });
  assertClose(F.elu(x), xs.map((v) => (v > 0 ? v : Math.expm1(v))), { rtol: 1e-14 });
  assertClose(F.elu(x, 0.5), xs.map((v) => (v > 0 ? v : 0.5 * Math.expm1(v))), { rtol: 1e-14 });
  assertClose(F.leakyRelu(x), xs.map((v) => (v > 0 ? v : 0.01 * v)), { rtol: 1e-15 });
  assertClose(F.leakyRelu(x, 0.2), xs.map((v) => (v > 0 ? v : 0.2 * v)), { rtol: 1e-15 });
  const inRange = f64(XS);
  assertClose(F.gelu(inRange), XS.map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2))), { rtol: 1e-10, atol: 1e-12 });
  const c = Math.sqrt(2 / Math.PI);
  assertClose(F.gelu(inRange, 'tanh'), XS.map((v) => 0.5 * v * (1 + Math.tanh(c * (v + 0.044715 * v ** 3)))),
    { rtol: 1e-12, atol: 1e-14 });
  assertClose(F.silu(x), xs.map((v) => v * sig(v)), { rtol: 1e-14 });
  assertClose(F.softplus(x), xs.map((v) => Math.log1p(Math.exp(v))), { rtol: 1e-12 });
  assertClose(x.logSigmoid(), xs.map((v) => Math.log(sig(v))), { rtol: 1e-12 });
  assertClose(F.hardsigmoid(x), xs.map((v) => Math.min(Math.max(v / 6 + 0.5, 0), 1)), { rtol: 1e-14 });
  assertClose(F.hardswish(x), xs.map((v) => v * Math.min(Math.max(v + 3, 0), 6) / 6), { rtol: 1e-14 });
  const r = f32([-1, 2]);
  assert.equal(r.relu_(), r);
  assert.deepEqual(vals(r), [0, 2]);
}));

test('softmax sums to 1, matches exp(x)/sum exp(x), is shift invariant; logSoftmax = x - logsumexp', () => tidy(() => {
  const data = randArray(12, 3, -3, 3);
  const x = f64(data, [3, 4]);
  const s = x.softmax(1);
  assertClose(s.sum(1), [1, 1, 1], { rtol: 1e-14 });
  const ref: number[] = [];
  for (let r = 0; r < 3; r++) {
    const row = data.slice(4 * r, 4 * r + 4);
    const z = row.reduce((acc, v) => acc + Math.exp(v), 0);
    ref.push(...row.map((v) => Math.exp(v) / z));
  }
  assertClose(s, ref, { rtol: 1e-13 });
  assertClose(x.add(100).softmax(1), ref, { rtol: 1e-12 });
  assertClose(x.softmax(0).sum(0), [1, 1, 1, 1], { rtol: 1e-14 });
  assertClose(x.logSoftmax(1), vals(x.sub(x.logsumexp(1, true))), { rtol: 1e-13, atol: 1e-14 });
  assertClose(x.logSoftmax(1), ref.map(Math.log), { rtol: 1e-12 });
  assertClose(f32([1000, 0]).softmax(0), [1, 0], { atol: 1e-30 });
  assertClose(f32([1000, 0]).logSoftmax(0), [0, -1000], { rtol: 1e-6 });
  const h = f32([1, 2, 3]).softmax(0, 'float64');
  assert.equal(h.dtype, 'float64');
}));

// ---------------------------------------------------------------------------------------------
// linear algebra

function bmmRef(a: number[], b: number[], B: number, I: number, J: number, K: number): number[] {
  const out = new Array<number>(B * I * K).fill(0);
  for (let n = 0; n < B; n++) for (let i = 0; i < I; i++) for (let k = 0; k < K; k++) {
    let s = 0;
    for (let j = 0; j < J; j++) s += a[(n * I + i) * J + j]! * b[(n * J + j) * K + k]!;
    out[(n * I + i) * K + k] = s;
  }
  return out;
}

test('matmul: hand-computed, broadcasting, vector cases', () => tidy(() => {
  const a = f32([1, 2, 3, 4, 5, 6], [2, 3]);
  const b = f32([7, 8, 9, 10, 11, 12], [3, 2]);
  // [1*7+2*9+3*11, 1*8+2*10+3*12; 4*7+5*9+6*11, 4*8+5*10+6*12]
  assertValues(a.matmul(b), [2, 2], [58, 64, 139, 154]);
  assertValues(a.mm(b), [2, 2], [58, 64, 139, 154]);
  assertValues(a.matmul(f32([1, 0, -1])), [2], [-2, -2]);
  assertValues(f32([1, 1]).matmul(a), [3], [5, 7, 9]);
  const batched = stack([a, a.mul(2)]);
  assertValues(batched.matmul(b), [2, 2, 2], [58, 64, 139, 154, 116, 128, 278, 308]);
}));

test('bmm and einsum agree with a hand loop', () => tidy(() => {
  const [B, I, J, K] = [3, 2, 4, 5];
  const ad = randArray(B * I * J, 11);
  const bd = randArray(B * J * K, 12);
  const a = f64(ad, [B, I, J]);
  const b = f64(bd, [B, J, K]);
  const ref = bmmRef(ad, bd, B, I, J, K);
  assertClose(a.bmm(b), ref, { rtol: 1e-12, atol: 1e-14 });
  const e = einsum('bij,bjk->bik', a, b);
  assert.deepEqual(e.shape, [B, I, K]);
  assertClose(e, ref, { rtol: 1e-12, atol: 1e-14 });
  assertClose(e, vals(a.bmm(b)), { rtol: 1e-12, atol: 1e-14 });
  assertValues(einsum('ij->ji', f32([1, 2, 3, 4, 5, 6], [2, 3])), [3, 2], [1, 4, 2, 5, 3, 6]);
  assertValues(einsum('i,i->', f32([1, 2, 3]), f32([4, 5, 6])), [], [32]);
  assertValues(einsum('i,j->ij', f32([1, 2]), f32([3, 4, 5])), [2, 3], [3, 4, 5, 6, 8, 10]);
  assertClose(a.matmul(b), ref, { rtol: 1e-12, atol: 1e-14 });
  assertClose(randF64([2, 3], 1).matmul(eye(3, 3, { dtype: 'float64' })), vals(randF64([2, 3], 1)), { rtol: 0 });
}));
