import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CRF_PRESETS, crfParams, scaledToImage } from '../../src/refine/crf-presets.js';
import { DenseCRF2D, denseCrf, labelMap, unaryFromProbabilities } from '../../src/refine/crf.js';
import { latticeBlur, latticeSlice, latticeSplat, tensor } from '../../src/engine/index.js';
import { PermutohedralLattice } from '../../src/refine/permutohedral.js';
import { SEPARABLE_MAX_SXY } from '../../src/refine/pairwise.js';
import { rng } from '../helpers.js';

// ---------------------------------------------------------------- helpers

/** Exact Σ_j exp(-|f_i - f_j|²/2) · v_j, point-major. */
function bruteGaussianFilter(f: Float32Array, n: number, d: number, v: Float32Array, vs: number): Float64Array {
  const out = new Float64Array(n * vs);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let q = 0;
      for (let k = 0; k < d; k++) q += (f[i * d + k] - f[j * d + k]) ** 2;
      const w = Math.exp(-q / 2);
      for (let c = 0; c < vs; c++) out[i * vs + c] += w * v[j * vs + c];
    }
  }
  return out;
}

/** The lattice filter of point-major values `v` ([n][vs]) on features `f` ([n][d]). */
function latticeFilter(f: Float32Array, n: number, d: number, v: Float32Array, vs: number): Float32Array {
  const lattice = PermutohedralLattice.build(f, n, d);
  const input = tensor(v, { shape: [n, vs] });
  const out = lattice.filter(input);
  const result = out.toFloat32Array();
  for (const t of [input, out]) t.dispose();
  lattice.dispose();
  return result;
}

/** ‖a·x − y‖ / ‖y‖ with the least-squares a: the lattice filter is a Gaussian only up to a constant. */
function relativeErrorUpToScale(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let xy = 0;
  let xx = 0;
  for (let i = 0; i < x.length; i++) {
    xy += x[i] * y[i];
    xx += x[i] * x[i];
  }
  const a = xy / xx;
  let res = 0;
  let yy = 0;
  for (let i = 0; i < x.length; i++) {
    res += (a * x[i] - y[i]) ** 2;
    yy += y[i] ** 2;
  }
  return Math.sqrt(res / yy);
}

interface KernelSpec {
  sxy: number;
  srgb?: number;
  compat: number;
}

/**
 * Dense mean-field with explicit O(N²) kernels, written from the densecrf update rule:
 * Q₀ = softmax(-U); Q ← softmax(-U + Σ_k compat_k · D_k^{-1/2} K_k D_k^{-1/2} Q), D_k = diag(K_k·1),
 * K_k(i,j) = exp(-|p_i-p_j|²/(2 sxy²) - |I_i-I_j|²/(2 srgb²)), self-affinity included.
 */
function bruteMeanField(
  rgb: Uint8Array,
  w: number,
  h: number,
  unary: Float32Array,
  nl: number,
  kernels: KernelSpec[],
  iterations: number,
): Float64Array {
  const n = w * h;
  const terms = kernels.map(({ sxy, srgb, compat }) => {
    const k = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let e = ((i % w) - (j % w)) ** 2 / (2 * sxy * sxy) + (Math.floor(i / w) - Math.floor(j / w)) ** 2 / (2 * sxy * sxy);
        if (srgb !== undefined) {
          for (let c = 0; c < 3; c++) e += (rgb[3 * i + c] - rgb[3 * j + c]) ** 2 / (2 * srgb * srgb);
        }
        k[i * n + j] = Math.exp(-e);
      }
    }
    const norm = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += k[i * n + j];
      norm[i] = 1 / Math.sqrt(s);
    }
    return { k, norm, compat };
  });
  const softmax = (s: Float64Array): Float64Array => {
    const q = new Float64Array(s.length);
    for (let p = 0; p < n; p++) {
      let mx = -Infinity;
      for (let l = 0; l < nl; l++) mx = Math.max(mx, s[l * n + p]);
      let sum = 0;
      for (let l = 0; l < nl; l++) sum += q[l * n + p] = Math.exp(s[l * n + p] - mx);
      for (let l = 0; l < nl; l++) q[l * n + p] /= sum;
    }
    return q;
  };
  const negUnary = Float64Array.from(unary, (u) => -u);
  let q = softmax(negUnary);
  for (let it = 0; it < iterations; it++) {
    const s = negUnary.slice();
    for (const { k, norm, compat } of terms) {
      for (let l = 0; l < nl; l++) {
        for (let i = 0; i < n; i++) {
          let acc = 0;
          for (let j = 0; j < n; j++) acc += k[i * n + j] * norm[j] * q[l * n + j];
          s[l * n + i] += compat * norm[i] * acc;
        }
      }
    }
    q = softmax(s);
  }
  return q;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Label-major probabilities with a random positive score per label, normalised per pixel. */
