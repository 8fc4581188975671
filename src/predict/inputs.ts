// The images `weakseg predict` reads: one file, every image under a folder (recursively, by extension), or the
// paths listed in a text file (one per line, relative to the list's folder; blank lines and #-comments skipped).
// Each gets an id, its path relative to the folder (or list) without the extension, which names its outputs.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { IMAGE_EXTENSIONS } from '../data/files.js';

export interface PredictInput {
  id: string;
  path: string;
}

function isImageName(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(extname(name).toLowerCase());
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (isImageName(e.name)) out.push(p);
  }
  return out;
}

/** Ids from paths relative to `base`; two files that differ only by extension keep it in their ids (a_jpg, a_png). */
function withIds(paths: string[], base: string | null): PredictInput[] {
  const stemOf = (p: string) => {
    const rel = base ? relative(base, p) : basename(p);
    const r = rel.startsWith('..') || isAbsolute(rel) ? basename(p) : rel;
    return r.slice(0, r.length - extname(r).length).split(sep).join('/');
  };
  const stems = paths.map(stemOf);
  const count = new Map<string, number>();
  for (const s of stems) count.set(s, (count.get(s) ?? 0) + 1);
  const seen = new Set<string>();
  return paths.map((path, i) => {
    const stem = stems[i]!;
    const id = count.get(stem)! > 1 ? `${stem}_${extname(path).slice(1).toLowerCase()}` : stem;
    if (seen.has(id)) throw new Error(`${path}: two inputs would write the same outputs '${id}'`);
    seen.add(id);
    return { id, path };
  });
}

/** The images of `--input FILE_OR_FOLDER` or `--list FILE`; a missing path is an error naming it. */
export function listInputs(o: { input?: string; list?: string }): PredictInput[] {
  if (!o.input === !o.list) throw new Error('predict: give exactly one of --input FILE_OR_FOLDER and --list FILE');
  if (o.input) {
    const path = resolve(o.input);
    let st;
    try {
      st = statSync(path);
    } catch {
      throw new Error(`${o.input}: no such file or folder`);
    }
    if (!st.isDirectory()) return withIds([path], null);
    const files = walk(path);
    if (!files.length) throw new Error(`${o.input}: no images (${IMAGE_EXTENSIONS.join(' ')}) in this folder`);
    return withIds(files, path);
  }
  const list = resolve(o.list!);
  let text: string;
  try {
    text = readFileSync(list, 'utf8');
  } catch (e) {
    throw new Error(`${o.list}: cannot read the list (${(e as Error).message})`);
  }
  const base = dirname(list);
  const paths = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#')).map((l) => resolve(base, l));
  if (!paths.length) throw new Error(`${o.list}: the list names no image`);
  return withIds(paths, base);
}
