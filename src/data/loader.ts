/**
 * Asynchronous prefetching batch loader.
 *
 * Items are transformed (decoded, augmented) ahead of the consumer, up to `prefetch` batches' worth in flight.
 * Decoding runs in sharp's/libuv's thread pool, so plain async concurrency keeps several cores busy without
 * worker threads; raise UV_THREADPOOL_SIZE (default 4) before starting node to decode more images at once.
 * Results are consumed in order, so batch contents depend only on the seed, never on decode timing.
 */
import { performance } from 'node:perf_hooks';
import type { Dataset, DatasetItem } from './dataset.js';
import { BadFileLog, handleBadFile, type BadFileOptions } from './errors.js';
import { IGNORE_INDEX } from './mask.js';
import { type SourceSpan, checkSources, drawsPerEpoch, mixedEpochOrder } from './mix.js';
import { Rng } from './rng.js';
import { epochRepeats } from './sampling.js';

/** A transformed item: CHW float image and optional H x W mask and validity map. */
export interface Sample {
  image: Float32Array;
  channels: number;
  height: number;
  width: number;
  mask?: Uint8Array;
  /** 1 = real pixel, 0 = padding; absent = all real. */
  valid?: Uint8Array;
}

export interface TransformContext {
  /** A generator private to this (seed, epoch, item): results do not depend on scheduling. */
  rng: Rng;
  epoch: number;
  /** Index of the item in `dataset.items`. */
  index: number;
}

export type ItemTransform = (item: DatasetItem, context: TransformContext) => Promise<Sample>;

export interface Batch {
  /** N x C x H x W. */
  images: Float32Array;
  shape: [n: number, c: number, h: number, w: number];
  /** N x numClasses multi-hot image-level labels (foreground classes only). */
  labels: Float32Array;
  /** N x H x W, present when any sample has a mask; samples without one are all 255 (ignored). */
  masks?: Uint8Array;
  /** N x H x W, present when any sample has a validity map; samples without one are all 1. */
  valid?: Uint8Array;
  ids: string[];
  /** Indices into `dataset.items`. */
  indices: number[];
  /** With the `pairs` option: each item's partner (row i pairs with item i), transformed like the items. */
  partner?: { images: Float32Array; labels: Float32Array; ids: string[]; indices: number[] };
}

export interface PairOptions {
  /**
   * Probability that an item's partner shares at least one of its classes (one of the item's classes is drawn,
   * then an image containing it); otherwise the partner is any other image. 1: always a shared class.
   */
  shareClass: number;
}

export interface LoaderOptions extends BadFileOptions {
  batchSize: number;
  /** Reshuffle every epoch (default true); false keeps dataset order, for evaluation. */
  shuffle?: boolean;
  /** Seed for the order and for each item's `rng` (default 0). */
  seed?: number;
  /** Batches transformed ahead of the consumer (default 2). */
  prefetch?: number;
  /** Drop the last, smaller batch of an epoch (default false). */
  dropLast?: boolean;
  /** Give every item a partner image (methods trained on pairs); none by default. */
  pairs?: PairOptions;
  /**
   * Data-parallel training: this process is `rank` of `worldSize`, and `batchSize` is its share of a global batch
   * of batchSize x worldSize. Every rank shuffles the same global order and takes its slice of each global batch,
   * so the ranks together see exactly the batches one process with the global batch size would. Needs dropLast.
   */
  shard?: { rank: number; worldSize: number };
  /**
   * Class-balanced sampling: one repeat factor per item (data/sampling.ts `repeatFactors`). Each epoch still has
   * N items, item i about N r_i / sum r of them (`epochRepeats`), in the seeded shuffled order; an item's k-th
   * repeat within an epoch (k > 0) gets its own augmentation generator. Needs shuffle.
   */
  repeatFactors?: readonly number[];
  /**
   * The dataset mixes several sources (mix.ts: the main one first, then extra ones): each epoch is one pass over
   * the main items plus each extra source's weighted share of draws. Needs shuffle. Partners are drawn from all of them.
   */
  sources?: readonly SourceSpan[];
}

