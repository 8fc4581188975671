// What a stage's fingerprint sees of the data it reads: for each split, its items' ids and labels and a digest of
// the content of each image and mask, plus the files skipped as bad. Adding an image, changing a tag or replacing a
// mask changes it; copying, restoring or re-provisioning the same files (new modification times) does not, so a run
// directory's finished stages survive a dataset that was copied back in place. Digests are cached in the run
// directory by each file's size and modification time, so a file is read again only when one of those changed
// (the first run of a directory reads every image once; DVC's state cache works the same way).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { BadFileLog, type Dataset, type DatasetItem } from '../data/index.js';
import type { WeaksegConfig } from './config.js';
import { readSplit, writeJsonAtomic } from './common.js';
import { readExtraSource } from './extra.js';

/** How an item enters the hash. */
export type ItemKey = (item: DatasetItem) => unknown;

function fileStamp(path: string | undefined): [number, number] | null {
  if (!path) return null;
  try {
    const st = statSync(path);
    return [st.size, st.mtimeMs];
  } catch {
    return null;
  }
}

/**
 * The key of runs made before content digests: each file's size and modification time. run.ts accepts a finished
 * record made with it while the data is untouched since, so that those runs keep their stages.
 */
export const legacyItemKey: ItemKey = (item) =>
  [item.id, item.labels, fileStamp(item.imagePath), item.maskPath ?? null, fileStamp(item.maskPath)];

/** Content digests of files, cached in `cacheFile` (JSON: path -> [size, mtimeMs, digest]); see the header. */
export class ContentDigests {
  private readonly cache: Record<string, [number, number, string]>;
  private dirty = false;

  constructor(private readonly cacheFile: string) {
    let cache: Record<string, [number, number, string]> = {};
    try {
      if (existsSync(cacheFile)) cache = JSON.parse(readFileSync(cacheFile, 'utf8')) as typeof cache;
    } catch {
      cache = {}; // a damaged cache only costs reading the files again
    }
    this.cache = cache;
  }

  /** The file's digest, or null where it cannot be read (the stage itself reports that when it runs). */
  of(path: string): string | null {
    let size: number, mtimeMs: number;
    try {
      ({ size, mtimeMs } = statSync(path));
    } catch {
      return null;
    }
    const hit = this.cache[path];
    if (hit && hit[0] === size && hit[1] === mtimeMs) return hit[2];
    let digest: string;
    try {
      digest = createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 32);
    } catch {
      return null;
    }
    this.cache[path] = [size, mtimeMs, digest];
    this.dirty = true;
    return digest;
  }

  readonly itemKey: ItemKey = (item) => [item.id, item.labels, this.of(item.imagePath), item.maskPath ? this.of(item.maskPath) : null];

  /** Writes the cache if a digest was added. */
  save(): void {
    if (!this.dirty) return;
    writeJsonAtomic(this.cacheFile, this.cache);
    this.dirty = false;
  }
}

/** A short hash of one split's data (see the header comment). */
export async function splitFingerprint(config: WeaksegConfig, split: string, key: ItemKey): Promise<string> {
  const badFiles = new BadFileLog(() => {}); // the stage itself reports them when it runs
  return datasetFingerprint(split, await readSplit(config, split, badFiles), badFiles, key);
}

function datasetFingerprint(name: string, dataset: Dataset, badFiles: BadFileLog, key: ItemKey): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify({ split: name, classes: dataset.classes, bad: badFiles.entries.map((b) => [b.path, b.reason]) }));
  for (const item of dataset.items) hash.update(JSON.stringify(key(item)));
  return hash.digest('hex').slice(0, 16);
}

/** The same of each data.extra source, read with the training split's classes. */
export async function extraSourcesFingerprint(config: WeaksegConfig, key: ItemKey): Promise<string[]> {
  const { classes } = await readSplit(config, config.data.trainSplit, new BadFileLog(() => {}));
  const out: string[] = [];
  for (let k = 0; k < config.data.extra.length; k++) {
    const badFiles = new BadFileLog(() => {});
    const read = await readExtraSource(config, k, classes, badFiles);
    out.push(datasetFingerprint(read.name, read.dataset, badFiles, key));
  }
  return out;
}

/** Split fingerprints, each computed once (several stages read the same split). */
export function dataFingerprints(config: WeaksegConfig, key: ItemKey): (splits: readonly string[]) => Promise<Record<string, string>> {
  const cache = new Map<string, Promise<string>>();
  return async (splits) => {
    const out: Record<string, string> = {};
    for (const split of [...new Set(splits)].sort()) {
      if (!cache.has(split)) cache.set(split, splitFingerprint(config, split, key));
      out[split] = await cache.get(split)!;
    }
    return out;
  };
}
