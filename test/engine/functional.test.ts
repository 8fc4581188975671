// F (torch.nn.functional) against plain-JS references written from the definitions: naive convolution,
// pooling, im2col and interpolation loops, batch-norm statistics, padding by hand, dropout statistics,
// and losses computed from their formulas.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { F, manualSeed, ones, tensor, tidy, zeros } from '../../src/engine/index.js';
import { assertClose, assertValues, f32, f64, prod, randArray, vals } from '../helpers.js';

type P2 = [number, number];

// ---------------------------------------------------------------------------------------------
// references

function conv2dRef(
  x: number[], [N, C, H, W]: number[], w: number[], [O, Cg, KH, KW]: number[], b: number[] | null,
  [sh, sw]: P2, [ph, pw]: P2, [dh, dw]: P2, groups: number,
): { out: number[]; shape: number[] } {
  assert.equal(Cg * groups, C);
  const OH = Math.floor((H + 2 * ph - dh * (KH - 1) - 1) / sh) + 1;
  const OW = Math.floor((W + 2 * pw - dw * (KW - 1) - 1) / sw) + 1;
  const perGroup = O / groups;
  const out: number[] = [];
  for (let n = 0; n < N; n++) for (let o = 0; o < O; o++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
    const g = Math.floor(o / perGroup);
    let s = b ? b[o]! : 0;
    for (let c = 0; c < Cg; c++) for (let kh = 0; kh < KH; kh++) for (let kw = 0; kw < KW; kw++) {
      const ih = oh * sh - ph + kh * dh;
      const iw = ow * sw - pw + kw * dw;
      if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
      s += x[((n * C + g * Cg + c) * H + ih) * W + iw]! * w[((o * Cg + c) * KH + kh) * KW + kw]!;
    }
    out.push(s);
  }
  return { out, shape: [N, O, OH, OW] };
}

/** Max pooling with -inf padding; indices are flat positions h * W + w in the input plane. */
function maxPoolRef(
  x: number[], [N, C, H, W]: number[], [kh, kw]: P2, [sh, sw]: P2, [ph, pw]: P2, [dh, dw]: P2 = [1, 1],
): { out: number[]; idx: number[]; shape: number[] } {
  const OH = Math.floor((H + 2 * ph - dh * (kh - 1) - 1) / sh) + 1;
  const OW = Math.floor((W + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
  const out: number[] = [];
  const idx: number[] = [];
  for (let p = 0; p < N * C; p++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
    let best = -Infinity;
    let bi = -1;
    for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
      const h = oh * sh - ph + i * dh;
      const w = ow * sw - pw + j * dw;
      if (h < 0 || h >= H || w < 0 || w >= W) continue;
      const v = x[p * H * W + h * W + w]!;
      if (v > best) { best = v; bi = h * W + w; }
    }
    out.push(best);
    idx.push(bi);
  }
  return { out, idx, shape: [N, C, OH, OW] };
}

/** Average pooling with zero padding; divides by the window area, or only its in-image part. */
function avgPoolRef(
  x: number[], [N, C, H, W]: number[], [kh, kw]: P2, [sh, sw]: P2, [ph, pw]: P2, countIncludePad: boolean,
): { out: number[]; shape: number[] } {
  const OH = Math.floor((H + 2 * ph - kh) / sh) + 1;
  const OW = Math.floor((W + 2 * pw - kw) / sw) + 1;
  const out: number[] = [];
  for (let p = 0; p < N * C; p++) for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
    let s = 0;
    let inside = 0;
    for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
      const h = oh * sh - ph + i;
      const w = ow * sw - pw + j;
      if (h < 0 || h >= H || w < 0 || w >= W) continue;
      s += x[p * H * W + h * W + w]!;
      inside++;
    }
    out.push(s / (countIncludePad ? kh * kw : inside));
  }
  return { out, shape: [N, C, OH, OW] };
}

/** Adaptive pooling: output cell i covers [floor(i*In/Out), ceil((i+1)*In/Out)). */
function adaptiveRef(x: number[], [N, C, H, W]: number[], [OH, OW]: P2, kind: 'avg' | 'max'): number[] {
  const out: number[] = [];
  for (let p = 0; p < N * C; p++) for (let i = 0; i < OH; i++) for (let j = 0; j < OW; j++) {
    const h0 = Math.floor((i * H) / OH);
    const h1 = Math.ceil(((i + 1) * H) / OH);
    const w0 = Math.floor((j * W) / OW);
    const w1 = Math.ceil(((j + 1) * W) / OW);
    let s = 0;
    let m = -Infinity;
    for (let h = h0; h < h1; h++) for (let w = w0; w < w1; w++) {
      const v = x[p * H * W + h * W + w]!;
      s += v;
      m = Math.max(m, v);
    }
    out.push(kind === 'avg' ? s / ((h1 - h0) * (w1 - w0)) : m);
  }
  return out;
}

/** 'nearest': source index floor(dst * scale), scale = 1/scaleFactor if given, else in/out. */
function nearestRef(x: number[], [N, C, H, W]: number[], [OH, OW]: P2, sf?: P2): number[] {
  const scH = sf ? 1 / sf[0] : H / OH;
  const scW = sf ? 1 / sf[1] : W / OW;
  const out: number[] = [];
  for (let p = 0; p < N * C; p++) for (let i = 0; i < OH; i++) for (let j = 0; j < OW; j++) {
    const h = Math.min(Math.floor(i * scH), H - 1);
    const w = Math.min(Math.floor(j * scW), W - 1);
    out.push(x[p * H * W + h * W + w]!);
  }
  return out;
}

/**
 * Source coordinate of output index dst. alignCorners: dst * (in-1)/(out-1), so corners map to corners.
 * Otherwise pixel centres: (dst + 0.5) * scale - 0.5 with scale = in/out (or 1/scaleFactor when given).
 */
function srcCoord(dst: number, inSize: number, outSize: number, align: boolean, sf: number | undefined): number {
  if (align) return outSize > 1 ? (dst * (inSize - 1)) / (outSize - 1) : 0;
  const scale = sf ? 1 / sf : inSize / outSize;
  return (dst + 0.5) * scale - 0.5;
}

