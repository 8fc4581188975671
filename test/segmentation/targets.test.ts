// seg.ignoreBand's targets: exactly the pixels whose top CAM score lies in [low, high) become 255.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { CamRecord } from '../../src/cams/format.js';
import { ignoreUncertainBand } from '../../src/segmentation/targets.js';

// A 4 x 2 image with classes 3 and 7 (planes in that order); the pseudo-mask's labels are arbitrary here.
const W = 4;
const H = 2;
const cam: CamRecord = {
  id: 'img', labels: [3, 7], width: W, height: H, metadata: {},
  cams: Float32Array.from([
    // class 3       row 0             row 1
    0.0, 0.1, 0.5, 0.9, /**/ 0.2, 0.0, 0.3, 0.05,
    // class 7
    0.05, 0.0, 0.1, 0.0, /**/ 0.0, 0.25, 0.0, 0.1,
  ]),
};
// Per pixel, the top score m: 0.05 0.1 0.5 0.9 / 0.2 0.25 0.3 0.1
const mask = { width: W, height: H, data: Uint8Array.from([0, 0, 4, 4, 8, 8, 255, 0]) };

test('ignore band: pixels with top CAM score in [low, high) are 255, the rest keep their label', () => {
  const out = ignoreUncertainBand(mask, cam, [0.1, 0.3]);
  // In band: m = 0.1 (pixels 1 and 7: low is inside), 0.2 (4), 0.25 (5); m = 0.3 (6) is outside but was 255 already.
  assert.deepEqual(Array.from(out.data), [0, 255, 4, 4, 255, 255, 255, 255]);
  assert.deepEqual([out.width, out.height], [W, H]);
  assert.deepEqual(Array.from(mask.data), [0, 0, 4, 4, 8, 8, 255, 0], 'the input mask is not modified');
  // An empty band changes nothing; the full band ignores all but m = 1.
  assert.deepEqual(Array.from(ignoreUncertainBand(mask, cam, [0.2, 0.2]).data), Array.from(mask.data));
  assert.deepEqual(Array.from(ignoreUncertainBand(mask, cam, [0, 1]).data), new Array(8).fill(255));
});

test('ignore band: an image without classes has m = 0 everywhere; wrong sizes and bands are refused', () => {
  const none: CamRecord = { ...cam, labels: [], cams: new Float32Array(0) };
  assert.deepEqual(Array.from(ignoreUncertainBand(mask, none, [0, 0.1]).data), new Array(8).fill(255));
  assert.deepEqual(Array.from(ignoreUncertainBand(mask, none, [0.05, 0.1]).data), Array.from(mask.data));
  assert.throws(() => ignoreUncertainBand({ width: 2, height: 4, data: mask.data }, cam, [0.1, 0.3]), /img: the pseudo-mask is 2x4 but its CAM 4x2/);
  assert.throws(() => ignoreUncertainBand(mask, cam, [0.3, 0.1]), /0 <= low <= high <= 1/);
});
