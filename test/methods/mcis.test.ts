// MCIS: co-attention against a dense reference written from the equations, the label and epoch rules of the losses,
// the self-pair terms, test.py's aggregation, pairs through the shared trainer and partner-based localisation.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type Tensor, manualSeed, memory, randn, tensor, tidy } from '../../src/engine/index.js';
import { BatchLoader } from '../../src/data/index.js';
import { imageCams, localizeContexts } from '../../src/cams/index.js';
import { train } from '../../src/train/index.js';
import {
  MCIS_DEFAULTS, McisMethod, aggregateMaps, coAttention, methodDefaults, methodDefinition, pairLabels, selfPairViews,
} from '../../src/methods/index.js';
import { TinyBackbone, synthDataset, synthTransform } from './tiny.js';
import { vals } from '../helpers.js';

const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

/** The co-attention written out element by element in float64: S_ij = sum_d (W f1_i)_d f2_jd, A over i, B over j. */
function denseCoAttention(f1: number[][], f2: number[][], w: number[][], swapAxes = false): { att1: number[][]; att2: number[][] } {
  const D = f1.length;
  const [n1, n2] = [f1[0]!.length, f2[0]!.length];
  const S = Array.from({ length: n1 }, (_, i) => Array.from({ length: n2 }, (_, j) => {
    let s = 0;
    for (let d = 0; d < D; d++) {
      let wf = 0;
      for (let e = 0; e < D; e++) wf += w[d]![e]! * f1[e]![i]!;
      s += wf * f2[d]![j]!;
    }
    return s;
  }));
  // A[i][j] = exp S_ij / sum_i' exp S_i'j: image 2's position j gathers image 1's features.
  const overI = (i: number, j: number) => Math.exp(S[i]![j]!) / S.reduce((t, r) => t + Math.exp(r[j]!), 0);
  const overJ = (i: number, j: number) => Math.exp(S[i]![j]!) / S[i]!.reduce((t, v) => t + Math.exp(v), 0);
  const A = S.map((row, i) => row.map((_, j) => (swapAxes ? overJ : overI)(i, j)));
  // B[j][i] = exp S_ij / sum_j' exp S_ij': image 1's position i gathers image 2's features.
  const B = Array.from({ length: n2 }, (_, j) => Array.from({ length: n1 }, (__, i) => (swapAxes ? overI : overJ)(i, j)));
  const att2 = f1.map((row) => Array.from({ length: n2 }, (_, j) => row.reduce((t, v, i) => t + v * A[i]![j]!, 0)));
  const att1 = f2.map((row) => Array.from({ length: n1 }, (_, i) => row.reduce((t, v, j) => t + v * B[j]![i]!, 0)));
  return { att1, att2 };
}

const rows = (t: Tensor, d: number): number[][] => {
  const v = vals(t);
  const n = v.length / d;
  return Array.from({ length: d }, (_, k) => v.slice(k * n, (k + 1) * n));
};

test('coAttention: both softmax axes as in the code, against a dense reference (2x3 and 3x2 maps, random W)', () => tidy(() => {
  manualSeed(5);
  const D = 4;
  const f1 = randn([1, D, 2, 3]);
  const f2 = randn([1, D, 3, 2]).mul(0.7);
  const w = randn([D, D]).mul(0.5);
  const { att1, att2 } = coAttention(f1, f2, w);
  assert.deepEqual(att1.shape, [1, D, 2, 3]);
  assert.deepEqual(att2.shape, [1, D, 3, 2]);
  const ref = denseCoAttention(rows(f1, D), rows(f2, D), rows(w, D));
  vals(att1).forEach((v, k) => close(v, ref.att1.flat()[k]!, 1e-5, `att1[${k}]`));
  vals(att2).forEach((v, k) => close(v, ref.att2.flat()[k]!, 1e-5, `att2[${k}]`));
  // The swapped softmax axes (A over n, B over m) give other maps, so the comparison above can fail.
  const wrong = denseCoAttention(rows(f1, D), rows(f2, D), rows(w, D), true);
  const gap = Math.max(...vals(att2).map((v, k) => Math.abs(v - wrong.att2.flat()[k]!)));
  assert.ok(gap > 1e-2, `swapped axes differ by ${gap}`);
}));

