/**
 * Training augmentation on HWC images (Uint8Array or Float32Array) with an optional aligned label map.
 *
 * Every random choice comes from the `Rng` passed in, so a run is reproducible from its seed. Geometric ops
 * transform image and mask together (bilinear for the image, nearest for the mask, which is never interpolated).
 */
import { resizeBilinear, resizeNearest, type HwcImage, type LabelMap } from './image.js';
import { IGNORE_INDEX } from './mask.js';
import type { Rng } from './rng.js';

type Pixels = Uint8Array | Float32Array;

/** An image with its (optional) mask of the same width and height. */
export interface Pair<T extends Pixels = Pixels> {
  image: HwcImage<T>;
  mask?: LabelMap;
}

/** Mean and std per channel, applied to pixels scaled to [0, 1]. */
export interface Normalization {
  mean: readonly number[];
  std: readonly number[];
}

/** torchvision/ImageNet statistics, used by the ResNet backbones of the reference methods. */
export const IMAGENET_NORM: Normalization = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
/** Maps [0, 1] to [-1, 1]: the normalisation of the MobileNetV2 weights. */
export const MOBILENET_V2_NORM: Normalization = { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] };

function checkPair(pair: Pair): void {
  const { image, mask } = pair;
  if (image.data.length !== image.width * image.height * image.channels) {
    throw new RangeError(`image data has ${image.data.length} values, expected ${image.width}x${image.height}x${image.channels}`);
  }
  if (mask && (mask.width !== image.width || mask.height !== image.height)) {
    throw new RangeError(`mask is ${mask.width}x${mask.height} but image is ${image.width}x${image.height}`);
  }
}

/** Resize image (bilinear) and mask (nearest) to width x height. */
function resizePair<T extends Pixels>(pair: Pair<T>, width: number, height: number): Pair<T> {
  const image = resizeBilinear(pair.image, width, height);
  return pair.mask ? { image, mask: resizeNearest(pair.mask, width, height) } : { image };
}

/** Scale both sides by `scale` (rounded, at least 1 px). */
export function rescale<T extends Pixels>(pair: Pair<T>, scale: number): Pair<T> {
  checkPair(pair);
  if (!(scale > 0)) throw new RangeError(`scale must be positive, got ${scale}`);
  return resizePair(pair, Math.max(1, Math.round(pair.image.width * scale)), Math.max(1, Math.round(pair.image.height * scale)));
}

/** Round half to even, as numpy's `np.round` and Python 3's `round` (the official resizes' size rounding). */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/**
 * Resize so the longer side is `long` px, aspect kept: IRN's `imutils.random_resize_long` (and PSA/SEAM's
 * `RandomResizeLong`) without the draw. The other side is rounded half to even, as they round.
 */
export function resizeLong<T extends Pixels>(pair: Pair<T>, long: number): Pair<T> {
  checkPair(pair);
  if (!Number.isInteger(long) || long < 1) throw new RangeError(`long side must be a positive integer, got ${long}`);
  const { width, height } = pair.image;
  const scale = long / Math.max(width, height);
  return resizePair(pair, Math.max(1, roundHalfEven(width * scale)), Math.max(1, roundHalfEven(height * scale)));
}

/** Resize the longer side to an integer drawn uniformly from [lo, hi], both included (`random.randint(lo, hi)`). */
export function randomResizeLong<T extends Pixels>(pair: Pair<T>, rng: Rng, range: readonly [number, number]): Pair<T> {
  const [lo, hi] = range;
  if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 1 && hi >= lo)) {
    throw new RangeError(`long-side range must be integers with 1 <= lo <= hi, got [${lo}, ${hi}]`);
  }
  return resizeLong(pair, lo + rng.int(hi - lo + 1));
}

/** Rescale by a factor drawn uniformly from [lo, hi] (IRN's `random_scale`, e.g. [0.5, 1.5]). */
export function randomRescale<T extends Pixels>(pair: Pair<T>, rng: Rng, range: readonly [number, number]): Pair<T> {
  const [lo, hi] = range;
  if (!(lo > 0 && hi >= lo)) throw new RangeError(`scale range must satisfy 0 < lo <= hi, got [${lo}, ${hi}]`);
  return rescale(pair, rng.uniform(lo, hi));
}

