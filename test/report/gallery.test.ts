import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { decode as decodePng } from 'fast-png';
import sharp from 'sharp';

import { writeMask } from '../../src/data/index.js';
import { camMaxMap, galleryRow, heatmapOverlay, jet, legendEntries, maskDataUri, thumbSize } from '../../src/report/gallery.js';
import { vocColormap } from '../../src/data/mask.js';

const dataUriBytes = (uri: string) => Buffer.from(uri.slice(uri.indexOf(',') + 1), 'base64');

test('jet colormap: dark blue at 0, light green at 0.5, dark red at 1, clamped outside', () => {
  assert.deepEqual(jet(0), [0, 0, 128]);
  assert.deepEqual(jet(0.5), [128, 255, 128]);
  assert.deepEqual(jet(1), [128, 0, 0]);
  assert.deepEqual(jet(0.25), [0, 128, 255]); // 4t = 1: blue full, green rising through half
  assert.deepEqual(jet(0.75), [255, 128, 0]);
  assert.deepEqual(jet(-3), jet(0));
  assert.deepEqual(jet(7), jet(1));
  assert.deepEqual(jet(Number.NaN), jet(0));
});

test('heatmap overlay is the half-and-half blend of image and colormap', () => {
  const image = { width: 2, height: 1, channels: 3 as const, data: new Uint8Array([100, 50, 200, 0, 0, 0]) };
  const out = heatmapOverlay(image, new Float32Array([1, 0]));
  // pixel 0: (100+128)/2, (50+0)/2, (200+0)/2; pixel 1: (0+0)/2, 0, (0+128)/2
  assert.deepEqual([...out.data], [114, 25, 100, 0, 0, 64]);
  assert.throws(() => heatmapOverlay(image, new Float32Array(3)), /3 values for a 2x1 image/);
});

test('camMaxMap takes the per-pixel maximum over the planes', () => {
  const cams = new Float32Array([0.1, 0.9, 0.3, /* plane 2 */ 0.5, 0.2, 0.3]);
  assert.deepEqual([...camMaxMap(cams, 2, 3, 1)], [0.5, 0.9, 0.3].map(Math.fround));
  assert.deepEqual([...camMaxMap(new Float32Array(0), 0, 3, 1)], [0, 0, 0]);
  assert.throws(() => camMaxMap(cams, 3, 3, 1), /expected 3x1x3/);
});

test('thumbnails fit 240 px on the long side, never enlarged', () => {
  assert.deepEqual(thumbSize(500, 375), { width: 240, height: 180 });
  assert.deepEqual(thumbSize(375, 500), { width: 180, height: 240 });
  assert.deepEqual(thumbSize(100, 50), { width: 100, height: 50 });
  assert.deepEqual(thumbSize(2400, 4), { width: 240, height: 1 });
});

test('mask data URIs are VOC palette PNGs holding the class ids', () => {
  const mask = { width: 3, height: 2, data: new Uint8Array([0, 1, 15, 255, 20, 0]) };
  const uri = maskDataUri(mask);
  assert.ok(uri.startsWith('data:image/png;base64,'));
  const png = decodePng(dataUriBytes(uri));
  assert.equal(png.channels, 1);
  assert.deepEqual([...png.data], [...mask.data]);
  assert.deepEqual(png.palette?.[15], [192, 128, 128]); // person, as the VOC devkit colours it
  assert.deepEqual(png.palette?.[255], [224, 224, 192]); // void
});

test('legend names background, classes by mask id and void, with VOC colours', () => {
  const e = legendEntries([255, 2, 0, 2], ['cat', 'dog'], vocColormap());
  assert.deepEqual(e.map((x) => [x.value, x.name]), [[0, 'background'], [2, 'dog'], [255, 'void / uncertain']]);
  assert.deepEqual(e[1]!.rgb, [0, 128, 0]);
});

test('galleryRow: thumbnails of the files, a missing cell for an absent or mismatched file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-gallery-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const imagePath = join(dir, 'img.png');
  await sharp({ create: { width: 6, height: 4, channels: 3, background: { r: 10, g: 200, b: 30 } } }).png().toFile(imagePath);
  const good = { width: 6, height: 4, data: new Uint8Array(24).fill(8) };
  good.data[0] = 255;
  await writeMask(join(dir, 'good.png'), good);
  await writeMask(join(dir, 'small.png'), { width: 3, height: 2, data: new Uint8Array(6) });
  const labels = new Set<number>();
  const row = await galleryRow('img', imagePath, [
    { title: 'Seeds', kind: 'mask', path: () => join(dir, 'good.png') },
    { title: 'CRF', kind: 'mask', path: () => join(dir, 'small.png') },
    { title: 'Random walk', kind: 'mask', path: () => join(dir, 'absent.png') },
  ], labels);
  assert.equal(row.cells.length, 4);
  const [image, seeds, crf, rw] = row.cells;
  assert.equal(image!.kind, 'image');
  assert.ok(image!.kind === 'image' && image.src.startsWith('data:image/jpeg;base64,'));
  assert.ok(seeds!.kind === 'image');
  assert.deepEqual([...decodePng(dataUriBytes(seeds.src)).data], [...good.data]); // small images are not resized
  assert.ok(crf!.kind === 'missing' && crf.text.includes('small.png') && crf.text.includes('3x2') && crf.text.includes('6x4'), JSON.stringify(crf));
  assert.deepEqual(rw, { kind: 'missing', text: 'no random walk' });
  assert.deepEqual([...labels].sort((a, b) => a - b), [8, 255]);
});
