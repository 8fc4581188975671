import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  IMAGENET_NORM,
  MOBILENET_V2_NORM,
  colorJitter,
  hflip,
  normalizeToChw,
  randomCrop,
  randomCutout,
  randomHFlip,
  randomRescale,
  randomResizeLong,
  rescale,
  resizeLong,
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

test('resizeLong: the longer side becomes the given length, the other rounded half to even as numpy rounds', () => {
  const size = (w: number, h: number, long: number) => {
    const out = resizeLong({ image: coordImage(w, h), mask: coordMask(w, h) }, long);
    assert.deepEqual([out.mask?.width, out.mask?.height], [out.image.width, out.image.height], 'the mask follows');
    return [out.image.width, out.image.height];
  };
  assert.deepEqual(size(20, 10, 30), [30, 15]);
  assert.deepEqual(size(10, 20, 7), [4, 7]); // 3.5 -> 4
  assert.deepEqual(size(4, 1, 10), [10, 2]); // 2.5 -> 2 (np.round; Math.round would give 3)
  assert.deepEqual(size(6, 6, 5), [5, 5]);
  assert.deepEqual(size(500, 333, 449), [449, 299]); // 333 * 449 / 500 = 299.03
  // The same (bilinear) resampling as rescale: 20x10 to long side 30 is rescale by 1.5.
  const pair = { image: coordImage(20, 10) };
  assert.deepEqual(resizeLong(pair, 30).image, rescale(pair, 1.5).image);
  assert.throws(() => resizeLong(pair, 7.5), /long side must be a positive integer/);
});

test('randomResizeLong: every integer of [lo, hi] is drawn, aspect kept, the same seed the same image', () => {
  const pair = { image: coordImage(20, 10), mask: coordMask(20, 10) };
  const shortSide: Record<number, number> = { 5: 2, 6: 3, 7: 4, 8: 4 }; // long / 2, rounded half to even
  const seen = new Set<number>();
  for (let seed = 0; seed < 60; seed++) {
    const a = randomResizeLong(pair, new Rng(seed), [5, 8]);
    const b = randomResizeLong(pair, new Rng(seed), [5, 8]);
    assert.deepEqual(a, b, `seed ${seed}`);
    seen.add(a.image.width);
    assert.equal(a.image.height, shortSide[a.image.width], `seed ${seed}: ${a.image.width}x${a.image.height}`);
    assert.equal(a.mask?.width, a.image.width);
  }
  assert.deepEqual([...seen].sort(), [5, 6, 7, 8]);
  // A one-value range always gives that value.
  assert.equal(randomResizeLong(pair, new Rng(3), [9, 9]).image.width, 9);
  for (const bad of [[8, 5], [5.5, 8], [0, 3]] as const) {
    assert.throws(() => randomResizeLong(pair, new Rng(0), bad), /long-side range must be integers with 1 <= lo <= hi/);
  }
});

/** A planar C x H x W image whose values are 1, 2, 3, ... (none 0). */
function countingChw(channels: number, height: number, width: number): Float32Array {
  return Float32Array.from({ length: channels * height * width }, (_, i) => i + 1);
}

/** AMR's boxes, worked out from the same draws (per hole: centre row, then column), clipped at the border. */
function expectedBoxes(seed: number, width: number, height: number, size: number, holes: number) {
  const rng = new Rng(seed);
  const half = Math.floor(size / 2);
  return Array.from({ length: holes }, () => {
    const cy = rng.int(height);
    const cx = rng.int(width);
    return { y0: Math.max(0, cy - half), y1: Math.min(height, cy + half), x0: Math.max(0, cx - half), x1: Math.min(width, cx + half) };
  });
}

