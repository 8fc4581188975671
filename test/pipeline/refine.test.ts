// The refinement stages end to end on a tiny synthetic VOC layout (coloured squares, CAMs written by hand) with a
// tiny backbone: CRF'd seeds, affinity labels and training, random-walk pseudo-masks, their PNGs and metrics.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';

import { tensor, tidy } from '../../src/engine/index.js';
import { readMask, writeMask } from '../../src/data/index.js';
import { writeCam } from '../../src/cams/format.js';
import {
  type WeaksegConfig, crfSeeds, irnWalkMasks, makeAffinityLabels, randomWalkMasks, recordMetrics, resolveConfig, runPaths, trainAffinity,
  trainIrn,
} from '../../src/pipeline/index.js';
import { TinyBackbone } from '../methods/tiny.js';

const CLASSES = ['red', 'green', 'blue'];
const COLOURS: [number, number, number][] = [[220, 30, 30], [30, 200, 40], [40, 50, 230]];
const W = 40;
const H = 32;

/** Image i: grey, with a square of class (i % 3) at a place that moves with i, and a second class on odd i. */
function scene(i: number): { rgb: Uint8Array; mask: Uint8Array; squares: { cls: number; x0: number; y0: number; side: number }[] } {
  const squares = [{ cls: i % 3, x0: 4 + 3 * i, y0: 6, side: 14 }];
  if (i % 2) squares.push({ cls: (i + 1) % 3, x0: 26, y0: 18, side: 10 });
  const rgb = new Uint8Array(W * H * 3).fill(120);
  for (let y = 24; y < H; y++) for (let x = 0; x < 16; x++) rgb.set([60, 60, 60], (y * W + x) * 3); // a dark patch
  const mask = new Uint8Array(W * H);
  for (const s of squares) {
    for (let y = s.y0; y < s.y0 + s.side; y++) {
      for (let x = s.x0; x < s.x0 + s.side; x++) {
        rgb.set(COLOURS[s.cls]!, (y * W + x) * 3);
        mask[y * W + x] = s.cls + 1;
      }
    }
  }
  return { rgb, mask, squares };
}

/** A VOC root with split 'trainaug' (4 images) and its subset 'train' (2), and CAMs for both in the run. */
async function tinyRun(dir: string, refine: Record<string, unknown> = {}): Promise<WeaksegConfig> {
  const root = join(dir, 'voc');
  const ids = ['img0', 'img1', 'img2', 'img3'];
  mkdirSync(join(root, 'ImageSets', 'Segmentation'), { recursive: true });
  mkdirSync(join(root, 'JPEGImages'), { recursive: true });
  writeFileSync(join(root, 'ImageSets', 'Segmentation', 'trainaug.txt'), `${ids.join('\n')}\n`);
  writeFileSync(join(root, 'ImageSets', 'Segmentation', 'train.txt'), `${ids.slice(1, 3).join('\n')}\n`);
  const config = resolveConfig({
    runDir: join(dir, 'run'),
    data: { root, trainSplit: 'trainaug', classes: CLASSES },
    eval: { split: 'train', fitSplit: null },
    runtime: { logEvery: 1, checkpointEverySteps: 0 },
    refine: {
      // PSA's fixed exponents and the seed threshold, which the hand-made CAMs below are built around; the fitted
      // threshold and exponents from it are checked by their own test.
      crf: { threshold: 'seed' },
      alphas: 'fixed',
      affinity: { epochs: 2, batchSize: 2, cropSize: 32, scaleRange: null, radius: 2, taps: ['conv1:4', 'output:4'] },
      randomWalk: { logt: 2, bgAlpha: 6 },
      ...refine,
    },
  });
  const paths = runPaths(config);
  for (const [i, id] of ids.entries()) {
    const s = scene(i);
    await sharp(Buffer.from(s.rgb), { raw: { width: W, height: H, channels: 3 } }).png().toFile(join(root, 'JPEGImages', `${id}.png`));
    await writeMask(join(root, 'SegmentationClass', `${id}.png`), { width: W, height: H, data: s.mask });
    // CAMs: 1 on each square, 0.2 on a 3-pixel halo and on the dark background patch (bottom left) where the
    // first class's CAM spills over, 0.02 elsewhere. On the patch la's background (0.8^4 = 0.41) wins and ha's
    // (0.8^24 = 0.005) loses: uncertain; far away both say background. (The thin halo the CRF snaps to the edges.)
    const cams = new Float32Array(3 * W * H);
    for (const q of s.squares) {
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          const d = Math.max(q.x0 - x, x - (q.x0 + q.side - 1), q.y0 - y, y - (q.y0 + q.side - 1), 0);
          cams[q.cls * W * H + y * W + x] = d === 0 ? 1 : d <= 3 ? 0.2 : 0.02;
        }
      }
    }
    for (let y = 24; y < H; y++) for (let x = 0; x < 16; x++) cams[s.squares[0]!.cls * W * H + y * W + x] = 0.2;
    const labels = s.squares.map((q) => q.cls).sort();
    for (const split of i === 1 || i === 2 ? ['trainaug', 'train'] : ['trainaug']) {
      tidy(() => writeCam(paths.cams(split), tensor(cams, { shape: [3, H, W] }), labels, {
        id, classes: CLASSES, scales: [1], flip: false, method: 'cam', backbone: 'tiny',
      }));
    }
  }
  return config;
}

