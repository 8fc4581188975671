/**
 * Splat and slice loops of the permutohedral lattice, the bulk of every mean-field iteration.
 * Each point touches d+1 lattice vertices; for the two kernels a 2D CRF uses (d = 2: positions,
 * d = 5: positions + RGB) the corners are unrolled into locals, which V8 keeps in registers: that runs
 * about 2.5× faster than the generic loop over corners (measured on 500×375×21).
 *
 * Layouts: points' values `[N][vs]`, vertex values `[M+1][vs]` (row 0 = the absent vertex),
 * `offsets`/`weights` `[N][d+1]` with +1-shifted vertex ids.
 */

/** `values[vertex] += weight · input[point]` over every point and corner. */
export function splat(
  input: Float32Array,
  vs: number,
  offsets: Int32Array,
  weights: Float32Array,
  d1: number,
  values: Float32Array,
): void {
  if (d1 === 3) splat3(input, vs, offsets, weights, values);
  else if (d1 === 6) splat6(input, vs, offsets, weights, values);
  else splatAny(input, vs, offsets, weights, d1, values);
}

/** `output[point - start] += Σ_corners weight · values[vertex]` for points start..end-1. */
export function slice(
  values: Float32Array,
  vs: number,
  offsets: Int32Array,
  weights: Float32Array,
  d1: number,
  output: Float32Array,
  start: number,
  end: number,
): void {
  if (d1 === 3) slice3(values, vs, offsets, weights, output, start, end);
  else if (d1 === 6) slice6(values, vs, offsets, weights, output, start, end);
  else sliceAny(values, vs, offsets, weights, d1, output, start, end);
}

function splat3(input: Float32Array, vs: number, offsets: Int32Array, weights: Float32Array, values: Float32Array): void {
  for (let ob = 0, ib = 0; ob < offsets.length; ob += 3, ib += vs) {
    const o0 = offsets[ob] * vs, o1 = offsets[ob + 1] * vs, o2 = offsets[ob + 2] * vs;
    const w0 = weights[ob], w1 = weights[ob + 1], w2 = weights[ob + 2];
    for (let k = 0; k < vs; k++) {
      const v = input[ib + k];
      values[o0 + k] += w0 * v;
      values[o1 + k] += w1 * v;
      values[o2 + k] += w2 * v;
    }
  }
}

function splat6(input: Float32Array, vs: number, offsets: Int32Array, weights: Float32Array, values: Float32Array): void {
  for (let ob = 0, ib = 0; ob < offsets.length; ob += 6, ib += vs) {
    const o0 = offsets[ob] * vs, o1 = offsets[ob + 1] * vs, o2 = offsets[ob + 2] * vs;
    const o3 = offsets[ob + 3] * vs, o4 = offsets[ob + 4] * vs, o5 = offsets[ob + 5] * vs;
    const w0 = weights[ob], w1 = weights[ob + 1], w2 = weights[ob + 2];
    const w3 = weights[ob + 3], w4 = weights[ob + 4], w5 = weights[ob + 5];
    for (let k = 0; k < vs; k++) {
      const v = input[ib + k];
      values[o0 + k] += w0 * v;
      values[o1 + k] += w1 * v;
      values[o2 + k] += w2 * v;
      values[o3 + k] += w3 * v;
      values[o4 + k] += w4 * v;
      values[o5 + k] += w5 * v;
    }
  }
}

function splatAny(
  input: Float32Array,
  vs: number,
  offsets: Int32Array,
  weights: Float32Array,
  d1: number,
  values: Float32Array,
): void {
  for (let ob = 0, ib = 0; ob < offsets.length; ob += d1, ib += vs) {
    for (let r = 0; r < d1; r++) {
      const o = offsets[ob + r] * vs;
      const w = weights[ob + r];
      for (let k = 0; k < vs; k++) values[o + k] += w * input[ib + k];
    }
  }
}

function slice3(
  values: Float32Array,
  vs: number,
  offsets: Int32Array,
  weights: Float32Array,
  output: Float32Array,
  start: number,
  end: number,
): void {
  for (let ob = start * 3, ib = 0; ob < end * 3; ob += 3, ib += vs) {
    const o0 = offsets[ob] * vs, o1 = offsets[ob + 1] * vs, o2 = offsets[ob + 2] * vs;
    const w0 = weights[ob], w1 = weights[ob + 1], w2 = weights[ob + 2];
    for (let k = 0; k < vs; k++) {
      output[ib + k] += w0 * values[o0 + k] + w1 * values[o1 + k] + w2 * values[o2 + k];
    }
  }
}

function slice6(
  values: Float32Array,
  vs: number,
  offsets: Int32Array,
  weights: Float32Array,
  output: Float32Array,
  start: number,
  end: number,
): void {
  for (let ob = start * 6, ib = 0; ob < end * 6; ob += 6, ib += vs) {
    const o0 = offsets[ob] * vs, o1 = offsets[ob + 1] * vs, o2 = offsets[ob + 2] * vs;
    const o3 = offsets[ob + 3] * vs, o4 = offsets[ob + 4] * vs, o5 = offsets[ob + 5] * vs;
    const w0 = weights[ob], w1 = weights[ob + 1], w2 = weights[ob + 2];
    const w3 = weights[ob + 3], w4 = weights[ob + 4], w5 = weights[ob + 5];
    for (let k = 0; k < vs; k++) {
      output[ib + k] +=
        w0 * values[o0 + k] +
        w1 * values[o1 + k] +
        w2 * values[o2 + k] +
        w3 * values[o3 + k] +
        w4 * values[o4 + k] +
        w5 * values[o5 + k];
    }
  }
}

function sliceAny(
  values: Float32Array,
  vs: number,
  offsets: Int32Array,
  weights: Float32Array,
  d1: number,
  output: Float32Array,
  start: number,
  end: number,
): void {
  for (let ob = start * d1, ib = 0; ob < end * d1; ob += d1, ib += vs) {
    for (let r = 0; r < d1; r++) {
      const o = offsets[ob + r] * vs;
      const w = weights[ob + r];
      for (let k = 0; k < vs; k++) output[ib + k] += w * values[o + k];
    }
  }
}
