/**
 * exp and log for the CRF's per-element loops, as inlinable arithmetic: V8 calls out of line for
 * `Math.exp`/`Math.log` (≈10 ns each), and mean-field needs N·L ≈ 4·10⁶ exps per iteration and as many
 * logs for the unary at 500×375×21. Both agree with the Math versions to ~1e-11, far below the float32
 * precision the CRF stores.
 */

const EXP_FRACTION_BITS = 5;
const EXP_STEPS = 1 << EXP_FRACTION_BITS;
const EXP_MIN_X = -104;
const EXP_STEPS_PER_LN2 = EXP_STEPS / Math.LN2;
const LN2_PER_EXP_STEP = Math.LN2 / EXP_STEPS;
/** 2^(j/32), j = 0..31. */
const POW2_FRACTION = Float64Array.from({ length: EXP_STEPS }, (_, j) => 2 ** (j / EXP_STEPS));
/** 2^-i for the integer part, i = 0..ceil(-EXP_MIN_X/ln2). */
const POW2_NEG_INT = Float64Array.from({ length: Math.ceil(-EXP_MIN_X / Math.LN2) + 2 }, (_, i) => 2 ** -i);

/**
 * exp(x) for x ≤ 0 (relative error < 1e-11); 0 below -104, where the result underflows float32 anyway.
 * exp(x) = 2^(n/32) · e^r with n = round(32·x/ln2), |r| ≤ ln2/64: 2^(n/32) from two tables, e^r by a
 * degree-5 Taylor polynomial.
 */
export function expNonPositive(x: number): number {
  if (x < EXP_MIN_X) return 0;
  // Round to nearest by truncating t - 0.5 (t ≤ 0): this stays int32 in V8, whereas Math.round yields a
  // double (possibly -0) and measured slower than Math.exp itself here.
  const n = (x * EXP_STEPS_PER_LN2 - 0.5) | 0;
  const r = x - n * LN2_PER_EXP_STEP;
  const er = 1 + r * (1 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120)))));
  // n ≤ 0, so n = -32·i + j with i = ceil(-n/32) = (31 - n) >> 5 and j = n & 31 (two's complement).
  return POW2_NEG_INT[(EXP_STEPS - 1 - n) >> EXP_FRACTION_BITS] * POW2_FRACTION[n & (EXP_STEPS - 1)] * er;
}

const MIN_NORMAL = 2.2250738585072014e-308;
/** One double seen as two int32 words (little-endian: [1] holds sign, exponent and top mantissa bits). */
const bits = new Float64Array(1);
const words = new Int32Array(bits.buffer);
/** 2^-e for every normal binary exponent e = -1022..1023, at index e + 1022. */
const POW2_NEG = Float64Array.from({ length: 2046 }, (_, i) => 2 ** -(i - 1022));
const LOG_TABLE_BITS = 7;
const LOG_TABLE_SIZE = 1 << LOG_TABLE_BITS;
/** Centres c_i of the 128 mantissa intervals [1 + i/128, 1 + (i+1)/128), with 1/c_i and log c_i. */
const LOG_CENTRE = Float64Array.from({ length: LOG_TABLE_SIZE }, (_, i) => 1 + (i + 0.5) / LOG_TABLE_SIZE);
const LOG_INV_CENTRE = LOG_CENTRE.map((c) => 1 / c);
const LOG_OF_CENTRE = LOG_CENTRE.map((c) => Math.log(c));

/**
 * log(x) for positive normal x (error < 1e-14·max(1, |log x|)); other inputs (0, subnormal, ∞, NaN,
 * negative) go to `Math.log`. x = 2^e · m, m ∈ [1, 2); the top 7 mantissa bits pick a centre c close to
 * m, and log m = log c + log(1 + r) with r = (m − c)/c, |r| < 1/256, by a degree-5 series.
 */
export function logPositive(x: number): number {
  if (!(x >= MIN_NORMAL) || x === Infinity) return Math.log(x);
  bits[0] = x;
  const hi = words[1];
  const e = (hi >>> 20) - 1023;
  const m = x * POW2_NEG[e + 1022]; // exact: a power-of-two scaling
  const i = (hi >>> (20 - LOG_TABLE_BITS)) & (LOG_TABLE_SIZE - 1);
  const r = (m - LOG_CENTRE[i]) * LOG_INV_CENTRE[i];
  return e * Math.LN2 + LOG_OF_CENTRE[i] + r * (1 - r * (1 / 2 - r * (1 / 3 - r * (1 / 4 - r * (1 / 5)))));
}
