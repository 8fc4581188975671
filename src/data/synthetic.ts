/**
 * The built-in demo's dataset: small synthetic tagged images on which the plain CAM really misses object extent.
 *
 * Each object is a large blob-shaped body with one small coloured "cap" inside it near one end. The body's colour
 * is drawn from a palette SHARED by all classes, so it tells nothing about the class; only the cap's colour does.
 * A classifier trained on image-level tags therefore fires on the cap and its surroundings and misses the far end
 * of the body, the situation that CAM refinements (dense CRF, affinity random walk) exist for. To make that
 * recovery possible, the body is one light, low-saturation colour with hard edges (smoothly shaded along its
 * length, so that colour-aware refinements grow regions gradually rather than all at once), on a darker textured
 * background (coarse blotches plus per-pixel noise). Ground-truth masks cover the whole object, body and cap.
 *
 * Written in the VOC layout that `readVoc` reads (with `classes: SYNTHETIC_CLASSES`):
 *   JPEGImages/<id>.png                          lossless RGB PNGs
 *   SegmentationClass/<id>.png                   palette masks, 0 background, 1..C the classes (every image)
 *   ImageSets/Segmentation/train_aug.txt         the images trained on (tags only)
 *   ImageSets/Segmentation/train.txt             a subset of train_aug whose pseudo-masks are scored
 *   ImageSets/Segmentation/val.txt               held out (thresholds are chosen here; the segmenter is scored here)
 *   image_labels.json                            {"classes": [...], "labels": {id: [class names]}}
 *   synthetic.json                               what was generated (options and counts), for reuse checks
 * Everything is a pure function of the options: image k of a split draws from `new Rng(seed, split, k)`, so the
 * same seed gives the same bytes, and changing the number of training images leaves the validation images alone.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encode as encodePng } from 'fast-png';
import { DataError, describeCause } from './errors.js';
import type { LabelMap } from './image.js';
import { writeMask } from './mask.js';
import { Rng } from './rng.js';

type Rgb = [number, number, number];

/** The classes, in mask-id order (id = index + 1), each named after the colour of its cap. */
export const SYNTHETIC_CLASSES = ['redcap', 'greencap', 'bluecap', 'goldcap'] as const;

/** The cap colour of each class: saturated, unlike anything else in the images (bodies and background are greyish). */
export const CAP_COLOURS: readonly Rgb[] = [
  [220, 40, 40],
  [40, 185, 60],
  [45, 85, 225],
  [235, 190, 30],
];

/** Body colours, shared by every class: light and unsaturated, so far from both the caps and the background. */
export const BODY_COLOURS: readonly Rgb[] = [
  [190, 170, 145],
  [150, 170, 195],
  [185, 170, 205],
  [165, 195, 160],
  [205, 200, 180],
];

export interface SyntheticOptions {
  /** Output folder (created; existing files of the same names are overwritten). */
  root: string;
  /** Default 0. */
  seed?: number;
  /** Training images (split train_aug). Default 256. */
  train?: number;
  /** Of those, how many are scored as split `train` (the first ones). Default min(train, 64). */
  scored?: number;
  /** Held-out images (split val). Default 64. */
  val?: number;
  /** Width and height in pixels. Default 96. */
  size?: number;
}

export interface SyntheticSummary {
  root: string;
  classes: string[];
  seed: number;
  size: number;
  /** Images per split list. */
  splits: { train_aug: number; train: number; val: number };
  /** Objects over all images, and how many images hold two. */
  objects: number;
  twoObjectImages: number;
  /** Mean share of an object's pixels covered by its cap (the part a plain CAM finds). */
  capShare: number;
  /** Mean share of the image covered by objects. */
  foregroundShare: number;
}

/** One rendered image: RGB pixels (HWC), its mask, its tags, and what was drawn per object. */
export interface SyntheticImage {
  rgb: Uint8Array;
  mask: LabelMap;
  labels: number[];
  /** Class, pixels (body and cap), cap pixels, and the body's colour (an index into BODY_COLOURS). */
  objects: { label: number; pixels: number; capPixels: number; bodyColour: number }[];
}

