/**
 * Image decoding (sharp) and resampling on plain HWC arrays.
 */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { DataError, describeCause } from './errors.js';

/** An interleaved (HWC) image: pixel (x, y), channel c is `data[(y * width + x) * channels + c]`. */
export interface HwcImage<T extends Uint8Array | Float32Array = Uint8Array | Float32Array> {
  width: number;
  height: number;
  channels: number;
  data: T;
}

/** What `decodeImage` returns: always 8-bit sRGB, 3 channels, no alpha. */
export interface RgbImage extends HwcImage<Uint8Array> {
  channels: 3;
}

/** A single-channel map of class ids (255 = ignore), row-major: `data[y * width + x]`. */
export interface LabelMap {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface DecodeOptions {
  /**
   * Colour that transparent pixels are composited onto. Default `'black'`: this is sharp's own `flatten()`
   * default and what PIL's `convert('RGB')` gives for the usual fully transparent pixels stored as 0, the
   * behaviour the reference Python pipelines saw.
   */
  alphaBackground?: 'black' | 'white';
  /** Refuse images with more pixels than this (default: the cap set by `setMaxImagePixels`, 40 Mpx). */
  maxPixels?: number;
}

/**
 * Images with more pixels than this are refused before they are decoded (a 436 KB one-colour PNG can hold
 * 12000 x 12000 pixels: 432 MB decoded, and gigabytes in the stages that follow). 40 Mpx is 200 VOC images.
 */
export const DEFAULT_MAX_IMAGE_PIXELS = 40_000_000;
let pixelCap = DEFAULT_MAX_IMAGE_PIXELS;

/** Sets the decoded-pixel cap of every later image and mask decode (the pipeline applies data.maxImagePixels). */
export function setMaxImagePixels(pixels: number): void {
  if (!Number.isSafeInteger(pixels) || pixels < 1) throw new RangeError(`maxImagePixels must be a positive integer, got ${pixels}`);
  pixelCap = pixels;
}

/** The cap in force. */
export function maxImagePixels(): number {
  return pixelCap;
}

/** Width and height of the upright image (EXIF orientation applied), from its header only. */
export async function imageSize(path: string): Promise<{ width: number; height: number }> {
  let meta: sharp.Metadata;
  try {
    meta = await sharp(path).metadata();
  } catch (error) {
    throw new DataError(path, `cannot read image header (${describeCause(error)})`, { cause: error });
  }
  if (!meta.width || !meta.height) throw new DataError(path, 'image header has no size');
  const swap = (meta.orientation ?? 1) >= 5; // orientations 5-8 rotate by 90 degrees
  return swap ? { width: meta.height, height: meta.width } : { width: meta.width, height: meta.height };
}

/** Read and decode an image file; any failure (missing, unreadable, corrupt, truncated) is a `DataError`. */
export async function decodeImage(path: string, options: DecodeOptions = {}): Promise<RgbImage> {
  let bytes: Buffer;
  try {
    // Reading first (rather than handing sharp the path) gives the OS's own reason: ENOENT, EACCES, EISDIR.
    bytes = await readFile(path);
  } catch (error) {
    throw new DataError(path, `cannot read image file (${describeCause(error)})`, { cause: error });
  }
  return decodeImageBuffer(bytes, path, options);
}

/**
 * Decode encoded image bytes (JPEG, PNG, WebP, TIFF, GIF, AVIF...) to 8-bit sRGB.
 * EXIF orientation is applied, so width/height are those of the upright image; grayscale, CMYK and 16-bit inputs
 * are converted; alpha is flattened onto `alphaBackground`. `source` names the input in error messages.
 */
export async function decodeImageBuffer(
  bytes: Uint8Array,
  source: string,
  options: DecodeOptions = {},
): Promise<RgbImage> {
  const bg = options.alphaBackground === 'white' ? { r: 255, g: 255, b: 255 } : { r: 0, g: 0, b: 0 };
  // The cost is checked from the header before any pixel is decoded; sharp's limitInputPixels guards the same
  // bound inside the decoder, for headers that understate.
  const limit = options.maxPixels ?? pixelCap;
  let meta: sharp.Metadata;
  try {
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw new DataError(source, `cannot decode image (${describeCause(error)})`, { cause: error });
  }
  const pixels = (meta.width ?? 0) * (meta.height ?? 0); // only the first page of a multi-page image is decoded
  if (pixels > limit) {
    throw new DataError(source, `image is ${meta.width}x${meta.height} (${(pixels / 1e6).toFixed(1)} Mpx), more than the ${(limit / 1e6).toFixed(1)} Mpx cap (data.maxImagePixels); ` +
      'downscale it or raise the cap');
  }
  try {
    // failOn 'warning' (sharp's default, spelled out because it is what rejects truncated JPEGs, which libjpeg
    // would otherwise pad with grey and return as a valid image).
    const { data, info } = await sharp(bytes, { failOn: 'warning', limitInputPixels: limit })
      .rotate()
      .flatten({ background: bg })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) {
      throw new Error(`decoder produced ${info.channels} channels, expected 3`);
    }
    return {
      width: info.width,
      height: info.height,
      channels: 3,
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    };
  } catch (error) {
    throw new DataError(source, `cannot decode image (${describeCause(error)})`, { cause: error });
  }
}