function pngs(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.png')).sort();
}

test('refinement stages: CRF seeds, affinity labels and training, random walk (tiny run)', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-refine-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = await tinyRun(dir);
  const paths = runPaths(config);
  const lines: string[] = [];
  const hooks = { log: (l: string) => lines.push(l), progress: false, backboneFactory: () => new TinyBackbone({ channels: 8 }) };

  await assert.rejects(crfSeeds(config, hooks), /has no eval\.threshold .*run `weakseg eval` first/);
  await assert.rejects(randomWalkMasks(config, hooks), /no trained affinity net .*run the affinity stage first/);

  // CRF'd seeds at the threshold the eval stage chose: near-perfect CAMs on flat squares stay near perfect.
  recordMetrics(config, 'eval', { threshold: 0.3, mode: 'fixed', thresholdChosenOn: 'given' });
  const crf = await crfSeeds(config, hooks);
  assert.deepEqual(crf.splits.map((s) => [s.split, s.images, s.computed]), [['train', 2, 2], ['trainaug', 4, 2]]);
  assert.deepEqual(pngs(paths.crf('trainaug')), ['img0.png', 'img1.png', 'img2.png', 'img3.png']);
  assert.equal(crf.split, 'train');
  assert.ok(crf.result && crf.result.miou !== null && crf.result.miou > 0.9, `CRF seed mIoU ${crf.result?.miou}`);
  const seeded = await readMask(join(paths.crf('train'), 'img1.png'));
  const gt = await readMask(join(config.data.root, 'SegmentationClass', 'img1.png'));
  const agree = seeded.data.filter((v, i) => v === gt.data[i]).length / seeded.data.length;
  assert.ok(agree > 0.97, `CRF seeds agree with the squares on ${agree} of the pixels`);

  // Affinity labels: the square interiors are foreground, the far background 0, the CAM halo uncertain.
  const aff = await trainAffinity(config, hooks);
  assert.equal(aff.steps, 4, '2 epochs of 2 batches');
  assert.equal(aff.epochLosses.length, 2);
  assert.ok(aff.epochLosses.every((l) => Number.isFinite(l) && l > 0));
  assert.deepEqual(pngs(paths.affinity.labels), ['img0.png', 'img1.png', 'img2.png', 'img3.png']);
  const label = await readMask(join(paths.affinity.labels, 'img1.png'));
  assert.equal(label.data[10 * W + 10], 2, 'inside the green square of img1');
  assert.equal(label.data[1 * W + 1], 0, 'far background');
  assert.equal(label.data[28 * W + 8], 255, 'the spilled patch is uncertain');
  const { shares } = aff.labels;
  assert.ok(Math.abs(shares.uncertain + shares.background + shares.foreground - 1) < 1e-9);
  assert.ok(shares.foreground > 0.1 && shares.background > 0.1, JSON.stringify(shares));
  // The labels against the ground truth on the feature grid: the uncertain patch leaves background pairs
  // unlabelled; the labels cover every object cell with its class, so each same-object pair is labelled right, but
  // where a square's edge splits a cell the labels' vote (2 pixels of the class, 2 uncertain) gives the class and the
  // ground truth's (2 of each) background, so some pairs across the edge are taught as positives.
  const score = aff.labels.score!;
  assert.equal(score.images, 4);
  assert.ok(score.coverage.bgPos! > 0.5 && score.coverage.bgPos! < 1, JSON.stringify(score.coverage));
  assert.equal(score.agreement.fgPos.agree, 1, JSON.stringify(score.agreement.fgPos));
  assert.ok(score.agreement.bgPos.agree! > 0.8 && score.agreement.bgPos.agree! < 1, JSON.stringify(score.agreement.bgPos));
  assert.ok(score.agreement.neg.pairs > 0 && score.agreement.neg.agree! > 0.2 && score.agreement.neg.agree! < 1, JSON.stringify(score.agreement.neg));
  assert.ok(existsSync(paths.affinity.model));
  assert.ok(existsSync(paths.affinity.trainLog));
  assert.ok(readdirSync(paths.affinity.checkpoints).length >= 1);
  await assert.rejects(trainAffinity(config, hooks), /already has checkpoints/);

  // Random walk: pseudo-masks for both splits (the 'train' ones shared with 'trainaug'), scored on 'train'.
  const rw = await randomWalkMasks(config, hooks);
  assert.deepEqual(rw.splits.map((s) => [s.split, s.images, s.computed]), [['trainaug', 4, 4], ['train', 2, 0]]);
  assert.deepEqual(pngs(paths.pseudo('train')), ['img1.png', 'img2.png']);
  const pseudo = await readMask(join(paths.pseudo('train'), 'img2.png'));
  assert.deepEqual([pseudo.width, pseudo.height], [W, H]);
  for (const v of new Set(pseudo.data)) assert.ok([0, 3].includes(v), `img2 has class 'blue' (id 3) only, got ${v}`);
  // All-background masks would score 0.27 here (background IoU 2068 / 2560 pixels, green and blue 0); the walk
  // from these CAMs scores 0.85 (background 0.94, green 0.81, blue 0.80).
  assert.ok(rw.result && rw.result.miou !== null && rw.result.miou > 0.75, `random-walk mIoU ${rw.result?.miou}`);
  for (const c of rw.result.classes.filter((x) => x.name !== 'red')) {
    assert.ok(c.iou !== null && c.iou > 0.7, `random-walk IoU of ${c.name}: ${c.iou}`);
  }

  const metrics = JSON.parse(readFileSync(paths.metrics, 'utf8'));
  for (const stage of ['crf', 'random-walk']) {
    assert.equal(metrics[stage].split, 'train');
    assert.equal(typeof metrics[stage].result.miou, 'number');
  }
  assert.deepEqual(metrics.affinity.epochLosses.length, 2);
  assert.equal(metrics.affinity.steps, 4);
  assert.equal(metrics.affinity.labels.images, 4);
  assert.ok(lines.some((l) => l.includes("random-walk pseudo-mask mIoU")));

  // A missing CAM is named.
  rmSync(join(paths.cams('trainaug'), 'img3.safetensors'));
  await assert.rejects(makeAffinityLabels(config, hooks), /no CAM for 'img3' of split 'trainaug' \(.*img3\.safetensors\)/);
});