function randomProbabilities(n: number, nl: number, rand: () => number): Float32Array {
  const prob = new Float32Array(nl * n);
  for (let p = 0; p < n; p++) {
    let s = 0;
    for (let l = 0; l < nl; l++) s += prob[l * n + p] = 0.1 + rand();
    for (let l = 0; l < nl; l++) prob[l * n + p] /= s;
  }
  return prob;
}

/** 6×5 image: a reddish left half and a blue right half, with some per-pixel jitter. */
function tinyImage(rand: () => number): Uint8Array {
  const w = 6;
  const h = 5;
  const rgb = new Uint8Array(w * h * 3);
  for (let p = 0; p < w * h; p++) {
    const left = p % w < 3;
    rgb[3 * p] = left ? 200 : 30 + rand() * 20;
    rgb[3 * p + 1] = left ? 40 : 60;
    rgb[3 * p + 2] = left ? 40 + rand() * 20 : 210;
  }
  return rgb;
}

// ---------------------------------------------------------------- permutohedral lattice

/*
 * Lattice vs exact Gaussian filtering on random data, error after the best constant (the lattice is a
 * Gaussian filter only up to scale), aggregated over three trials. Measured: 0.075 (d=2), 0.098 (d=3),
 * 0.104 (d=5). Mis-scaling the elevation gives: ×1.25 (sigma 20% too small) 0.156 / 0.168 / 0.174,
 * ×0.8 (sigma 25% too large) 0.22 / 0.26 / 0.20, ×√2 (a σ-vs-σ√2 slip) 0.26-0.28. The bounds sit in
 * between, so a wrongly scaled lattice fails.
 */
const LATTICE_CASES = [
  { name: 'd=2 random points (3-corner path)', d: 2, bound: 0.115 },
  { name: 'd=3 random points (generic path)', d: 3, bound: 0.13 },
  { name: 'd=5 image-like features (6-corner path)', d: 5, bound: 0.14 },
] as const;

function latticeTrial(d: number, seed: number): { f: Float32Array; n: number; v: Float32Array } {
  const rand = rng(seed);
  if (d === 5) {
    // 16×12 image features: positions / 3 and a smooth background plus a disc, colours / 25, with noise.
    const w = 16;
    const h = 12;
    const n = w * h;
    const f = new Float32Array(n * 5);
    for (let y = 0, p = 0; y < h; y++) {
      for (let x = 0; x < w; x++, p++) {
        const disc = (x - 8) ** 2 + (y - 6) ** 2 < 16;
        f[5 * p] = x / 3;
        f[5 * p + 1] = y / 3;
        f[5 * p + 2] = (disc ? 200 : 60 + 4 * x) / 25 + rand() * 0.3;
        f[5 * p + 3] = (disc ? 50 : 100) / 25 + rand() * 0.3;
        f[5 * p + 4] = (disc ? 80 : 150 - 5 * y) / 25 + rand() * 0.3;
      }
    }
    return { f, n, v: Float32Array.from({ length: n * 2 }, () => rand() * 2 - 1) };
  }
  const n = 400;
  const side = d === 2 ? 6 : 3; // a few points within one standard deviation of each other
  return {
    f: Float32Array.from({ length: n * d }, () => rand() * side),
    n,
    v: Float32Array.from({ length: n * 2 }, () => rand() * 2 - 1),
  };
}

