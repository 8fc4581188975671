/**
 * Segmentation masks as class-id maps, stored as palette PNGs.
 *
 * sharp expands palette PNGs to RGB, which loses the class ids, so masks go through fast-png, whose decoder
 * returns the palette indices themselves.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { decode as decodePng, encode as encodePng } from 'fast-png';
import { DataError, describeCause } from './errors.js';
import { type LabelMap, maxImagePixels } from './image.js';

/** The label of void/boundary pixels, excluded from every loss and metric. */
export const IGNORE_INDEX = 255;

/**
 * The PASCAL VOC colormap (devkit `labelcolormap`): the bits of the index are interleaved into the high bits of
 * R, G and B. Index 0 is black, 1 is (128,0,0), 15 (person) is (192,128,128), 255 is (224,224,192).
 * Returned as 256 [r, g, b] triples.
 */
export function vocColormap(): [number, number, number][] {
  const map: [number, number, number][] = [];
  for (let i = 0; i < 256; i++) {
    let r = 0;
    let g = 0;
    let b = 0;
    let c = i;
    for (let j = 0; j < 8; j++) {
      r |= (c & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    map.push([r, g, b]);
  }
  return map;
}

/** Read a mask PNG as class ids. Failures are `DataError`s naming the file. */
export async function readMask(path: string): Promise<LabelMap> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (error) {
    throw new DataError(path, `cannot read mask file (${describeCause(error)})`, { cause: error });
  }
  return decodeMask(bytes, path);
}

/**
 * Decode mask PNG bytes. Accepted: a palette PNG (the value is the palette index, as in VOC's
 * `SegmentationClass`, whatever the palette's colours) or a 1-channel grayscale PNG whose values are class ids
 * (8-bit or fewer bits; 16-bit only if every value fits in 0..255). RGB masks are refused: a colour is not a
 * class id. `source` names the input in error messages.
 */
export function decodeMask(bytes: Uint8Array, source: string): LabelMap {
  // The size from the header (IHDR is the first chunk), checked against the pixel cap before decoding.
  const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47];
  if (bytes.length >= 24 && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) {
    const header = new DataView(bytes.buffer, bytes.byteOffset + 16, 8);
    const [w, h] = [header.getUint32(0), header.getUint32(4)];
    if (w * h > maxImagePixels()) {
      throw new DataError(source, `mask is ${w}x${h} (${(w * h / 1e6).toFixed(1)} Mpx), more than the ` +
        `${(maxImagePixels() / 1e6).toFixed(1)} Mpx cap (data.maxImagePixels)`);
    }
  }
  let png: ReturnType<typeof decodePng>;
  try {
    png = decodePng(bytes, { checkCrc: true });
  } catch (error) {
    // fast-png reads past the end of a cut-off file as a DataView bounds error; say what it means.
    const cause = error instanceof RangeError && /bounds/.test(error.message) ? 'file ends early: truncated?' : describeCause(error);
    throw new DataError(source, `cannot decode mask PNG (${cause})`, { cause: error });
  }
  const { width, height, depth, channels } = png;
  if (channels !== 1) {
    const kind = channels === 2 ? 'gray+alpha' : channels === 3 ? 'RGB' : 'RGBA';
    throw new DataError(
      source,
      `mask is a ${kind} PNG; expected a palette PNG or a 1-channel grayscale PNG of class ids ` +
        '(convert colour masks to class ids first)',
    );
  }
  const expected = depth < 8 ? Math.ceil((width * depth) / 8) * height : width * height;
  if (png.data.length !== expected) {
    throw new DataError(source, `mask pixel data is incomplete (${png.data.length} of ${expected} values)`);
  }
  if (depth === 16) {
    const values = png.data;
    const data = new Uint8Array(width * height);
    for (let i = 0; i < data.length; i++) {
      const v = values[i];
      if (v > 255) {
        throw new DataError(source, `16-bit mask has value ${v} at pixel (${i % width}, ${Math.floor(i / width)}); class ids must be 0..255`);
      }
      data[i] = v;
    }
    return { width, height, data };
  }
  if (depth === 8) return { width, height, data: new Uint8Array(png.data) };
  return { width, height, data: unpackBits(png.data as Uint8Array, width, height, depth) };
}

/** Unpack 1/2/4-bit rows (each row starts on a byte boundary, most significant bits first). */
function unpackBits(packed: Uint8Array, width: number, height: number, depth: number): Uint8Array {
  const out = new Uint8Array(width * height);
  const rowBytes = Math.ceil((width * depth) / 8);
  const perByte = 8 / depth;
  const valueMask = (1 << depth) - 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const byte = packed[y * rowBytes + Math.floor(x / perByte)];
      const shift = 8 - depth * ((x % perByte) + 1);
      out[y * width + x] = (byte >> shift) & valueMask;
    }
  }
  return out;
}

const VOC_PALETTE = vocColormap();

/**
 * Encode a label map as an 8-bit palette PNG with the VOC colormap, so it renders correctly in any viewer.
 * `text` becomes tEXt chunks (Latin-1: keep values ASCII, e.g. JSON with \u escapes).
 */
export function encodeMask(mask: LabelMap, text?: Record<string, string>): Uint8Array {
  if (mask.data.length !== mask.width * mask.height) {
    throw new RangeError(`mask data has ${mask.data.length} values, expected ${mask.width}x${mask.height}`);
  }
  return encodePng({
    width: mask.width,
    height: mask.height,
    data: mask.data,
    depth: 8,
    channels: 1,
    palette: VOC_PALETTE,
    ...(text ? { text } : {}),
  });
}

/** Write a label map as a VOC palette PNG, creating the parent folder if needed. */
export async function writeMask(path: string, mask: LabelMap): Promise<void> {
  const bytes = encodeMask(mask);
  try {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, bytes);
  } catch (error) {
    throw new DataError(path, `cannot write mask (${describeCause(error)})`, { cause: error });
  }
}