function bilinearRef(x: number[], [N, C, H, W]: number[], [OH, OW]: P2, align: boolean, sf?: P2): number[] {
  const out: number[] = [];
  for (let p = 0; p < N * C; p++) for (let i = 0; i < OH; i++) for (let j = 0; j < OW; j++) {
    const sy = Math.max(0, srcCoord(i, H, OH, align, sf?.[0]));
    const sx = Math.max(0, srcCoord(j, W, OW, align, sf?.[1]));
    const y0 = Math.floor(sy);
    const x0 = Math.floor(sx);
    const y1 = Math.min(y0 + 1, H - 1);
    const x1 = Math.min(x0 + 1, W - 1);
    const ly = sy - y0;
    const lx = sx - x0;
    const v = (h: number, w: number) => x[p * H * W + h * W + w]!;
    out.push((1 - ly) * ((1 - lx) * v(y0, x0) + lx * v(y0, x1)) + ly * ((1 - lx) * v(y1, x0) + lx * v(y1, x1)));
  }
  return out;
}

/** Keys cubic convolution kernel with a = -0.75 (PyTorch's bicubic), border pixels replicated. */
function cubicWeights(t: number): number[] {
  const A = -0.75;
  const near = (d: number) => ((A + 2) * d - (A + 3)) * d * d + 1; // |d| <= 1
  const far = (d: number) => ((A * d - 5 * A) * d + 8 * A) * d - 4 * A; // 1 < |d| < 2
  return [far(t + 1), near(t), near(1 - t), far(2 - t)];
}

function bicubicRef(x: number[], [N, C, H, W]: number[], [OH, OW]: P2, align: boolean): number[] {
  const out: number[] = [];
  const clampI = (v: number, n: number) => Math.min(Math.max(v, 0), n - 1);
  for (let p = 0; p < N * C; p++) for (let i = 0; i < OH; i++) for (let j = 0; j < OW; j++) {
    const sy = srcCoord(i, H, OH, align, undefined);
    const sx = srcCoord(j, W, OW, align, undefined);
    const y0 = Math.floor(sy);
    const x0 = Math.floor(sx);
    const wy = cubicWeights(sy - y0);
    const wx = cubicWeights(sx - x0);
    let s = 0;
    for (let a = 0; a < 4; a++) for (let b = 0; b < 4; b++) {
      s += wy[a]! * wx[b]! * x[p * H * W + clampI(y0 - 1 + a, H) * W + clampI(x0 - 1 + b, W)]!;
    }
    out.push(s);
  }
  return out;
}

/** F.unfold: out[n][c*KH*KW + i*KW + j][oh*OW + ow] = x[n][c][oh*s - p + i*d][ow*s - p + j*d] (0 outside). */
function im2colRef(
  x: number[], [N, C, H, W]: number[], [KH, KW]: P2, [dh, dw]: P2, [ph, pw]: P2, [sh, sw]: P2,
): { out: number[]; shape: number[] } {
  const OH = Math.floor((H + 2 * ph - dh * (KH - 1) - 1) / sh) + 1;
  const OW = Math.floor((W + 2 * pw - dw * (KW - 1) - 1) / sw) + 1;
  const L = OH * OW;
  const out = new Array<number>(N * C * KH * KW * L).fill(0);
  for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) for (let i = 0; i < KH; i++) for (let j = 0; j < KW; j++) {
    const row = (c * KH + i) * KW + j;
    for (let oh = 0; oh < OH; oh++) for (let ow = 0; ow < OW; ow++) {
      const h = oh * sh - ph + i * dh;
      const w = ow * sw - pw + j * dw;
      if (h < 0 || h >= H || w < 0 || w >= W) continue;
      out[(n * C * KH * KW + row) * L + oh * OW + ow] = x[((n * C + c) * H + h) * W + w]!;
    }
  }
  return { out, shape: [N, C * KH * KW, L] };
}

// ---------------------------------------------------------------------------------------------
// convolution, linear, normalization

test('conv2d matches a naive loop: stride, padding, dilation, groups, depthwise, bias', () => tidy(() => {
  const cases: { xs: number[]; ws: number[]; stride: P2; pad: P2; dil: P2; groups: number; bias: boolean }[] = [
    { xs: [1, 2, 5, 5], ws: [3, 2, 3, 3], stride: [1, 1], pad: [0, 0], dil: [1, 1], groups: 1, bias: false },
    { xs: [2, 2, 7, 6], ws: [3, 2, 3, 3], stride: [2, 2], pad: [1, 1], dil: [2, 2], groups: 1, bias: true },
    { xs: [1, 4, 5, 5], ws: [6, 2, 3, 3], stride: [1, 1], pad: [1, 1], dil: [1, 1], groups: 2, bias: true },
    { xs: [2, 3, 6, 6], ws: [3, 1, 3, 3], stride: [1, 1], pad: [2, 2], dil: [2, 2], groups: 3, bias: false },
    { xs: [1, 2, 6, 7], ws: [2, 2, 2, 3], stride: [1, 2], pad: [0, 1], dil: [1, 1], groups: 1, bias: true },
  ];
  cases.forEach((c, k) => {
    const xd = randArray(prod(c.xs), 100 + k);
    const wd = randArray(prod(c.ws), 200 + k);
    const bd = c.bias ? randArray(c.ws[0]!, 300 + k) : null;
    const ref = conv2dRef(xd, c.xs, wd, c.ws, bd, c.stride, c.pad, c.dil, c.groups);
    const y = F.conv2d(f64(xd, c.xs), f64(wd, c.ws), bd ? f64(bd) : null,
      { stride: c.stride, padding: c.pad, dilation: c.dil, groups: c.groups });
    assert.deepEqual(y.shape, ref.shape, `case ${k} shape`);
    assertClose(y, ref.out, { rtol: 1e-12, atol: 1e-12 }, `case ${k}`);
    const y32 = F.conv2d(f32(xd, c.xs), f32(wd, c.ws), bd ? f32(bd) : null,
      { stride: c.stride, padding: c.pad, dilation: c.dil, groups: c.groups });
    assertClose(y32, ref.out, { rtol: 1e-4, atol: 1e-5 }, `case ${k} float32`);
  });
  // By hand: a 2x2 kernel of ones over a 3x3 input of ones gives 4 everywhere; padding 1 gives corners of 1.
  assertValues(F.conv2d(ones([1, 1, 3, 3]), ones([1, 1, 2, 2])), [1, 1, 2, 2], [4, 4, 4, 4]);
  assertValues(F.conv2d(ones([1, 1, 2, 2]), ones([1, 1, 2, 2]), f32([0.5]), { padding: 1 }), [1, 1, 3, 3],
    [1.5, 2.5, 1.5, 2.5, 4.5, 2.5, 1.5, 2.5, 1.5]);
}));

