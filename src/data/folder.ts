/**
 * User folder reader: a folder of images plus a labels file mapping image paths (relative to the folder) to tags.
 *
 * CSV rule: RFC 4180 fields (comma-separated; a field may be double-quoted, with "" for a quote, and may then
 * contain commas and newlines). The first field is the image path; every further field holds tags separated by
 * `;` or `|`, trimmed. Spaces do not separate tags, so multi-word class names ("potted plant") work:
 *
 *   path,tags
 *   img/001.jpg,cat;dog
 *   img/002.jpg,"person|potted plant"
 *   img/003.jpg,cat,dog          (extra fields are more tags)
 *   img/004.jpg,                 (no tags: background only)
 *
 * The first row is a header, and skipped, when its first field is one of path, image, file, filename,
 * image_path, img (any case).
 *
 * JSON: `{"<path>": ["tag", ...], ...}` or `{"classes": [...], "labels": {"<path>": [...]}}`.
 *
 * Classes: the explicit `classes` option, else the file's "classes", else all tags in sorted order (give the
 * classes explicitly when masks are used, since mask ids follow the class order). If both the option and the
 * file give classes they must be equal.
 */
import { readFile } from 'node:fs/promises';
import { extname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { DatasetItem, DroppedTag, ReadResult, UnknownTagPolicy } from './dataset.js';
import {
  FileIndex,
  applyPolicy,
  classIndex,
  droppedOf,
  isPlainObject,
  mapLimit,
  readJsonFile,
  sameList,
  stripExtension,
  tagsToLabels,
} from './files.js';
import { BadFileLog, DataError, describeCause, type BadFileOptions } from './errors.js';

export interface FolderOptions extends BadFileOptions {
  /** The image folder; paths in the labels file are relative to it. */
  root: string;
  /** CSV or JSON labels file (`.json` is JSON, `.csv` is CSV, anything else is sniffed from its first character). */
  labels: string;
  /** Foreground classes in mask-id order. */
  classes?: readonly string[];
  /** Folder of ground-truth masks for scoring: `<masks>/<image path without extension>.png`, used if present. */
  masks?: string;
  /** A tag outside the classes: the item is a bad file ('bad', the default) or the tag is dropped ('drop'). */
  unknownTags?: UnknownTagPolicy;
}

interface Entry {
  path: string;
  tags: string[];
  /** Where in the labels file, for messages: `line 7` or `key "img/1.jpg"`. */
  where: string;
}

const HEADER_NAMES = new Set(['path', 'image', 'file', 'filename', 'image_path', 'img']);

export async function readFolder(options: FolderOptions): Promise<ReadResult> {
  const root = resolve(options.root);
  const labelsFile = options.labels;
  const policy = options.onBadFile ?? 'fail';
  const badFiles = options.badFiles ?? new BadFileLog();
  const files = new FileIndex();

  const { entries, fileClasses } = await readLabelsFile(labelsFile);
  const given = options.classes && [...options.classes];
  if (given && fileClasses && !sameList(given, fileClasses)) {
    throw new DataError(labelsFile, `"classes" (${fileClasses.join(', ')}) differ from the classes given (${given.join(', ')})`);
  }
  const classes = given ?? fileClasses ?? [...new Set(entries.flatMap((e) => e.tags))].sort();
  const index = classIndex(classes, options.classes ? 'classes option' : labelsFile);

  // Ids and duplicates first, in file order, so "first at" always names the earlier line.
  const seen = new Map<string, string>();
  const planned = entries.map((entry) => {
    const relPath = entry.path.replace(/\\/g, '/');
    const imagePath = isAbsolute(relPath) ? relPath : join(root, relPath);
    const id = stripExtension(relative(root, imagePath).split(sep).join('/'));
    const firstAt = seen.get(id);
    if (firstAt === undefined) seen.set(id, entry.where);
    return { entry, imagePath, id, firstAt };
  });
  const drop = options.unknownTags === 'drop';
  const checked = await mapLimit(planned, 32, async ({ entry, imagePath, id, firstAt }) => {
    const dropped: DroppedTag[] = [];
    try {
      if (firstAt !== undefined) {
        throw new DataError(labelsFile, `${entry.where}: duplicate entry for "${entry.path}" (first at ${firstAt})`);
      }
      const labels = tagsToLabels(entry.tags, index, labelsFile, `${entry.where} ("${entry.path}")`, drop ? dropped : undefined);
      if (dropped.length && labels.length === 0) return { id, dropped, droppedAll: true as const };
      if (!(await files.exists(imagePath))) {
        throw new DataError(imagePath, `image not found (listed in ${labelsFile}, ${entry.where})`);
      }
      const item: DatasetItem = { id, imagePath, labels };
      if (options.masks) {
        const maskPath = join(options.masks, `${id}.png`);
        if (await files.exists(maskPath)) item.maskPath = maskPath;
      }
      return { id, item, dropped };
    } catch (error) {
      return { id, error };
    }
  });
  const items = applyPolicy(checked, policy, badFiles);
  if (!drop) return { classes, items, badFiles };
  return { classes, items, badFiles, ...droppedOf(checked) };
}

async function readLabelsFile(path: string): Promise<{ entries: Entry[]; fileClasses?: string[] }> {
  const ext = extname(path).toLowerCase();
  if (ext === '.json') return parseLabelsJson(await readJsonFile(path), path);
  let text: string;
  try {
    text = (await readFile(path, 'utf8')).replace(/^\uFEFF/, '');
  } catch (error) {
    throw new DataError(path, `cannot read labels file (${describeCause(error)})`, { cause: error });
  }
  if (ext !== '.csv' && text.trimStart().startsWith('{')) {
    try {
      return parseLabelsJson(JSON.parse(text), path);
    } catch (error) {
      if (error instanceof DataError) throw error;
      throw new DataError(path, `invalid JSON (${describeCause(error)})`, { cause: error });
    }
  }
  return { entries: parseLabelsCsv(text, path) };
}

function parseLabelsJson(parsed: unknown, path: string): { entries: Entry[]; fileClasses?: string[] } {
  if (!isPlainObject(parsed)) throw new DataError(path, 'expected a JSON object mapping image paths to tag lists');
  let map: Record<string, unknown> = parsed;
  let fileClasses: string[] | undefined;
  if (isPlainObject(parsed.labels)) {
    map = parsed.labels;
    if (parsed.classes !== undefined) {
      if (!Array.isArray(parsed.classes) || !parsed.classes.every((c) => typeof c === 'string')) {
        throw new DataError(path, '"classes" must be an array of class names');
      }
      fileClasses = parsed.classes;
    }
  }
  const entries = Object.entries(map).map(([key, tags]): Entry => {
    if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) {
      throw new DataError(path, `key "${key}": expected an array of tags, got ${JSON.stringify(tags)}`);
    }
    return { path: key, tags: tags.map((t) => t.trim()).filter((t) => t !== ''), where: `key "${key}"` };
  });
  return fileClasses ? { entries, fileClasses } : { entries };
}

