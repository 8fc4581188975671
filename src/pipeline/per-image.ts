// What the per-image stages (cams, crf, affinity labels, random-walk, seg-eval) share: a progress bar, the resume
// of per-image files, their split over the ranks of a distributed run, CAM-file lookup, images onto the device, the
// model for inference, scoring a split, and sweeping candidate settings on the fit split.
import { existsSync, linkSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import cliProgress from 'cli-progress';
import { F, type ProcessGroup, type Tensor, tensor, tidy } from '../engine/index.js';
import type { Module } from '../nn/index.js';
import { type Batch, type Dataset, type DatasetItem, type LabelMap, readMask, writeMask } from '../data/index.js';
import { LabelShareCounter, type LabelShares } from '../refine/affinity-labels.js';
import { camPath } from '../cams/format.js';
import { ConfusionMatrix, type MiouResult, withBackground } from '../eval/index.js';
import { loadModelWeights } from '../train/checkpoint.js';
import type { WeaksegConfig } from './config.js';
import { type StageHooks, logger, readSplit } from './common.js';
import { runPaths } from './paths.js';
import { worldGroup } from './distributed.js';

export const pct = (v: number | null) => (v === null ? '-' : (100 * v).toFixed(2));

export const unique = (xs: string[]) => [...new Set(xs)];

/** What a per-image stage did on one split. */
export interface RefineSplitSummary {
  split: string;
  dir: string;
  images: number;
  /** Images computed in this call (the rest were resumed or shared with an earlier split). */
  computed: number;
  seconds: number;
  /** Per computed image. */
  msPerImage: number;
}

/**
 * A progress bar on a terminal, else a log line every 50 images. `start` images are already done (kept from an
 * earlier run); the rate counts the others.
 */
export function progress(hooks: StageHooks, label: string, total: number, start = 0) {
  const log = logger(hooks);
  const useBar = (hooks.progress ?? 'auto') === 'auto' ? Boolean(process.stderr.isTTY) : Boolean(hooks.progress);
  const bar = useBar
    ? new cliProgress.SingleBar({ format: `${label} |{bar}| {value}/{total} | {rate} img/s | ETA {eta_formatted}`, hideCursor: true, clearOnComplete: true, fps: 4 }, cliProgress.Presets.shades_classic)
    : null;
  bar?.start(total, start, { rate: '-' });
  const t0 = performance.now();
  let done = start;
  return {
    tick(): void {
      done++;
      const rate = ((done - start) / ((performance.now() - t0) / 1000)).toFixed(2);
      bar?.update(done, { rate });
      if (!bar && (done % 50 === 0 || done === total)) log(`${label}: ${done}/${total} (${rate} img/s)`);
    },
    /** Stops the bar; returns the seconds since the start. */
    stop(): number {
      bar?.stop();
      return (performance.now() - t0) / 1000;
    },
  };
}

/** The CAM file of an item; a missing one is an error naming the file and the stage that makes it. */
export function camFile(config: WeaksegConfig, split: string, item: DatasetItem): string {
  const path = camPath(runPaths(config).cams(split), item.id);
  if (!existsSync(path)) {
    throw new Error(`no CAM for '${item.id}' of split '${split}' (${path}); run \`weakseg cams\` with '${split}' in cams.splits`);
  }
  return path;
}

/**
 * Per-image outputs of one stage across splits: made once, hard-linked into later splits (VOC's train is inside
 * train_aug), kept on resume (each file is written whole, so one that exists is complete).
 */
export class StageOutputs {
  readonly #made = new Map<string, string>();

  constructor(private readonly resume: boolean) {}

  /** An existing output for this image at `path` (linked from an earlier split of this run, or resumed), or null. */
  existing(id: string, path: string): string | null {
    const made = this.#made.get(id);
    if (made && made !== path) {
      mkdirSync(dirname(path), { recursive: true });
      rmSync(path, { force: true });
      linkSync(made, path);
      return path;
    }
    if (made || (this.resume && existsSync(path))) return path;
    return null;
  }

  add(id: string, path: string): void {
    this.#made.set(id, path);
  }

  /**
   * An image's label map at `path`: the existing one (see `existing`), else `make()`'s, written there and counted
   * in `tally` (how many were computed, and their time).
   */
  async maskAt(id: string, path: string, tally: { computed: number; computeMs: number },
    make: () => LabelMap | Promise<LabelMap>): Promise<LabelMap> {
    let mask: LabelMap;
    if (this.existing(id, path)) {
      mask = await readMask(path);
    } else {
      const t0 = performance.now();
      mask = await make();
      await writeMask(path, mask);
      tally.computeMs += performance.now() - t0;
      tally.computed++;
    }
    this.add(id, path);
    return mask;
  }
}

/**
 * A per-image stage's images split over the ranks of a distributed run (a single process is a world of one): rank r
 * takes every world-th image from the r-th on and writes their files; counts (confusion matrices, pixel shares) are
 * summed over the ranks, so that every rank holds the whole split's and makes the same choices one process would
 * (the counts are integers: exact in float64, whatever the order of the sum); rank 0 logs and writes what covers
 * the whole split (indexes, info files, metrics). Every rank must make the same calls in the same order.
 */
export class ImageShare {
  readonly rank: number;
  readonly world: number;
  /** The stage's hooks on rank 0; on the others, the same without logs and progress bars. */
  readonly hooks: StageHooks;

  constructor(readonly group: ProcessGroup | null, hooks: StageHooks) {
    this.rank = group?.rank ?? 0;
    this.world = group?.worldSize ?? 1;
    this.hooks = this.rank === 0 ? hooks : { ...hooks, log: () => {}, progress: false };
  }

  /** The run's group (see worldGroup). */
  static of(config: WeaksegConfig, hooks: StageHooks): ImageShare {
    return new ImageShare(worldGroup(config), hooks);
  }

  get isMain(): boolean { return this.rank === 0; }

  /** This rank's items. */
  mine<T>(items: readonly T[]): T[] {
    return this.world > 1 ? items.filter((_, k) => k % this.world === this.rank) : [...items];
  }

  /** Sums the arrays over the ranks, in place. */
  sum(...arrays: Float64Array[]): void {
    if (!this.group || arrays.length === 0) return;
    tidy(() => {
      const ts = arrays.map((a) => tensor(a));
      this.group!.allReduce(ts, 'sum');
      ts.forEach((t, i) => arrays[i]!.set(t.dataSync() as Float64Array));
    });
  }

  /** The numbers summed over the ranks. */
  total(...values: number[]): number[] {
    const a = new Float64Array(values);
    this.sum(a);
    return [...a];
  }

  /**
   * Waits until every rank has written its files of a split, then records all of them in `outputs` (so that a later
   * split sharing an image links it, whichever rank made it). Returns the items whose file exists.
   */
  joinSplit<T extends { id: string }>(outputs: StageOutputs, items: readonly T[], pathOf: (item: T) => string): T[] {
    this.group?.barrier();
    const made = items.filter((item) => existsSync(pathOf(item)));
    for (const item of made) outputs.add(item.id, pathOf(item));
    return made;
  }
}

/**
 * A loaded image as a 1 x C x H x W tensor on the run's device; with `work` ([h, w], see workingShape) downscaled
 * to it (area: averages, no aliasing).
 */
export function deviceImage(batch: Batch, config: WeaksegConfig, work: [number, number] | null = null): Tensor {
  const [, ch, h, w] = batch.shape as [number, number, number, number];
  let image = tensor(batch.images, { shape: [1, ch, h, w] });
  const replace = (next: Tensor) => {
    image.dispose();
    image = next;
  };
  if (config.runtime.device !== 'cpu') replace(image.to({ device: config.runtime.device }));
  if (work) replace(F.interpolate(image, { size: work, mode: 'area' }));
  return image;
}

/** What `writeLabelMaps` made: the split summary and the shares of uncertain, background and foreground pixels. */
export interface LabelMapsSummary extends RefineSplitSummary {
  shares: LabelShares;
}

/**
 * Training labels of every item of a split (the affinity net's, IRNet's): `make` computes an item's label map,
 * written to `<dir>/<id>.png` (kept on resume), and `<dir>/info.json` records `info` and the pixel shares.
 */
export async function writeLabelMaps(
  items: readonly DatasetItem[], split: string, dir: string, hooks: StageHooks, title: string,
  make: (item: DatasetItem, index: number) => Promise<LabelMap>, info: Record<string, unknown>,
): Promise<LabelMapsSummary> {
  const outputs = new StageOutputs(hooks.resume ?? false);
  const counter = new LabelShareCounter();
  const bar = progress(hooks, title, items.length);
  const tally = { computed: 0, computeMs: 0 };
  for (const [i, item] of items.entries()) {
    hooks.signal?.throwIfAborted();
    const labels = await outputs.maskAt(item.id, join(dir, `${item.id}.png`), tally, () => make(item, i));
    counter.add(labels.data);
    bar.tick();
  }
  const seconds = bar.stop();
  const shares = counter.shares;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'info.json'), `${JSON.stringify({ split, ...info, count: items.length, shares,
    format: 'VOC palette PNG: 0 background, class index + 1, 255 uncertain' }, null, 2)}\n`);
  logger(hooks)(`${title}: ${items.length} images (${tally.computed} computed) in ${seconds.toFixed(1)} s; pixels ` +
    `${pct(shares.foreground)} % foreground, ${pct(shares.background)} % background, ${pct(shares.uncertain)} % uncertain`);
  const { computed, computeMs } = tally;
  return { split, dir, images: items.length, computed, seconds, msPerImage: computed ? computeMs / computed : 0, shares };
}