/** Time the consumer spent blocked waiting for batches. */
export interface WaitStats {
  batches: number;
  waitMsTotal: number;
  waitMsMean: number;
  waitMsMax: number;
  /** Time spent inside epochs, from each epoch's start to its last batch. */
  elapsedMs: number;
  /** waitMsTotal / elapsedMs: the share of the loop spent waiting for data (0 when nothing measured). */
  waitShare: number;
}

type Loaded = { index: number; sample: Sample; partner?: { index: number; sample: Sample } };
type Outcome = ({ ok: true } & Loaded) | { ok: false; index: number; error: unknown };

// Extra seed words of the pairs' generators, so an item's own augmentation stream is the same with pairs on or off.
const PARTNER_CHOICE = 1;
const PARTNER_TRANSFORM = 2;
// ... and of an item's second and later occurrences within one epoch (repeatFactors, or a small extra source drawn
// more than once), so its first occurrence is augmented as without them.
const REPEAT_TRANSFORM = 4;

export class BatchLoader {
  readonly badFiles: BadFileLog;
  private readonly batchSize: number;
  private readonly prefetch: number;
  private readonly seed: number;
  private waits = { batches: 0, total: 0, max: 0, elapsed: 0 };
  /** With `pairs`: the items containing each class. */
  private readonly byClass: number[][] | null = null;

  constructor(
    private readonly dataset: Dataset,
    private readonly transform: ItemTransform,
    private readonly options: LoaderOptions,
  ) {
    const { batchSize, prefetch = 2, seed = 0 } = options;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
    if (!Number.isInteger(prefetch) || prefetch < 0) throw new RangeError(`prefetch must be a non-negative integer, got ${prefetch}`);
    this.batchSize = batchSize;
    this.prefetch = prefetch;
    this.seed = seed;
    this.badFiles = options.badFiles ?? new BadFileLog();
    if (options.shard) {
      const { rank, worldSize } = options.shard;
      if (!Number.isInteger(worldSize) || worldSize < 1 || !Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
        throw new RangeError(`shard: rank ${rank} of world size ${worldSize} is not a rank (0..worldSize-1)`);
      }
      if (!options.dropLast) throw new RangeError('shard needs dropLast: every rank must have the same number of batches');
    }
    if (options.repeatFactors) {
      if (options.repeatFactors.length !== dataset.items.length) {
        throw new RangeError(`repeatFactors has ${options.repeatFactors.length} factors for ${dataset.items.length} items`);
      }
      if (options.shuffle === false) throw new RangeError('repeatFactors needs shuffle');
      if (options.sources) throw new RangeError('repeatFactors and sources are two samplers: give one');
    }
    if (options.sources) {
      checkSources(options.sources, dataset.items.length);
      if (options.shuffle === false) throw new RangeError('sources are drawn by weight: they need shuffle');
    }
    if (options.pairs) {
      const p = options.pairs.shareClass;
      if (!(p >= 0 && p <= 1)) throw new RangeError(`pairs.shareClass must be a probability in [0, 1], got ${p}`);
      if (dataset.items.length < 2) throw new RangeError('pairs need at least two images');
      this.byClass = dataset.classes.map(() => []);
      dataset.items.forEach((item, i) => {
        for (const c of item.labels) this.byClass![c]?.push(i);
      });
    }
  }

  /**
   * The partner of item `index` in `epoch` (with the `pairs` option): drawn from a generator seeded by (seed, epoch,
   * index), so it depends on nothing else (a resumed epoch pairs the same images). Never the item itself.
   */
  partnerOf(index: number, epoch: number): number {
    if (!this.byClass || !this.options.pairs) throw new Error('partnerOf needs the pairs option');
    const rng = new Rng(this.seed, epoch, index, PARTNER_CHOICE);
    const n = this.dataset.items.length;
    const labels = this.dataset.items[index]!.labels;
    if (labels.length && rng.bool(this.options.pairs.shareClass)) {
      const pool = this.byClass[labels[rng.int(labels.length)]!]!.filter((i) => i !== index);
      if (pool.length) return pool[rng.int(pool.length)]!;
    }
    const other = rng.int(n - 1);
    return other >= index ? other + 1 : other;
  }

