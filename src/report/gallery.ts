// The report's image gallery: each row is one image and its maps side by side (CAM heatmap, seeds, refined
// masks, predictions, ground truth), each cell a thumbnail embedded as a data URI.
//
// Photographic cells (the image, the CAM overlay) are JPEG: as PNG they are about 8x larger (12 voc-mini
// thumbnails: 1.6 MiB against 0.19 MiB as data URIs), and a gallery of a few dozen would make the page many
// megabytes. Label maps are lossless palette PNGs in the VOC colours (what `encodeMask` writes), so every class
// colour in the page is exact.
import { existsSync } from 'node:fs';
import sharp from 'sharp';
import { encode as encodePng } from 'fast-png';
import { type LabelMap, type RgbImage, IGNORE_INDEX, decodeImage, encodeMask, readMask, resizeBilinear, resizeNearest } from '../data/index.js';
import { readCam } from '../cams/format.js';

/** Longest side of a thumbnail in pixels. */
export const THUMB_MAX_SIDE = 240;

/** The classic "jet" colormap (MATLAB/OpenCV): 0 dark blue (0,0,128), 0.5 light green, 1 dark red (128,0,0). */
export function jet(v: number): [number, number, number] {
  const t = Math.min(1, Math.max(0, Number.isFinite(v) ? v : 0));
  const channel = (centre: number) => Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - centre))));
  return [channel(3), channel(2), channel(1)];
}

/** The size that fits `maxSide` keeping the aspect ratio (never enlarges). */
export function thumbSize(width: number, height: number, maxSide = THUMB_MAX_SIDE): { width: number; height: number } {
  const s = Math.min(1, maxSide / Math.max(width, height));
  return { width: Math.max(1, Math.round(width * s)), height: Math.max(1, Math.round(height * s)) };
}

/** Per-pixel maximum over the CAM planes (planar, `planes` x width x height); all zero without planes. */
export function camMaxMap(cams: Float32Array, planes: number, width: number, height: number): Float32Array {
  const n = width * height;
  if (cams.length !== planes * n) throw new RangeError(`CAM data has ${cams.length} values, expected ${planes}x${height}x${width}`);
  const out = new Float32Array(n);
  for (let k = 0; k < planes; k++) {
    const plane = cams.subarray(k * n, (k + 1) * n);
    for (let i = 0; i < n; i++) if (plane[i]! > out[i]!) out[i] = plane[i]!;
  }
  return out;
}

/** The heatmap blended on the image: (1 - alpha) * image + alpha * jet(score), as CAM visualisations usually do. */
export function heatmapOverlay(image: RgbImage, scores: Float32Array, alpha = 0.5): RgbImage {
  const n = image.width * image.height;
  if (scores.length !== n) throw new RangeError(`heatmap has ${scores.length} values for a ${image.width}x${image.height} image`);
  const data = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++) {
    const c = jet(scores[i]!);
    for (let ch = 0; ch < 3; ch++) data[3 * i + ch] = Math.round((1 - alpha) * image.data[3 * i + ch]! + alpha * c[ch]!);
  }
  return { width: image.width, height: image.height, channels: 3, data };
}

/** An RGB image as a JPEG data URI (photographic content). */
export async function jpegDataUri(image: RgbImage, quality = 85): Promise<string> {
  const bytes = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).jpeg({ quality }).toBuffer();
  return `data:image/jpeg;base64,${bytes.toString('base64')}`;
}

/** An RGB image as a lossless PNG data URI. */
export function pngDataUri(image: RgbImage): string {
  const bytes = encodePng({ width: image.width, height: image.height, data: image.data, channels: 3, depth: 8 });
  return `data:image/png;base64,${Buffer.from(bytes).toString('base64')}`;
}

/** A label map as a VOC-palette PNG data URI (255 renders as the VOC void colour). */
export function maskDataUri(mask: LabelMap): string {
  return `data:image/png;base64,${Buffer.from(encodeMask(mask)).toString('base64')}`;
}

export type GalleryCell =
  | { kind: 'image'; src: string; alt: string; caption?: string }
  | { kind: 'missing'; text: string };