/** Mirror left-right. */
export function hflip<T extends Pixels>(pair: Pair<T>): Pair<T> {
  checkPair(pair);
  const { image, mask } = pair;
  const { width, height, channels: C } = image;
  const data = image.data.slice() as T;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) {
      const s = (row + x) * C;
      const d = (row + width - 1 - x) * C;
      for (let c = 0; c < C; c++) data[d + c] = image.data[s + c];
    }
  }
  const flipped: Pair<T> = { image: { width, height, channels: C, data } };
  if (mask) {
    const m = new Uint8Array(mask.data.length);
    for (let y = 0; y < height; y++) {
      const row = y * width;
      for (let x = 0; x < width; x++) m[row + width - 1 - x] = mask.data[row + x];
    }
    flipped.mask = { width, height, data: m };
  }
  return flipped;
}

/** Mirror left-right with probability p. */
export function randomHFlip<T extends Pixels>(pair: Pair<T>, rng: Rng, p = 0.5): Pair<T> {
  return rng.bool(p) ? hflip(pair) : pair;
}

export interface Crop<T extends Pixels = Pixels> extends Pair<T> {
  /** 1 where the crop shows image pixels, 0 on padding; lets pixel losses ignore the padding. */
  valid: Uint8Array;
}

/**
 * Random `cropWidth` x `cropHeight` window, IRN/PSA style: along an axis longer than the crop a random offset
 * into the image is drawn; along a shorter one the whole image is placed at a random offset in the crop and the
 * rest is padding. Padded image pixels get `fill` (one value or one per channel), padded mask pixels get 255.
 */
export function randomCrop<T extends Pixels>(
  pair: Pair<T>,
  rng: Rng,
  cropWidth: number,
  cropHeight = cropWidth,
  fill: number | readonly number[] = 0,
): Crop<T> {
  checkPair(pair);
  if (!Number.isInteger(cropWidth) || !Number.isInteger(cropHeight) || cropWidth < 1 || cropHeight < 1) {
    throw new RangeError(`crop size must be positive integers, got ${cropWidth}x${cropHeight}`);
  }
  const { image, mask } = pair;
  const C = image.channels;
  const fills = typeof fill === 'number' ? new Array<number>(C).fill(fill) : fill;
  if (fills.length !== C) throw new RangeError(`fill has ${fills.length} values for a ${C}-channel image`);

  // Per axis: srcStart = first image pixel shown, dstStart = where it lands in the crop, span = pixels copied.
  const axis = (size: number, crop: number) =>
    size >= crop
      ? { src: rng.int(size - crop + 1), dst: 0, span: crop }
      : { src: 0, dst: rng.int(crop - size + 1), span: size };
  const ax = axis(image.width, cropWidth);
  const ay = axis(image.height, cropHeight);

  const data = (image.data instanceof Uint8Array
    ? new Uint8Array(cropWidth * cropHeight * C)
    : new Float32Array(cropWidth * cropHeight * C)) as T;
  for (let i = 0; i < cropWidth * cropHeight; i++) {
    for (let c = 0; c < C; c++) data[i * C + c] = fills[c];
  }
  const valid = new Uint8Array(cropWidth * cropHeight);
  const maskOut = mask ? new Uint8Array(cropWidth * cropHeight).fill(IGNORE_INDEX) : undefined;
  for (let y = 0; y < ay.span; y++) {
    const srcRow = (ay.src + y) * image.width + ax.src;
    const dstRow = (ay.dst + y) * cropWidth + ax.dst;
    data.set(image.data.subarray(srcRow * C, (srcRow + ax.span) * C), dstRow * C);
    valid.fill(1, dstRow, dstRow + ax.span);
    if (mask && maskOut) maskOut.set(mask.data.subarray(srcRow, srcRow + ax.span), dstRow);
  }
  const out: Crop<T> = { image: { width: cropWidth, height: cropHeight, channels: C, data }, valid };
  if (maskOut) out.mask = { width: cropWidth, height: cropHeight, data: maskOut };
  return out;
}

/**
 * Colour jitter strengths, torchvision `ColorJitter` semantics: each factor is drawn from
 * [max(0, 1 - s), 1 + s]; 0 or absent disables that part.
 */