function parseLabelsCsv(text: string, path: string): Entry[] {
  const entries: Entry[] = [];
  let firstRecord = true;
  for (const record of parseCsv(text, path)) {
    const [head = '', ...rest] = record.fields;
    const file = head.trim();
    if (file === '' && rest.every((f) => f.trim() === '')) continue; // blank line
    if (firstRecord) {
      firstRecord = false;
      if (HEADER_NAMES.has(file.toLowerCase())) continue;
    }
    if (file === '') throw new DataError(path, `line ${record.line}: empty image path`);
    const tags = rest.flatMap((f) => f.split(/[;|]/)).map((t) => t.trim()).filter((t) => t !== '');
    entries.push({ path: file, tags, where: `line ${record.line}` });
  }
  return entries;
}

/** RFC 4180 records with the (1-based) line each starts on. */
function parseCsv(text: string, path: string): { fields: string[]; line: number }[] {
  const records: { fields: string[]; line: number }[] = [];
  let fields: string[] = [];
  let field = '';
  let line = 1;
  let recordLine = 1;
  let i = 0;
  const endRecord = () => {
    fields.push(field);
    records.push({ fields, line: recordLine });
    fields = [];
    field = '';
  };
  while (i < text.length) {
    const ch = text[i];
    if (ch === '"' && field.trim() === '') {
      // Quoted field: read to the closing quote; "" is a literal quote.
      const openLine = line;
      field = '';
      i++;
      for (;;) {
        if (i >= text.length) throw new DataError(path, `line ${openLine}: unterminated quoted field`);
        const c = text[i];
        if (c === '"') {
          if (text[i + 1] === '"') {
            field += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (c === '\n') line++;
        field += c;
        i++;
      }
      continue;
    }
    if (ch === ',') {
      fields.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      endRecord();
      line++;
      recordLine = line;
    } else {
      field += ch;
    }
    i++;
  }
  if (field !== '' || fields.length > 0) endRecord();
  return records;
}
