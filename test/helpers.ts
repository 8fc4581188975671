// Shared helpers for the engine and nn tests: reading values out, tolerance comparisons, a seeded JS
// random source (independent of libtorch's generator) and a float64 finite-difference gradient check.
import assert from 'node:assert/strict';

import { type Tensor, noGrad, tensor, tidy } from '../src/engine/index.js';

/** A tensor's values as plain numbers (int64 via Number, bool as 0/1, half types via float32). */
export function vals(t: Tensor): number[] {
  if (t.dtype === 'float16' || t.dtype === 'bfloat16') return Array.from(t.toFloat32Array());
  return Array.from(t.dataSync() as ArrayLike<number | bigint>, (v) => Number(v));
}

export interface Tol {
  rtol?: number;
  atol?: number;
}

/** Asserts |actual - expected| <= atol + rtol * |expected| elementwise (NaN matches NaN, inf matches inf). */
export function assertClose(
  actual: Tensor | ArrayLike<number>, expected: ArrayLike<number>, tol: Tol = {}, msg = '',
): void {
  const a = isTensor(actual) ? vals(actual) : Array.from(actual);
  const e = Array.from(expected);
  const rtol = tol.rtol ?? 1e-5;
  const atol = tol.atol ?? 1e-6;
  assert.equal(a.length, e.length, `${msg} length: got ${a.length}, expected ${e.length}`);
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = e[i]!;
    if (Number.isNaN(y)) {
      assert.ok(Number.isNaN(x), `${msg} [${i}]: got ${x}, expected NaN`);
    } else if (!Number.isFinite(y)) {
      assert.equal(x, y, `${msg} [${i}]`);
    } else {
      assert.ok(Math.abs(x - y) <= atol + rtol * Math.abs(y),
        `${msg} [${i}]: got ${x}, expected ${y} (diff ${Math.abs(x - y)}, rtol ${rtol}, atol ${atol})`);
    }
  }
}

/** Asserts the tensor's shape and exact values. */
export function assertValues(t: Tensor, shape: number[], expected: ArrayLike<number>, msg = ''): void {
  assert.deepEqual(t.shape, shape, `${msg} shape`);
  assert.deepEqual(vals(t), Array.from(expected), `${msg} values`);
}

function isTensor(x: unknown): x is Tensor {
  return typeof x === 'object' && x !== null && 'handle' in x && 'shape' in x;
}

/** mulberry32: a small seeded PRNG, so test data does not depend on the engine under test. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** n uniform values in [lo, hi) from a seeded JS generator. */
export function randArray(n: number, seed: number, lo = -1, hi = 1): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => lo + (hi - lo) * r());
}

/** n distinct values in [lo, hi) at least `gap` apart (a shuffled grid), for checks near max/sort kinks. */
export function distinctArray(n: number, seed: number, lo = -1, hi = 1): number[] {
  const r = rng(seed);
  const grid = Array.from({ length: n }, (_, i) => lo + ((hi - lo) * (i + 0.5)) / n);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [grid[i], grid[j]] = [grid[j]!, grid[i]!];
  }
  return grid;
}

export function prod(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A float64 tensor of the given shape from plain numbers. */
export function f64(data: number[], shape: number[] = [data.length]): Tensor {
  return tensor(Float64Array.from(data), { shape });
}

/** A float32 tensor of the given shape from plain numbers. */
export function f32(data: number[], shape: number[] = [data.length]): Tensor {
  return tensor(Float32Array.from(data), { shape });
}

/** A seeded random float64 tensor with values in [lo, hi). */
export function randF64(shape: number[], seed: number, lo = -1, hi = 1): Tensor {
  return f64(randArray(prod(shape), seed, lo, hi), shape);
}

/** Row-major flat index of a multi-index. */
export function flatIndex(shape: number[], idx: number[]): number {
  let k = 0;
  for (let d = 0; d < shape.length; d++) k = k * shape[d]! + idx[d]!;
  return k;
}

/** Standard error function from its Maclaurin series (accurate to ~1e-12 for |x| <= 3). */
export function erf(x: number): number {
  let sum = 0;
  let term = x; // (-1)^n x^(2n+1) / n!
  for (let n = 0; n < 100; n++) {
    const contrib = term / (2 * n + 1);
    sum += contrib;
    if (Math.abs(contrib) < 1e-17) break;
    term *= (-x * x) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

export interface GradcheckOptions {
  /** Indices of the inputs to differentiate (default: every float64 input). */
  wrt?: number[];
  eps?: number;
  rtol?: number;
  atol?: number;
}

/**
 * Compares autograd's gradients of fn at float64 inputs with central finite differences.
 * The output is reduced to a scalar with fixed pseudo-random weights, L = sum(w * fn(...inputs)), so every
 * output element contributes with a distinct weight; the reference dL/dx_k = (L(x + eps e_k) - L(x - eps e_k)) / 2eps
 * is computed from the output values in JS doubles.
 */
export function gradcheck(fn: (...xs: Tensor[]) => Tensor, inputs: Tensor[], o: GradcheckOptions = {}): void {
  const eps = o.eps ?? 1e-6;
  const rtol = o.rtol ?? 1e-5;
  const atol = o.atol ?? 1e-5;
  const wrt = o.wrt ?? inputs.flatMap((x, i) => (x.dtype === 'float64' ? [i] : []));
  assert.ok(wrt.length > 0, 'gradcheck: nothing to differentiate');
  for (const i of wrt) assert.equal(inputs[i]!.dtype, 'float64', `gradcheck: input ${i} must be float64`);
  tidy(() => {
    const leaves = inputs.map((x, i) => (wrt.includes(i) ? x.detach().requiresGrad_(true) : x));
    const out = fn(...leaves);
    assert.equal(out.dtype, 'float64', 'gradcheck: fn must return float64');
    const w = randArray(out.numel, 977, 0.5, 1.5).map((v, k) => (k % 2 ? -v : v));
    const loss = out.mul(f64(w, out.shape)).sum();
    loss.backward();
    const lossAt = (xs: Tensor[]): number => noGrad(() => tidy(() => {
      const y = vals(fn(...xs));
      let s = 0;
      for (let k = 0; k < y.length; k++) s += y[k]! * w[k]!;
      return s;
    }));
    for (const i of wrt) {
      const g = leaves[i]!.grad;
      const analytic = g ? vals(g) : new Array<number>(inputs[i]!.numel).fill(0);
      const base = vals(inputs[i]!);
      const shape = inputs[i]!.shape;
      const numeric = base.map((_, k) => {
        const at = (delta: number): number => tidy(() => {
          const p = base.slice();
          p[k] = p[k]! + delta;
          const xs = inputs.slice();
          xs[i] = f64(p, shape);
          return lossAt(xs);
        });
        return (at(eps) - at(-eps)) / (2 * eps);
      });
      assertClose(analytic, numeric, { rtol, atol }, `gradcheck input ${i}`);
    }
  });
}