export interface JitterOptions {
  brightness?: number;
  contrast?: number;
  saturation?: number;
}

/**
 * Random brightness (scale), contrast (blend with the mean luma) and saturation (blend with each pixel's luma),
 * applied in a random order as torchvision does. Luma is ITU-R 601 (0.299 R + 0.587 G + 0.114 B), as in
 * PIL/torchvision. Uint8 images are rounded (half to even) and clamped to [0, 255] after each step, as PIL rounds
 * and clamps; Float32 images are not clamped, since their range is the caller's. RGB (3-channel) images only.
 */
export function colorJitter<T extends Pixels>(image: HwcImage<T>, rng: Rng, options: JitterOptions): HwcImage<T> {
  if (image.channels !== 3) throw new RangeError(`colour jitter needs a 3-channel image, got ${image.channels}`);
  const factor = (s: number | undefined) => (s ? rng.uniform(Math.max(0, 1 - s), 1 + s) : undefined);
  const b = factor(options.brightness);
  const c = factor(options.contrast);
  const s = factor(options.saturation);
  // Work on a copy; for 8-bit images a Uint8ClampedArray, whose stores round and clamp after every step.
  const px = image.data instanceof Uint8Array ? Uint8ClampedArray.from(image.data) : Float32Array.from(image.data);
  const steps: ((px: Uint8ClampedArray | Float32Array) => void)[] = [];
  if (b !== undefined) steps.push((px) => brightness(px, b));
  if (c !== undefined) steps.push((px) => contrast(px, c));
  if (s !== undefined) steps.push((px) => saturation(px, s));
  rng.shuffle(steps);
  for (const step of steps) step(px);
  const data = (px instanceof Uint8ClampedArray ? new Uint8Array(px.buffer) : px) as T;
  return { width: image.width, height: image.height, channels: 3, data };
}

function brightness(px: Uint8ClampedArray | Float32Array, f: number): void {
  for (let i = 0; i < px.length; i++) px[i] = px[i] * f;
}

function contrast(px: Uint8ClampedArray | Float32Array, f: number): void {
  let sum = 0;
  for (let i = 0; i < px.length; i += 3) sum += 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
  const offset = (1 - f) * (sum / (px.length / 3));
  for (let i = 0; i < px.length; i++) px[i] = f * px[i] + offset;
}

function saturation(px: Uint8ClampedArray | Float32Array, f: number): void {
  for (let i = 0; i < px.length; i += 3) {
    const g = (1 - f) * (0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2]);
    px[i] = f * px[i] + g;
    px[i + 1] = f * px[i + 1] + g;
    px[i + 2] = f * px[i + 2] + g;
  }
}

/**
 * `(pixel * pixelScale - mean[c]) / std[c]`, transposed to planar CHW. `pixelScale` maps the stored range to
 * [0, 1] (1/255 for 8-bit pixels). Where `valid` is 0 (padding) the output is exactly 0, the mean colour, which
 * is how IRN/SEAM pad (they crop after normalising, with fill 0).
 */
export function normalizeToChw(
  image: HwcImage,
  norm: Normalization = IMAGENET_NORM,
  options: { pixelScale?: number; valid?: Uint8Array } = {},
): Float32Array {
  const { width, height, channels: C, data } = image;
  if (norm.mean.length !== C || norm.std.length !== C) {
    throw new RangeError(`normalisation has ${norm.mean.length} means and ${norm.std.length} stds for ${C} channels`);
  }
  const pixelScale = options.pixelScale ?? (data instanceof Uint8Array ? 1 / 255 : 1);
  const { valid } = options;
  const plane = width * height;
  const out = new Float32Array(plane * C);
  for (let c = 0; c < C; c++) {
    const mean = norm.mean[c];
    const inv = 1 / norm.std[c];
    const o = c * plane;
    for (let i = 0; i < plane; i++) out[o + i] = (data[i * C + c] * pixelScale - mean) * inv;
    if (valid) for (let i = 0; i < plane; i++) if (valid[i] === 0) out[o + i] = 0;
  }
  return out;
}

/** Cutout squares (AMR's train_cam: 3 of side 128). */
export interface CutoutOptions {
  /** Side: each square spans its centre +- floor(size / 2), so an odd size gives size - 1. */
  size: number;
  /** Squares per image (AMR: 3); they may overlap. */
  holes: number;
}