/**
 * The look, in one place (lengths relative to the image size or to the body's semi-axes). Tuned with the demo's
 * TinyNet CAM baseline (configs/demo.json): its CAM is a blob around the cap that spills a little past the body's
 * sides and misses its far end (seed precision and recall both ~50-65 %), and a dense CRF of the seeds gains.
 * Without the shading, the CRF of uniform bodies was all or nothing per object (each body votes as one colour).
 */
const LOOK = {
  /** Body semi-major axis a, as a share of the image size (x 0.75 when the image holds two objects). */
  majorAxis: [0.26, 0.4],
  /** Semi-minor axis b, as a share of a: elongated bodies, so that one end is far from the cap. */
  minorAxis: [0.4, 0.65],
  /** Outline wobble: amplitudes of the 2nd and 3rd harmonics of the radius. */
  wobble: 0.1,
  /** Cap radius as a share of b, and its centre's distance from the body's centre as a share of a. */
  capRadius: [0.3, 0.4],
  capOffset: 0.5,
  /** The body darkens linearly by this much (0-255 levels) from the cap's end to the far end: shading. */
  bodyShading: 50,
  /** Per-pixel noise (+-) on bodies and caps, and on the background. */
  objectNoise: 4,
  backgroundNoise: 14,
  /** Background: a grey level in this range, tinted by up to +-12 per channel, with blotches of +-22. */
  backgroundGrey: [40, 90],
  /** Gap between two objects, in pixels. */
  gap: 3,
} as const;

/** What the generator draws per object: an ellipse with a wobbly outline. */
interface Blob {
  cx: number;
  cy: number;
  /** Semi-axes (a along the rotated x axis, the cap's axis) and rotation. */
  a: number;
  b: number;
  angle: number;
  /** Low harmonics of the outline: r(phi) = 1 + sum amp_k cos(k phi + phase_k) in ellipse coordinates. */
  harmonics: { k: number; amp: number; phase: number }[];
}

const SPLIT_CODE = { train_aug: 0, val: 1 } as const;

function clampByte(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

/** Pixels inside the blob's outline, as a 0/1 map. */
function rasterBlob(blob: Blob, size: number): Uint8Array {
  const inside = new Uint8Array(size * size);
  const cos = Math.cos(blob.angle);
  const sin = Math.sin(blob.angle);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const dx = x + 0.5 - blob.cx;
      const dy = y + 0.5 - blob.cy;
      const u = (dx * cos + dy * sin) / blob.a;
      const v = (-dx * sin + dy * cos) / blob.b;
      const rho = Math.hypot(u, v);
      const phi = Math.atan2(v, u);
      let r = 1;
      for (const h of blob.harmonics) r += h.amp * Math.cos(h.k * phi + h.phase);
      if (rho < r) inside[y * size + x] = 1;
    }
  }
  return inside;
}

/** Coarse random values (a g x g grid) bilinearly interpolated to size x size: the background's blotches. */
function valueNoise(rng: Rng, size: number, grid: number): Float32Array {
  const g = new Float32Array((grid + 1) * (grid + 1));
  for (let i = 0; i < g.length; i++) g[i] = rng.uniform(-1, 1);
  const out = new Float32Array(size * size);
  for (let y = 0; y < size; y++) {
    const fy = ((y + 0.5) / size) * grid;
    const iy = Math.min(Math.floor(fy), grid - 1);
    const ty = fy - iy;
    for (let x = 0; x < size; x++) {
      const fx = ((x + 0.5) / size) * grid;
      const ix = Math.min(Math.floor(fx), grid - 1);
      const tx = fx - ix;
      const at = (i: number, j: number) => g[(iy + j) * (grid + 1) + ix + i]!;
      out[y * size + x] = (1 - ty) * ((1 - tx) * at(0, 0) + tx * at(1, 0)) + ty * ((1 - tx) * at(0, 1) + tx * at(1, 1));
    }
  }
  return out;
}

/** Marks every pixel within `gap` (Chebyshev distance) of the blob as occupied. */
function occupy(occupied: Uint8Array, body: Uint8Array, size: number, gap: number): void {
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (!body[y * size + x]) continue;
      for (let yy = Math.max(0, y - gap); yy <= Math.min(size - 1, y + gap); yy++) {
        for (let xx = Math.max(0, x - gap); xx <= Math.min(size - 1, x + gap); xx++) occupied[yy * size + xx] = 1;
      }
    }
  }
}