test('CRF threshold swept through the CRF; affinity-label exponents from that threshold', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-refine-fit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const lines: string[] = [];
  const hooks = { log: (l: string) => lines.push(l), progress: false };
  const oracle = await tinyRun(dir, { crf: { threshold: 'fit', thresholds: { from: 0.1, to: 0.5, step: 0.2 } }, alphas: 'fromThreshold' });
  recordMetrics(oracle, 'eval', { threshold: 0.3, mode: 'fixed', thresholdChosenOn: 'given' });

  // Without eval.fitSplit the sweep runs on the scored split itself (an oracle figure, and labelled so): the same
  // split scored at the chosen threshold must give the sweep's best figure.
  const crf = await crfSeeds(oracle, hooks);
  assert.equal(crf.thresholdRule, 'fit');
  assert.equal(crf.mode, 'oracle');
  assert.equal(crf.thresholdChosenOn, 'train');
  const curve = crf.fitCurve!;
  assert.deepEqual(curve.thresholds, [0.1, 0.3, 0.5]);
  const best = Math.max(...curve.miou.map((m) => m ?? -1));
  assert.equal(curve.best.miou, best);
  assert.equal(crf.threshold, curve.thresholds[curve.miou.indexOf(best)]);
  assert.ok(Math.abs(crf.result!.miou! - best) < 1e-12, `scored ${crf.result!.miou} vs swept ${best}`);
  // At 0.1 the 0.2 halo around each square turns foreground; at 0.3 and 0.5 only the squares (1) do.
  assert.ok(curve.miou[0]! < curve.miou[1]! && best > 0.9, JSON.stringify(curve.miou));
  const saved = JSON.parse(readFileSync(join(runPaths(oracle).root, 'crf', 'fit.json'), 'utf8'));
  assert.deepEqual(saved.curve, curve);

  // With a fit split the choice is leak-free and made there.
  const leakFree = resolveConfig({ ...oracle, eval: { ...oracle.eval, fitSplit: 'trainaug' } });
  const fitted = await crfSeeds(leakFree, { ...hooks, resume: true });
  assert.equal(fitted.mode, 'leak-free');
  assert.equal(fitted.thresholdChosenOn, 'trainaug');
  assert.equal(fitted.fitCurve!.split, 'trainaug');

  // The affinity labels' exponents from the CRF's threshold t: PSA's 4 and 24 scaled by alpha(t) / 6, where
  // (1 - t)^alpha(t) = t.
  const labels = await makeAffinityLabels(leakFree, hooks);
  const a = labels.alphas;
  assert.equal(a.rule, 'fromThreshold');
  assert.equal(a.thresholdFrom, 'crf');
  assert.equal(a.threshold, fitted.threshold);
  const t0 = fitted.threshold;
  assert.ok(Math.abs((1 - t0) ** (a.low * 6 / 4) - t0) < 1e-12 && Math.abs((1 - t0) ** (a.high * 6 / 24) - t0) < 1e-12, JSON.stringify(a));
  assert.deepEqual(JSON.parse(readFileSync(join(runPaths(leakFree).affinity.labels, 'info.json'), 'utf8')).alphas, a);
});