/**
 * AMR's `imutils.cutout` on a normalised planar (CHW) crop: per hole, a centre (row, then column) drawn uniformly
 * over the whole crop, a square of rows [cy - floor(size/2), cy + floor(size/2)) and the same columns, clipped at
 * the border, set to 0 in every channel (the mean colour after normalisation, as the crop's padding is).
 */
export function randomCutout(image: Float32Array, width: number, height: number, rng: Rng, options: CutoutOptions): Float32Array {
  const plane = width * height;
  if (plane < 1 || image.length % plane !== 0) throw new RangeError(`image has ${image.length} values, not a multiple of ${width}x${height}`);
  const { size, holes } = options;
  if (!Number.isInteger(size) || size < 1 || !Number.isInteger(holes) || holes < 1) {
    throw new RangeError(`cutout size and holes must be positive integers, got ${size} and ${holes}`);
  }
  const half = Math.floor(size / 2);
  const out = image.slice();
  for (let n = 0; n < holes; n++) {
    const cy = rng.int(height);
    const cx = rng.int(width);
    const [y0, y1] = [Math.max(0, cy - half), Math.min(height, cy + half)];
    const [x0, x1] = [Math.max(0, cx - half), Math.min(width, cx + half)];
    for (let o = 0; o < out.length; o += plane) {
      for (let y = y0; y < y1; y++) out.fill(0, o + y * width + x0, o + y * width + x1);
    }
  }
  return out;
}

export interface TrainAugmentOptions {
  /** Crop side (square) or [width, height]. */
  cropSize: number | readonly [number, number];
  /** Random rescale factor range; absent = no rescale. IRN uses [0.5, 1.5]. */
  scaleRange?: readonly [number, number];
  /** Random long side (integers, both included), instead of scaleRange; IRN's train_cam [320, 640], SEAM [448, 768]. */
  longSide?: readonly [number, number];
  /** Horizontal flip with probability 0.5 (default true). */
  flip?: boolean;
  /** Colour jitter; absent = none. SEAM uses brightness, contrast and saturation 0.3. */
  jitter?: JitterOptions;
  /** Default `IMAGENET_NORM`. */
  norm?: Normalization;
  /** Cutout on the normalised crop (image only: mask and `valid` are kept); absent = none. */
  cutout?: CutoutOptions;
}

/** A network-ready sample: CHW float image, aligned mask and validity map (both H x W). */
export interface AugmentedSample {
  image: Float32Array;
  channels: number;
  height: number;
  width: number;
  mask?: Uint8Array;
  valid: Uint8Array;
}

/**
 * The standard training pipeline: rescale or long-side resize -> colour jitter -> flip -> random crop -> normalise
 * to CHW -> cutout. Padding is 0 in the normalised image (the mean colour), 255 in the mask and 0 in `valid`.
 */
export function trainAugment(
  image: HwcImage<Uint8Array>,
  mask: LabelMap | undefined,
  rng: Rng,
  options: TrainAugmentOptions,
): AugmentedSample {
  let pair: Pair<Uint8Array> = mask ? { image, mask } : { image };
  if (options.scaleRange && options.longSide) throw new RangeError('scaleRange and longSide both resize before the crop: give one');
  if (options.scaleRange) pair = randomRescale(pair, rng, options.scaleRange);
  if (options.longSide) pair = randomResizeLong(pair, rng, options.longSide);
  if (options.jitter) pair = { ...pair, image: colorJitter(pair.image, rng, options.jitter) };
  if (options.flip ?? true) pair = randomHFlip(pair, rng);
  const [cw, ch] = typeof options.cropSize === 'number' ? [options.cropSize, options.cropSize] : options.cropSize;
  const crop = randomCrop(pair, rng, cw, ch);
  const normalized = normalizeToChw(crop.image, options.norm ?? IMAGENET_NORM, { valid: crop.valid });
  const out: AugmentedSample = {
    image: options.cutout ? randomCutout(normalized, cw, ch, rng, options.cutout) : normalized,
    channels: crop.image.channels,
    height: ch,
    width: cw,
    valid: crop.valid,
  };
  if (crop.mask) out.mask = crop.mask.data;
  return out;
}
