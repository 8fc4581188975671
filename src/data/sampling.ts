// Class-balanced sampling by repeat factors (LVIS, Gupta et al. 2019, section 3.3):
//
//   f_c = share of the images that contain class c           (image-level labels: what weak supervision has)
//   r_c = max(1, sqrt(t / f_c))                               classes rarer than t are repeated more
//   r_i = max over the classes c of image i of r_c            (1 for an image without classes)
//
// LVIS repeats each image r_i times per epoch (stochastic rounding), which makes epochs longer. Here an epoch keeps
// its N items, so that a candidate compares with uniform sampling at the same number of steps and schedule: image i
// appears w_i = N r_i / sum_j r_j times in expectation, as floor(w_i) or ceil(w_i) by systematic sampling (one
// seeded offset per epoch), which makes the counts sum to exactly N.
import type { DatasetItem } from './dataset.js';
import { Rng } from './rng.js';

/** Per-image repeat factors r_i of `items` over `numClasses` classes with frequency threshold `threshold` (t). */
export function repeatFactors(items: readonly Pick<DatasetItem, 'labels'>[], numClasses: number, threshold: number): number[] {
  if (!(threshold > 0 && threshold <= 1)) throw new RangeError(`repeat-factor threshold must be in (0, 1], got ${threshold}`);
  const n = items.length;
  const images = new Array<number>(numClasses).fill(0);
  for (const item of items) for (const c of new Set(item.labels)) images[c] = (images[c] ?? 0) + 1;
  const classFactor = images.map((count) => (count > 0 ? Math.max(1, Math.sqrt(threshold / (count / n))) : 1));
  return items.map((item) => item.labels.reduce((r, c) => Math.max(r, classFactor[c] ?? 1), 1));
}

/**
 * How often each image appears in `epoch`: counts summing to factors.length, image i about
 * N factors[i] / sum(factors) times (floor or ceil of it), drawn from a generator seeded by (seed, epoch, word).
 */
export function epochRepeats(factors: readonly number[], seed: number, epoch: number): number[] {
  const n = factors.length;
  const total = factors.reduce((a, b) => a + b, 0);
  if (!(total > 0) || factors.some((f) => !(f >= 0) || !Number.isFinite(f))) {
    throw new RangeError('repeat factors must be finite, non-negative and not all 0');
  }
  const u = new Rng(seed, epoch, REPEAT_DRAW).float();
  const counts = new Array<number>(n).fill(0);
  let cumulative = 0;
  let before = 0;
  for (let i = 0; i < n; i++) {
    cumulative += (n * factors[i]!) / total;
    // The last boundary is exactly n, whatever the rounding of the running sum.
    const after = i === n - 1 ? n : Math.min(n, Math.floor(cumulative + u));
    counts[i] = after - before;
    before = after;
  }
  return counts;
}

/** Seed word of the per-epoch draw, distinct from the loader's other generators. */
const REPEAT_DRAW = 3;
