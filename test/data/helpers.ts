// Shared fixtures for the data tests: everything is generated in temporary folders.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';

export async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'weakseg-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A width x height JPEG of one colour. */
export function solidJpeg(width: number, height: number, rgb: [number, number, number] = [200, 100, 50]): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .jpeg({ quality: 95 })
    .toBuffer();
}

export async function writeFileDeep(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, data);
}

/** The first half of a valid JPEG: decodes to "premature end of JPEG". */
export async function truncatedJpeg(): Promise<Buffer> {
  const full = await solidJpeg(32, 24);
  return full.subarray(0, Math.floor(full.length / 2));
}

/** Tiny in-memory image whose pixel (x, y) has R = x, G = y, B = 7 (coordinates encoded in the pixels). */
export function coordImage(width: number, height: number): { width: number; height: number; channels: 3; data: Uint8Array } {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      data.set([x, y, 7], (y * width + x) * 3);
    }
  }
  return { width, height, channels: 3, data };
}