export interface GalleryRow {
  id: string;
  cells: GalleryCell[];
}

/** One column after the image: a CAM file (shown as a heatmap) or a label-map PNG. */
export interface GalleryColumn {
  title: string;
  kind: 'cam' | 'mask';
  /** The file for an image id. */
  path: (id: string) => string;
}

export interface Gallery {
  title: string;
  /** Column headings, the image's first. */
  columns: string[];
  rows: GalleryRow[];
  /** Label values that appear in the gallery's masks (for the colour legend). */
  labels: number[];
}

/**
 * One gallery row: the image thumbnail then one cell per column. A missing file is a "missing" cell, and so is a
 * file that cannot be read or does not match the image's size (with the reason): one bad file costs one cell.
 * `classNames` names the foreground classes (mask id = index + 1) for the CAM captions.
 */
export async function galleryRow(id: string, imagePath: string, columns: readonly GalleryColumn[], labels: Set<number>,
  classNames: readonly string[] = []): Promise<GalleryRow> {
  let image: RgbImage;
  try {
    image = await decodeImage(imagePath);
  } catch (e) {
    return { id, cells: [{ kind: 'missing', text: (e as Error).message }, ...columns.map(() => ({ kind: 'missing' as const, text: 'no image' }))] };
  }
  const size = thumbSize(image.width, image.height);
  const thumb = resizeBilinear(image, size.width, size.height) as RgbImage;
  const cells: GalleryCell[] = [{ kind: 'image', src: await jpegDataUri(thumb), alt: id }];
  for (const col of columns) {
    const path = col.path(id);
    if (!existsSync(path)) {
      cells.push({ kind: 'missing', text: `no ${col.title.toLowerCase()}` });
      continue;
    }
    try {
      cells.push(col.kind === 'cam'
        ? await camCell(path, image, thumb, classNames)
        : await maskCell(path, image, size, labels));
    } catch (e) {
      cells.push({ kind: 'missing', text: (e as Error).message });
    }
  }
  return { id, cells };
}

async function camCell(path: string, image: RgbImage, thumb: RgbImage, classNames: readonly string[]): Promise<GalleryCell> {
  const cam = readCam(path);
  if (cam.width !== image.width || cam.height !== image.height) {
    throw new Error(`${path}: CAM is ${cam.width}x${cam.height}, its image ${image.width}x${image.height}`);
  }
  const peak = camMaxMap(cam.cams, cam.labels.length, cam.width, cam.height);
  const small = resizeBilinear({ width: cam.width, height: cam.height, channels: 1, data: peak }, thumb.width, thumb.height);
  const names = cam.labels.map((l) => classNames[l] ?? `class ${l}`);
  return {
    kind: 'image',
    src: await jpegDataUri(heatmapOverlay(thumb, small.data as Float32Array)),
    alt: `CAM ${cam.id}`,
    caption: names.length ? `max of: ${names.join(', ')}` : 'no labels',
  };
}

async function maskCell(path: string, image: RgbImage, size: { width: number; height: number }, labels: Set<number>): Promise<GalleryCell> {
  const mask = await readMask(path);
  if (mask.width !== image.width || mask.height !== image.height) {
    throw new Error(`${path}: mask is ${mask.width}x${mask.height}, its image ${image.width}x${image.height}`);
  }
  const small = resizeNearest(mask, size.width, size.height);
  for (const v of small.data) labels.add(v);
  return { kind: 'image', src: maskDataUri(small), alt: path.slice(path.lastIndexOf('/') + 1) };
}

/** The legend's entries for label values: name and VOC colour; 255 is void (GT) or uncertain (pseudo-masks). */
export function legendEntries(values: Iterable<number>, classNames: readonly string[], palette: readonly (readonly [number, number, number])[]):
  { value: number; name: string; rgb: readonly [number, number, number] }[] {
  return [...new Set(values)].sort((a, b) => a - b).map((v) => ({
    value: v,
    name: v === 0 ? 'background' : v === IGNORE_INDEX ? 'void / uncertain' : (classNames[v - 1] ?? `class ${v}`),
    rgb: palette[v] ?? [0, 0, 0],
  }));
}