/**
 * Renders one image from its own random stream: 1 object, or 2 (with probability 1/2, not touching; when the
 * second does not fit in 40 tries the image keeps one); class, body colour, shape, size, rotation and the cap's
 * end drawn at random. Objects lie wholly inside the image.
 */
export function renderSyntheticImage(rng: Rng, size: number): SyntheticImage {
  const n = size * size;
  const rgb = new Uint8Array(n * 3);
  const mask = new Uint8Array(n);

  // Background: a dark, weakly tinted grey with coarse blotches and per-pixel noise.
  const grey = rng.uniform(LOOK.backgroundGrey[0], LOOK.backgroundGrey[1]);
  const base: Rgb = [grey + rng.uniform(-12, 12), grey + rng.uniform(-12, 12), grey + rng.uniform(-12, 12)];
  const blotches = valueNoise(rng, size, 4);
  for (let p = 0; p < n; p++) {
    const blotch = 22 * blotches[p]!;
    for (let c = 0; c < 3; c++) {
      rgb[p * 3 + c] = clampByte(base[c]! + blotch + rng.uniform(-LOOK.backgroundNoise, LOOK.backgroundNoise));
    }
  }

  const wanted = rng.bool(0.5) ? 2 : 1;
  const scale = wanted === 1 ? 1 : 0.75;
  const occupied = new Uint8Array(n);
  const objects: SyntheticImage['objects'] = [];
  for (let k = 0; k < wanted; k++) {
    for (let attempt = 0; attempt < 40; attempt++) {
      const a = size * scale * rng.uniform(LOOK.majorAxis[0], LOOK.majorAxis[1]);
      const b = a * rng.uniform(LOOK.minorAxis[0], LOOK.minorAxis[1]);
      const margin = a * (1 + 2 * LOOK.wobble) + 1; // the outline reaches at most a (1 + both amplitudes)
      if (size - 2 * margin <= 0) continue;
      const blob: Blob = {
        cx: rng.uniform(margin, size - margin),
        cy: rng.uniform(margin, size - margin),
        a, b,
        angle: rng.uniform(0, 2 * Math.PI),
        harmonics: [2, 3].map((h) => ({ k: h, amp: rng.uniform(0, LOOK.wobble), phase: rng.uniform(0, 2 * Math.PI) })),
      };
      const body = rasterBlob(blob, size);
      if (body.some((v, p) => v === 1 && occupied[p] === 1)) continue;

      const label = rng.int(SYNTHETIC_CLASSES.length);
      const bodyIndex = rng.int(BODY_COLOURS.length); // independent of the label: the body tells nothing
      const bodyColour = BODY_COLOURS[bodyIndex]!.map((v) => v + rng.uniform(-10, 10)) as Rgb;
      // The cap: a disc on the major axis, half way to the (randomly chosen) end, clipped to the body so that it
      // always lies inside the object.
      const end = rng.bool(0.5) ? 1 : -1;
      const [cos, sin] = [Math.cos(blob.angle), Math.sin(blob.angle)];
      const capR = b * rng.uniform(LOOK.capRadius[0], LOOK.capRadius[1]);
      const capX = blob.cx + end * LOOK.capOffset * a * cos;
      const capY = blob.cy + end * LOOK.capOffset * a * sin;
      const capColour = CAP_COLOURS[label]!;
      let pixels = 0;
      let capPixels = 0;
      for (let y = 0; y < size; y++) {
        for (let x = 0; x < size; x++) {
          const p = y * size + x;
          if (!body[p]) continue;
          pixels++;
          mask[p] = label + 1;
          const onCap = Math.hypot(x + 0.5 - capX, y + 0.5 - capY) < capR;
          let colour: readonly number[] = capColour;
          let shade = 0;
          if (onCap) {
            capPixels++;
          } else {
            // Position along the major axis: 0 at the cap's end, 1 at the far end.
            const along = (1 - (end * ((x + 0.5 - blob.cx) * cos + (y + 0.5 - blob.cy) * sin)) / a) / 2;
            shade = -LOOK.bodyShading * Math.min(Math.max(along, 0), 1);
            colour = bodyColour;
          }
          for (let c = 0; c < 3; c++) {
            rgb[p * 3 + c] = clampByte(colour[c]! + shade + rng.uniform(-LOOK.objectNoise, LOOK.objectNoise));
          }
        }
      }
      occupy(occupied, body, size, LOOK.gap);
      objects.push({ label, pixels, capPixels, bodyColour: bodyIndex });
      break;
    }
  }
  if (objects.length === 0) throw new Error(`renderSyntheticImage: no object fits in ${size} x ${size} pixels`);
  const labels = [...new Set(objects.map((o) => o.label))].sort((x, y) => x - y);
  return { rgb, mask: { width: size, height: size, data: mask }, labels, objects };
}

