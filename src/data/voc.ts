/**
 * PASCAL VOC layout reader:
 *
 *   root/JPEGImages/<id>.jpg
 *   root/SegmentationClass/<id>.png  or  root/SegmentationClassAug/<id>.png   (optional, for scoring)
 *   root/ImageSets/Segmentation/<split>.txt
 *   root/Annotations/<id>.xml        (optional: image-level labels)
 *   root/image_labels.json           (optional: {"classes": [...], "labels": {id: [names]}})
 */
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VOC_CLASSES, type DatasetItem, type DroppedTag, type ReadResult, type UnknownTagPolicy } from './dataset.js';
import {
  FileIndex,
  IMAGE_EXTENSIONS,
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
import { IGNORE_INDEX, readMask } from './mask.js';
import { imageSize } from './image.js';

export type VocLabelSource = 'xml' | 'json' | 'mask';

export interface VocOptions extends BadFileOptions {
  root: string;
  /** Split name, read from `ImageSets/Segmentation/<split>.txt` (e.g. 'train_aug', 'train', 'val'). */
  split: string;
  /** Foreground classes in mask-id order. Default: the 20 VOC classes. */
  classes?: readonly string[];
  /**
   * Labels JSON path. Default: `<root>/image_labels.json` when that file exists. `false` disables it.
   * If the file declares `classes`, they must equal the classes in use (mask ids depend on the order).
   */
  labelsJson?: string | false;
  /** Mask folder under root. Default: `SegmentationClass` if present, else `SegmentationClassAug`. */
  maskDir?: string;
  /**
   * Where image-level labels come from, tried in this order for each item (default: xml, json, mask).
   * Drop 'mask' to guarantee that no pixel annotation leaks into the labels.
   */
  labelSources?: readonly VocLabelSource[];
  /**
   * A labels-JSON tag outside the classes: the item is a bad file ('bad', the default) or the tag is dropped
   * ('drop'). Annotation names outside the classes are always left out, as the reference label builders do.
   */
  unknownTags?: UnknownTagPolicy;
}

export interface VocReadResult extends ReadResult {
  /** How many items took their labels from each source. */
  labelSources: Record<VocLabelSource, number>;
}

/** Read a VOC-layout split. Dataset-level faults (no split list, bad labels JSON) always throw. */
export async function readVoc(options: VocOptions): Promise<VocReadResult> {
  const { root, split } = options;
  const policy = options.onBadFile ?? 'fail';
  const badFiles = options.badFiles ?? new BadFileLog();
  const classes = [...(options.classes ?? VOC_CLASSES)];
  const index = classIndex(classes, 'classes option');
  const files = new FileIndex();
  const sources = options.labelSources ?? ['xml', 'json', 'mask'];

  const listed = await readSplit(root, split, files);
  const ids = listed.map((e) => e.id);
  const json = await readLabelsJson(root, options.labelsJson, classes, files);
  const maskDir =
    options.maskDir ?? ((await files.list(join(root, 'SegmentationClass'))) ? 'SegmentationClass' : 'SegmentationClassAug');
  const annotations = join(root, 'Annotations');

  const counts: Record<VocLabelSource, number> = { xml: 0, json: 0, mask: 0 };
  const firstLine = new Map<string, number>();
  const drop = options.unknownTags === 'drop';
  const checked = await mapLimit(listed, 32, async ({ id, line }) => {
    const dropped: DroppedTag[] = [];
    try {
      const first = firstLine.get(id) ?? (firstLine.set(id, line), line);
      if (first !== line) throw new DataError(listed.path, `line ${line}: duplicate id "${id}" (first at line ${first})`);
      const imageStem = join(root, 'JPEGImages', id);
      const imagePath = await files.findWithExtension(imageStem, IMAGE_EXTENSIONS);
      if (!imagePath) throw new DataError(`${imageStem}.jpg`, `image not found (listed in split "${split}")`);
      const maskCandidate = join(root, maskDir, `${id}.png`);
      const maskPath = (await files.exists(maskCandidate)) ? maskCandidate : undefined;
      // Checked now, not when scoring after hours of training: size against the image, values against the classes.
      const maskLabels = maskPath ? await checkedMaskLabels(maskPath, imagePath, classes.length) : undefined;

      for (const source of sources) {
        let labels: number[] | undefined;
        if (source === 'xml') {
          const xmlPath = join(annotations, `${id}.xml`);
          if (await files.exists(xmlPath)) labels = await labelsFromXml(xmlPath, index);
        } else if (source === 'json') {
          const tags = json?.labels.get(id);
          if (json && tags) labels = tagsToLabels(tags, index, json.path, `labels["${id}"]`, drop ? dropped : undefined);
          if (labels && dropped.length && labels.length === 0) return { id, dropped, droppedAll: true as const };
        } else if (maskLabels) {
          labels = maskLabels;
        }
        if (labels) {
          counts[source]++;
          const item: DatasetItem = maskPath ? { id, imagePath, maskPath, labels } : { id, imagePath, labels };
          return { id, item, dropped };
        }
      }
      throw new DataError(
        imagePath,
        `no image-level labels for "${id}" (looked in: ${sources.map((s) => describeSource(s, json?.path)).join(', ')})`,
      );
    } catch (error) {
      return { id, error };
    }
  });
  const items = applyPolicy(checked, policy, badFiles);
  return { classes, items, badFiles, labelSources: counts, ...(drop ? droppedOf(checked) : {}) };
}

function describeSource(source: VocLabelSource, jsonPath: string | undefined): string {
  if (source === 'xml') return 'Annotations/<id>.xml';
  if (source === 'json') return jsonPath ?? 'labels JSON (none found)';
  return 'mask';
}

/** Ids from the split list: first token of each line; DeepLab-style path lists are reduced to their stem. */
async function readSplit(root: string, split: string, files: FileIndex): Promise<{ id: string; line: number }[] & { path: string }> {
  const listDir = join(root, 'ImageSets', 'Segmentation');
  const path = join(listDir, `${split}.txt`);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const available = [...((await files.list(listDir)) ?? [])].filter((n) => n.endsWith('.txt')).map((n) => n.slice(0, -4));
    const hint = available.length ? `; available splits: ${available.sort().join(', ')}` : '';
    throw new DataError(path, `cannot read split list (${describeCause(error)})${hint}`, { cause: error });
  }
  const ids = Object.assign([] as { id: string; line: number }[], { path });
  text.split(/\r?\n/).forEach((line, i) => {
    const token = line.trim().split(/\s+/)[0];
    if (!token) return;
    // e.g. "/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png"
    ids.push({ id: token.includes('/') || token.includes('.') ? stripExtension(token.slice(token.lastIndexOf('/') + 1)) : token, line: i + 1 });
  });
  if (ids.length === 0) throw new DataError(path, 'split list is empty');
  return ids;
}

