// AffinityAgreement on a hand-made grid: PSA's pair groups counted, averaged and judged against 0.5.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tensor } from '../../src/engine/index.js';
import { AffinityAgreement, gridPairLabels } from '../../src/refine/affinity-score.js';

// Radius 2 on a 2 x 3 grid: one "from" cell, (0, 1), and offsets (0, 1), (1, -1), (1, 0), (1, 1).
// Labels [[1, 1, 0], [1, 0, 255]]: from = 1, so the pairs are neg (to 0), fgPos (to 1), neg (to 0), none (to 255).
const mask = { width: 3, height: 2, data: Uint8Array.from([1, 1, 0, 1, 0, 255]) };
const grid = { height: 2, width: 3 };
const o = { stride: 1, radius: 2, numClasses: 1 };

test('affinity agreement: pairs, mean affinity and share on the right side of 0.5 per group', () => {
  const truth = gridPairLabels(mask, grid, o);
  assert.deepEqual(Array.from(truth.neg.toFloat32Array()), [1, 0, 1, 0]);
  assert.deepEqual(Array.from(truth.fgPos.toFloat32Array()), [0, 1, 0, 0]);
  assert.deepEqual(Array.from(truth.bgPos.toFloat32Array()), [0, 0, 0, 0]);
  const agreement = new AffinityAgreement();
  agreement.addWeights(Float32Array.from([0.9, 0.8, 0.3, 0.7]), truth);
  const r = agreement.result();
  assert.deepEqual(r.bgPos, { pairs: 0, meanAffinity: null, agree: null });
  assert.equal(r.fgPos.pairs, 1);
  assert.ok(Math.abs(r.fgPos.meanAffinity! - 0.8) < 1e-6 && r.fgPos.agree === 1);
  assert.equal(r.neg.pairs, 2);
  assert.ok(Math.abs(r.neg.meanAffinity! - 0.6) < 1e-6, `${r.neg.meanAffinity}`);
  assert.equal(r.neg.agree, 0.5); // 0.9 leaks, 0.3 separates
  assert.equal(r.balanced, 0.75); // groups without pairs do not count
  // A second image adds up; `considered` keeps only the pairs it marks (here the third offset).
  agreement.add(tensor(Float32Array.from([0.9, 0.8, 0.3, 0.7]), { shape: [1, 4, 1, 1] }), truth, tensor(Float32Array.from([0, 0, 1, 0]), { shape: [1, 4, 1, 1] }));
  const r2 = agreement.result();
  assert.equal(r2.neg.pairs, 3);
  assert.ok(Math.abs(r2.neg.agree! - 2 / 3) < 1e-12);
  assert.equal(r2.fgPos.pairs, 1);
  assert.throws(() => agreement.addWeights(new Float32Array(3), truth), /3 affinities for pair labels of shape \[1,4,1,1\]/);
});

test('affinity agreement: a grid too small for the radius, or a label past the classes, is refused', () => {
  assert.throws(() => gridPairLabels(mask, grid, { ...o, radius: 3 }), /too small for pairs within radius 3/);
  assert.throws(() => gridPairLabels({ ...mask, data: Uint8Array.from([1, 1, 0, 1, 7, 0]) }, grid, o), /mask id 7 is not a class id/);
});
