import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import sharp from 'sharp';
import { encode as encodePng } from 'fast-png';
import { DataError } from '../../src/data/errors.js';
import { DEFAULT_MAX_IMAGE_PIXELS, decodeImage, decodeImageBuffer, resizeBilinear, resizeNearest, setMaxImagePixels } from '../../src/data/image.js';
import { solidJpeg, tempDir, truncatedJpeg, writeFileDeep } from './helpers.js';

const pixel = (img: { width: number; data: Uint8Array }, x: number, y: number) =>
  [...img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3)];

const close = (a: number[], b: number[], tol: number) => a.every((v, i) => Math.abs(v - (b[i] as number)) <= tol);

test('decodes a JPEG to 8-bit RGB HWC', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'a.jpg');
  await writeFileDeep(path, await solidJpeg(20, 10, [200, 100, 50]));
  const img = await decodeImage(path);
  assert.equal(img.width, 20);
  assert.equal(img.height, 10);
  assert.equal(img.channels, 3);
  assert.equal(img.data.length, 20 * 10 * 3);
  assert.ok(close(pixel(img, 5, 5), [200, 100, 50], 3), `got ${pixel(img, 5, 5)}`);
});

test('applies EXIF orientation', async () => {
  // Stored 40x20, orientation 6 (rotate 90° clockwise to display): the upright image is 20x40.
  const bytes = await sharp({ create: { width: 40, height: 20, channels: 3, background: 'red' } })
    .jpeg()
    .withMetadata({ orientation: 6 })
    .toBuffer();
  const img = await decodeImageBuffer(bytes, 'rotated.jpg');
  assert.deepEqual([img.width, img.height], [20, 40]);
});

test('converts grayscale, CMYK and 16-bit inputs to 8-bit RGB', async () => {
  const gray = await decodeImageBuffer(
    await sharp(Buffer.alloc(8 * 8, 90), { raw: { width: 8, height: 8, channels: 1 } }).png().toBuffer(),
    'gray.png',
  );
  assert.equal(gray.channels, 3);
  assert.deepEqual(pixel(gray, 1, 1), [90, 90, 90]);

  const cmyk = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 200, g: 100, b: 50 } } })
    .toColourspace('cmyk')
    .jpeg()
    .toBuffer();
  assert.equal((await sharp(cmyk).metadata()).space, 'cmyk');
  const fromCmyk = await decodeImageBuffer(cmyk, 'cmyk.jpg');
  assert.equal(fromCmyk.data.length, 8 * 8 * 3);
  // Through a CMYK profile and back: close to the original colour, not exact.
  assert.ok(close(pixel(fromCmyk, 2, 2), [200, 100, 50], 30), `got ${pixel(fromCmyk, 2, 2)}`);

  // 16-bit RGB written by fast-png: 0xC8C8 is 200 in 8 bits.
  const rgb16 = encodePng({ width: 2, height: 1, channels: 3, depth: 16, data: new Uint16Array([0xc8c8, 0x6464, 0x3232, 0xffff, 0, 0]) });
  const img16 = await decodeImageBuffer(rgb16, 'rgb16.png');
  assert.deepEqual([...img16.data], [200, 100, 50, 255, 0, 0]);
});

test('flattens alpha on black by default, or on white', async () => {
  // One opaque red pixel and one fully transparent pixel.
  const rgba = encodePng({ width: 2, height: 1, channels: 4, depth: 8, data: new Uint8Array([255, 0, 0, 255, 10, 20, 30, 0]) });
  const black = await decodeImageBuffer(rgba, 'rgba.png');
  assert.deepEqual([...black.data], [255, 0, 0, 0, 0, 0]);
  const white = await decodeImageBuffer(rgba, 'rgba.png', { alphaBackground: 'white' });
  assert.deepEqual([...white.data], [255, 0, 0, 255, 255, 255]);
});

test('a truncated JPEG is a DataError naming the path and the cause', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'broken.jpg');
  await writeFileDeep(path, await truncatedJpeg());
  await assert.rejects(decodeImage(path), (error: unknown) => {
    assert.ok(error instanceof DataError);
    assert.equal(error.path, path);
    assert.match(error.message, /broken\.jpg: cannot decode image \(.*premature end of JPEG/i);
    return true;
  });
});