  /** Batches per epoch if no item is skipped. */
  get batchesPerEpoch(): number {
    const n = this.options.sources ? drawsPerEpoch(this.options.sources).reduce((a, b) => a + b, 0) : this.dataset.items.length;
    const global = this.batchSize * (this.options.shard?.worldSize ?? 1);
    return this.options.dropLast ? Math.floor(n / global) : Math.ceil(n / global);
  }

  get stats(): WaitStats {
    const { batches, total, max, elapsed } = this.waits;
    return {
      batches,
      waitMsTotal: total,
      waitMsMean: batches ? total / batches : 0,
      waitMsMax: max,
      elapsedMs: elapsed,
      waitShare: elapsed > 0 ? total / elapsed : 0,
    };
  }

  resetStats(): void {
    this.waits = { batches: 0, total: 0, max: 0, elapsed: 0 };
  }

  /**
   * The batches of one epoch. A failing item is thrown (`onBadFile: 'fail'`) or logged and replaced by the next
   * item (`'skip'`), so batches stay full. Breaking out early is safe: in-flight transforms finish unobserved.
   * `skipBatches` starts the epoch that many batches in, without loading them (resuming mid-epoch); with
   * `onBadFile: 'skip'` the batches after a skipped bad file can differ from an uninterrupted epoch's.
   */
  async *epoch(epoch: number, options: { skipBatches?: number } = {}): AsyncGenerator<Batch, void, undefined> {
    const items = this.dataset.items;
    let order = items.map((_, i) => i);
    if (this.options.sources) {
      order = mixedEpochOrder(this.options.sources, this.seed, epoch);
    } else {
      if (this.options.repeatFactors) {
        const counts = epochRepeats(this.options.repeatFactors, this.seed, epoch);
        order = counts.flatMap((count, i) => new Array<number>(count).fill(i));
      }
      if (this.options.shuffle ?? true) new Rng(this.seed, epoch).shuffle(order);
    }
    // The k-th occurrence of an item in this epoch's (global) order: 0 unless repeated.
    const seen = new Map<number, number>();
    let occurrence = order.map((i) => {
      const k = seen.get(i) ?? 0;
      seen.set(i, k + 1);
      return k;
    });
    if (this.options.shard) {
      order = this.shardOf(order);
      occurrence = this.shardOf(occurrence);
    }
    const policy = this.options.onBadFile ?? 'fail';
    const window = (this.prefetch + 1) * this.batchSize;
    const pending: Promise<Outcome>[] = [];
    let next = Math.min(order.length, (options.skipBatches ?? 0) * this.batchSize);
    const refill = () => {
      while (next < order.length && pending.length < window) {
        pending.push(this.load(order[next]!, epoch, occurrence[next]!));
        next++;
      }
    };

    let counted = performance.now(); // elapsed time is added up to here
    let resumed = counted; // when the consumer last asked for a batch
    let batch: Loaded[] = [];
    const emit = () => {
      const out = this.collate(batch);
      batch = [];
      const now = performance.now();
      const wait = now - resumed;
      this.waits.batches++;
      this.waits.total += wait;
      this.waits.max = Math.max(this.waits.max, wait);
      this.waits.elapsed += now - counted;
      counted = now;
      return out;
    };
    refill();
    while (pending.length > 0) {
      const outcome = await (pending.shift() as Promise<Outcome>);
      refill();
      if (outcome.ok) {
        batch.push(outcome);
      } else {
        handleBadFile(policy, this.badFiles, outcome.error, items[outcome.index]?.id);
      }
      if (batch.length === this.batchSize) {
        yield emit();
        resumed = performance.now();
      }
    }
    if (batch.length > 0 && !this.options.dropLast) yield emit();
  }

