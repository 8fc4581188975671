import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfusionMatrix, formatMiouTable, withBackground } from '../../src/eval/miou.js';

const near = (a: number | null, b: number) => assert.ok(a !== null && Math.abs(a - b) < 1e-12, `${a} != ${b}`);

test('mIoU against a hand-computed confusion matrix (255 in gt ignored, 255 in pred a miss)', () => {
  //           pixel: 0  1  2  3  4  5  6  7  8    9
  const gt = new Uint8Array([0, 0, 0, 1, 1, 1, 2, 2, 255, 1]);
  const pred = new Uint8Array([0, 0, 1, 1, 1, 2, 2, 0, 2, 255]);
  // Pixel 8 is dropped (gt 255). Pixel 9 (gt 1, pred 255) is a miss for class 1.
  //             pred 0  1  2  out
  //   gt 0         2  1  0   0     T0 = 3
  //   gt 1         0  2  1   1     T1 = 4
  //   gt 2         1  0  1   0     T2 = 2
  //   P            3  3  2
  // IoU0 = 2 / (3 + 3 - 2) = 1/2, IoU1 = 2 / (4 + 3 - 2) = 2/5, IoU2 = 1 / (2 + 2 - 1) = 1/3.
  const cm = new ConfusionMatrix(3);
  cm.add(pred, gt);
  assert.deepEqual([...cm.counts], [2, 1, 0, 0, 0, 2, 1, 1, 1, 0, 1, 0]);
  const r = cm.score(['bg', 'a', 'b']);
  near(r.classes[0]?.iou ?? null, 1 / 2);
  near(r.classes[1]?.iou ?? null, 2 / 5);
  near(r.classes[2]?.iou ?? null, 1 / 3);
  near(r.miou, (1 / 2 + 2 / 5 + 1 / 3) / 3);
  near(r.classes[1]?.precision ?? null, 2 / 3);
  near(r.classes[1]?.recall ?? null, 2 / 4);
  assert.equal(r.scoredPixels, 9);
  assert.equal(r.unpredictedPixels, 1);
  near(r.pixelAccuracy, 5 / 9);
  assert.equal(r.presentClasses, 3);
  assert.deepEqual(
    r.classes.map((c) => [c.name, c.tp, c.gtPixels, c.predPixels]),
    [['bg', 2, 3, 3], ['a', 2, 4, 3], ['b', 1, 2, 2]],
  );
});

test('nan-mean over present classes: absent from gt and pred = skipped; predicted only = IoU 0', () => {
  const cm = new ConfusionMatrix(4);
  cm.add(new Uint8Array([0, 0, 2, 1]), new Uint8Array([0, 0, 0, 1]));
  const r = cm.score();
  // bg: TP 2, T 3, P 2 -> 2/3; class 1: 1/1; class 2 predicted once, never in gt -> 0; class 3 absent -> null.
  assert.deepEqual(r.classes.map((c) => c.iou), [2 / 3, 1, 0, null]);
  assert.equal(r.presentClasses, 3);
  near(r.miou, (2 / 3 + 1 + 0) / 3);
  assert.equal(r.classes[3]?.precision, null);
  assert.equal(r.classes[3]?.recall, null);
  assert.equal(r.classes[3]?.name, 'class 3');
  // JSON-serialisable as is: no NaN anywhere.
  assert.deepEqual(JSON.parse(JSON.stringify(r)), r);
  assert.equal(new ConfusionMatrix(2).score().miou, null);
});

test('accumulates over images (not a mean of per-image scores) and merges', () => {
  const a = new ConfusionMatrix(2);
  a.add(new Uint8Array([1, 1]), new Uint8Array([1, 1])); // perfect
  const b = new ConfusionMatrix(2);
  b.add(new Uint8Array([0, 0, 0, 0, 0, 0]), new Uint8Array([1, 1, 0, 0, 0, 0]));
  a.merge(b);
  const r = a.score();
  // class 1: TP 2, T 4, P 2 -> 1/2; background: TP 4, T 4, P 6 -> 2/3.
  assert.deepEqual(r.classes.map((c) => c.iou), [4 / 6, 2 / 4]);
  assert.equal(a.at(1, 0), 2);
});

test('invalid inputs are explicit errors', () => {
  const cm = new ConfusionMatrix(3);
  assert.throws(() => cm.add(new Uint8Array(2), new Uint8Array(3), '2007_000032'), /2007_000032: prediction has 2 pixels, ground truth 3/);
  assert.throws(() => cm.add(new Uint8Array(1), new Uint8Array([21]), '2007_000032'), /2007_000032: ground-truth value 21 at pixel 0 is not a class id \(K = 3\)/);
  assert.throws(() => new ConfusionMatrix(0), RangeError);
  assert.throws(() => cm.score(['bg']), /1 class names for K = 3/);
});

test('printable table names the classes', () => {
  const cm = new ConfusionMatrix(3);
  cm.add(new Uint8Array([0, 1, 255]), new Uint8Array([0, 1, 1]));
  const table = formatMiouTable(cm.score(withBackground(['cat', 'dog'])));
  assert.match(table, /^class\s+IoU %/);
  assert.match(table, /\ncat\s+50\.00\s+100\.00\s+50\.00\s+2\s+1\n/);
  assert.match(table, /\ndog\s+-\s+-\s+-\s+0\s+0\n/);
  assert.match(table, /mIoU 75\.00 % over 2 of 3 classes present/);
  assert.match(table, /1 scored pixels had a prediction outside \[0, 3\)/);
});