test('coAttention: identical features with a symmetric W give the same map to both images; swapping images swaps them (W transposed)', () => tidy(() => {
  manualSeed(6);
  const f = randn([2, 5, 3, 3]);
  const r = randn([5, 5]);
  const sym = r.add(r.transpose(0, 1));
  const same = coAttention(f, f.clone(), sym);
  assert.deepEqual(vals(same.att1).map((v) => v.toFixed(5)), vals(same.att2).map((v) => v.toFixed(5)));
  const g = randn([2, 5, 2, 4]);
  const ab = coAttention(f, g, r);
  const ba = coAttention(g, f, r.transpose(0, 1).contiguous());
  vals(ab.att1).forEach((v, k) => close(v, vals(ba.att2)[k]!, 1e-5, `att1 vs swapped att2 [${k}]`));
  vals(ab.att2).forEach((v, k) => close(v, vals(ba.att1)[k]!, 1e-5, `att2 vs swapped att1 [${k}]`));
}));

test('pairLabels: common = l_m and l_n; a partner without the class gives no common label, only exclusive ones', () => tidy(() => {
  const l1 = tensor(new Float32Array([1, 0, 1, 1, 0, 0]), { shape: [2, 3] });
  const l2 = tensor(new Float32Array([1, 1, 0, 0, 1, 0]), { shape: [2, 3] });
  const { common, excl1, excl2 } = pairLabels(l1, l2);
  assert.deepEqual(vals(common), [1, 0, 0, 0, 0, 0]);
  assert.deepEqual(vals(excl1), [0, 0, 1, 1, 0, 0]);
  assert.deepEqual(vals(excl2), [0, 1, 0, 0, 1, 0]);
}));

function tinyMcis(o: Partial<ConstructorParameters<typeof McisMethod>[1]> = {}): McisMethod {
  manualSeed(3);
  return new McisMethod(new TinyBackbone({ channels: 6, strided: 1 }), { numClasses: 3, extraChannels: 8, ...o });
}

function pairBatch(l1: number[], l2: number[]) {
  const n = l1.length / 3;
  return {
    images: randn([n, 3, 8, 8]), labels: tensor(new Float32Array(l1), { shape: [n, 3] }), ids: ['a', 'b'].slice(0, n),
    partner: { images: randn([n, 3, 8, 8]), labels: tensor(new Float32Array(l2), { shape: [n, 3] }), ids: ['c', 'd'].slice(0, n) },
  };
}

test('losses: contrastive terms from epoch 2 only, each only where some pair has exclusive labels; self-pairs add six terms', () => tidy(() => {
  const m = tinyMcis();
  // pair 0 shares class 0, image 0 also has class 2 (exclusive to it); the partners have nothing exclusive.
  const batch = pairBatch([1, 0, 1, 0, 1, 0], [1, 0, 0, 0, 1, 0]);
  const keys = (epoch: number) => Object.keys(m.lossTerms(batch, { epoch })).sort();
  const self = ['loss2_1', 'loss2_2', 'loss3_1', 'loss3_2', 'loss4_1', 'loss4_2'];
  assert.deepEqual(keys(1), ['loss1', 'loss2', ...self].sort());
  assert.deepEqual(keys(2), ['loss1', 'loss1_comple', 'loss2', ...self].sort());
  const both = pairBatch([1, 0, 1, 0, 1, 0], [1, 1, 0, 0, 1, 0]);
  assert.deepEqual(Object.keys(m.lossTerms(both, { epoch: 5 })).filter((k) => k.includes('comple')).sort(), ['loss1_comple', 'loss2_comple']);
  const none = pairBatch([1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 1, 0]);
  assert.ok(!Object.keys(m.lossTerms(none, { epoch: 5 })).some((k) => k.includes('comple')), 'identical labels: no contrastive term');

  const paper = tinyMcis({ selfPairs: false, contrastiveFromEpoch: 0 });
  assert.deepEqual(Object.keys(paper.lossTerms(batch, { epoch: 0 })).sort(), ['loss1', 'loss1_comple', 'loss2']);
  const single = tinyMcis({ coAttention: false, contrastive: false });
  assert.deepEqual(Object.keys(single.lossTerms(batch, { epoch: 5 })).sort(), ['loss1', 'loss2_1', 'loss3_1', 'loss4_1'],
    "the code's 'don't use co-attention' line");

  // loss = the sum of the parts, the parts sums of the code's terms
  const terms = m.lossTerms(batch, { epoch: 3 });
  const { loss, parts } = m.loss(batch, { epoch: 3, step: 0, totalSteps: 1 });
  const t = Object.fromEntries(Object.entries(terms).map(([k, v]) => [k, v.item()]));
  close(parts!.contrastive!.item(), t.loss1_comple!, 1e-6, 'contrastive');
  close(parts!.self!.item(), self.reduce((a, k) => a + t[k]!, 0), 1e-5, 'self');
  close(loss.item(), Object.values(t).reduce((a, b) => a + b, 0), 1e-5, 'total');
  m.model.dispose(); paper.model.dispose(); single.model.dispose();
}));