for (const { name, d, bound } of LATTICE_CASES) {
  test(`lattice approximates the exact Gaussian filter: ${name}`, () => {
    const lattice: number[] = [];
    const exact: number[] = [];
    for (const seed of [1, 2, 3]) {
      const { f, n, v } = latticeTrial(d, seed);
      lattice.push(...latticeFilter(f, n, d, v, 2));
      exact.push(...bruteGaussianFilter(f, n, d, v, 2));
    }
    const err = relativeErrorUpToScale(lattice, exact);
    assert.ok(err < bound, `relative error ${err.toFixed(3)} ≥ ${bound}`);
  });
}

test('lattice: barycentric weights sum to one and filtering is linear', () => {
  const { f, n, v } = latticeTrial(5, 9);
  const lat = PermutohedralLattice.build(f, n, 5);
  const bary = lat.barycentric.toFloat32Array();
  lat.dispose();
  for (let p = 0; p < n; p++) {
    let s = 0;
    for (let r = 0; r < 6; r++) s += bary[p * 6 + r];
    assert.ok(Math.abs(s - 1) < 1e-5, `point ${p}: weights sum to ${s}`);
  }
  const a = latticeFilter(f, n, 5, v, 2);
  const b = latticeFilter(f, n, 5, v.map((x) => 3 * x), 2);
  assert.ok(maxAbsDiff(a.map((x) => 3 * x), b) < 1e-4);
});

test('lattice: filtering ones gives the same positive value at identical features', () => {
  const out = latticeFilter(new Float32Array([0, 0, 0, 0, 5, 5]), 3, 2, new Float32Array([1, 1, 1]), 1);
  assert.ok(out[0] > 0 && out[2] > 0);
  assert.equal(out[0], out[1]);
  assert.ok(out[0] > out[2], 'two coincident points see more mass than an isolated one');
});

test('lattice ops equal their definitions: splat, blur along each axis in order, slice', () => {
  const { f, n, v } = latticeTrial(3, 4);
  const vs = 2;
  const lat = PermutohedralLattice.build(f, n, 3);
  const d1 = 4;
  const m = lat.nVertices;
  const offsets = lat.index.offsets.dataSync() as Int32Array;
  const bary = lat.barycentric.toFloat32Array();
  const nb = lat.index.neighbors.dataSync() as Int32Array;
  // Neighbour lists are symmetric: u is v's first neighbour along an axis exactly when v is u's second.
  for (let j = 0; j < d1; j++) {
    for (let u = 0; u < m; u++) {
      const next = nb[(j * m + u) * 2];
      if (next !== 0) assert.equal(nb[(j * m + next - 1) * 2 + 1], u + 1, `axis ${j}, vertex ${u}`);
    }
  }
  // The same three passes written as plain scatter / gather loops.
  let values = new Float64Array((m + 1) * vs);
  for (let p = 0; p < n; p++) {
    for (let r = 0; r < d1; r++) {
      for (let k = 0; k < vs; k++) values[offsets[p * d1 + r] * vs + k] += bary[p * d1 + r] * v[p * vs + k];
    }
  }
  const splatted = tensor(v, { shape: [n, vs] });
  const native = latticeSplat(splatted, lat.barycentric, lat.index);
  assert.ok(maxAbsDiff(native.toFloat32Array(), values) < 1e-5, 'splat');
  for (let j = 0; j < d1; j++) {
    const next = new Float64Array(values.length);
    for (let u = 0; u < m; u++) {
      const a = nb[(j * m + u) * 2];
      const b = nb[(j * m + u) * 2 + 1];
      for (let k = 0; k < vs; k++) next[(u + 1) * vs + k] = values[(u + 1) * vs + k] + 0.5 * (values[a * vs + k] + values[b * vs + k]);
    }
    values = next;
  }
  const blurred = latticeBlur(native, lat.index);
  assert.ok(maxAbsDiff(blurred.toFloat32Array(), values) < 1e-4, 'blur');
  const out = new Float64Array(n * vs);
  for (let p = 0; p < n; p++) {
    for (let r = 0; r < d1; r++) {
      for (let k = 0; k < vs; k++) out[p * vs + k] += bary[p * d1 + r] * values[offsets[p * d1 + r] * vs + k];
    }
  }
  const sliced = latticeSlice(blurred, lat.barycentric, lat.index);
  assert.ok(maxAbsDiff(sliced.toFloat32Array(), out) < 1e-4, 'slice');
  for (const t of [splatted, native, blurred, sliced]) t.dispose();
  lat.dispose();
});

