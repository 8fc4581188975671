import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { decode as decodePng, encode as encodePng } from 'fast-png';
import { DataError } from '../../src/data/errors.js';
import { decodeMask, encodeMask, readMask, vocColormap, writeMask } from '../../src/data/mask.js';
import { DEFAULT_MAX_IMAGE_PIXELS, setMaxImagePixels } from '../../src/data/image.js';
import { tempDir, writeFileDeep } from './helpers.js';

const VOC_MINI = '/work/shared/data/voc-mini';

test('VOC colormap matches the devkit', () => {
  const map = vocColormap();
  assert.equal(map.length, 256);
  assert.deepEqual(map[0], [0, 0, 0]);
  assert.deepEqual(map[1], [128, 0, 0]);
  assert.deepEqual(map[2], [0, 128, 0]);
  assert.deepEqual(map[15], [192, 128, 128]); // person
  assert.deepEqual(map[20], [0, 64, 128]); // tvmonitor
  assert.deepEqual(map[255], [224, 224, 192]); // void
});

test('masks round-trip through palette PNGs, 255 included, and render in VOC colours', async (t) => {
  const dir = await tempDir(t);
  const mask = { width: 4, height: 3, data: new Uint8Array([0, 1, 2, 3, 15, 20, 255, 0, 7, 7, 255, 19]) };
  const path = join(dir, 'sub', 'm.png'); // parent folder is created
  await writeMask(path, mask);
  const back = await readMask(path);
  assert.deepEqual(back, mask);

  const png = decodePng(await readFile(path));
  assert.equal(png.channels, 1);
  assert.equal(png.palette?.length, 256);
  // Any viewer (here sharp, which expands palettes) sees the VOC colours.
  const rgb = await sharp(path).removeAlpha().raw().toBuffer();
  assert.deepEqual([...rgb.subarray(4 * 3, 4 * 3 + 3)], [192, 128, 128]); // pixel 4 = person
  assert.deepEqual([...rgb.subarray(6 * 3, 6 * 3 + 3)], [224, 224, 192]); // pixel 6 = void
});

test('grayscale PNGs are read as class ids; sub-byte palettes are unpacked', () => {
  const gray = encodePng({ width: 3, height: 1, channels: 1, depth: 8, data: new Uint8Array([0, 12, 255]) });
  assert.deepEqual([...decodeMask(gray, 'gray.png').data], [0, 12, 255]);

  // 4-bit palette, odd width: rows are byte-aligned and packed high nibble first.
  const packed = encodePng({
    width: 3,
    height: 2,
    channels: 1,
    depth: 4,
    palette: vocColormap().slice(0, 16),
    data: new Uint8Array([0x12, 0x30, 0xf0, 0x50]),
  });
  assert.deepEqual([...decodeMask(packed, 'p4.png').data], [1, 2, 3, 15, 0, 5]);

  const gray16 = encodePng({ width: 2, height: 1, channels: 1, depth: 16, data: new Uint16Array([3, 255]) });
  assert.deepEqual([...decodeMask(gray16, 'g16.png').data], [3, 255]);
  const big16 = encodePng({ width: 2, height: 1, channels: 1, depth: 16, data: new Uint16Array([3, 1000]) });
  assert.throws(() => decodeMask(big16, 'g16.png'), /g16\.png: 16-bit mask has value 1000 at pixel \(1, 0\)/);
});

test('RGB, corrupt and missing masks are DataErrors naming the file', async (t) => {
  const rgb = encodePng({ width: 1, height: 1, channels: 3, depth: 8, data: new Uint8Array([128, 0, 0]) });
  assert.throws(() => decodeMask(rgb, 'colour.png'), /colour\.png: mask is a RGB PNG; expected a palette PNG/);

  const good = encodeMask({ width: 8, height: 8, data: new Uint8Array(64).fill(3) });
  const dir = await tempDir(t);
  const broken = join(dir, 'broken.png');
  await writeFileDeep(broken, good.subarray(0, good.length - 20));
  await assert.rejects(readMask(broken), (e: unknown) => e instanceof DataError && e.path === broken && /broken\.png: cannot decode mask PNG \(/.test(e.message));
  await assert.rejects(readMask(join(dir, 'none.png')), /none\.png: cannot read mask file \(ENOENT/);
});

test('reads a real VOC mask (voc-mini)', { skip: !existsSync(VOC_MINI) && `${VOC_MINI} not present` }, async () => {
  const mask = await readMask(join(VOC_MINI, 'SegmentationClass', '2007_000063.png'));
  assert.deepEqual([mask.width, mask.height], [256, 192]);
  const values = new Set(mask.data);
  // image_labels.json: chair (9) and dog (12); 0 background, 255 boundaries.
  assert.deepEqual([...values].sort((a, b) => a - b), [0, 9, 12, 255]);
});

test('a mask over the pixel cap is refused from its PNG header, naming the file', () => {
  const bytes = encodeMask({ width: 20, height: 10, data: new Uint8Array(200) });
  setMaxImagePixels(199);
  try {
    assert.throws(() => decodeMask(bytes, 'big.png'), /big\.png: mask is 20x10 \(0\.0 Mpx\), more than the 0\.0 Mpx cap \(data\.maxImagePixels\)/);
    setMaxImagePixels(200);
    assert.equal(decodeMask(bytes, 'big.png').width, 20);
  } finally {
    setMaxImagePixels(DEFAULT_MAX_IMAGE_PIXELS);
  }
});