test('random walk: beta, step count and background exponent chosen by one walk over all candidates, scored as the stage scores', { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-refine-rw-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const hooks = { log: () => {}, progress: false, backboneFactory: () => new TinyBackbone({ channels: 8 }) };
  const config = await tinyRun(dir, { randomWalk: { beta: 'fit', betas: [2, 8], logt: 'fit', logts: [0, 2], bgAlpha: 'fit', bgAlphas: [0.5, 6, 40] } });
  recordMetrics(config, 'eval', { threshold: 0.3, mode: 'fixed', thresholdChosenOn: 'given' });
  await trainAffinity(config, hooks);
  const rw = await randomWalkMasks(config, hooks);
  const fit = rw.fit!;
  // The affinity net's field scored against the ground truth's pairs on the same images.
  for (const g of ['bgPos', 'fgPos', 'neg'] as const) {
    const a = fit.affinity[g];
    assert.ok(a.pairs > 0 && a.meanAffinity! > 0 && a.meanAffinity! < 1 && a.agree! >= 0 && a.agree! <= 1, `${g}: ${JSON.stringify(a)}`);
  }
  // No eval.fitSplit: chosen on the scored split itself, an oracle figure, so the stage's own score at the chosen
  // settings (a separate walk per image) must equal the sweep's best.
  assert.equal(fit.mode, 'oracle');
  assert.equal(fit.split, 'train');
  assert.equal(fit.candidates.length, 2 * 2 * 3);
  assert.deepEqual(fit.candidates[0], { beta: 2, logt: 0, bgAlpha: 0.5 });
  assert.deepEqual(fit.candidates[11], { beta: 8, logt: 2, bgAlpha: 40 });
  const best = Math.max(...fit.miou.map((m) => m ?? -1));
  const chosen = fit.candidates[fit.miou.indexOf(best)]!;
  assert.deepEqual({ beta: rw.beta, logt: rw.logt, bgAlpha: rw.bgAlpha }, chosen);
  assert.ok(Math.abs(rw.result!.miou! - best) < 1e-12, `scored ${rw.result!.miou} vs swept ${best}`);
  // The exponents matter: at 40 the background is ~0 wherever a CAM is above 0.1, at 0.5 it beats most CAM values.
  assert.ok(new Set(fit.miou).size > 1, JSON.stringify(fit.miou));
  assert.deepEqual(JSON.parse(readFileSync(runPaths(config).metrics, 'utf8'))['random-walk'].fit.best, { ...chosen, miou: best });
});