/**
 * A loaded image on the run's device zero-padded below and to the right to a multiple of `stride` (zeros: the mean
 * colour once normalised, as PSA's infer_aff.py and IRN pad), for nets whose grid must cover it whole. Call in tidy.
 */
export function paddedDeviceImage(batch: Batch, config: WeaksegConfig, stride: number): Tensor {
  const [, , h, w] = batch.shape as [number, number, number, number];
  return F.pad(deviceImage(batch, config), [0, Math.ceil(w / stride) * stride - w, 0, Math.ceil(h / stride) * stride - h]);
}

/** The downscaled [h, w] of an image whose longer side exceeds `workingSize`, else null. */
export function workingShape(h: number, w: number, workingSize: number | null): [number, number] | null {
  if (workingSize === null || Math.max(h, w) <= workingSize) return null;
  const f = workingSize / Math.max(h, w);
  return [Math.max(1, Math.round(h * f)), Math.max(1, Math.round(w * f))];
}

export function inferenceModel(model: Module, weights: string, config: WeaksegConfig, channelsLast = config.runtime.channelsLast): void {
  loadModelWeights(weights, model);
  if (config.runtime.device !== 'cpu' || channelsLast) {
    model.to({ device: config.runtime.device, memoryFormat: channelsLast ? 'channels_last' : undefined });
  }
  model.eval();
}

