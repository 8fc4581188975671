import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  IMAGENET_NORM,
  MOBILENET_V2_NORM,
  colorJitter,
  hflip,
  normalizeToChw,
  randomCrop,
  randomHFlip,
  randomRescale,
  trainAugment,
} from '../../src/data/augment.js';
import type { LabelMap } from '../../src/data/image.js';
import { Rng } from '../../src/data/rng.js';
import { coordImage } from './helpers.js';

/** Mask of the coordinate image: label = (x + 2y) % 20 + 1, so it can be checked against the pixel's R, G. */
function coordMask(width: number, height: number): LabelMap {
  const data = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) data[y * width + x] = ((x + 2 * y) % 20) + 1;
  return { width, height, data };
}

test('Rng is deterministic per seed words, and streams differ', () => {
  const a = new Rng(42, 1, 7);
  const b = new Rng(42, 1, 7);
  const seqA = Array.from({ length: 5 }, () => a.nextUint32());
  assert.deepEqual(seqA, Array.from({ length: 5 }, () => b.nextUint32()));
  const c = new Rng(42, 1, 8);
  assert.notDeepEqual(seqA, Array.from({ length: 5 }, () => c.nextUint32()));
  const r = new Rng(1);
  for (let i = 0; i < 1000; i++) {
    const f = r.float();
    assert.ok(f >= 0 && f < 1);
    const k = r.int(5);
    assert.ok(Number.isInteger(k) && k >= 0 && k < 5);
  }
  assert.deepEqual(new Rng(3).shuffle([1, 2, 3, 4, 5, 6]).sort(), [1, 2, 3, 4, 5, 6]);
  assert.throws(() => new Rng(0.5), /safe integers/);
});

test('a flipped image flips its mask', () => {
  const image = coordImage(5, 3);
  const mask = coordMask(5, 3);
  const { image: fi, mask: fm } = hflip({ image, mask });
  assert.ok(fm);
  for (let y = 0; y < 3; y++) {
    for (let x = 0; x < 5; x++) {
      const i = y * 5 + x;
      const sx = fi.data[i * 3] as number; // the source x this pixel came from
      assert.equal(sx, 4 - x);
      assert.equal(fi.data[i * 3 + 1], y);
      assert.equal(fm.data[i], ((sx + 2 * y) % 20) + 1, 'mask moved with the image');
    }
  }
  // Over many draws randomHFlip both flips and keeps, deterministically per seed.
  const rng = new Rng(5);
  const outcomes = new Set(Array.from({ length: 20 }, () => randomHFlip({ image, mask }, rng).image.data[0]));
  assert.deepEqual([...outcomes].sort(), [0, 4]);
});

test('random crops keep image and mask aligned, pad the mask with 255 and mark padding invalid', () => {
  const image = coordImage(9, 6);
  const mask = coordMask(9, 6);
  const rng = new Rng(11);
  for (let trial = 0; trial < 50; trial++) {
    // 7 wide (crop inside the 9 px width) x 10 high (taller than the 6 px image: padded).
    const crop = randomCrop({ image, mask }, rng, 7, 10, [1, 2, 3]);
    assert.ok(crop.mask);
    assert.deepEqual([crop.image.width, crop.image.height], [7, 10]);
    let validCount = 0;
    for (let i = 0; i < 70; i++) {
      const [r, g, b] = crop.image.data.subarray(i * 3, i * 3 + 3);
      if (crop.valid[i]) {
        validCount++;
        assert.equal(b, 7);
        assert.equal(crop.mask.data[i], (((r as number) + 2 * (g as number)) % 20) + 1, 'mask pixel matches image pixel');
      } else {
        assert.deepEqual([r, g, b], [1, 2, 3], 'padding gets the fill value');
        assert.equal(crop.mask.data[i], 255, 'padding is ignored in the mask');
      }
    }
    assert.equal(validCount, 7 * 6);
    // The image rows appear contiguously and in order.
    const ys = new Set<number>();
    for (let i = 0; i < 70; i++) if (crop.valid[i]) ys.add(crop.image.data[i * 3 + 1] as number);
    assert.deepEqual([...ys].sort(), [0, 1, 2, 3, 4, 5]);
  }
});

test('random rescale resizes image and mask together without inventing labels', () => {
  const image = coordImage(20, 10);
  const mask = coordMask(20, 10);
  const labels = new Set(mask.data);
  const rng = new Rng(3);
  for (let i = 0; i < 10; i++) {
    const out = randomRescale({ image, mask }, rng, [0.5, 1.5]);
    assert.ok(out.mask);
    assert.equal(out.mask.width, out.image.width);
    assert.equal(out.mask.height, out.image.height);
    assert.ok(out.image.width >= 10 && out.image.width <= 30);
    assert.ok(out.mask.data.every((v) => labels.has(v)));
  }
});