test('the single-image and co-attention losses are the multilabel soft margin of GAP logits on the right labels', () => tidy(() => {
  const m = tinyMcis({ selfPairs: false });
  const batch = pairBatch([1, 0, 1, 0, 1, 0], [1, 1, 0, 0, 1, 1]);
  const f1 = m.model.features(batch.images);
  const f2 = m.model.features(batch.partner.images);
  const p = m.model.pair(f1, f2);
  const mlsm = (z: number[], y: number[]) => -z.reduce((a, v, i) => a + (y[i]! ? Math.log(1 / (1 + Math.exp(-v))) : Math.log(1 / (1 + Math.exp(v)))), 0) / z.length;
  const single = mlsm([...vals(p.score1), ...vals(p.score2)], [1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1]);
  const co = mlsm([...vals(p.coScore1), ...vals(p.coScore2)], [1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0]);
  const terms = m.lossTerms(batch, { epoch: 0 });
  close(terms.loss1!.item(), single, 1e-5, 'single');
  close(terms.loss2!.item(), co, 1e-5, 'co');
  // GAP of the single-image CAM (with its bias) is the score
  vals(p.score1).forEach((v, k) => close(v, vals(m.model.cam(f1).mean([2, 3]))[k]!, 1e-6, `score ${k}`));
  m.model.dispose();
}));

test('selfPairViews: the hflip and the 0.75x / 2x rescales (sizes floored)', () => tidy(() => {
  const x = randn([1, 3, 10, 7]);
  const [flip, small, big] = selfPairViews(x);
  assert.deepEqual(vals(flip!), vals(x.flip(3)));
  assert.deepEqual(small!.shape, [1, 3, 7, 5]);
  assert.deepEqual(big!.shape, [1, 3, 20, 14]);
}));

test('aggregateMaps: test.py rules on hand-made maps (ReLU, peak 255, others kept where sigmoid(mean) > 0.1, divided by all)', () => tidy(() => {
  const m = (v: number[]) => tensor(new Float32Array(v), { shape: [2, 2] });
  const first = m([-1, 1, 2, 4]);        // -> 0, 63.75, 127.5, 255
  const kept = m([2, 0, 0, 0]);          // mean 0.5: kept -> 255, 0, 0, 0
  const dropped = m([-9, -9, -9, 3]);    // mean -6: sigmoid 0.0025, dropped (but counted)
  const out = vals(aggregateMaps([first, kept, dropped]));
  const expected = [(0 + 255) / 3, 63.75 / 3, 127.5 / 3, 255 / 3];
  out.forEach((v, i) => close(v, expected[i]!, 1e-3, `pixel ${i}`));
  // the first map is kept even when its mean is very negative
  close(vals(aggregateMaps([m([-9, -9, -9, 1])]))[3]!, 255, 1e-3, 'first kept');
  assert.throws(() => aggregateMaps([]), /no maps/);
}));

test('parameter groups follow get_parameter_groups: backbone weights 1x, biases 2x, extra weights 10x, biases 20x', () => {
  const m = tinyMcis();
  const g = Object.fromEntries(m.paramGroups().map((x) => [x.name, x]));
  assert.deepEqual(m.paramGroups().map((x) => [x.name, x.lrMult]), [['backbone', 1], ['backbone_bias', 2], ['extra', 10], ['extra_bias', 20]]);
  assert.equal(g.backbone!.params.length, 2);
  assert.equal(g.extra!.params.length, 3 + 1 + 1 + 1 + 1);     // extra_convs x3, last conv, linear_e, gate, gate_merge
  assert.equal(g.extra_bias!.params.length, 4);                // extra_convs x3, extra_last_conv
  m.model.dispose();
});

