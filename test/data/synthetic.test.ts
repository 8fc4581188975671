// The demo's synthetic dataset: same seed -> same bytes, readable by readVoc with its classes, masks consistent
// with the tags, caps (the discriminative parts, found by their colour in the pixels) inside their object's mask,
// and bodies coloured independently of the class.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';

import {
  BODY_COLOURS, CAP_COLOURS, DataError, Rng, SYNTHETIC_CLASSES, decodeImage, makeSyntheticDataset, readMask, readVoc,
  renderSyntheticImage,
} from '../../src/data/index.js';
import { tempDir } from './helpers.js';

const SMALL = { train: 12, scored: 5, val: 6, size: 64 };

async function filesOf(root: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(dir, e.name), join(rel, e.name));
      else out.set(join(rel, e.name), await readFile(join(dir, e.name)));
    }
  };
  await walk(root, '');
  return out;
}

test('the same seed writes the same bytes; another seed writes different images', async (t) => {
  const dir = await tempDir(t);
  await makeSyntheticDataset({ root: join(dir, 'a'), seed: 7, ...SMALL });
  await makeSyntheticDataset({ root: join(dir, 'b'), seed: 7, ...SMALL });
  await makeSyntheticDataset({ root: join(dir, 'c'), seed: 8, ...SMALL });
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((d) => filesOf(join(dir, d))));
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  // synthetic.json names its root, the only file allowed to differ between a and b.
  for (const [name, bytes] of a) if (name !== 'synthetic.json') assert.ok(bytes.equals(b.get(name)!), `${name} differs for the same seed`);
  const images = [...a.keys()].filter((k) => k.startsWith('JPEGImages'));
  assert.equal(images.length, SMALL.train + SMALL.val);
  const same = images.filter((k) => a.get(k)!.equals(c.get(k)!));
  assert.equal(same.length, 0, `images identical across seeds 7 and 8: ${same.join(', ')}`);
});

test('validation images do not depend on the number of training images', async (t) => {
  const dir = await tempDir(t);
  await makeSyntheticDataset({ root: join(dir, 'a'), seed: 1, ...SMALL });
  await makeSyntheticDataset({ root: join(dir, 'b'), seed: 1, ...SMALL, train: 20 });
  for (let k = 0; k < SMALL.val; k++) {
    const name = join('JPEGImages', `val_${String(k).padStart(4, '0')}.png`);
    assert.ok((await readFile(join(dir, 'a', name))).equals(await readFile(join(dir, 'b', name))), name);
  }
});

test('readVoc reads every split with the declared classes; train is a subset of train_aug; val is disjoint', async (t) => {
  const root = await tempDir(t);
  const summary = await makeSyntheticDataset({ root, seed: 3, ...SMALL });
  assert.deepEqual(summary.splits, { train_aug: 12, train: 5, val: 6 });
  assert.deepEqual(summary.classes, [...SYNTHETIC_CLASSES]);
  const classes = [...SYNTHETIC_CLASSES];
  const splits = Object.fromEntries(await Promise.all(['train_aug', 'train', 'val'].map(async (split) =>
    [split, await readVoc({ root, split, classes, labelSources: ['json'] })] as const)));
  const ids = (s: string) => splits[s]!.items.map((i) => i.id);
  assert.equal(ids('train_aug').length, 12);
  assert.deepEqual(ids('train'), ids('train_aug').slice(0, 5));
  assert.equal(ids('val').filter((id) => ids('train_aug').includes(id)).length, 0);
  for (const split of Object.values(splits)) {
    assert.deepEqual(split.labelSources, { xml: 0, json: split.items.length, mask: 0 });
    for (const item of split.items) {
      assert.ok(item.maskPath, `${item.id} has a mask`);
      assert.ok(item.labels.length >= 1 && item.labels.length <= 2, `${item.id}: 1 or 2 tags, got ${item.labels}`);
      const image = await decodeImage(item.imagePath);
      assert.deepEqual([image.width, image.height], [64, 64]);
    }
  }
  // The labels file declares the classes, so reading it with other classes is refused.
  await assert.rejects(readVoc({ root, split: 'val' }), (e: unknown) => e instanceof DataError && /differ from the classes in use/.test(e.message));
});

