import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { manualSeed, randn, tensor, tidy, zeros } from '../../src/engine/index.js';
import { readMask } from '../../src/data/index.js';
import { CamMethod, type Method } from '../../src/methods/index.js';
import { multiScaleCam, readCam, readCamMetadata, seedsFromCam, writeCam, writeSeeds } from '../../src/cams/index.js';
import { TinyBackbone } from '../methods/tiny.js';

function planeMax(data: Float32Array, k: number, plane: number): number {
  let m = -Infinity;
  for (let i = 0; i < plane; i++) m = Math.max(m, data[k * plane + i]!);
  return m;
}

test('multi-scale flip CAM: original resolution, zero for absent classes, max 1 per present class', () => {
  manualSeed(3);
  const method = new CamMethod(new TinyBackbone({ channels: 8 }), { numClasses: 5 });
  method.model.eval();
  tidy(() => {
    const image = randn([1, 3, 37, 50]); // odd sizes: every scale rounds differently
    const cams = multiScaleCam(method, image, [1, 3], { scales: [0.5, 1, 1.5, 2], flip: true });
    assert.deepEqual(cams.shape, [5, 37, 50]);
    const data = cams.toFloat32Array();
    const plane = 37 * 50;
    for (const absent of [0, 2, 4]) assert.equal(planeMax(data, absent, plane), 0, `class ${absent} is not in the tags`);
    for (const present of [1, 3]) {
      const m = planeMax(data, present, plane);
      // A class whose channel never fires stays all zero; with random weights both fire here.
      assert.ok(Math.abs(m - 1) < 1e-6, `class ${present} peaks at ${m}`);
    }
    let min = Infinity;
    for (const v of data) min = Math.min(min, v);
    assert.ok(min >= 0, 'CAMs are rectified');
  });
  method.model.dispose();
});

test('CAM normalisation: max divides by the peak, min-max (SEAM) also removes the floor', () => {
  tidy(() => {
    // Class 0: a floor of 0.5 with a peak of 1.5 at (1, 1); class 1: a floor of 0.2 with 0.7 at (2, 3).
    const raw = new Float32Array(2 * 16);
    raw.fill(0.5, 0, 16);
    raw.fill(0.2, 16, 32);
    raw[1 * 4 + 1] = 1.5;
    raw[16 + 2 * 4 + 3] = 0.7;
    const fixed = { numClasses: 2, cams: () => tensor(raw, { shape: [1, 2, 4, 4] }) } as unknown as Method;
    const at = (t: Float32Array, c: number, y: number, x: number) => t[c * 16 + y * 4 + x]!;
    const max = multiScaleCam(fixed, zeros([1, 3, 4, 4]), [0, 1], { scales: [1], flip: false }).toFloat32Array();
    assert.ok(Math.abs(at(max, 0, 0, 0) - 1 / 3) < 1e-5 && Math.abs(at(max, 1, 0, 0) - 0.2 / 0.7) < 1e-5, 'max keeps the floor');
    assert.ok(Math.abs(at(max, 0, 1, 1) - 1) < 1e-5 && Math.abs(at(max, 1, 2, 3) - 1) < 1e-5);
    // The method's own choice applies when the options do not say.
    const seamLike = { ...fixed, camNormalization: 'minmax' } as unknown as Method;
    const mm = multiScaleCam(seamLike, zeros([1, 3, 4, 4]), [0, 1], { scales: [1], flip: false }).toFloat32Array();
    for (let c = 0; c < 2; c++) {
      for (let y = 0; y < 4; y++) {
        for (let x = 0; x < 4; x++) {
          const peak = (c === 0 && y === 1 && x === 1) || (c === 1 && y === 2 && x === 3);
          assert.ok(Math.abs(at(mm, c, y, x) - (peak ? 1 : 0)) < 1e-5, `min-max class ${c} at (${y}, ${x}): ${at(mm, c, y, x)}`);
        }
      }
    }
    const forced = multiScaleCam(seamLike, zeros([1, 3, 4, 4]), [0], { scales: [1], flip: false, normalization: 'max' }).toFloat32Array();
    assert.ok(Math.abs(at(forced, 0, 0, 0) - 1 / 3) < 1e-5, 'options override the method');
    assert.equal(Math.max(...forced.subarray(16)), 0, 'an untagged class stays zero');
  });
});