test('lattice ops name the tensor that is wrong', () => {
  const lat = PermutohedralLattice.build(new Float32Array([0, 0, 1, 1, 2, 0]), 3, 2);
  const wide = tensor(new Float32Array(3 * 4), { shape: [3, 4] });
  const doubles = tensor(new Float64Array(3 * 2), { shape: [3, 2] });
  assert.throws(() => latticeSplat(doubles, lat.barycentric, lat.index), /latticeSplat: input must be float32/);
  assert.throws(() => latticeSlice(wide, wide, lat.index), /latticeSlice: offsets and weights must both be/);
  const values = latticeSplat(wide.narrow(1, 0, 2).contiguous(), lat.barycentric, lat.index);
  const truncated = values.narrow(0, 0, 1).contiguous();
  assert.throws(() => latticeSlice(truncated, lat.barycentric, lat.index), /latticeSlice: offsets holds \d+, outside \[0, 1\)/);
  assert.throws(() => latticeBlur(truncated, lat.index), /latticeBlur: neighbors must be/);
  assert.throws(() => PermutohedralLattice.build(new Float32Array(5), 3, 2), /features have 5 values/);
  assert.throws(() => PermutohedralLattice.build(new Float32Array([0, 0, NaN, 1]), 2, 2), /latticeBuild: features must be finite/);
  for (const t of [wide, doubles, values, truncated]) t.dispose();
  lat.dispose();
});

// ---------------------------------------------------------------- dense CRF vs brute force

/*
 * 6×5 image, 3 labels, both kernels (the spatial one exact, the bilateral one by the lattice). The lattice's
 * Gaussian approximation moves Q by ≈0.01 here while
 * the pairwise terms move it by 0.2-0.9, so the bounds test the normalisation, compatibility and update rule.
 */
const TINY_KERNELS: KernelSpec[] = [
  { sxy: 1.5, compat: 3 },
  { sxy: 3, srgb: 20, compat: 5 },
];

for (const [iterations, tolerance] of [
  [1, 0.025],
  [5, 0.05],
] as const) {
  test(`dense CRF matches brute-force mean-field on a 6×5 image (${iterations} iteration(s), ±${tolerance})`, () => {
    const rand = rng(3);
    const rgb = tinyImage(rand);
    const unary = unaryFromProbabilities(randomProbabilities(30, 3, rand));
    const crf = new DenseCRF2D(6, 5, 3);
    crf.setUnaryEnergy(unary);
    crf.addPairwiseGaussian(TINY_KERNELS[0].sxy, TINY_KERNELS[0].compat);
    crf.addPairwiseBilateral(TINY_KERNELS[1].sxy, TINY_KERNELS[1].srgb!, rgb, TINY_KERNELS[1].compat);
    const q = crf.inference(iterations);
    const exact = bruteMeanField(rgb, 6, 5, unary, 3, TINY_KERNELS, iterations);
    const unaryOnly = bruteMeanField(rgb, 6, 5, unary, 3, [], 0);

    const err = maxAbsDiff(q, exact);
    assert.ok(err < tolerance, `max |Q - Q_exact| = ${err.toFixed(4)}`);
    assert.ok(maxAbsDiff(exact, unaryOnly) > 4 * tolerance, 'pairwise terms must matter for the test to mean anything');
  });
}

// ---------------------------------------------------------------- properties

