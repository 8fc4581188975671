// onBadFile 'skip' (issue 15, item 5): skipped files are listed in skipped.jsonl and counted in the log, and a
// split that loses more than data.maxSkippedFraction of its files (or all of them) stops the stage, saving no model.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

import { makeSyntheticDataset } from '../../src/data/index.js';
import { demoConfig } from '../../src/pipeline/index.js';
import { tempDir, truncatedJpeg } from '../data/helpers.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

test('train with onBadFile skip: bad images are recorded and counted; too many bad ones fail the stage', async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'data');
  await makeSyntheticDataset({ root: data, seed: 7, train: 12, scored: 4, val: 4, size: 48 });
  const ids = readFileSync(join(data, 'ImageSets', 'Segmentation', 'train_aug.txt'), 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
  const imageOf = (id: string) => join(data, 'JPEGImages', `${id}.png`);
  assert.ok(existsSync(imageOf(ids[0]!)), 'synthetic images are PNGs');
  const broken = await truncatedJpeg();
  const train = (runDir: string) => {
    const config = demoConfig({ out: runDir, size: 'tiny', overrides: { data: { root: data, onBadFile: 'skip', maxImagePixels: 48 * 48 }, train: { epochs: 1, batchSize: 4 } } });
    const file = join(dir, `${runDir.split('/').pop()}.json`);
    writeFileSync(file, JSON.stringify(config));
    return spawnSync(process.execPath, [cli, 'train', '-c', file, '--no-progress'], { encoding: 'utf8', timeout: 120_000 });
  };

  // A corrupt image and one over the pixel cap, of twelve: trained on the rest, both recorded. (Without masks:
  // a mask's check against its image would catch them when the split is opened.)
  for (const id of ids.slice(0, 2)) rmSync(join(data, 'SegmentationClass', `${id}.png`), { force: true });
  writeFileSync(imageOf(ids[0]!), broken);
  writeFileSync(imageOf(ids[1]!), await sharp({ create: { width: 49, height: 48, channels: 3, background: '#000' } }).png().toBuffer());
  const some = train(join(dir, 'some'));
  assert.equal(some.status, 0, some.stderr);
  assert.match(some.stdout, /12 images of 'train_aug'/);
  const skipped = readFileSync(join(dir, 'some', 'skipped.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { path: string; reason: string; split: string });
  assert.deepEqual(skipped.map((s) => s.path).sort(), ids.slice(0, 2).map(imageOf).sort());
  assert.ok(skipped.every((s) => s.split === 'train_aug'));
  assert.match(skipped.find((s) => s.path === imageOf(ids[0]!))!.reason, /cannot decode image/);
  assert.match(skipped.find((s) => s.path === imageOf(ids[1]!))!.reason, /image is 49x48 .* more than the 0\.0 Mpx cap \(data\.maxImagePixels\)/);
  assert.ok(existsSync(join(dir, 'some', 'model.safetensors')));

  // Every image corrupt: an error, not a model trained on nothing.
  for (const id of ids) writeFileSync(imageOf(id), broken);
  const all = train(join(dir, 'all'));
  assert.notEqual(all.status, 0);
  assert.match(all.stderr, /of 12 files of 'train_aug' were skipped as bad, more than data\.maxSkippedFraction = 0\.5 allows; see .*skipped\.jsonl/);
  assert.ok(!existsSync(join(dir, 'all', 'model.safetensors')), 'no model saved');
});