interface LabelsJson {
  path: string;
  labels: Map<string, string[]>;
}

async function readLabelsJson(
  root: string,
  option: string | false | undefined,
  classes: readonly string[],
  files: FileIndex,
): Promise<LabelsJson | undefined> {
  if (option === false) return undefined;
  const path = option ?? join(root, 'image_labels.json');
  if (option === undefined && !(await files.exists(path))) return undefined;
  const parsed = await readJsonFile(path);
  if (!isPlainObject(parsed) || !isPlainObject(parsed.labels)) {
    throw new DataError(path, 'expected {"classes": [...], "labels": {id: [class names]}}');
  }
  if (parsed.classes !== undefined) {
    const declared = parsed.classes;
    if (!Array.isArray(declared) || !sameList(declared, classes)) {
      throw new DataError(
        path,
        `"classes" (${JSON.stringify(declared)}) differ from the classes in use (${classes.join(', ')}); ` +
          'mask ids follow the class order, so they must match',
      );
    }
  }
  const labels = new Map<string, string[]>();
  for (const [id, tags] of Object.entries(parsed.labels)) {
    if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string')) {
      throw new DataError(path, `labels["${id}"] must be an array of class names`);
    }
    labels.set(id, tags);
  }
  return { path, labels };
}

/**
 * Labels from a VOC annotation: the names of all `<object>`s, difficult and truncated ones included, and names
 * outside the class list skipped, as the reference label builders do (IRN/SEAM `make_cls_labels.py`).
 */
