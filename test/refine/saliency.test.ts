// gen_gt.py's rules (MCIS pseudo-masks from saliency) on hand-made maps, each rule alone.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { GEN_GT_RULES, saliencyPseudoMask } from '../../src/refine/saliency.js';

const f32 = (v: number[]) => new Float32Array(v);

test('saliency rules: background from low saliency, classes by argmax of min-max maps, labels mapped to class ids', () => {
  // 1 x 4 image, classes 2 and 6 (ids 3 and 7). Saliency: 0, 0, 255, 255 (right half salient).
  // class 2 map 0, 0, 10, 4 -> minmax 0, 0, 1, 0.4; class 6 map 0, 1, 2, 8 -> 0, 0.125, 0.25, 1 (0.25 < 0.3 -> 0).
  const mask = saliencyPseudoMask(f32([0, 0, 10, 4, 0, 1, 2, 8]), [2, 6], [0, 0, 255, 255], 1, 4);
  // pixel 0: bg 1 (and > 0.99 alone) -> 0; pixel 1: bg 1 -> 0; pixel 2: class 2 (1.0) vs bg 0 -> 3; pixel 3: class 6 -> 7
  assert.deepEqual([...mask], [0, 0, 3, 7]);
});

test('saliency rules: conflicts (two cues > 0.99) and salient background are ignored (255)', () => {
  // 1 x 4, classes 0 and 1, maps 5,0,0,0 and 5,0,0,5 (min-max: 1,0,0,0 and 1,0,0,1), saliency 200, 40, 10, 250.
  // pixel 0: both classes at 1 -> conflict, 255; pixel 1: background (0.84) but saliency 40 >= 32 -> 255;
  // pixel 2: background, saliency 10 -> 0; pixel 3: class 1 (background cue 0.02 zeroed) -> 2.
  const mask = saliencyPseudoMask(f32([5, 0, 0, 0, 5, 0, 0, 5]), [0, 1], [200, 40, 10, 250], 1, 4);
  assert.deepEqual([...mask], [255, 255, 0, 2]);
});

test('saliency rules: a map peak (> 0.95) marks its pixels salient, so nearby background becomes ignored; cues < 0.3 are zeroed', () => {
  // saliency all 0 (background cue 1 everywhere). Class 4's map 2, 10, 5 -> 0, 1, 0.375: at pixel 1 two cues are
  // above 0.99 (a conflict -> 255); pixel 0 -> 0; pixel 2's 0.375 loses to the background -> 0.
  const mask = saliencyPseudoMask(f32([2, 10, 5]), [4], [0, 0, 0], 1, 3, { ...GEN_GT_RULES, minForeground: 0 });
  assert.deepEqual([...mask], [0, 255, 0]);
  // With a saliency of 255 at pixel 1 the background cue there is 0: class 4 wins (id 5).
  assert.deepEqual([...saliencyPseudoMask(f32([2, 10, 5]), [4], [0, 255, 0], 1, 3, { ...GEN_GT_RULES, minForeground: 0 })], [0, 5, 0]);
});

test('saliency rules: under 1 % foreground the whole image is ignored; bad sizes are errors naming the input', () => {
  const n = 200;
  const map = new Float32Array(n);
  map[0] = 1;
  const sal = new Array<number>(n).fill(0);
  sal[0] = 255;
  // one foreground pixel of 200 (0.5 %) -> everything 255
  assert.ok(saliencyPseudoMask(map, [0], sal, 10, 20).every((v) => v === 255));
  sal[1] = 255;
  map[1] = 1;
  sal[2] = 255;
  map[2] = 1;
  // three of 200 (1.5 %) -> kept
  const kept = saliencyPseudoMask(map, [0], sal, 10, 20);
  assert.deepEqual([kept[0], kept[1], kept[2], kept[3]], [1, 1, 1, 0]);
  assert.throws(() => saliencyPseudoMask(map, [0], [1, 2], 10, 20), /saliency has 2 values/);
  assert.throws(() => saliencyPseudoMask(map, [0, 1], sal, 10, 20), /maps have 200 values, expected 2/);
});