test('conv2d on channels-last input gives the same values', () => tidy(() => {
  const xs = [2, 3, 5, 5];
  const ws = [4, 3, 3, 3];
  const xd = randArray(prod(xs), 7);
  const wd = randArray(prod(ws), 8);
  const ref = conv2dRef(xd, xs, wd, ws, null, [1, 1], [1, 1], [1, 1], 1);
  const y = F.conv2d(f32(xd, xs).channelsLast(), f32(wd, ws).channelsLast(), null, { padding: 1 });
  assertClose(y, ref.out, { rtol: 1e-4, atol: 1e-5 });
}));

test('convTranspose2d is the adjoint of conv2d: <conv(x), y> = <x, convT(y)>', () => tidy(() => {
  const x = f64(randArray(1 * 2 * 5 * 5, 1), [1, 2, 5, 5]);
  const w = f64(randArray(3 * 2 * 3 * 3, 2), [3, 2, 3, 3]);
  const cx = F.conv2d(x, w, null, { stride: 2, padding: 1 });
  const y = f64(randArray(cx.numel, 3), cx.shape);
  const ty = F.convTranspose2d(y, w, null, { stride: 2, padding: 1 });
  assert.deepEqual(ty.shape, x.shape);
  assertClose([cx.mul(y).sum().item()], [x.mul(ty).sum().item()], { rtol: 1e-12 });
}));

test('linear: x W^T + b by hand and against a loop', () => tidy(() => {
  const y = F.linear(f32([1, 2], [1, 2]), f32([1, 0, 0, 1, 1, 1], [3, 2]), f32([0.5, 0, -1]));
  assertValues(y, [1, 3], [1.5, 2, 2]);
  const [B, I, O] = [4, 5, 3];
  const xd = randArray(B * I, 1);
  const wd = randArray(O * I, 2);
  const bd = randArray(O, 3);
  const ref: number[] = [];
  for (let b = 0; b < B; b++) for (let o = 0; o < O; o++) {
    let s = bd[o]!;
    for (let i = 0; i < I; i++) s += xd[b * I + i]! * wd[o * I + i]!;
    ref.push(s);
  }
  assertClose(F.linear(f64(xd, [B, I]), f64(wd, [O, I]), f64(bd)), ref, { rtol: 1e-12 });
  assertClose(F.linear(f64(xd, [2, 2, I]), f64(wd, [O, I])), ref.map((v, k) => v - bd[k % O]!), { rtol: 1e-12, atol: 1e-14 });
}));

function channelStats(x: number[], [N, C, H, W]: number[]): { mean: number[]; biased: number[]; unbiased: number[] } {
  const mean: number[] = [];
  const biased: number[] = [];
  const unbiased: number[] = [];
  const m = N * H * W;
  for (let c = 0; c < C; c++) {
    const v: number[] = [];
    for (let n = 0; n < N; n++) for (let k = 0; k < H * W; k++) v.push(x[(n * C + c) * H * W + k]!);
    const mu = v.reduce((s, a) => s + a, 0) / m;
    const ss = v.reduce((s, a) => s + (a - mu) ** 2, 0);
    mean.push(mu);
    biased.push(ss / m);
    unbiased.push(ss / (m - 1));
  }
  return { mean, biased, unbiased };
}

test('batchNorm training: batch statistics, and running stats updated with momentum (unbiased var)', () => tidy(() => {
  const shape = [4, 3, 2, 2];
  const xd = randArray(prod(shape), 21, -2, 3);
  const gamma = [1.5, -0.5, 2];
  const beta = [0.1, 0.2, -0.3];
  const rm0 = [0.5, -1, 2];
  const rv0 = [1, 2, 0.5];
  const rm = f64(rm0);
  const rv = f64(rv0);
  const eps = 1e-5;
  const y = F.batchNorm(f64(xd, shape), rm, rv, { weight: f64(gamma), bias: f64(beta), training: true, momentum: 0.1, eps });
  const st = channelStats(xd, shape);
  const ref = xd.map((v, k) => {
    const c = Math.floor(k / 4) % 3;
    return ((v - st.mean[c]!) / Math.sqrt(st.biased[c]! + eps)) * gamma[c]! + beta[c]!;
  });
  assertClose(y, ref, { rtol: 1e-10, atol: 1e-12 });
  // running_mean = 0.9 * old + 0.1 * batch mean; running_var uses the unbiased batch variance (n = 16)
  assertClose(rm, rm0.map((o, c) => 0.9 * o + 0.1 * st.mean[c]!), { rtol: 1e-12 });
  assertClose(rv, rv0.map((o, c) => 0.9 * o + 0.1 * st.unbiased[c]!), { rtol: 1e-12 });
  assert.ok(Math.abs(st.unbiased[0]! - st.biased[0]!) > 1e-3, 'the two variances are distinguishable here');
  // another momentum, no affine parameters
  const rm2 = zeros([3], { dtype: 'float64' });
  const rv2 = ones([3], { dtype: 'float64' });
  F.batchNorm(f64(xd, shape), rm2, rv2, { training: true, momentum: 0.3 });
  assertClose(rm2, st.mean.map((m) => 0.3 * m), { rtol: 1e-12 });
  assertClose(rv2, st.unbiased.map((v) => 0.7 + 0.3 * v), { rtol: 1e-12 });
  // per-channel output of training-mode BN without affine has mean 0 and biased variance ~1
  const z = F.batchNorm(f64(xd, shape), null, null, { training: true });
  const zs = channelStats(vals(z), shape);
  assertClose(zs.mean, [0, 0, 0], { atol: 1e-12 });
  assertClose(zs.biased, st.biased.map((v) => v / (v + 1e-5)), { rtol: 1e-9 });
}));

