/**
 * Seedable pseudo-random numbers, so that augmentation and shuffling are reproducible.
 *
 * Generator: xoshiro128** (Blackman & Vigna, 2018): 128-bit state, period 2^128 - 1, passes BigCrush, and needs
 * only 32-bit integer operations (fast in JS, unlike 64-bit generators such as PCG64 that need BigInt).
 * The state is filled by SplitMix32 from a hash of all seed words, so `new Rng(seed, epoch, index)` gives an
 * independent stream per (seed, epoch, item): concurrent item transforms then do not depend on the order in
 * which they happen to run.
 */

/** murmur3's 32-bit finaliser: a bijective avalanche mix. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class Rng {
  private readonly s = new Uint32Array(4);

  /** @param seed one or more integer words (e.g. run seed, epoch, item index); non-integers are refused. */
  constructor(...seed: number[]) {
    if (seed.length === 0) throw new RangeError('Rng needs at least one seed word');
    let h = 0x9e3779b9;
    for (const word of seed) {
      if (!Number.isSafeInteger(word)) throw new RangeError(`Rng seed words must be safe integers, got ${word}`);
      // Fold both 32-bit halves so that seeds above 2^32 (e.g. timestamps) stay distinct.
      h = mix32(h ^ mix32((word >>> 0) + 0x632be5ab));
      h = mix32(h ^ mix32(Math.floor(word / 0x100000000) >>> 0));
    }
    // SplitMix32 to spread the hash over the 128-bit state (never all zero: the outputs of distinct counters).
    for (let i = 0; i < 4; i++) {
      h = (h + 0x9e3779b9) >>> 0;
      this.s[i] = mix32(h);
    }
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  /** Next uniformly distributed unsigned 32-bit integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1), 32 bits of resolution. */
  float(): number {
    return this.nextUint32() / 0x100000000;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Uniform integer in [0, n), n <= 2^32 (bias below 2^-32 * n, irrelevant for augmentation). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** True with probability p. */
  bool(p = 0.5): boolean {
    return this.float() < p;
  }

  /** Fisher-Yates shuffle, in place; returns the array. */
  shuffle<T>(array: T[]): T[] {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