async function labelsFromXml(path: string, index: Map<string, number>): Promise<number[]> {
  let xml: string;
  try {
    xml = await readFile(path, 'utf8');
  } catch (error) {
    throw new DataError(path, `cannot read annotation (${describeCause(error)})`, { cause: error });
  }
  const labels = new Set<number>();
  for (const name of vocObjectNames(xml, path)) {
    const i = index.get(name);
    if (i !== undefined) labels.add(i);
  }
  return [...labels].sort((a, b) => a - b);
}

/**
 * Object names of a VOC annotation. A small tolerant extraction rather than a full XML parser: the VOC files are
 * flat and machine-written. Part names (`<part><name>head</name>`) are excluded; an `<object>` without its closing
 * tag is an error rather than a silently missed label.
 */
export function vocObjectNames(xml: string, source: string): string[] {
  const text = xml.replace(/<!--[\s\S]*?-->/g, '');
  if (!/<annotation[\s>]/.test(text)) throw new DataError(source, 'not a VOC annotation (no <annotation> element)');
  const opened = text.match(/<object[\s>]/g)?.length ?? 0;
  const blocks = [...text.matchAll(/<object[\s>]([\s\S]*?)<\/object>/g)].map((m) => m[1]);
  if (blocks.length !== opened) throw new DataError(source, `malformed XML: ${opened} <object> but ${blocks.length} </object>`);
  return blocks.map((block, k) => {
    const name = block.replace(/<part[\s>][\s\S]*?<\/part>/g, '').match(/<name>([\s\S]*?)<\/name>/)?.[1];
    if (name === undefined) throw new DataError(source, `object ${k + 1} has no <name>`);
    return decodeXmlText(name).trim();
  });
}

function decodeXmlText(text: string): string {
  return text
    .replace(/<!\[CDATA\[([\s\S]*?)\]\]>/g, '$1')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

/**
 * The classes present in a mask (ids 1..C, so label = id - 1; background and 255 are not labels), after checking
 * that it has the image's size and only values 0..C and 255. Checked once per file version in a process (several
 * stages open the same split).
 */
async function checkedMaskLabels(maskPath: string, imagePath: string, numClasses: number): Promise<number[]> {
  const key = JSON.stringify([maskPath, imagePath, numClasses, stamp(maskPath), stamp(imagePath)]);
  let checked = maskChecks.get(key);
  if (!checked) {
    checked = checkMask(maskPath, imagePath, numClasses);
    maskChecks.set(key, checked);
    checked.catch(() => maskChecks.delete(key));
  }
  return checked;
}

const maskChecks = new Map<string, Promise<number[]>>();

function stamp(path: string): string {
  try {
    const st = statSync(path);
    return `${st.size}:${st.mtimeMs}`;
  } catch {
    return 'absent';
  }
}

async function checkMask(maskPath: string, imagePath: string, numClasses: number): Promise<number[]> {
  const [mask, size] = await Promise.all([readMask(maskPath), imageSize(imagePath)]);
  if (mask.width !== size.width || mask.height !== size.height) {
    throw new DataError(maskPath, `mask is ${mask.width}x${mask.height} but its image ${imagePath} is ${size.width}x${size.height}`);
  }
  const seen = new Uint8Array(256);
  for (const v of mask.data) seen[v] = 1;
  const labels: number[] = [];
  for (let v = 1; v < 256; v++) {
    if (!seen[v] || v === IGNORE_INDEX) continue;
    if (v > numClasses) throw new DataError(maskPath, `mask value ${v} is not a class id (${numClasses} classes: ids 0..${numClasses}, and ${IGNORE_INDEX} for ignore)`);
    labels.push(v - 1);
  }
  return labels;
}
