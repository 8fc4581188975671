// A method's own localisation: branches normalised each on its own then fused by weight, partners by class seeded
// per image id, the gradient scope, and methods without localize keeping multiScaleCam.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type Tensor, isGradEnabled, manualSeed, randn, tensor, tidy } from '../../src/engine/index.js';
import { CamMethod, type CamBranch, type LocalizeContext } from '../../src/methods/index.js';
import { fuseBranches, imageCams, localizeContexts, multiScaleCam } from '../../src/cams/index.js';
import { TinyBackbone, synthDataset, synthTransform } from '../methods/tiny.js';
import { vals } from '../helpers.js';

const planes = (data: number[][]) => tensor(new Float32Array(data.flat()), { shape: [data.length, 1, data[0]!.length] });

test('fuseBranches: each branch label-masked and normalised on its own (its own mode), then weighted and summed', () => tidy(() => {
  // 3 classes x 1 x 3 pixels; labels {0, 2}.
  const a = planes([[1, 2, 4], [5, 5, 5], [0, 1, 2]]);
  const b = planes([[3, 3, 6], [9, 9, 9], [2, 4, 6]]);
  const fused = fuseBranches([
    { name: 'a', cams: a, weight: 0.5 },
    { name: 'b', cams: b, weight: 0.5, normalization: 'minmax' },
  ], [0, 2], 'max');
  // a, max: [0.25, 0.5, 1], [0, 0, 0], [0, 0.5, 1]; b, min-max: [0, 0, 1], [0, 0, 0], [0, 0.5, 1].
  const expected = [[0.125, 0.25, 1], [0, 0, 0], [0, 0.5, 1]].flat();
  vals(fused).forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) < 1e-6, `${i}: ${v} vs ${expected[i]}`));
  assert.throws(() => fuseBranches([{ name: 'a', cams: a, weight: 1 }, { name: 'c', cams: planes([[1, 2]]), weight: 1 }], [0], 'max'), /branch 'c'/);
  assert.throws(() => fuseBranches([], [0], 'max'), /no branch/);
}));

test('localize context: partners contain the class, exclude the image, and are the same for the same id', async () => {
  const dataset = synthDataset(30, 4);
  const contexts = localizeContexts(dataset, synthTransform(8), { scales: [1, 2], flip: false });
  const item = dataset.items.find((i) => i.labels.includes(1))!;
  const ctx = contexts(item);
  const partners = ctx.partners(1, 3);
  assert.equal(partners.length, 3);
  assert.ok(partners.every((p) => p.labels.includes(1) && p.id !== item.id));
  assert.deepEqual(contexts(item).partners(1, 3).map((p) => p.id), partners.map((p) => p.id), 'seeded by the image id');
  const other = dataset.items.find((i) => i !== item && i.labels.includes(1))!;
  const pool = dataset.items.filter((i) => i.labels.includes(1)).length - 1;
  assert.equal(ctx.partners(1, 100).length, pool, 'at most every other image with the class');
  assert.notDeepEqual(contexts(other).partners(1, pool).map((p) => p.id), ctx.partners(1, pool).map((p) => p.id));
  assert.deepEqual([ctx.scales, ctx.flip, ctx.channelsLast], [[1, 2], false, false]);
  const image = await ctx.loadImage(partners[0]!);
  assert.deepEqual(image.shape, [1, 3, 8, 8]);
  image.dispose();
});

class TwoBranchCam extends CamMethod {
  seen: { gradOff: boolean; gradInScope: boolean; partners: string[] } | null = null;
  async localize(image: Tensor, labels: readonly number[], context: LocalizeContext): Promise<CamBranch[]> {
    const partner = await context.loadImage(context.partners(labels[0]!, 1)[0]!);
    partner.dispose();
    this.seen = {
      gradOff: !isGradEnabled(), gradInScope: context.enableGrad(() => isGradEnabled()), partners: context.partners(labels[0]!, 2).map((p) => p.id),
    };
    const base = multiScaleCam(this, image, [0, 1, 2], { scales: context.scales, flip: context.flip });
    return [
      { name: 'plain', cams: base, weight: 0.25 },
      { name: 'squared', cams: tidy(() => base.square()), weight: 0.75 },
    ];
  }
}

test('imageCams: a method with localize is called with grad off and its branches fused; one without keeps multiScaleCam', async () => {
  manualSeed(1);
  const dataset = synthDataset(10, 2);
  const method = new TwoBranchCam(new TinyBackbone({ channels: 4 }), { numClasses: 3 });
  method.model.eval();
  const item = dataset.items[0]!;
  const image = randn([1, 3, 12, 12]);
  const contexts = localizeContexts(dataset, synthTransform(12), { scales: [1], flip: true });
  const fused = await imageCams(method, image, item.labels, { scales: [1], flip: true, context: contexts(item) });
  assert.ok(method.seen?.gradOff && method.seen.gradInScope, 'grad off in localize, on inside enableGrad');
  assert.equal(method.seen.partners.length, 2);
  assert.ok(isGradEnabled(), 'grad mode restored afterwards');
  const base = multiScaleCam(method, image, [0, 1, 2], { scales: [1], flip: true });
  const expected = tidy(() => fuseBranches([{ name: 'p', cams: base, weight: 0.25 }, { name: 's', cams: base.square(), weight: 0.75 }], item.labels, 'max'));
  assert.deepEqual(vals(fused), vals(expected));
  await assert.rejects(() => imageCams(method, image, item.labels, {}), /pass one/);

  const plain = new CamMethod(method.backbone, { numClasses: 3 });
  const single = await imageCams(plain, image, item.labels, { scales: [1], flip: true });
  assert.deepEqual(vals(single), vals(multiScaleCam(plain, image, item.labels, { scales: [1], flip: true })));
  for (const t of [fused, base, expected, single, image]) t.dispose();
  method.model.dispose();
});