test('batchNorm eval uses the running statistics and leaves them unchanged', () => tidy(() => {
  const shape = [2, 2, 3, 1];
  const xd = randArray(prod(shape), 4);
  const rm0 = [0.3, -0.2];
  const rv0 = [2, 0.5];
  const rm = f64(rm0);
  const rv = f64(rv0);
  const y = F.batchNorm(f64(xd, shape), rm, rv, { weight: f64([2, 3]), bias: f64([1, -1]), training: false, eps: 1e-3 });
  const ref = xd.map((v, k) => {
    const c = Math.floor(k / 3) % 2;
    return ((v - rm0[c]!) / Math.sqrt(rv0[c]! + 1e-3)) * [2, 3][c]! + [1, -1][c]!;
  });
  assertClose(y, ref, { rtol: 1e-12 });
  assert.deepEqual(vals(rm), rm0);
  assert.deepEqual(vals(rv), rv0);
}));

test('groupNorm / layerNorm normalise over their groups', () => tidy(() => {
  const shape = [2, 4, 3, 1];
  const xd = randArray(prod(shape), 9);
  const g = F.groupNorm(f64(xd, shape), 2);
  const gv = vals(g);
  for (let n = 0; n < 2; n++) for (let grp = 0; grp < 2; grp++) {
    const start = n * 12 + grp * 6;
    const seg = xd.slice(start, start + 6);
    const mu = seg.reduce((s, a) => s + a, 0) / 6;
    const v = seg.reduce((s, a) => s + (a - mu) ** 2, 0) / 6;
    assertClose(gv.slice(start, start + 6), seg.map((a) => (a - mu) / Math.sqrt(v + 1e-5)), { rtol: 1e-10 });
  }
  const l = F.layerNorm(f64(xd, [6, 4]), [4]);
  const lv = vals(l);
  for (let r = 0; r < 6; r++) {
    const seg = xd.slice(4 * r, 4 * r + 4);
    const mu = seg.reduce((s, a) => s + a, 0) / 4;
    const v = seg.reduce((s, a) => s + (a - mu) ** 2, 0) / 4;
    assertClose(lv.slice(4 * r, 4 * r + 4), seg.map((a) => (a - mu) / Math.sqrt(v + 1e-5)), { rtol: 1e-10 });
  }
}));

// ---------------------------------------------------------------------------------------------
// pooling

test('maxPool2d matches a naive loop, incl. 3x3 stride 1 padding 1, dilation, and indices', () => tidy(() => {
  const shape = [2, 3, 6, 7];
  const xd = randArray(prod(shape), 31);
  const x = f64(xd, shape);
  const cases: { k: P2; s: P2; p: P2; d: P2 }[] = [
    { k: [2, 2], s: [2, 2], p: [0, 0], d: [1, 1] },
    { k: [3, 3], s: [1, 1], p: [1, 1], d: [1, 1] },
    { k: [3, 3], s: [2, 2], p: [1, 1], d: [1, 1] },
    { k: [2, 3], s: [1, 2], p: [1, 1], d: [2, 1] },
  ];
  for (const c of cases) {
    const ref = maxPoolRef(xd, shape, c.k, c.s, c.p, c.d);
    const y = F.maxPool2d(x, c.k, { stride: c.s, padding: c.p, dilation: c.d });
    assert.deepEqual(y.shape, ref.shape, JSON.stringify(c));
    assert.deepEqual(vals(y), ref.out, JSON.stringify(c));
    const [v, i] = F.maxPool2dWithIndices(x, c.k, { stride: c.s, padding: c.p, dilation: c.d });
    assert.deepEqual(vals(v), ref.out);
    assert.deepEqual(vals(i), ref.idx);
  }
  // stride 1, 3x3, padding 1 keeps the size
  assert.deepEqual(F.maxPool2d(x, 3, { stride: 1, padding: 1 }).shape, shape);
  // the default stride is the kernel size
  assert.deepEqual(F.maxPool2d(x, 2).shape, [2, 3, 3, 3]);
  // ceil mode keeps the partial window: 7 -> ceil((7-2)/2)+1 = 4
  assert.deepEqual(F.maxPool2d(x, 2, { ceilMode: true }).shape, [2, 3, 3, 4]);
  // by hand
  assertValues(F.maxPool2d(f32([1, 5, 2, 0, 3, 4, 8, 1, 7, 6, 0, 9, 2, 2, 3, 1], [1, 1, 4, 4]), 2), [1, 1, 2, 2], [5, 8, 7, 9]);
}));

test('avgPool2d with and without counting the padding', () => tidy(() => {
  const shape = [1, 2, 5, 6];
  const xd = randArray(prod(shape), 41);
  const x = f64(xd, shape);
  for (const cip of [true, false]) {
    for (const c of [{ k: [2, 2] as P2, s: [2, 2] as P2, p: [0, 0] as P2 }, { k: [3, 3] as P2, s: [1, 2] as P2, p: [1, 1] as P2 }]) {
      const ref = avgPoolRef(xd, shape, c.k, c.s, c.p, cip);
      const y = F.avgPool2d(x, c.k, { stride: c.s, padding: c.p, countIncludePad: cip });
      assert.deepEqual(y.shape, ref.shape);
      assertClose(y, ref.out, { rtol: 1e-12, atol: 1e-14 }, `${JSON.stringify(c)} countIncludePad=${cip}`);
    }
  }
  // corner of a padded 3x3 window over ones: 4 of 9 cells inside
  const c = F.avgPool2d(ones([1, 1, 3, 3]), 3, { stride: 1, padding: 1 });
  assertClose(c, [4, 6, 4, 6, 9, 6, 4, 6, 4].map((v) => v / 9));
  assertClose(F.avgPool2d(ones([1, 1, 3, 3]), 3, { stride: 1, padding: 1, countIncludePad: false }), new Array(9).fill(1));
  assertClose(F.avgPool2d(ones([1, 1, 2, 2]), 2, { divisorOverride: 3 }), [4 / 3]);
}));