test('randomCutout zeroes exactly its squares, clipped at the border, in every channel, and nothing else', () => {
  const [C, H, W] = [3, 8, 10];
  const image = countingChw(C, H, W);
  let interior = 0;
  let clipped = 0;
  for (let seed = 0; seed < 40; seed++) {
    for (const holes of [1, 3]) {
      const out = randomCutout(image, W, H, new Rng(seed), { size: 4, holes });
      const boxes = expectedBoxes(seed, W, H, 4, holes);
      const inside = (y: number, x: number) => boxes.some((b) => y >= b.y0 && y < b.y1 && x >= b.x0 && x < b.x1);
      for (let c = 0; c < C; c++) {
        for (let y = 0; y < H; y++) {
          for (let x = 0; x < W; x++) {
            const i = (c * H + y) * W + x;
            assert.equal(out[i], inside(y, x) ? 0 : image[i], `seed ${seed}, holes ${holes}: channel ${c}, (${x}, ${y})`);
          }
        }
      }
      if (holes === 1) {
        const b = boxes[0]!;
        const area = (b.y1 - b.y0) * (b.x1 - b.x0);
        if (area === 16) interior++;
        else clipped++;
        assert.equal(out.subarray(0, H * W).filter((v) => v === 0).length, area);
      }
    }
  }
  assert.ok(interior > 0 && clipped > 0, `both kinds of square were drawn (${interior} whole, ${clipped} clipped)`);
  assert.deepEqual([...image.subarray(0, 3)], [1, 2, 3], 'the input is left as it was');
  // An odd size spans centre +- floor(size / 2), as AMR's code: 5 cuts what 4 cuts.
  assert.deepEqual(randomCutout(image, W, H, new Rng(7), { size: 5, holes: 2 }), randomCutout(image, W, H, new Rng(7), { size: 4, holes: 2 }));
  assert.throws(() => randomCutout(image, W, H, new Rng(0), { size: 0, holes: 1 }), /positive integers/);
  assert.throws(() => randomCutout(image, 7, H, new Rng(0), { size: 2, holes: 1 }), /not a multiple of 7x8/);
});

test('trainAugment: longSide reaches the crop; cutout changes only image pixels, to 0, after every other draw', () => {
  const image = coordImage(30, 20);
  const mask = coordMask(30, 20);
  // A crop larger than any drawn size holds the whole resized image: its valid pixels are long x short.
  const sizes = new Set<number>();
  for (let seed = 0; seed < 20; seed++) {
    const a = trainAugment(image, mask, new Rng(seed), { cropSize: 40, longSide: [25, 35] });
    assert.deepEqual(a, trainAugment(image, mask, new Rng(seed), { cropSize: 40, longSide: [25, 35] }));
    const valid = a.valid.reduce((s, v) => s + v, 0);
    // 30x20 at long side l is l x round(2l / 3) (never a half, so no tie to break).
    const long = Array.from({ length: 11 }, (_, k) => 25 + k).find((l) => l * Math.round((2 * l) / 3) === valid);
    assert.ok(long !== undefined, `seed ${seed}: ${valid} valid pixels is no long x short of [25, 35]`);
    sizes.add(long);
  }
  assert.ok(sizes.size > 3, `several long sides drawn: ${[...sizes]}`);
  assert.throws(() => trainAugment(image, mask, new Rng(0), { cropSize: 8, scaleRange: [1, 1], longSide: [5, 6] }), /give one/);

  const options = { cropSize: 24, scaleRange: [0.7, 1.3] as const, jitter: { brightness: 0.3 } };
  for (let seed = 0; seed < 5; seed++) {
    const plain = trainAugment(image, mask, new Rng(seed), options);
    const cut = trainAugment(image, mask, new Rng(seed), { ...options, cutout: { size: 8, holes: 3 } });
    assert.deepEqual([cut.mask, cut.valid], [plain.mask, plain.valid], 'mask and validity map are kept');
    let changed = 0;
    cut.image.forEach((v, i) => {
      if (v !== plain.image[i]) {
        assert.equal(v, 0);
        changed++;
      }
    });
    assert.ok(changed > 0, `seed ${seed}: some pixels cut`);
  }
});