function checkCount(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new RangeError(`makeSyntheticDataset: ${name} must be an integer >= ${min}, got ${v}`);
}

async function writeBytes(path: string, bytes: Uint8Array | string): Promise<void> {
  try {
    await writeFile(path, bytes);
  } catch (error) {
    throw new DataError(path, `cannot write (${describeCause(error)})`, { cause: error });
  }
}

/** Generates the demo dataset under `options.root` (see the file comment) and says what it holds. */
export async function makeSyntheticDataset(options: SyntheticOptions): Promise<SyntheticSummary> {
  const seed = options.seed ?? 0;
  const train = options.train ?? 256;
  const scored = options.scored ?? Math.min(train, 64);
  const val = options.val ?? 64;
  const size = options.size ?? 96;
  checkCount('train', train, 1);
  checkCount('val', val, 1);
  checkCount('size', size, 32);
  checkCount('seed', seed, 0);
  if (!Number.isInteger(scored) || scored < 1 || scored > train) {
    throw new RangeError(`makeSyntheticDataset: scored must be an integer in 1..train (${train}), got ${scored}`);
  }
  const { root } = options;
  const dirs = { images: join(root, 'JPEGImages'), masks: join(root, 'SegmentationClass'), lists: join(root, 'ImageSets', 'Segmentation') };
  try {
    for (const d of Object.values(dirs)) await mkdir(d, { recursive: true });
  } catch (error) {
    throw new DataError(root, `cannot create the dataset folders (${describeCause(error)})`, { cause: error });
  }

  const labelsJson: Record<string, string[]> = {};
  const ids: Record<keyof typeof SPLIT_CODE, string[]> = { train_aug: [], val: [] };
  let objects = 0;
  let twoObjectImages = 0;
  let capShareSum = 0;
  let foreground = 0;
  for (const split of ['train_aug', 'val'] as const) {
    const count = split === 'train_aug' ? train : val;
    for (let k = 0; k < count; k++) {
      const id = `${split === 'val' ? 'val' : 'train'}_${String(k).padStart(4, '0')}`;
      const image = renderSyntheticImage(new Rng(seed, SPLIT_CODE[split], k), size);
      const png = encodePng({ width: size, height: size, data: image.rgb, depth: 8, channels: 3 });
      await writeBytes(join(dirs.images, `${id}.png`), png);
      await writeMask(join(dirs.masks, `${id}.png`), image.mask);
      labelsJson[id] = image.labels.map((l) => SYNTHETIC_CLASSES[l]!);
      ids[split].push(id);
      objects += image.objects.length;
      if (image.objects.length === 2) twoObjectImages++;
      for (const o of image.objects) {
        capShareSum += o.capPixels / o.pixels;
        foreground += o.pixels;
      }
    }
  }
  const lists = { train_aug: ids.train_aug, train: ids.train_aug.slice(0, scored), val: ids.val };
  for (const [name, list] of Object.entries(lists)) await writeBytes(join(dirs.lists, `${name}.txt`), `${list.join('\n')}\n`);
  await writeBytes(join(root, 'image_labels.json'), `${JSON.stringify({ classes: SYNTHETIC_CLASSES, labels: labelsJson })}\n`);

  const summary: SyntheticSummary = {
    root,
    classes: [...SYNTHETIC_CLASSES],
    seed,
    size,
    splits: { train_aug: train, train: scored, val },
    objects,
    twoObjectImages,
    capShare: capShareSum / objects,
    foregroundShare: foreground / ((train + val) * size * size),
  };
  await writeBytes(join(root, 'synthetic.json'), `${JSON.stringify({ format: 'weakseg-synthetic/1', ...summary }, null, 2)}\n`);
  return summary;
}
