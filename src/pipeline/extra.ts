// data.extra: further tagged sources of classifier training images (the MCIS paper's extra single-label and noisy web
// images), read with the main dataset's classes and mixed into the `train` stage by weight (src/data/mix.ts). Only
// classifier training reads them; every other stage stays on the main dataset.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  BadFileLog, DataError, type Dataset, type ExtraSource, type ItemTransform, type MixedDataset, type ReadResult, type SourceSpan,
  drawsPerEpoch, mixDatasets, readFolder, readVoc,
} from '../data/index.js';
import type { WeaksegConfig } from './config.js';
import { skippedFilesLog } from './common.js';

type ExtraConfig = WeaksegConfig['data']['extra'][number];

/** How a source is named in messages and item ids: its place in the config. */
export const extraSourceName = (k: number) => `data.extra[${k}]`;

/** "data.extra[0] (folder, labels web/labels.csv)": the source and the field that points at its files. */
function describeSource(s: ExtraConfig, k: number): string {
  return `${extraSourceName(k)} (${s.format === 'folder' ? `folder ${s.root}, labels ${s.labels}` : `VOC ${s.root}, split '${s.split}'`})`;
}

/** What reading one extra source found. */
export interface ExtraSourceRead extends ExtraSource {
  /** Tags outside the main classes that were dropped (the first few as "file: where: tag"), and images left without a tag (not used). */
  droppedTags: number;
  droppedExamples: string[];
  droppedImages: number;
  skipped: number;
}

/**
 * Reads source `k` of data.extra with the main `classes`. Bad files follow data.onBadFile (skipped ones go to the
 * run's skipped.jsonl under the source's name); any other problem is an error naming the source, the file and
 * the field.
 */
export async function readExtraSource(config: WeaksegConfig, k: number, classes: readonly string[],
  badFiles?: BadFileLog): Promise<ExtraSourceRead> {
  const s = config.data.extra[k]!;
  const name = extraSourceName(k);
  if (!existsSync(s.root)) throw new Error(`${name}.root: ${resolve(s.root)} does not exist`);
  if (s.format === 'folder' && !existsSync(s.labels!)) throw new Error(`${name}.labels: ${resolve(s.labels!)} does not exist`);
  const log = badFiles ?? new BadFileLog(() => {});
  const common = { root: s.root, classes, onBadFile: config.data.onBadFile, badFiles: log, unknownTags: s.unknownTags } as const;
  let read: ReadResult;
  try {
    read = s.format === 'folder'
      ? await readFolder({ ...common, labels: s.labels! })
      : await readVoc({ ...common, split: s.split, ...(s.labelsJson ? { labelsJson: s.labelsJson } : {}) });
  } catch (e) {
    throw new Error(`${describeSource(s, k)}: ${(e as Error).message}`, { cause: e });
  }
  if (!badFiles) {
    const report = skippedFilesLog(config, name, read.items.length + log.count);
    for (const bad of log.entries) report.record(bad);
  }
  if (read.items.length === 0) throw new Error(`${describeSource(s, k)}: no usable image`);
  return {
    name, weight: s.weight, dataset: { classes: read.classes, items: read.items },
    droppedTags: read.droppedTags?.length ?? 0,
    droppedExamples: (read.droppedTags ?? []).slice(0, 3).map((d) => `${d.path}: ${d.where}: "${d.tag}"`),
    droppedImages: read.droppedItems?.length ?? 0,
    skipped: log.count,
  };
}

/** The classifier's training data: the main split alone, or mixed with data.extra (with the sources' spans). */
export interface TrainingData {
  dataset: Dataset | MixedDataset;
  sources?: SourceSpan[];
  /** One line per extra source for the log ('' without any). */
  summary: string;
  /** What each extra source gave, for metrics.json. */
  extra: { source: string; images: number; weight: number; drawsPerEpoch: number; droppedTags: number; droppedImages: number; skipped: number }[];
}

/** Mixes data.extra into the main training split; `warn` gets one line per source that had tags dropped. */
export async function withExtraSources(config: WeaksegConfig, main: Dataset, warn: (line: string) => void): Promise<TrainingData> {
  if (!config.data.extra.length) return { dataset: main, summary: '', extra: [] };
  const reads: ExtraSourceRead[] = [];
  for (let k = 0; k < config.data.extra.length; k++) {
    const read = await readExtraSource(config, k, main.classes);
    if (read.droppedTags) {
      warn(`warning: ${describeSource(config.data.extra[k]!, k)}: ${read.droppedTags} tag(s) outside the classes dropped ` +
        `(${read.droppedExamples.join('; ')}${read.droppedTags > 3 ? '; ...' : ''})` +
        `${read.droppedImages ? `; ${read.droppedImages} image(s) left without a tag not used` : ''}`);
    }
    reads.push(read);
  }
  const dataset = mixDatasets(main, reads);
  const draws = drawsPerEpoch(dataset.sources);
  const summary = reads.map((r, k) => `${r.name}: ${r.dataset.items.length} images, weight ${r.weight} ` +
    `(${draws[k + 1]} draws per epoch)${r.skipped ? `, ${r.skipped} skipped as bad` : ''}`).join('; ');
  const extra = reads.map((r, k) => ({
    source: r.name, images: r.dataset.items.length, weight: r.weight, drawsPerEpoch: draws[k + 1]!,
    droppedTags: r.droppedTags, droppedImages: r.droppedImages, skipped: r.skipped,
  }));
  return { dataset, sources: dataset.sources, summary, extra };
}

/**
 * `transform` with the failures of an extra source's image (an unreadable file) naming the source: still a
 * DataError, so data.onBadFile 'skip' skips it.
 */
export function namingSources(transform: ItemTransform, sources: readonly SourceSpan[]): ItemTransform {
  return async (item, context) => {
    try {
      return await transform(item, context);
    } catch (e) {
      const source = sources.find((s) => context.index >= s.start && context.index < s.start + s.count);
      if (!(e instanceof DataError) || !source || source === sources[0]) throw e;
      throw new DataError(e.path, `${e.reason} (${source.name}, image "${item.id}")`, { cause: e });
    }
  };
}
