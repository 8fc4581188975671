// What a stage's fingerprint sees of the data it reads: for each split, its items' ids and labels, and the size
// and modification time of each image and mask (a content hash would read every file on every run), plus the
// files skipped as bad. Adding an image, changing a tag or replacing a mask changes it; touching nothing does not.
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { BadFileLog, type Dataset } from '../data/index.js';
import type { WeaksegConfig } from './config.js';
import { readSplit } from './common.js';
import { readExtraSource } from './extra.js';

function fileStamp(path: string | undefined): [number, number] | null {
  if (!path) return null;
  try {
    const st = statSync(path);
    return [st.size, st.mtimeMs];
  } catch {
    return null;
  }
}

/** A short hash of one split's data (see the header comment). */
export async function splitFingerprint(config: WeaksegConfig, split: string): Promise<string> {
  const badFiles = new BadFileLog(() => {}); // the stage itself reports them when it runs
  return datasetFingerprint(split, await readSplit(config, split, badFiles), badFiles);
}

function datasetFingerprint(name: string, dataset: Dataset, badFiles: BadFileLog): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ split: name, classes: dataset.classes, bad: badFiles.entries.map((b) => [b.path, b.reason]) }));
  for (const item of dataset.items) {
    hash.update(JSON.stringify([item.id, item.labels, fileStamp(item.imagePath), item.maskPath ?? null, fileStamp(item.maskPath)]));
  }
  return hash.digest('hex').slice(0, 16);
}

/** The same of each data.extra source, read with the training split's classes. */
export async function extraSourcesFingerprint(config: WeaksegConfig): Promise<string[]> {
  const { classes } = await readSplit(config, config.data.trainSplit, new BadFileLog(() => {}));
  const out: string[] = [];
  for (let k = 0; k < config.data.extra.length; k++) {
    const badFiles = new BadFileLog(() => {});
    const read = await readExtraSource(config, k, classes, badFiles);
    out.push(datasetFingerprint(read.name, read.dataset, badFiles));
  }
  return out;
}

/** Split fingerprints, each computed once (several stages read the same split). */
export function dataFingerprints(config: WeaksegConfig): (splits: readonly string[]) => Promise<Record<string, string>> {
  const cache = new Map<string, Promise<string>>();
  return async (splits) => {
    const out: Record<string, string> = {};
    for (const split of [...new Set(splits)].sort()) {
      if (!cache.has(split)) cache.set(split, splitFingerprint(config, split));
      out[split] = await cache.get(split)!;
    }
    return out;
  };
}