test('registry: mcis with the code defaults; the paper variant turns off the self-pairs and starts the contrastive loss at once', () => {
  const d = methodDefaults('mcis');
  assert.equal(d.variant, 'code');
  assert.equal(d.partnerShareClass, 1);
  const ctx = (numClasses: number) => ({
    numClasses, headLrMult: 10, backbone: () => new TinyBackbone({ channels: 4 }), loadModel: () => undefined,
  });
  const def = methodDefinition('mcis');
  const code = def.build(def.settings.parse({}), ctx(3)) as McisMethod;
  assert.equal(code.options.selfPairs, true);
  assert.equal(code.options.contrastiveFromEpoch, MCIS_DEFAULTS.contrastiveFromEpoch);
  assert.deepEqual(code.pairs, { shareClass: 1 });
  assert.ok(code.localize, 'co-attention localisation by default');
  const paper = def.build(def.settings.parse({ variant: 'paper', partnerShareClass: 0.5, localization: 'single' }), ctx(3)) as McisMethod;
  assert.equal(paper.options.selfPairs, false);
  assert.equal(paper.options.contrastiveFromEpoch, 0);
  assert.deepEqual(paper.pairs, { shareClass: 0.5 });
  assert.equal(paper.localize, undefined, 'plain CAM');
  assert.throws(() => def.settings.parse({ partnerShareClass: 2 }));
  code.model.dispose(); paper.model.dispose();
});

test('trained by the shared trainer on pairs: every partner shares a class, the loss falls, memory stays flat', async () => {
  // Self-pairs off to keep it quick; the contrastive term from epoch 4 (its start raises the loss).
  const method = tinyMcis({ selfPairs: false, contrastiveFromEpoch: 4 });
  const seen: { labels: number[]; partner: number[] }[] = [];
  const loss = method.loss.bind(method);
  (method as { loss: McisMethod['loss'] }).loss = (batch, context) => {
    const a = vals(batch.labels);
    const b = vals(batch.partner!.labels);
    for (let i = 0; i < a.length / 3; i++) seen.push({ labels: a.slice(i * 3, i * 3 + 3), partner: b.slice(i * 3, i * 3 + 3) });
    return loss(batch, context);
  };
  const dataset = synthDataset(16);
  const loader = new BatchLoader(dataset, synthTransform(12), { batchSize: 4, seed: 2, dropLast: true, pairs: method.pairs });
  const before = memory().liveTensors;
  const result = await train({ method, loader, epochs: 4, optimizer: { lr: 0.05, momentum: 0.9, weightDecay: 1e-4, polyPower: 0.9 } });
  assert.ok(memory().liveTensors - before <= 2, 'live tensors flat');
  assert.equal(seen.length, 4 * 16);
  assert.ok(seen.every((s) => s.labels.some((v, c) => v && s.partner[c])), 'each partner shares a class');
  assert.ok(result.epochLosses.at(-1)! < result.epochLosses[0]!, `loss falls: ${result.epochLosses.map((x) => x.toFixed(3))}`);
  method.model.dispose();
});

test('localize: per-class maps from partners with the class and the self-pair views, at the image size, masks never read', async () => {
  const method = tinyMcis({ inferSize: 16 });
  method.model.eval();
  // Every mask path is unreadable: localisation must not touch it.
  const dataset = synthDataset(12, 7);
  for (const item of dataset.items) item.maskPath = '/nonexistent/mask.png';
  const item = dataset.items.find((i) => i.labels.length >= 1 && !i.labels.includes(1))!;
  const requested: number[] = [];
  const base = localizeContexts(dataset, synthTransform(20), { scales: [1], flip: false });
  const context = (it: typeof item) => {
    const c = base(it);
    return { ...c, partners: (cls: number, n: number) => { requested.push(cls); return c.partners(cls, n); } };
  };
  const image = randn([1, 3, 20, 24]);
  const cams = await imageCams(method, image, item.labels, { context: context(item) });
  assert.deepEqual(cams.shape, [3, 20, 24]);
  assert.deepEqual(requested, item.labels, 'partners drawn for each image-level class');
  const v = vals(cams);
  for (let c = 0; c < 3; c++) {
    const plane = v.slice(c * 480, (c + 1) * 480);
    if (item.labels.includes(c)) close(Math.max(...plane), 1, 1e-5, `class ${c} normalised`);
    else assert.ok(plane.every((x) => x === 0), `class ${c} not in the labels is zero`);
  }
  // the same image id draws the same partners: identical maps
  const again = await imageCams(method, image, item.labels, { context: context(item) });
  assert.deepEqual(vals(again), v);
  for (const t of [cams, again, image]) t.dispose();
  method.model.dispose();
});