test('flip equivariance: a flip-equivariant backbone gives CAM(flip(x)) = flip(CAM(x))', () => {
  manualSeed(4);
  const method = new CamMethod(new TinyBackbone({ channels: 6, flipEquivariant: true }), { numClasses: 3 });
  tidy(() => {
    const x = randn([1, 3, 21, 30]);
    for (const flip of [false, true]) {
      const a = multiScaleCam(method, x, [0, 1, 2], { scales: [0.5, 1, 1.5], flip });
      const b = multiScaleCam(method, x.flip(3), [0, 1, 2], { scales: [0.5, 1, 1.5], flip });
      assert.ok(b.allclose(a.flip(2), 1e-4, 1e-5), `flip=${flip}: max diff ${b.sub(a.flip(2)).abs().max().item()}`);
    }
  });
  method.model.dispose();
});

test('with flip passes, the CAM of any backbone is flip-equivariant', () => {
  manualSeed(5);
  const method = new CamMethod(new TinyBackbone({ channels: 6 }), { numClasses: 2 });
  tidy(() => {
    const x = randn([1, 3, 24, 33]);
    const a = multiScaleCam(method, x, [0, 1], { scales: [1, 2] });
    const b = multiScaleCam(method, x.flip(3), [0, 1], { scales: [1, 2] });
    assert.ok(b.allclose(a.flip(2), 1e-4, 1e-5));
  });
  method.model.dispose();
});

test('CAM files round-trip (float16, label planes only) and seeds become palette PNGs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-cams-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  manualSeed(6);
  const method = new CamMethod(new TinyBackbone({ channels: 8 }), { numClasses: 4 });
  const { full, path } = tidy(() => {
    const cams = multiScaleCam(method, randn([1, 3, 19, 23]), [0, 2], { scales: [1] });
    const p = writeCam(join(dir, 'cams'), cams, [0, 2], {
      id: 'sub/img_1', classes: ['a', 'b', 'c', 'd'], scales: [1], flip: true, method: 'cam', backbone: 'tiny', normalization: 'minmax',
    });
    return { full: cams.toFloat32Array().slice(), path: p };
  });
  assert.ok(path.endsWith(join('cams', 'sub', 'img_1.safetensors')));
  const rec = readCam(path);
  assert.deepEqual([rec.id, rec.width, rec.height], ['sub/img_1', 23, 19]);
  assert.deepEqual(rec.labels, [0, 2]);
  const plane = 19 * 23;
  assert.equal(rec.cams.length, 2 * plane);
  for (const [k, cls] of [[0, 0], [1, 2]] as const) {
    for (let i = 0; i < plane; i++) {
      const want = full[cls * plane + i]!;
      assert.ok(Math.abs(rec.cams[k * plane + i]! - want) <= 1e-3 * Math.max(1, want), 'float16 precision');
    }
  }
  const meta = readCamMetadata(path);
  assert.equal(meta.format, 'weakseg-cams/1');
  assert.deepEqual(JSON.parse(meta.classes!), ['a', 'c']);
  assert.equal(meta.normalization, 'minmax');

  const seeds = seedsFromCam(rec, 0.3);
  // Per pixel, by hand: the best label plane wins if it exceeds t (then label + 1), else background (0).
  const expected = Array.from({ length: plane }, (_, i) => {
    let best = 0.3;
    let value = 0;
    rec.labels.forEach((cls, k) => {
      if (rec.cams[k * plane + i]! > best) { best = rec.cams[k * plane + i]!; value = cls + 1; }
    });
    return value;
  });
  assert.deepEqual([...seeds.data], expected);
  assert.deepEqual([...new Set(expected)].sort(), [0, 1, 3], 'the case has background and both labels');
  const png = await writeSeeds(join(dir, 'seeds'), rec, 0.3);
  const back = await readMask(png);
  assert.deepEqual(back.data, seeds.data);
  method.model.dispose();
});