/** Accumulates a split's scores against its ground truth (images without a mask are not scored). */
export class SplitScore {
  readonly cm: ConfusionMatrix;
  scored = 0;

  constructor(readonly dataset: Dataset) {
    this.cm = new ConfusionMatrix(dataset.classes.length + 1);
  }

  async add(item: DatasetItem, pred: LabelMap): Promise<void> {
    if (!item.maskPath) return;
    const gt = await readMask(item.maskPath);
    if (gt.width !== pred.width || gt.height !== pred.height) {
      throw new Error(`${item.id}: prediction is ${pred.width}x${pred.height} but its mask ${item.maskPath} ${gt.width}x${gt.height}`);
    }
    this.cm.add(pred.data, gt.data, item.id);
    this.scored++;
  }

  result(): MiouResult | null {
    return this.scored ? this.cm.score(withBackground(this.dataset.classes)) : null;
  }

  /** Adds the other ranks' scores: every rank then holds the whole split's. */
  sumOver(share: ImageShare): this {
    const scored = new Float64Array([this.scored]);
    share.sum(this.cm.counts, scored);
    this.scored = scored[0]!;
    return this;
  }
}

/** One confusion matrix per candidate setting (a threshold, an exponent), to keep the one with the best mIoU. */
export class CandidateSweep {
  readonly #matrices: ConfusionMatrix[];

  constructor(count: number, private readonly classes: readonly string[]) {
    this.#matrices = Array.from({ length: count }, () => new ConfusionMatrix(classes.length + 1));
  }

  add(candidate: number, pred: Uint8Array, gt: Uint8Array, id: string): void {
    this.#matrices[candidate]!.add(pred, gt, id);
  }

  /** Adds the other ranks' counts: every rank then holds the whole split's. */
  sumOver(share: ImageShare): this {
    share.sum(...this.#matrices.map((cm) => cm.counts));
    return this;
  }

  /** mIoU per candidate and the first best one. */
  result(): { miou: (number | null)[]; bestIndex: number } {
    const names = withBackground(this.classes);
    const miou = this.#matrices.map((cm) => cm.score(names).miou);
    let bestIndex = 0;
    miou.forEach((m, k) => { if ((m ?? -1) > (miou[bestIndex] ?? -1)) bestIndex = k; });
    return { miou, bestIndex };
  }
}

/** Where a free setting is chosen: eval.fitSplit (leak-free) or, without one, eval.split itself (oracle). */
export function fitSplitOf(config: WeaksegConfig): { split: string; mode: 'leak-free' | 'oracle' } {
  return config.eval.fitSplit ? { split: config.eval.fitSplit, mode: 'leak-free' } : { split: config.eval.split, mode: 'oracle' };
}

/** The fit split and its items with ground truth; a split without any is an error naming the `setting`. */
export async function fitItems(config: WeaksegConfig, split: string, setting: string): Promise<{ dataset: Dataset; scored: DatasetItem[] }> {
  const dataset = await readSplit(config, split);
  const scored = dataset.items.filter((item) => item.maskPath);
  if (scored.length === 0) throw new Error(`${setting} needs ground-truth masks on '${split}', which has none`);
  return { dataset, scored };
}