/**
 * Resample an HWC image with a triangle (bilinear) filter, pixel centres at half-integers (the convention of
 * OpenCV `INTER_LINEAR`, PyTorch `align_corners=false` and PIL). When shrinking with `antialias` (default true)
 * the filter support is widened by the scale factor, as PIL's BILINEAR does, so strong downscaling averages
 * instead of aliasing; with `antialias: false` it is plain 2-tap bilinear like OpenCV/PyTorch.
 * Uint8 outputs are rounded (half to even) and clamped; Float32 outputs are left unclamped.
 */
export function resizeBilinear<T extends Uint8Array | Float32Array>(
  image: HwcImage<T>,
  width: number,
  height: number,
  options: { antialias?: boolean } = {},
): HwcImage<T> {
  checkSize(width, height);
  const antialias = options.antialias ?? true;
  const { channels: C } = image;
  if (width === image.width && height === image.height) {
    return { width, height, channels: C, data: image.data.slice() as T };
  }
  const xw = filterWeights(image.width, width, antialias);
  const yw = filterWeights(image.height, height, antialias);
  const src = image.data;
  // Horizontal pass into float rows, then vertical pass; channels innermost so memory is read sequentially.
  const tmp = new Float32Array(image.height * width * C);
  const acc = new Float64Array(C);
  for (let y = 0; y < image.height; y++) {
    const srow = y * image.width * C;
    let t = y * width * C;
    for (let x = 0; x < width; x++) {
      const start = srow + xw.start[x] * C;
      const n = xw.count[x];
      const wo = x * xw.maxTaps;
      if (C === 3) {
        // RGB is the hot path: scalar accumulators avoid an array load and store per tap.
        let a0 = 0;
        let a1 = 0;
        let a2 = 0;
        for (let k = 0, p = start; k < n; k++, p += 3) {
          const w = xw.weights[wo + k];
          a0 += w * src[p];
          a1 += w * src[p + 1];
          a2 += w * src[p + 2];
        }
        tmp[t++] = a0;
        tmp[t++] = a1;
        tmp[t++] = a2;
        continue;
      }
      acc.fill(0);
      for (let k = 0; k < n; k++) {
        const w = xw.weights[wo + k];
        const p = start + k * C;
        for (let c = 0; c < C; c++) acc[c] += w * src[p + c];
      }
      for (let c = 0; c < C; c++) tmp[t++] = acc[c];
    }
  }
  const rowLen = width * C;
  const row = new Float64Array(rowLen);
  const out = (src instanceof Uint8Array ? new Uint8Array(width * height * C) : new Float32Array(width * height * C)) as T;
  // Writing through a Uint8ClampedArray view rounds and clamps 8-bit output natively.
  const sink = out instanceof Uint8Array ? new Uint8ClampedArray(out.buffer, out.byteOffset, out.length) : out;
  for (let y = 0; y < height; y++) {
    const n = yw.count[y];
    const wo = y * yw.maxTaps;
    row.fill(0);
    for (let k = 0; k < n; k++) {
      const w = yw.weights[wo + k];
      const base = (yw.start[y] + k) * rowLen;
      for (let i = 0; i < rowLen; i++) row[i] += w * tmp[base + i];
    }
    sink.set(row, y * rowLen);
  }
  return { width, height, channels: C, data: out };
}

/**
 * Nearest-neighbour resize of a label map (source pixel `floor((x + 0.5) * in / out)`, as PIL NEAREST).
 * Labels are never interpolated: every output value is a value of the input.
 */
export function resizeNearest(mask: LabelMap, width: number, height: number): LabelMap {
  checkSize(width, height);
  const out = new Uint8Array(width * height);
  const sx = mask.width / width;
  const sy = mask.height / height;
  const xs = new Int32Array(width);
  for (let x = 0; x < width; x++) xs[x] = Math.min(mask.width - 1, Math.floor((x + 0.5) * sx));
  for (let y = 0; y < height; y++) {
    const srow = Math.min(mask.height - 1, Math.floor((y + 0.5) * sy)) * mask.width;
    const orow = y * width;
    for (let x = 0; x < width; x++) out[orow + x] = mask.data[srow + xs[x]];
  }
  return { width, height, data: out };
}

function checkSize(width: number, height: number): void {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`resize target must be positive integers, got ${width}x${height}`);
  }
}

interface Weights {
  start: Int32Array;
  count: Int32Array;
  maxTaps: number;
  weights: Float32Array;
}

/** Per-output-pixel source range and normalised triangle-filter weights along one axis. */
function filterWeights(inSize: number, outSize: number, antialias: boolean): Weights {
  const scale = inSize / outSize;
  const support = antialias ? Math.max(scale, 1) : 1;
  const maxTaps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float32Array(outSize * maxTaps);
  for (let i = 0; i < outSize; i++) {
    const centre = (i + 0.5) * scale;
    const lo = Math.max(0, Math.floor(centre - support));
    const hi = Math.min(inSize, Math.ceil(centre + support));
    let total = 0;
    let n = 0;
    for (let j = lo; j < hi && n < maxTaps; j++, n++) {
      const w = Math.max(0, 1 - Math.abs((j + 0.5 - centre) / support));
      weights[i * maxTaps + n] = w;
      total += w;
    }
    // Normalising over in-range taps replicates the edge instead of darkening it.
    for (let k = 0; k < n; k++) weights[i * maxTaps + k] /= total;
    start[i] = lo;
    count[i] = n;
  }
  return { start, count, maxTaps, weights };
}
