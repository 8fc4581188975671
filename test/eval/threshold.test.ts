import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/data/rng.js';
import { ConfusionMatrix } from '../../src/eval/miou.js';
import {
  DEFAULT_THRESHOLDS,
  ThresholdSweep,
  camsToSeeds,
  leakFreeThreshold,
  sweepThresholds,
  type CamSample,
} from '../../src/eval/threshold.js';

/**
 * A 1 x n image of class 0 (mask id 1): background pixels score `bg`, object pixels `fg`. Seeds are perfect
 * exactly when max(bg) <= t < min(fg).
 */
function oneClass(bg: number[], fg: number[]): CamSample {
  const cams = Float32Array.from([...bg, ...fg]);
  const gt = Uint8Array.from([...bg.map(() => 0), ...fg.map(() => 1)]);
  return { labels: [0], cams, width: cams.length, height: 1, gt };
}

test('default sweep is 0.05..0.60 in steps of 0.01', () => {
  assert.equal(DEFAULT_THRESHOLDS.length, 56);
  assert.equal(DEFAULT_THRESHOLDS[0], 0.05);
  assert.equal(DEFAULT_THRESHOLDS[55], 0.6);
  assert.equal(DEFAULT_THRESHOLDS[25], 0.3);
});

test('seed rule: constant background t, argmax, background wins ties, no labels = background', () => {
  // Two labelled classes (3 and 7 -> ids 4 and 8) over 4 pixels.
  const cams = Float32Array.from([0.25, 0.75, 0.5, 0.5, /* class 7 */ 0.5, 0.25, 0.5, 0.125]);
  assert.deepEqual([...camsToSeeds(cams, [3, 7], 4, 1, 0.5)], [0, 4, 0, 0]);
  assert.deepEqual([...camsToSeeds(cams, [3, 7], 4, 1, 0.25)], [8, 4, 4, 4]); // first maximum wins (pixel 2)
  assert.deepEqual([...camsToSeeds(new Float32Array(0), [], 2, 2, 0.1)], [0, 0, 0, 0]);
});

test('the best threshold of a constructed case is found', async () => {
  // Perfect only for 0.44 <= t < 0.45 (float32 0.44 is just below 0.44, float32 0.45 just below 0.45).
  const samples = [oneClass([0.1, 0.3, 0.44], [0.45, 0.7]), oneClass([0.2, 0.4], [0.5, 0.9, 0.99])];
  const curve = await sweepThresholds(samples, 2, { classNames: ['background', 'thing'] });
  assert.equal(curve.best.threshold, 0.44);
  assert.equal(curve.best.result.miou, 1);
  assert.equal(curve.best.result.classes[1]?.name, 'thing');
  assert.equal(curve.miou.length, 56);
  assert.ok(curve.miou.every((m, j) => (j === curve.best.index ? m === 1 : (m as number) < 1)));
});

test('the one-pass sweep equals scoring camsToSeeds at every threshold', () => {
  const rng = new Rng(2024);
  const K = 6;
  const samples: CamSample[] = [];
  for (let s = 0; s < 5; s++) {
    const width = 9;
    const height = 7;
    const labels = s === 4 ? [] : [...new Set([rng.int(K - 1), rng.int(K - 1)])].sort();
    const cams = Float32Array.from({ length: labels.length * width * height }, () => rng.float());
    const gt = Uint8Array.from({ length: width * height }, () => (rng.bool(0.1) ? 255 : rng.int(K)));
    samples.push({ labels, cams, width, height, gt, id: `img${s}` });
  }
  const sweep = new ThresholdSweep(K);
  for (const sample of samples) sweep.add(sample);
  DEFAULT_THRESHOLDS.forEach((t, j) => {
    const brute = new ConfusionMatrix(K);
    for (const s of samples) brute.add(camsToSeeds(s.cams, s.labels, s.width, s.height, t), s.gt);
    assert.deepEqual([...sweep.confusionAt(j).counts], [...brute.counts], `t = ${t}`);
  });
});

test('leak-free mode picks t on one split and reports on the other', async () => {
  const fit = [oneClass([0.1, 0.44], [0.45, 0.8])]; // best t = 0.44
  const report = [oneClass([0.05, 0.19], [0.2, 0.3, 0.5])]; // its own best t = 0.19
  const result = await leakFreeThreshold(fit, report, 2);
  assert.equal(result.threshold, 0.44);
  assert.equal(result.fit.best.threshold, 0.44);
  assert.equal(result.reportCurve.best.threshold, 0.19);
  assert.equal(result.reportCurve.best.result.miou, 1);
  // At t = 0.44 the report split loses the two object pixels scored 0.2 and 0.3.
  const r = result.report;
  assert.deepEqual(r.classes.map((c) => [c.tp, c.gtPixels, c.predPixels]), [[2, 2, 4], [1, 3, 1]]);
  assert.ok((r.miou as number) < 1);
  assert.equal(r.miou, (2 / 4 + 1 / 3) / 2);
});

test('malformed samples are explicit errors', () => {
  const sweep = new ThresholdSweep(3);
  assert.throws(() => sweep.add({ labels: [0], cams: new Float32Array(3), width: 2, height: 1, gt: new Uint8Array(2), id: 'x' }), /x: 3 CAM values for 1 labels of 2x1/);
  assert.throws(() => sweep.add({ labels: [2], cams: new Float32Array(2), width: 2, height: 1, gt: new Uint8Array(2), id: 'x' }), /x: label 2 is not a foreground class \(K = 3/);
  assert.throws(() => new ThresholdSweep(3, [0.2, 0.1]), /strictly increasing/);
});