test('a missing, unreadable or non-image file is a DataError naming the path', async (t) => {
  const dir = await tempDir(t);
  const missing = join(dir, 'nope.jpg');
  await assert.rejects(decodeImage(missing), new RegExp(`${missing}: cannot read image file \\(ENOENT`));
  await assert.rejects(decodeImage(dir), /cannot read image file \(EISDIR/);
  const text = join(dir, 'text.jpg');
  await writeFileDeep(text, 'not an image');
  await assert.rejects(decodeImage(text), (e: unknown) => e instanceof DataError && /text\.jpg: cannot decode image \(.*unsupported image format/.test(e.message));
});

test('resizeBilinear: identity, constants, half-pixel interpolation, antialiased averaging', () => {
  const img = { width: 2, height: 1, channels: 1, data: new Uint8Array([0, 100]) };
  assert.deepEqual([...resizeBilinear(img, 2, 1).data], [0, 100]);
  // 2 -> 4 px, centres at 0.25, 0.75, 1.25, 1.75 source px: edge-replicated, then 25 % / 75 % blends.
  assert.deepEqual([...resizeBilinear(img, 4, 1).data], [0, 25, 75, 100]);
  // 4 -> 2 px with antialiasing: a triangle of half-width 2 around centre 1.0 weighs source pixels 0, 1, 2 by
  // 0.75, 0.75, 0.25 (pixel 3 is out of reach), normalised: (0.25 * 100) / 1.75 = 100/7 (as PIL's BILINEAR).
  const four = { width: 4, height: 1, channels: 1, data: new Float32Array([0, 0, 100, 100]) };
  const down = resizeBilinear(four, 2, 1);
  assert.ok(down.data instanceof Float32Array);
  assert.ok(Math.abs((down.data[0] as number) - 100 / 7) < 1e-4 && Math.abs((down.data[1] as number) - 600 / 7) < 1e-4, `got ${[...down.data]}`);
  assert.deepEqual([...resizeBilinear(four, 2, 1, { antialias: false }).data], [0, 100]);
  const flat = { width: 7, height: 5, channels: 3, data: new Uint8Array(7 * 5 * 3).fill(77) };
  assert.ok(resizeBilinear(flat, 13, 3).data.every((v) => v === 77));
  assert.throws(() => resizeBilinear(flat, 0, 3), RangeError);
});

test('resizeNearest never invents label values', () => {
  const mask = { width: 3, height: 2, data: new Uint8Array([0, 5, 255, 5, 15, 0]) };
  const big = resizeNearest(mask, 7, 5);
  assert.ok(big.data.every((v) => v === 0 || v === 5 || v === 15 || v === 255));
  assert.deepEqual([...resizeNearest(mask, 6, 4).data.subarray(0, 6)], [0, 0, 5, 5, 255, 255]);
  assert.deepEqual([...resizeNearest(mask, 3, 2).data], [...mask.data]);
});

test('an image over the pixel cap is refused from its header, before decoding, naming the file', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'big.png');
  // One colour: a few hundred bytes on disk for 600 x 500 pixels.
  await writeFileDeep(path, await sharp({ create: { width: 600, height: 500, channels: 3, background: '#808080' } }).png().toBuffer());
  await assert.rejects(decodeImage(path, { maxPixels: 100_000 }), (e: unknown) => {
    assert.ok(e instanceof DataError);
    assert.equal(e.path, path);
    assert.match(e.message, /image is 600x500 \(0\.3 Mpx\), more than the 0\.1 Mpx cap \(data\.maxImagePixels\)/);
    return true;
  });
  setMaxImagePixels(300_000);
  t.after(() => setMaxImagePixels(DEFAULT_MAX_IMAGE_PIXELS));
  assert.equal((await decodeImage(path)).width, 600, 'at the cap it decodes');
  setMaxImagePixels(299_999);
  await assert.rejects(decodeImage(path), /more than the 0\.3 Mpx cap/);
});