test('spatial kernels up to SEPARABLE_MAX_SXY are exact: mean-field equals brute force to float precision', () => {
  // 11×9 is wider than the truncation radius (4·1.2 → 5), so the cut-off and the image borders both count.
  const rand = rng(5);
  const w = 11;
  const h = 9;
  const rgb = new Uint8Array(w * h * 3);
  const unary = unaryFromProbabilities(randomProbabilities(w * h, 4, rand));
  for (const sxy of [1.2, SEPARABLE_MAX_SXY]) {
    const crf = new DenseCRF2D(w, h, 4);
    crf.setUnaryEnergy(unary);
    crf.addPairwiseGaussian(sxy, 4);
    const q = crf.inference(3);
    crf.dispose();
    const exact = bruteMeanField(rgb, w, h, unary, 4, [{ sxy, compat: 4 }], 3);
    const unaryOnly = bruteMeanField(rgb, w, h, unary, 4, [], 0);
    const err = maxAbsDiff(q, exact);
    assert.ok(err < 2e-4, `sxy ${sxy}: max |Q - Q_exact| = ${err.toExponential(2)}`);
    assert.ok(maxAbsDiff(exact, unaryOnly) > 0.05, 'the pairwise term must matter for the test to mean anything');
  }
  // Wider kernels go through the lattice: right to its ~10 % approximation, not to float precision.
  const crf = new DenseCRF2D(w, h, 4);
  crf.setUnaryEnergy(unary);
  crf.addPairwiseGaussian(4, 4);
  const err = maxAbsDiff(crf.inference(3), bruteMeanField(rgb, w, h, unary, 4, [{ sxy: 4, compat: 4 }], 3));
  crf.dispose();
  assert.ok(err > 2e-4 && err < 0.05, `lattice path (sxy 4): max |Q - Q_exact| = ${err.toExponential(2)}`);
});

test('zero pairwise weight: Q is the softmax of -unary, i.e. the input probabilities', () => {
  const rand = rng(5);
  const rgb = tinyImage(rand);
  const prob = randomProbabilities(30, 3, rand);
  const q = denseCrf({ rgb, width: 6, height: 5 }, prob, 3, {
    gaussian: { sxy: 3, compat: 0 },
    bilateral: { sxy: 80, srgb: 13, compat: 0 },
    iterations: 5,
    clip: 1e-5,
  });
  assert.ok(maxAbsDiff(q, prob) < 1e-6);
});

test('uniform-colour regions with a noisy unary are smoothed to each region’s majority label', () => {
  const w = 40;
  const h = 30;
  const n = w * h;
  const rand = rng(11);
  const rgb = new Uint8Array(n * 3);
  const truth = new Uint8Array(n);
  for (let p = 0; p < n; p++) {
    const left = p % w < w / 2;
    rgb.set(left ? [180, 60, 50] : [40, 90, 200], 3 * p);
    truth[p] = left ? 1 : 2;
  }
  // Each pixel's favourite label is its region's in 70% of pixels, a random other label otherwise.
  const prob = new Float32Array(3 * n);
  let noisy = 0;
  for (let p = 0; p < n; p++) {
    let fav = truth[p];
    if (rand() < 0.3) {
      fav = (truth[p] + 1 + Math.floor(rand() * 2)) % 3;
      noisy++;
    }
    for (let l = 0; l < 3; l++) prob[l * n + p] = l === fav ? 0.6 : 0.2;
  }
  assert.ok(noisy > 0.2 * n);
  for (const preset of ['psa', 'deeplab'] as const) {
    const labels = labelMap(denseCrf({ rgb, width: w, height: h }, prob, 3, preset), 3);
    assert.deepEqual(labels, truth, `${preset} preset`);
  }
});

test('outputs are per-pixel probability distributions', () => {
  const rand = rng(13);
  const w = 23;
  const h = 17;
  const nl = 5;
  const rgb = Uint8Array.from({ length: w * h * 3 }, () => Math.floor(rand() * 256));
  const prob = Float32Array.from({ length: nl * w * h }, () => rand()); // unnormalised, like SEAM's CAM stack
  prob[0] = 0; // exercised clip
  for (const preset of ['psa', 'deeplab'] as const) {
    const q = denseCrf({ rgb, width: w, height: h }, prob, nl, preset);
    for (let p = 0; p < w * h; p++) {
      let s = 0;
      for (let l = 0; l < nl; l++) {
        const v = q[l * w * h + p];
        assert.ok(v >= 0 && v <= 1, `Q = ${v}`);
        s += v;
      }
      assert.ok(Math.abs(s - 1) < 1e-5, `pixel ${p} sums to ${s}`);
    }
  }
});