test('colour jitter: deterministic per seed, clamps 8-bit values, leaves gray gray under saturation', () => {
  const image = coordImage(16, 16);
  const a = colorJitter(image, new Rng(9), { brightness: 0.5, contrast: 0.5, saturation: 0.5 });
  const b = colorJitter(image, new Rng(9), { brightness: 0.5, contrast: 0.5, saturation: 0.5 });
  assert.deepEqual(a.data, b.data);
  assert.ok(a.data instanceof Uint8Array);
  const gray = { width: 2, height: 1, channels: 3, data: new Uint8Array([100, 100, 100, 50, 50, 50]) };
  const sat = colorJitter(gray, new Rng(1), { saturation: 0.9 });
  assert.deepEqual([...sat.data], [100, 100, 100, 50, 50, 50]);
  // Clamping, against values worked out here: with contrast alone the one draw is the factor f ~ U[0, 11], and a
  // pixel becomes f * v + (1 - f) * mean luma (130 for these two). Seed 2 draws f > 1.1, which takes 250 above
  // 255 and 10 below 0: stored 8-bit values would wrap around (to 15 and 249 at f = 1.1) unless clamped.
  const pair = { width: 2, height: 1, channels: 3, data: new Uint8Array([250, 250, 250, 10, 10, 10]) };
  const f = new Rng(2).uniform(0, 11);
  assert.ok(f > 1.1, `seed 2 draws ${f}`);
  assert.deepEqual([...colorJitter(pair, new Rng(2), { contrast: 10 }).data], [255, 255, 255, 0, 0, 0]);
  // A seed drawing f < 1 keeps both in range: rounded, not clamped.
  const seed = Array.from({ length: 100 }, (_, k) => k).find((k) => new Rng(k).uniform(0, 11) < 0.9)!;
  const g = new Rng(seed).uniform(0, 11);
  const kept = colorJitter(pair, new Rng(seed), { contrast: 10 }).data;
  kept.forEach((v, i) => {
    const exact = g * (i < 3 ? 250 : 10) + (1 - g) * 130;
    assert.ok(Math.abs(v - exact) <= 0.5 + 1e-9, `seed ${seed}, f = ${g}: value ${i} is ${v}, expected ${exact} rounded`);
  });
});

test('normalizeToChw: planar output, mean/std per channel, padding exactly 0', () => {
  const image = { width: 2, height: 1, channels: 3, data: new Uint8Array([255, 0, 51, 0, 255, 102]) };
  const out = normalizeToChw(image, MOBILENET_V2_NORM);
  // mean 0.5 std 0.5 maps [0, 1] to [-1, 1]; planes R, G, B.
  const expected = [1, -1, -1, 1, 51 / 255 * 2 - 1, 102 / 255 * 2 - 1];
  out.forEach((v, i) => assert.ok(Math.abs(v - (expected[i] as number)) < 1e-6, `${i}: ${v}`));
  const imagenet = normalizeToChw(image, IMAGENET_NORM, { valid: new Uint8Array([1, 0]) });
  assert.ok(Math.abs((imagenet[0] as number) - (1 - 0.485) / 0.229) < 1e-5);
  assert.deepEqual([imagenet[1], imagenet[3], imagenet[5]], [0, 0, 0]);
});

test('trainAugment is reproducible and returns aligned CHW image, mask and validity map', () => {
  const image = coordImage(30, 20);
  const mask = coordMask(30, 20);
  const options = { cropSize: 24, scaleRange: [0.7, 1.3] as const, jitter: { brightness: 0.3 } };
  const a = trainAugment(image, mask, new Rng(1, 0, 5), options);
  const b = trainAugment(image, mask, new Rng(1, 0, 5), options);
  assert.deepEqual(a, b);
  assert.equal(a.image.length, 3 * 24 * 24);
  assert.equal(a.mask?.length, 24 * 24);
  for (let i = 0; i < 24 * 24; i++) {
    if (!a.valid[i]) {
      assert.equal(a.mask?.[i], 255);
      assert.equal(a.image[i], 0);
    }
  }
  const noMask = trainAugment(image, undefined, new Rng(1), { cropSize: [8, 4] });
  assert.equal(noMask.mask, undefined);
  assert.deepEqual([noMask.channels, noMask.height, noMask.width], [3, 4, 8]);
});