  /** This rank's slice of every whole global batch of `order`, in order. */
  private shardOf(order: number[]): number[] {
    const { rank, worldSize } = this.options.shard!;
    const b = this.batchSize;
    const out: number[] = [];
    for (let g = 0; g + b * worldSize <= order.length; g += b * worldSize) out.push(...order.slice(g + rank * b, g + (rank + 1) * b));
    return out;
  }

  private async load(index: number, epoch: number, occurrence = 0): Promise<Outcome> {
    try {
      const item = this.dataset.items[index];
      const rng = occurrence === 0 ? new Rng(this.seed, epoch, index) : new Rng(this.seed, epoch, index, REPEAT_TRANSFORM, occurrence);
      const own = this.transform(item, { rng, epoch, index });
      if (!this.options.pairs) return { ok: true, index, sample: await own };
      const p = this.partnerOf(index, epoch);
      const [sample, partner] = await Promise.all([
        own, this.transform(this.dataset.items[p], { rng: new Rng(this.seed, epoch, index, PARTNER_TRANSFORM), epoch, index: p }),
      ]);
      return { ok: true, index, sample, partner: { index: p, sample: partner } };
    } catch (error) {
      return { ok: false, index, error };
    }
  }

  private collate(samples: Loaded[]): Batch {
    const out = this.collateSamples(samples);
    if (this.options.pairs) {
      const partners = this.collateSamples(samples.map((s) => s.partner!));
      if (partners.shape.join() !== out.shape.join()) {
        throw new RangeError(`partner images are ${partners.shape.slice(1).join('x')}, the batch ${out.shape.slice(1).join('x')}; use a fixed crop size to pair`);
      }
      out.partner = { images: partners.images, labels: partners.labels, ids: partners.ids, indices: partners.indices };
    }
    return out;
  }

  private collateSamples(samples: { index: number; sample: Sample }[]): Batch {
    const first = samples[0].sample;
    const { channels: C, height: H, width: W } = first;
    const plane = H * W;
    const numClasses = this.dataset.classes.length;
    const n = samples.length;
    const images = new Float32Array(n * C * plane);
    const labels = new Float32Array(n * numClasses);
    const anyMask = samples.some((s) => s.sample.mask);
    const anyValid = samples.some((s) => s.sample.valid);
    const masks = anyMask ? new Uint8Array(n * plane).fill(IGNORE_INDEX) : undefined;
    const valid = anyValid ? new Uint8Array(n * plane).fill(1) : undefined;
    const ids: string[] = [];
    const indices: number[] = [];
    samples.forEach(({ index, sample }, k) => {
      const item = this.dataset.items[index];
      if (sample.channels !== C || sample.height !== H || sample.width !== W || sample.image.length !== C * plane) {
        throw new RangeError(
          `item "${item.id}" was transformed to ${sample.channels}x${sample.height}x${sample.width} ` +
            `(${sample.image.length} values) but the batch is ${C}x${H}x${W}; use a fixed crop size to batch`,
        );
      }
      images.set(sample.image, k * C * plane);
      for (const label of item.labels) {
        if (!(label >= 0 && label < numClasses)) throw new RangeError(`item "${item.id}" has label ${label}, outside 0..${numClasses - 1}`);
        labels[k * numClasses + label] = 1;
      }
      for (const [name, map, target] of [['mask', sample.mask, masks], ['valid', sample.valid, valid]] as const) {
        if (!map || !target) continue;
        if (map.length !== plane) throw new RangeError(`item "${item.id}": ${name} has ${map.length} values, expected ${H}x${W}`);
        target.set(map, k * plane);
      }
      ids.push(item.id);
      indices.push(index);
    });
    const out: Batch = { images, shape: [n, C, H, W], labels, ids, indices };
    if (masks) out.masks = masks;
    if (valid) out.valid = valid;
    return out;
  }
}