test('referenceSize scales the spatial widths by the longer side / referenceSize, nothing else', () => {
  const p = crfParams('psa', { referenceSize: 500 });
  assert.deepEqual(scaledToImage(p, 250, 100), { ...p, gaussian: { sxy: 1.5, compat: 3 }, bilateral: { sxy: 40, srgb: 13, compat: 10 } });
  assert.equal(scaledToImage(CRF_PRESETS.psa, 250, 100), CRF_PRESETS.psa, 'no referenceSize: pixel widths as given');
  assert.equal(crfParams('psa').referenceSize, undefined);
  assert.throws(() => scaledToImage({ ...p, referenceSize: 0 }, 10, 10), /referenceSize must be a positive number/);
  // denseCrf applies it: a 23 x 17 image with referenceSize 46 runs the kernels at half the preset's widths.
  const rand = rng(5);
  const [w, h, nl] = [23, 17, 3];
  const rgb = Uint8Array.from({ length: w * h * 3 }, () => Math.floor(rand() * 256));
  const prob = Float32Array.from({ length: nl * w * h }, () => rand());
  const scaled = denseCrf({ rgb, width: w, height: h }, prob, nl, crfParams('psa', { referenceSize: 46 }));
  const halved = denseCrf({ rgb, width: w, height: h }, prob, nl, crfParams('psa', { gaussian: { sxy: 1.5 }, bilateral: { sxy: 40 } }));
  assert.deepEqual(scaled, halved);
  assert.notDeepEqual(scaled, denseCrf({ rgb, width: w, height: h }, prob, nl, 'psa'));
});

test('inference is repeatable and zero iterations gives softmax(-unary)', () => {
  const rand = rng(17);
  const rgb = tinyImage(rand);
  const prob = randomProbabilities(30, 3, rand);
  const crf = new DenseCRF2D(6, 5, 3);
  crf.setUnaryEnergy(unaryFromProbabilities(prob));
  crf.addPairwiseGaussian(3, 3);
  crf.addPairwiseBilateral(80, 13, rgb, 10);
  assert.deepEqual(crf.inference(3), crf.inference(3));
  assert.ok(maxAbsDiff(crf.inference(0), prob) < 1e-6);
});

// ---------------------------------------------------------------- helpers of the public API

test('unaryFromProbabilities clips to [clip, 1] before -log, as pydensecrf unary_from_softmax', () => {
  const u = unaryFromProbabilities(new Float32Array([0, 1e-9, 0.5, 1, 2]));
  const expected = [-Math.log(1e-5), -Math.log(1e-5), -Math.log(0.5), 0, 0];
  assert.ok(maxAbsDiff(u, expected) < 1e-5);
  assert.ok(Math.abs(unaryFromProbabilities(new Float32Array([0]), 1e-3)[0] + Math.log(1e-3)) < 1e-5);
});

test('labelMap takes the per-pixel argmax, first label on ties', () => {
  // 2 labels × 3 pixels, label-major
  const q = new Float32Array([0.9, 0.2, 0.5, 0.1, 0.8, 0.5]);
  assert.deepEqual([...labelMap(q, 2)], [0, 1, 0]);
  assert.throws(() => labelMap(q, 4), RangeError);
});

test('presets carry the published settings; crfParams overrides single fields', () => {
  assert.deepEqual(CRF_PRESETS.psa, {
    gaussian: { sxy: 3, compat: 3 },
    bilateral: { sxy: 80, srgb: 13, compat: 10 },
    iterations: 10,
    clip: 1e-5,
  });
  assert.deepEqual(CRF_PRESETS.deeplab, {
    gaussian: { sxy: 1, compat: 3 },
    bilateral: { sxy: 67, srgb: 3, compat: 4 },
    iterations: 10,
    clip: 1e-5,
  });
  const p = crfParams('psa', { iterations: 1, bilateral: { srgb: 20 } });
  assert.deepEqual(p, { ...CRF_PRESETS.psa, iterations: 1, bilateral: { sxy: 80, srgb: 20, compat: 10 } });
});