test("IRN walk: the CAM exponent, the walk's length and the background score chosen by one walk per exponent over all candidates, scored as the stage scores", { timeout: 120_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-refine-irn-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const hooks = { log: () => {}, progress: false, backboneFactory: () => new TinyBackbone({ channels: 8 }) };
  const config = await tinyRun(dir, {
    irn: { epochs: 2, batchSize: 2, cropSize: 32, scaleRange: null, radius: 3, walk: { radius: 3, expTimes: 'fit', expTimesCandidates: [4, 0, 2], bgThresholds: [0.05, 0.3, 0.7], camExponent: 'fit', camExponents: [1, 3] } },
  });
  await trainIrn(config, hooks);
  const walk = await irnWalkMasks(config, hooks);
  const fit = walk.fit!;
  // No eval.fitSplit: chosen on the scored split itself (an oracle figure), so the stage's own score at the chosen
  // setting, from a separate walk of that length per image, must equal the sweep's best, which the sweep read off
  // the longest walk's intermediate states.
  assert.equal(fit.mode, 'oracle');
  const lengths = [[0, 0.05], [0, 0.3], [0, 0.7], [2, 0.05], [2, 0.3], [2, 0.7], [4, 0.05], [4, 0.3], [4, 0.7]];
  assert.deepEqual(fit.candidates.map((c) => [c.camExponent, c.expTimes, c.bgThreshold]), [1, 3].flatMap((p) => lengths.map((l) => [p, ...l])));
  const best = Math.max(...fit.miou.map((m) => m ?? -1));
  const chosen = fit.candidates[fit.miou.indexOf(best)]!;
  assert.deepEqual({ camExponent: walk.camExponent, expTimes: walk.expTimes, bgThreshold: walk.bgThreshold }, chosen);
  assert.ok(Math.abs(walk.result!.miou! - best) < 1e-12, `scored ${walk.result!.miou} vs swept ${best}`);
  // The background score matters (0.7 of the max-normalised scores leaves little foreground), so the sweep is no
  // constant; so does the exponent (CAMs^3 shrink the weak regions before the maximum divides them).
  assert.ok(new Set(fit.miou).size > 1, JSON.stringify(fit.miou));
  assert.notDeepEqual(fit.miou.slice(0, 9), fit.miou.slice(9), 'exponents 1 and 3 score differently');
  assert.deepEqual(JSON.parse(readFileSync(runPaths(config).metrics, 'utf8'))['irn-walk'].fit.best, { ...chosen, miou: best });
});
