/**
 * Training data from several tagged sources: the main dataset and extra ones (more tagged images, noisy web images),
 * mixed by weight.
 *
 * The items are concatenated (main first) and each source is a span of them. An epoch is one pass over the main
 * items, each once, plus round(weight x main size) draws from each extra source, all shuffled together: an extra
 * source of weight w makes w / (1 + sum of weights) of the draws, whatever its size, so a huge web set cannot
 * swamp the main data and the schedule's epochs keep meaning passes over the main set. An extra source is walked
 * through in seeded random cycles (every item once per cycle, a cycle spanning epochs when the source is larger
 * than its share), so its items are used evenly. Everything depends on (seed, epoch) alone: a resumed epoch sees
 * the same draws.
 */
import type { Dataset, DatasetItem } from './dataset.js';
import { Rng } from './rng.js';

/** A contiguous span of a mixed dataset's items that came from one source. */
export interface SourceSpan {
  /** For messages ('main', 'data.extra[0]'). */
  name: string;
  start: number;
  count: number;
  /** Draws per epoch relative to the main source's size (the main source's is 1: each item once). */
  weight: number;
}

export interface ExtraSource {
  name: string;
  dataset: Dataset;
  weight: number;
}

export interface MixedDataset extends Dataset {
  /** The main source first, then the extra ones, in order. */
  sources: SourceSpan[];
}

// Extra seed word of the extra sources' cycles, apart from the epoch shuffle's (seed, epoch).
const SOURCE_CYCLE = 3;

/**
 * The main dataset followed by the extra sources' items. Their classes must be the main's (readers are given the
 * main class list); an extra item's id is prefixed by its source's name, so ids stay unique and say where an item
 * came from. Extra items keep no mask: scoring stays on the main dataset.
 */
export function mixDatasets(main: Dataset, extra: readonly ExtraSource[]): MixedDataset {
  const items: DatasetItem[] = [...main.items];
  const sources: SourceSpan[] = [{ name: 'main', start: 0, count: main.items.length, weight: 1 }];
  for (const source of extra) {
    const { classes } = source.dataset;
    if (classes.length !== main.classes.length || classes.some((c, i) => c !== main.classes[i])) {
      throw new RangeError(`${source.name}: its classes (${classes.join(', ')}) are not the main dataset's (${main.classes.join(', ')})`);
    }
    if (!(source.weight > 0 && Number.isFinite(source.weight))) throw new RangeError(`${source.name}: weight must be positive, got ${source.weight}`);
    if (source.dataset.items.length === 0) throw new RangeError(`${source.name}: no images`);
    sources.push({ name: source.name, start: items.length, count: source.dataset.items.length, weight: source.weight });
    for (const item of source.dataset.items) items.push({ id: `${source.name}/${item.id}`, imagePath: item.imagePath, labels: item.labels });
  }
  return { classes: [...main.classes], items, sources };
}

/** Throws unless `sources` tile `itemCount` items, main first. */
export function checkSources(sources: readonly SourceSpan[], itemCount: number): void {
  let next = 0;
  for (const s of sources) {
    if (s.start !== next || !(s.count > 0) || !(s.weight > 0)) {
      throw new RangeError(`source ${s.name}: span ${s.start}+${s.count} (weight ${s.weight}) does not follow on at item ${next}`);
    }
    next += s.count;
  }
  if (next !== itemCount) throw new RangeError(`the sources span ${next} items, the dataset has ${itemCount}`);
}

/** How many items of each source one epoch draws: the main source's count, round(weight x that) for the others. */
export function drawsPerEpoch(sources: readonly SourceSpan[]): number[] {
  const main = sources[0]!.count;
  return sources.map((s, k) => (k === 0 ? main : Math.round(s.weight * main)));
}

/** One epoch's item indices, shuffled (see the header comment). */
export function mixedEpochOrder(sources: readonly SourceSpan[], seed: number, epoch: number): number[] {
  const counts = drawsPerEpoch(sources);
  const main = sources[0]!;
  const order = Array.from({ length: main.count }, (_, i) => main.start + i);
  sources.forEach((s, k) => {
    if (k === 0) return;
    const n = counts[k]!;
    let cycle = -1;
    let perm: number[] = [];
    for (let j = 0; j < n; j++) {
      const p = epoch * n + j; // position in the source's endless sequence of cycles
      if (Math.floor(p / s.count) !== cycle) {
        cycle = Math.floor(p / s.count);
        perm = new Rng(seed, SOURCE_CYCLE, k, cycle).shuffle(Array.from({ length: s.count }, (_, i) => i));
      }
      order.push(s.start + perm[p % s.count]!);
    }
  });
  return new Rng(seed, epoch).shuffle(order);
}