test('bad shapes and parameters are rejected', () => {
  const crf = new DenseCRF2D(4, 3, 2);
  assert.throws(() => crf.setUnaryEnergy(new Float32Array(5)), RangeError);
  assert.throws(() => crf.addPairwiseBilateral(3, 13, new Uint8Array(10), 1), RangeError);
  assert.throws(() => crf.addPairwiseGaussian(0, 1), RangeError);
  assert.throws(() => crf.inference(-1), RangeError);
  assert.throws(() => new DenseCRF2D(0, 3, 2), RangeError);
});

test('non-finite unaries, probabilities and compat, and degenerate widths are refused by name', () => {
  const crf = new DenseCRF2D(4, 3, 2);
  try {
    const u = new Float32Array(24).fill(0.5);
    u[13] = Number.NaN; // label 1, pixel 1 = (1, 0)
    assert.throws(() => crf.setUnaryEnergy(u), /unary holds NaN at label 1, pixel \(1, 0\); it must be finite/);
    const p = new Float32Array(24).fill(0.5);
    p[6] = Number.POSITIVE_INFINITY; // label 0, pixel 6 = (2, 1)
    assert.throws(() => crf.setUnaryFromProbabilities(p), /probabilities holds Infinity at label 0, pixel \(2, 1\)/);
    assert.throws(() => crf.addPairwiseGaussian(3, Number.NaN), /compat must be a finite number, got NaN/);
    assert.throws(() => crf.addPairwiseGaussian(1e-30, 3), /sxy must be a finite width of at least 0\.01, got 1e-30/);
    assert.throws(() => crf.addPairwiseBilateral(50, 1e-30, new Uint8Array(36), 4), /srgb must be a finite width/);
    assert.throws(() => crf.addPairwiseBilateral(Number.POSITIVE_INFINITY, 13, new Uint8Array(36), 4), /sxy must be a finite width/);
  } finally {
    crf.dispose();
  }
  // The one-call form, as the refinement stages use it: one NaN in the CAM scores is an error, not an all-NaN map.
  const prob = new Float32Array(2 * 12).fill(0.5);
  prob[3] = Number.NaN;
  assert.throws(() => denseCrf({ rgb: new Uint8Array(36), width: 4, height: 3 }, prob, 2, 'psa'), /probabilities holds NaN/);
});

test('workingSize: a larger image is solved downscaled and the posterior comes back at full size', () => {
  // Left half dark, right half light; a unary that leans to the wrong label on a fifth of each half.
  const W = 120;
  const H = 60;
  const rgb = new Uint8Array(W * H * 3);
  const prob = new Float32Array(2 * W * H);
  const r = rng(3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const p = y * W + x;
      const right = x >= W / 2;
      rgb.fill(right ? 220 : 30, 3 * p, 3 * p + 3);
      const lean = r() < 0.2 ? !right : right;
      prob[p] = lean ? 0.4 : 0.6; // label 0 = left
      prob[W * H + p] = 1 - prob[p]!;
    }
  }
  const q = denseCrf({ rgb, width: W, height: H }, prob, 2, crfParams('psa', { workingSize: 40 }));
  assert.equal(q.length, 2 * W * H);
  for (let p = 0; p < W * H; p += 97) assert.ok(Math.abs(q[p]! + q[W * H + p]! - 1) < 1e-4, 'distributions');
  const labels = labelMap(q, 2);
  let wrong = 0;
  for (let y = 0; y < H; y++) for (let x = 2; x < W - 2; x++) if (Math.abs(x - W / 2) > 2 && labels[y * W + x] !== (x >= W / 2 ? 1 : 0)) wrong++;
  assert.equal(wrong, 0, 'each half takes its majority label away from the edge');
});