test('adaptive average and max pooling', () => tidy(() => {
  const shape = [2, 2, 5, 7];
  const xd = randArray(prod(shape), 51);
  const x = f64(xd, shape);
  for (const o of [[3, 2], [1, 1], [5, 7], [2, 4]] as P2[]) {
    const a = F.adaptiveAvgPool2d(x, o);
    assert.deepEqual(a.shape, [2, 2, ...o]);
    assertClose(a, adaptiveRef(xd, shape, o, 'avg'), { rtol: 1e-12 }, `avg ${o}`);
    const [m, mi] = F.adaptiveMaxPool2d(x, o);
    assert.deepEqual(vals(m), adaptiveRef(xd, shape, o, 'max'), `max ${o}`);
    assert.deepEqual(mi.shape, [2, 2, ...o]);
  }
  assertClose(F.adaptiveAvgPool2d(x, 1).flatten(1), vals(x.mean([2, 3])), { rtol: 1e-12 });
  assertClose(F.globalAvgPool(x), vals(x.mean([2, 3])), { rtol: 1e-12 });
}));

// ---------------------------------------------------------------------------------------------
// resampling

test('interpolate nearest by size and by scale factor', () => tidy(() => {
  const shape = [1, 2, 4, 5];
  const xd = randArray(prod(shape), 61);
  const x = f64(xd, shape);
  for (const o of [[3, 7], [8, 10], [4, 5], [2, 2]] as P2[]) {
    const y = F.interpolate(x, { size: o });
    assert.deepEqual(y.shape, [1, 2, ...o]);
    assert.deepEqual(vals(y), nearestRef(xd, shape, o), `size ${o}`);
  }
  const y2 = F.interpolate(x, { scaleFactor: 2 });
  assert.deepEqual(y2.shape, [1, 2, 8, 10]);
  assert.deepEqual(vals(y2), nearestRef(xd, shape, [8, 10], [2, 2]));
  // by hand: 2x2 -> 4x4 repeats each pixel in a 2x2 block
  assertValues(F.interpolate(f32([1, 2, 3, 4], [1, 1, 2, 2]), { scaleFactor: 2 }), [1, 1, 4, 4],
    [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
}));

test('interpolate bilinear, alignCorners true and false, by size and by scale factor', () => tidy(() => {
  const shape = [2, 2, 3, 4];
  const xd = randArray(prod(shape), 71);
  const x = f64(xd, shape);
  for (const align of [true, false]) {
    for (const o of [[5, 7], [2, 3], [6, 8], [1, 1], [3, 4]] as P2[]) {
      const y = F.interpolate(x, { size: o, mode: 'bilinear', alignCorners: align });
      assert.deepEqual(y.shape, [2, 2, ...o]);
      assertClose(y, bilinearRef(xd, shape, o, align), { rtol: 1e-12, atol: 1e-14 }, `size ${o} align ${align}`);
    }
  }
  // A scale factor sets the sampling grid through 1/scale (not in/out): 1.5 on 3x4 gives 4x6 with
  // scale 2/3, where in/out would be 3/4 vertically.
  const s = F.interpolate(x, { scaleFactor: 1.5, mode: 'bilinear' });
  assert.deepEqual(s.shape, [2, 2, 4, 6]);
  assertClose(s, bilinearRef(xd, shape, [4, 6], false, [1.5, 1.5]), { rtol: 1e-12, atol: 1e-14 });
  const s2 = F.interpolate(x, { scaleFactor: [2, 0.5], mode: 'bilinear', alignCorners: false });
  assert.deepEqual(s2.shape, [2, 2, 6, 2]);
  assertClose(s2, bilinearRef(xd, shape, [6, 2], false, [2, 0.5]), { rtol: 1e-12, atol: 1e-14 });
  // by hand: 1x2 row [0, 1] -> 4 wide. align true: 0, 1/3, 2/3, 1; align false: src = (j+.5)/2 - .5
  // = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (-> index 1): 0, 0.25, 0.75, 1
  const row = f64([0, 1], [1, 1, 1, 2]);
  assertClose(F.interpolate(row, { size: [1, 4], mode: 'bilinear', alignCorners: true }), [0, 1 / 3, 2 / 3, 1], { rtol: 1e-12 });
  assertClose(F.interpolate(row, { size: [1, 4], mode: 'bilinear', alignCorners: false }), [0, 0.25, 0.75, 1], { rtol: 1e-12 });
}));

test('interpolate bicubic: shape, constants preserved, grid points kept, known value, reference', () => tidy(() => {
  const x = f64(randArray(2 * 3 * 4, 81), [1, 2, 3, 4]);
  assert.deepEqual(F.interpolate(x, { size: [7, 9], mode: 'bicubic' }).shape, [1, 2, 7, 9]);
  assert.deepEqual(F.interpolate(x, { scaleFactor: 2, mode: 'bicubic', alignCorners: false }).shape, [1, 2, 6, 8]);
  const c = F.interpolate(zeros([1, 1, 3, 4], { dtype: 'float64' }).add(2.5), { size: [7, 5], mode: 'bicubic' });
  assertClose(c, new Array(35).fill(2.5), { rtol: 1e-12 }, 'the kernel weights sum to 1');
  // align corners, 3 -> 5 and 4 -> 7: output (2i, 2j) samples exactly input (i, j)
  const y = vals(F.interpolate(x, { size: [5, 7], mode: 'bicubic', alignCorners: true }));
  const xv = vals(x);
  for (let p = 0; p < 2; p++) for (let i = 0; i < 3; i++) for (let j = 0; j < 4; j++) {
    assertClose([y[p * 35 + 2 * i * 7 + 2 * j]!], [xv[p * 12 + i * 4 + j]!], { rtol: 1e-12, atol: 1e-14 });
  }
  // By hand, row [1, 2, 4, 8] -> 7 wide with align corners: output 1 samples 0.5, taps x[-1->0], x0, x1, x2
  // with weights w(1.5), w(.5), w(.5), w(1.5) = -0.09375, 0.59375, 0.59375, -0.09375:
  // -0.09375*1 + 0.59375*1 + 0.59375*2 - 0.09375*4 = 1.3125
  const r = F.interpolate(f64([1, 2, 4, 8], [1, 1, 1, 4]), { size: [1, 7], mode: 'bicubic', alignCorners: true });
  assertClose([vals(r)[1]!], [1.3125], { rtol: 1e-12 });
  for (const align of [true, false]) {
    for (const o of [[5, 7], [2, 3], [6, 9]] as P2[]) {
      assertClose(F.interpolate(x, { size: o, mode: 'bicubic', alignCorners: align }),
        bicubicRef(xv, [1, 2, 3, 4], o, align), { rtol: 1e-12, atol: 1e-13 }, `bicubic ${o} align ${align}`);
    }
  }
}));

test('interpolate area mode and argument checks', () => tidy(() => {
  const x = f64(randArray(16, 3), [1, 1, 4, 4]);
  assertClose(F.interpolate(x, { size: 2, mode: 'area' }), adaptiveRef(vals(x), [1, 1, 4, 4], [2, 2], 'avg'), { rtol: 1e-12 });
  assert.throws(() => F.interpolate(x, { size: 2, scaleFactor: 2 }), TypeError);
  assert.throws(() => F.interpolate(x, {}), TypeError);
  assert.throws(() => F.interpolate(x, { size: 2, mode: 'nearest', alignCorners: true }), TypeError);
  assert.throws(() => F.interpolate(x.view(4, 4), { size: 2 }), TypeError);
}));

// ---------------------------------------------------------------------------------------------
// padding, dropout, unfold, normalize, similarity

test('pad: constant (asymmetric), reflect and replicate by hand', () => tidy(() => {
  // [left, right, top, bottom] = [1, 0, 0, 2]
  assertValues(F.pad(f32([1, 2, 3, 4], [1, 1, 2, 2]), [1, 0, 0, 2], 'constant', 9), [1, 1, 4, 3],
    [9, 1, 2, 9, 3, 4, 9, 9, 9, 9, 9, 9]);
  assertValues(F.pad(f32([1, 2, 3], [1, 3]), [2, 1]), [1, 6], [0, 0, 1, 2, 3, 0]);
  const x = f32([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 3, 3]);
  // reflect: padded row -1 is row 1, row 3 is row 1; the same for columns
  assertValues(F.pad(x, [1, 1, 1, 1], 'reflect'), [1, 1, 5, 5], [
    5, 4, 5, 6, 5,
    2, 1, 2, 3, 2,
    5, 4, 5, 6, 5,
    8, 7, 8, 9, 8,
    5, 4, 5, 6, 5,
  ]);
  assertValues(F.pad(x, [2, 0, 0, 1], 'reflect'), [1, 1, 4, 5], [
    3, 2, 1, 2, 3,
    6, 5, 4, 5, 6,
    9, 8, 7, 8, 9,
    6, 5, 4, 5, 6,
  ]);
  // replicate: the border row / column repeats
  assertValues(F.pad(x, [2, 0, 0, 1], 'replicate'), [1, 1, 4, 5], [
    1, 1, 1, 2, 3,
    4, 4, 4, 5, 6,
    7, 7, 7, 8, 9,
    7, 7, 7, 8, 9,
  ]);
  assert.throws(() => F.pad(x, [1, 1], 'reflect'), TypeError);
}));

test('dropout: about p zeroed, survivors scaled by 1/(1-p); eval is the identity', () => tidy(() => {
  manualSeed(3);
  const p = 0.3;
  const x = ones([20000]);
  const y = vals(F.dropout(x, p, true));
  const zeroFrac = y.filter((v) => v === 0).length / y.length;
  assert.ok(Math.abs(zeroFrac - p) < 0.02, `zero fraction ${zeroFrac}`);
  const scale = Math.fround(1 / (1 - p));
  assert.ok(y.every((v) => v === 0 || Math.abs(v - scale) < 1e-6), 'survivors are scaled by 1/(1-p)');
  assert.ok(Math.abs(y.reduce((s, v) => s + v, 0) / y.length - 1) < 0.03, 'expectation preserved');
  const e = F.dropout(x, p, false);
  assert.ok(e.equal(x));
  assert.ok(F.dropout(x, 0, true).equal(x));
  assert.deepEqual(vals(F.dropout(ones([5]), 1, true)), [0, 0, 0, 0, 0]);
}));

test('dropout2d zeroes whole channels', () => tidy(() => {
  manualSeed(4);
  const p = 0.5;
  const x = ones([32, 32, 2, 3]);
  const y = vals(F.dropout2d(x, p, true));
  let dropped = 0;
  for (let ch = 0; ch < 32 * 32; ch++) {
    const plane = y.slice(ch * 6, ch * 6 + 6);
    assert.ok(plane.every((v) => v === plane[0]), `channel ${ch} is all kept or all dropped`);
    assert.ok(plane[0] === 0 || plane[0] === 2);
    if (plane[0] === 0) dropped++;
  }
  assert.ok(Math.abs(dropped / 1024 - p) < 0.07, `dropped fraction ${dropped / 1024}`);
  assert.ok(F.dropout2d(x, p, false).equal(x));
}));

test('unfold matches a naive im2col; conv2d = W.view(O, -1) @ unfold(x)', () => tidy(() => {
  const shape = [2, 2, 4, 5];
  const xd = randArray(prod(shape), 91);
  const x = f64(xd, shape);
  for (const c of [
    { k: [3, 3] as P2, d: [1, 1] as P2, p: [1, 1] as P2, s: [2, 2] as P2 },
    { k: [2, 3] as P2, d: [2, 1] as P2, p: [0, 1] as P2, s: [1, 1] as P2 },
  ]) {
    const ref = im2colRef(xd, shape, c.k, c.d, c.p, c.s);
    const u = F.unfold(x, c.k, { dilation: c.d, padding: c.p, stride: c.s });
    assert.deepEqual(u.shape, ref.shape);
    assert.deepEqual(vals(u), ref.out, JSON.stringify(c));
  }
  const w = f64(randArray(3 * 2 * 9, 92), [3, 2, 3, 3]);
  const conv = F.conv2d(x, w, null, { padding: 1, stride: 2 });
  const viaUnfold = w.view(3, -1).matmul(F.unfold(x, 3, { padding: 1, stride: 2 }));
  assertClose(viaUnfold, vals(conv), { rtol: 1e-12, atol: 1e-14 });
}));

test('normalize divides by the p-norm along dim, with eps for zero vectors', () => tidy(() => {
  const x = f32([3, 4, 0, 0], [2, 2]);
  assertClose(F.normalize(x), [0.6, 0.8, 0, 0]);
  assertClose(F.normalize(x, { p: 1 }), [3 / 7, 4 / 7, 0, 0]);
  assertClose(F.normalize(x, { dim: 0 }), [1, 1, 0, 0]);
  const r = f64(randArray(12, 5), [3, 4]);
  assertClose(F.normalize(r).norm(2, 1), [1, 1, 1], { rtol: 1e-12 });
  assert.ok(!F.normalize(zeros([1, 3])).isnan().any().item());
}));

test('cosineSimilarity', () => tidy(() => {
  assertClose(F.cosineSimilarity(f32([1, 0, 1, 1], [2, 2]), f32([0, 1, 2, 2], [2, 2])), [0, 1]);
  const a = randArray(12, 1);
  const b = randArray(12, 2);
  const ref = [0, 1, 2].map((r) => {
    const u = a.slice(4 * r, 4 * r + 4);
    const v = b.slice(4 * r, 4 * r + 4);
    const dot = u.reduce((s, x, i) => s + x * v[i]!, 0);
    return dot / (Math.hypot(...u) * Math.hypot(...v));
  });
  assertClose(F.cosineSimilarity(f64(a, [3, 4]), f64(b, [3, 4])), ref, { rtol: 1e-12 });
  assertClose(F.cosineSimilarity(f64(a, [3, 4]), f64(a, [3, 4]).mul(-2)), [-1, -1, -1], { rtol: 1e-12 });
}));

test('pixelShuffle moves channel blocks into space', () => tidy(() => {
  // [1, 4, 1, 1] with r = 2 -> [1, 1, 2, 2]: channel (i*2 + j) goes to (i, j)
  assertValues(F.pixelShuffle(f32([1, 2, 3, 4], [1, 4, 1, 1]), 2), [1, 1, 2, 2], [1, 2, 3, 4]);
}));

// ---------------------------------------------------------------------------------------------
// losses

const LOGITS = [
  2.0, 0.5, -1.0, 0.0,
  0.1, 0.2, 0.3, 0.4,
  -2.0, 1.0, 3.0, 0.5,
  0.0, 0.0, 0.0, 0.0,
];

function lse(row: number[]): number {
  return Math.log(row.reduce((s, v) => s + Math.exp(v), 0));
}

test('crossEntropy: mean, sum, none, ignoreIndex, and class weights (weighted mean)', () => tidy(() => {
  const logits = f64(LOGITS, [4, 4]);
  const target = [0, 3, 2, 1];
  const nll = target.map((t, i) => lse(LOGITS.slice(4 * i, 4 * i + 4)) - LOGITS[4 * i + t]!);
  // a row of zeros: -log(1/4) = log 4
  assertClose([nll[3]!], [Math.log(4)], { rtol: 1e-15 });
  const t = tensor(target);
  assertClose(F.crossEntropy(logits, t), [nll.reduce((s, v) => s + v, 0) / 4], { rtol: 1e-12 });
  assertClose(F.crossEntropy(logits, t, { reduction: 'sum' }), [nll.reduce((s, v) => s + v, 0)], { rtol: 1e-12 });
  assertClose(F.crossEntropy(logits, t, { reduction: 'none' }), nll, { rtol: 1e-12 });
  // ignore sample 1 (target -100 by default, or a custom ignore index)
  const ti = tensor([0, -100, 2, 1]);
  assertClose(F.crossEntropy(logits, ti), [(nll[0]! + nll[2]! + nll[3]!) / 3], { rtol: 1e-12 });
  assertClose(F.crossEntropy(logits, ti, { reduction: 'none' }), [nll[0]!, 0, nll[2]!, nll[3]!], { rtol: 1e-12 });
  const t255 = tensor([0, 3, 255, 255]);
  assertClose(F.crossEntropy(logits, t255, { ignoreIndex: 255 }), [(nll[0]! + nll[1]!) / 2], { rtol: 1e-12 });
  // class weights: sum_i w[t_i] nll_i / sum_i w[t_i] over the non-ignored samples
  const w = [1, 2, 0.5, 3];
  const wt = f64(w);
  const num = nll.reduce((s, v, i) => s + w[target[i]!]! * v, 0);
  const den = target.reduce((s, c) => s + w[c]!, 0);
  assertClose(F.crossEntropy(logits, t, { weight: wt }), [num / den], { rtol: 1e-12 });
  const tw = tensor([0, 3, 255, 1]);
  // non-ignored: samples 0 (class 0, w 1), 1 (class 3, w 3), 3 (class 1, w 2)
  const numI = 1 * nll[0]! + 3 * nll[1]! + 2 * nll[3]!;
  assertClose(F.crossEntropy(logits, tw, { weight: wt, ignoreIndex: 255 }), [numI / (1 + 3 + 2)], { rtol: 1e-12 });
  assertClose(F.crossEntropy(logits, tw, { weight: wt, ignoreIndex: 255, reduction: 'sum' }), [numI], { rtol: 1e-12 });
  // nllLoss on logSoftmax is the same thing
  assertClose(F.nllLoss(logits.logSoftmax(1), tw, { weight: wt, ignoreIndex: 255 }), [numI / 6], { rtol: 1e-12 });
}));

test('crossEntropy over N x C x H x W logits with ignored pixels', () => tidy(() => {
  const [N, C, H, W] = [2, 3, 2, 2];
  const ld = randArray(N * C * H * W, 17, -2, 2);
  const td = [0, 1, 2, 255, 2, 2, 0, 255];
  let sum = 0;
  let count = 0;
  for (let n = 0; n < N; n++) for (let k = 0; k < H * W; k++) {
    const tc = td[n * H * W + k]!;
    if (tc === 255) continue;
    const row = [0, 1, 2].map((c) => ld[(n * C + c) * H * W + k]!);
    sum += lse(row) - row[tc]!;
    count++;
  }
  const loss = F.crossEntropy(f64(ld, [N, C, H, W]), tensor(td, { shape: [N, H, W] }), { ignoreIndex: 255 });
  assertClose(loss, [sum / count], { rtol: 1e-12 });
}));

test('binaryCrossEntropyWithLogits: formula, posWeight, weight, and BCE on probabilities', () => tidy(() => {
  const x = [0, 2, -1, 0.5];
  const y = [1, 0, 0, 1];
  const sig = (v: number) => 1 / (1 + Math.exp(-v));
  const el = x.map((v, i) => -(y[i]! * Math.log(sig(v)) + (1 - y[i]!) * Math.log(1 - sig(v))));
  assertClose([el[0]!], [Math.LN2], { rtol: 1e-15 }, 'x = 0, y = 1 gives log 2');
  const xt = f64(x);
  const yt = f64(y);
  assertClose(F.binaryCrossEntropyWithLogits(xt, yt), [el.reduce((s, v) => s + v, 0) / 4], { rtol: 1e-12 });
  assertClose(F.binaryCrossEntropyWithLogits(xt, yt, { reduction: 'none' }), el, { rtol: 1e-12 });
  const pw = 3;
  const elp = x.map((v, i) => -(pw * y[i]! * Math.log(sig(v)) + (1 - y[i]!) * Math.log(1 - sig(v))));
  assertClose(F.binaryCrossEntropyWithLogits(xt, yt, { posWeight: f64([pw]), reduction: 'sum' }),
    [elp.reduce((s, v) => s + v, 0)], { rtol: 1e-12 });
  const w = [1, 0.5, 2, 0];
  assertClose(F.binaryCrossEntropyWithLogits(xt, yt, { weight: f64(w), reduction: 'none' }), el.map((v, i) => v * w[i]!),
    { rtol: 1e-12 });
  // stable for large logits: x = 100, y = 0 -> 100
  assertClose(F.binaryCrossEntropyWithLogits(f64([100]), f64([0])), [100], { rtol: 1e-12 });
  assertClose(F.binaryCrossEntropy(xt.sigmoid(), yt, { reduction: 'none' }), el, { rtol: 1e-10 });
}));

test('multilabelSoftMarginLoss by hand', () => tidy(() => {
  const x = [0, 2, -1, 0.5, 1.5, -0.5];
  const y = [1, 0, 1, 0, 1, 1];
  const logSig = (v: number) => -Math.log1p(Math.exp(-v));
  // per element -[y log s(x) + (1-y) log s(-x)], mean over the 3 classes, then over the 2 samples
  const el = x.map((v, i) => -(y[i]! * logSig(v) + (1 - y[i]!) * logSig(-v)));
  const perSample = [0, 1].map((n) => (el[3 * n]! + el[3 * n + 1]! + el[3 * n + 2]!) / 3);
  const xt = f64(x, [2, 3]);
  const yt = f64(y, [2, 3]);
  assertClose(F.multilabelSoftMarginLoss(xt, yt), [(perSample[0]! + perSample[1]!) / 2], { rtol: 1e-12 });
  assertClose(F.multilabelSoftMarginLoss(xt, yt, { reduction: 'none' }), perSample, { rtol: 1e-12 });
  assertClose(F.multilabelSoftMarginLoss(xt, yt, { reduction: 'sum' }), [perSample[0]! + perSample[1]!], { rtol: 1e-12 });
  const w = [1, 2, 0.5];
  const wSample = [0, 1].map((n) => (w[0]! * el[3 * n]! + w[1]! * el[3 * n + 1]! + w[2]! * el[3 * n + 2]!) / 3);
  assertClose(F.multilabelSoftMarginLoss(xt, yt, { weight: f64(w), reduction: 'none' }), wSample, { rtol: 1e-12 });
  // it equals BCE-with-logits averaged over classes
  assertClose(F.multilabelSoftMarginLoss(xt, yt), vals(F.binaryCrossEntropyWithLogits(xt, yt)), { rtol: 1e-12 });
}));

test('l1, mse and smoothL1 (both branches, beta)', () => tidy(() => {
  const a = f64([1.5, -2, 3]);
  const b = f64([1, 0, 0]); // d = [0.5, -2, 3]
  assertClose(F.l1Loss(a, b), [(0.5 + 2 + 3) / 3], { rtol: 1e-15 });
  assertClose(F.l1Loss(a, b, 'sum'), [5.5], { rtol: 1e-15 });
  assertClose(F.mseLoss(a, b), [(0.25 + 4 + 9) / 3], { rtol: 1e-15 });
  assertClose(F.mseLoss(a, b, 'none'), [0.25, 4, 9], { rtol: 1e-15 });
  // beta 1: |d| < 1 -> 0.5 d^2 / beta; otherwise |d| - 0.5 beta: 0.125, 1.5, 2.5
  assertClose(F.smoothL1Loss(a, b, 'none'), [0.125, 1.5, 2.5], { rtol: 1e-15 });
  assertClose(F.smoothL1Loss(a, b), [4.125 / 3], { rtol: 1e-15 });
  // beta 2: 0.5 * 0.25 / 2 = 0.0625; |-2| is not < 2 -> 2 - 1 = 1; 3 - 1 = 2
  assertClose(F.smoothL1Loss(a, b, 'none', 2), [0.0625, 1, 2], { rtol: 1e-15 });
}));

test('klDiv: pointwise target * (log target - input), reductions incl. batchmean, logTarget', () => tidy(() => {
  const p = [0.1, 0.6, 0.3, 0.25, 0.25, 0.5];
  const q = [0.2, 0.5, 0.3, 0, 0.5, 0.5]; // a zero target contributes 0
  const input = f64(p.map(Math.log), [2, 3]);
  const target = f64(q, [2, 3]);
  const pw = q.map((t, i) => (t === 0 ? 0 : t * (Math.log(t) - Math.log(p[i]!))));
  const sum = pw.reduce((s, v) => s + v, 0);
  assertClose(F.klDiv(input, target, 'none'), pw, { rtol: 1e-12, atol: 1e-15 });
  assertClose(F.klDiv(input, target, 'sum'), [sum], { rtol: 1e-12 });
  assertClose(F.klDiv(input, target, 'mean'), [sum / 6], { rtol: 1e-12 });
  assertClose(F.klDiv(input, target, 'batchmean'), [sum / 2], { rtol: 1e-12 });
  const q2 = [0.2, 0.5, 0.3, 0.1, 0.4, 0.5];
  const pw2 = q2.map((t, i) => t * (Math.log(t) - Math.log(p[i]!)));
  assertClose(F.klDiv(input, f64(q2.map(Math.log), [2, 3]), 'sum', true), [pw2.reduce((s, v) => s + v, 0)], { rtol: 1e-12 });
  assertClose(F.klDiv(input, input.exp(), 'sum'), [0], { atol: 1e-15 }, 'KL(p || p) = 0');
}));
