/**
 * File-system and parsing helpers shared by the dataset readers (internal).
 */
import { readdir, readFile } from 'node:fs/promises';
import { basename, dirname, extname } from 'node:path';
import type { DatasetItem, DroppedTag } from './dataset.js';
import { DataError, describeCause, handleBadFile, type BadFileLog, type BadFilePolicy } from './errors.js';

/** Extensions tried for images, in order of preference. */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff', '.gif', '.avif'];

/** Name -> index, refusing duplicate or empty class names. */
export function classIndex(classes: readonly string[], source: string): Map<string, number> {
  const index = new Map<string, number>();
  classes.forEach((name, i) => {
    if (name.trim() === '') throw new DataError(source, `class ${i} has an empty name`);
    if (index.has(name)) throw new DataError(source, `class "${name}" is listed twice`);
    index.set(name, i);
  });
  return index;
}

/**
 * Class names that are not in `index` make the whole item bad (the message names the tag and the classes), or,
 * given `dropped`, are left out and listed there (noisy web tags).
 */
export function tagsToLabels(
  tags: readonly string[],
  index: Map<string, number>,
  source: string,
  where: string,
  dropped?: DroppedTag[],
): number[] {
  const labels = new Set<number>();
  for (const tag of tags) {
    const i = index.get(tag);
    if (i === undefined && dropped) {
      dropped.push({ path: source, where, tag });
      continue;
    }
    if (i === undefined) {
      // "cat dog" where "cat" and "dog" are classes: most likely the wrong separator.
      const parts = tag.split(/[\s,]+/);
      const hint = parts.length > 1 && parts.every((p) => index.has(p)) ? '; separate tags with ";" or "|"' : '';
      throw new DataError(source, `${where}: unknown tag "${tag}" (known classes: ${[...index.keys()].join(', ')})${hint}`);
    }
    labels.add(i);
  }
  return [...labels].sort((a, b) => a - b);
}

/**
 * Existence checks by directory listing: one `readdir` per folder instead of one `stat` per file, which matters
 * for splits of ten thousand images.
 */
export class FileIndex {
  private readonly listings = new Map<string, Promise<Set<string> | undefined>>();

  /** Entry names of `dir`, or undefined if it does not exist. Other errors (EACCES...) are DataErrors. */
  list(dir: string): Promise<Set<string> | undefined> {
    let listing = this.listings.get(dir);
    if (!listing) {
      listing = readdir(dir).then(
        (names) => new Set(names),
        (error: NodeJS.ErrnoException) => {
          if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined;
          throw new DataError(dir, `cannot list folder (${describeCause(error)})`, { cause: error });
        },
      );
      this.listings.set(dir, listing);
    }
    return listing;
  }

  async exists(path: string): Promise<boolean> {
    return (await this.list(dirname(path)))?.has(basename(path)) ?? false;
  }

  /** `stem` + the first of `extensions` that exists, else undefined. */
  async findWithExtension(stem: string, extensions: readonly string[]): Promise<string | undefined> {
    const names = await this.list(dirname(stem));
    if (!names) return undefined;
    const base = basename(stem);
    for (const ext of extensions) {
      // Cameras and Windows tools often write upper-case extensions (.JPG).
      for (const variant of [ext, ext.toUpperCase()]) if (names.has(base + variant)) return stem + variant;
    }
    return undefined;
  }
}

/** `fn` over `inputs` with at most `limit` calls in flight (bounded open files); results keep input order. */
export async function mapLimit<T, R>(inputs: readonly T[], limit: number, fn: (input: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(inputs.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < inputs.length) {
      const i = next++;
      try {
        results[i] = await fn(inputs[i] as T, i);
      } catch (error) {
        failed = true; // stop the other workers from starting new work
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, inputs.length) }, worker));
  return results;
}

/** Same names in the same order. */
export function sameList(a: readonly unknown[], b: readonly unknown[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** `path` without its extension. */
export function stripExtension(path: string): string {
  return path.slice(0, path.length - extname(path).length);
}

/** Parse a JSON file; unreadable or invalid JSON is a DataError naming the file. */
export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new DataError(path, `cannot read file (${describeCause(error)})`, { cause: error });
  }
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (error) {
    throw new DataError(path, `invalid JSON (${describeCause(error)})`, { cause: error });
  }
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Items checked concurrently, then judged in input order: under 'fail' the first bad item in file order is the
 * one thrown, whatever order the checks finished in. Items left without a tag by `unknownTags: 'drop'` are left out.
 */
export function applyPolicy(
  checked: readonly ({ id: string; item: DatasetItem } | { id: string; error: unknown } | { id: string; droppedAll: true })[],
  policy: BadFilePolicy,
  log: BadFileLog,
): DatasetItem[] {
  const items: DatasetItem[] = [];
  for (const outcome of checked) {
    if ('item' in outcome) items.push(outcome.item);
    else if ('error' in outcome) handleBadFile(policy, log, outcome.error, outcome.id);
  }
  return items;
}

/** The tags dropped over a reader's checked items (file order), and the items left without any tag by it. */
export function droppedOf(checked: readonly { id: string; dropped?: DroppedTag[]; droppedAll?: boolean }[]): {
  droppedTags: DroppedTag[]; droppedItems: string[];
} {
  return {
    droppedTags: checked.flatMap((c) => c.dropped ?? []),
    droppedItems: checked.filter((c) => c.droppedAll).map((c) => c.id),
  };
}