/** Distance of an RGB pixel to a colour. */
const dist = (rgb: Uint8Array, p: number, c: readonly number[]) =>
  Math.hypot(rgb[p * 3]! - c[0]!, rgb[p * 3 + 1]! - c[1]!, rgb[p * 3 + 2]! - c[2]!);

test('masks hold exactly the tagged classes; cap-coloured pixels lie inside a mask of their class', async (t) => {
  const root = await tempDir(t);
  await makeSyntheticDataset({ root, seed: 11, ...SMALL });
  const classes = [...SYNTHETIC_CLASSES];
  let capPixels = 0;
  for (const split of ['train_aug', 'val']) {
    const { items } = await readVoc({ root, split, classes, labelSources: ['json'] });
    for (const item of items) {
      const [image, mask] = await Promise.all([decodeImage(item.imagePath), readMask(item.maskPath!)]);
      const present = [...new Set(mask.data)].filter((v) => v !== 0).map((v) => v - 1).sort();
      assert.deepEqual(present, [...item.labels].sort(), `${item.id}: mask classes vs tags`);
      assert.ok(mask.data.includes(0), `${item.id}: has background`);
      const count = new Array<number>(classes.length).fill(0);
      for (let p = 0; p < mask.data.length; p++) {
        // Nothing but a cap comes within 60 levels of a cap colour: from the colour ranges, the nearest a background
        // or body pixel can get is ~69 (background to the green cap); cap pixels are within 7 (their noise).
        const near = CAP_COLOURS.findIndex((c) => dist(image.data, p, c) < 60);
        if (near < 0) continue;
        assert.equal(mask.data[p], near + 1, `${item.id}: ${classes[near]} cap pixel ${p} outside its object's mask`);
        count[near]!++;
      }
      for (const l of item.labels) assert.ok(count[l]! >= 10, `${item.id}: tagged ${classes[l]} but only ${count[l]} cap pixels`);
      capPixels += count.reduce((a, b) => a + b, 0);
    }
  }
  assert.ok(capPixels > 0);
});

test('objects: caps are a small part of the object, and body colours are drawn independently of the class', () => {
  // Over many rendered images: the cap covers a few % of its object, and every class appears with every body colour.
  const pairs = new Set<string>();
  let share = 0;
  let objects = 0;
  for (let k = 0; k < 200; k++) {
    const img = renderSyntheticImage(new Rng(5, 0, k), 96);
    for (const o of img.objects) {
      assert.ok(o.capPixels > 0 && o.capPixels < o.pixels / 5, `a small cap inside a larger body: ${o.capPixels} of ${o.pixels}`);
      share += o.capPixels / o.pixels;
      objects++;
      pairs.add(`${o.label}:${o.bodyColour}`);
    }
    // The objects' pixel counts are the mask's.
    for (const l of img.labels) {
      const inMask = img.mask.data.filter((v) => v === l + 1).length;
      assert.equal(inMask, img.objects.filter((o) => o.label === l).reduce((a, o) => a + o.pixels, 0));
    }
  }
  const capShare = share / objects;
  assert.ok(capShare > 0.03 && capShare < 0.12, `caps cover ${(100 * capShare).toFixed(1)} % of their objects`);
  assert.equal(pairs.size, CAP_COLOURS.length * BODY_COLOURS.length, `class:body-colour pairs seen: ${[...pairs].sort().join(' ')}`);
});

test('bad options are refused with the option named', async (t) => {
  const root = await tempDir(t);
  await assert.rejects(makeSyntheticDataset({ root, train: 0 }), /train must be an integer >= 1, got 0/);
  await assert.rejects(makeSyntheticDataset({ root, train: 4, scored: 5 }), /scored must be an integer in 1..train \(4\), got 5/);
  await assert.rejects(makeSyntheticDataset({ root, size: 16 }), /size must be an integer >= 32, got 16/);
  await assert.rejects(makeSyntheticDataset({ root, seed: 1.5 }), /seed must be an integer >= 0, got 1.5/);
});
