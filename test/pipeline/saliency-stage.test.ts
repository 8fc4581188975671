// The 'saliency' stage on a tiny run directory: hand-made CAMs and saliency maps whose pseudo-masks under
// gen_gt.py's rules are worked out by hand below; the masks feed the segmenter (seg.pseudoMasks 'saliency'); the
// stage runs by default only with refine.saliency.dir; a missing map names the image id and the file.
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';

import { tensor, tidy } from '../../src/engine/index.js';
import { readMask, writeMask } from '../../src/data/index.js';
import { writeCam } from '../../src/cams/format.js';
import {
  type WeaksegConfig, resolveConfig, runPaths, runPipeline, saliencyMasks, stageNames, withPseudoMasks, readSplit,
} from '../../src/pipeline/index.js';
import { tempDir } from '../data/helpers.js';

const CLASSES = ['red', 'green', 'blue'];
const W = 20;
const H = 4;

/** A per-column map repeated down the rows. */
const columns = (f: (x: number) => number) => Array.from({ length: W * H }, (_, i) => f(i % W));

// Three images: their labels, CAM planes (one per label), saliency (0..255) and the expected pseudo-mask row.
const CASES = {
  // one class: its map 1 on x 2..7 and 0.5 on x 8..9; salient x 2..9, half-salient x 16..19 where no map fires
  a: {
    labels: [0], cams: [columns((x) => (x >= 2 && x <= 7 ? 1 : x <= 9 && x >= 8 ? 0.5 : 0))],
    saliency: columns((x) => (x >= 2 && x <= 9 ? 255 : x >= 16 ? 100 : 0)),
    // x 2..9: background cue 0 (salient), the map's cue wins (0.5 on x 8..9 still beats 0) -> class 'red' (1);
    // x 16..19: background cue 1 - 100/255 = 0.61 wins, but salient >= 32 -> ignored; elsewhere background
    expected: columns((x) => (x >= 2 && x <= 9 ? 1 : x >= 16 ? 255 : 0)),
    gt: columns((x) => (x >= 2 && x <= 7 ? 1 : 0)),
  },
  // two classes whose maps overlap at 1 on x 5..9: both cues > 0.99 there -> ignored
  b: {
    labels: [0, 1], cams: [columns((x) => (x <= 9 ? 1 : 0)), columns((x) => (x >= 5 && x <= 14 ? 1 : 0))],
    saliency: columns((x) => (x <= 14 ? 255 : 0)),
    expected: columns((x) => (x <= 4 ? 1 : x <= 9 ? 255 : x <= 14 ? 2 : 0)),
    gt: columns((x) => (x <= 7 ? 1 : x <= 14 ? 2 : 0)),
  },
  // one pixel of map and no saliency: that pixel is a conflict, no foreground is left (< 1 %) -> all ignored
  c: {
    labels: [2], cams: [columns((x) => (x === 3 ? 1 : 0)).map((v, i) => (i < W ? v : 0))],
    saliency: columns(() => 0),
    expected: columns(() => 255),
    gt: columns((x) => (x === 3 ? 3 : 0)),
  },
} as const;

async function png(path: string, grey: readonly number[], width = W, height = H): Promise<void> {
  await sharp(Buffer.from(Uint8Array.from(grey)), { raw: { width, height, channels: 1 } }).png().toFile(path);
}

async function tinyRun(dir: string, over: Record<string, unknown> = {}): Promise<WeaksegConfig> {
  const root = join(dir, 'voc');
  const maps = join(dir, 'saliency-maps');
  mkdirSync(join(root, 'ImageSets', 'Segmentation'), { recursive: true });
  mkdirSync(join(root, 'JPEGImages'), { recursive: true });
  mkdirSync(maps, { recursive: true });
  writeFileSync(join(root, 'ImageSets', 'Segmentation', 'trainaug.txt'), 'a\nb\nc\n');
  writeFileSync(join(root, 'ImageSets', 'Segmentation', 'train.txt'), 'a\nb\n');
  const config = resolveConfig({
    runDir: join(dir, 'run'),
    data: { root, trainSplit: 'trainaug', classes: CLASSES },
    eval: { split: 'train', fitSplit: null },
    refine: { saliency: { dir: maps } },
    run: { stages: ['saliency'] },
    ...over,
  });
  const paths = runPaths(config);
  for (const [id, c] of Object.entries(CASES)) {
    await png(join(root, 'JPEGImages', `${id}.png`), new Array(W * H).fill(128));
    await writeMask(join(root, 'SegmentationClass', `${id}.png`), { width: W, height: H, data: Uint8Array.from(c.gt) });
    await png(join(maps, `${id}.png`), c.saliency);
    // writeCam takes every class's plane and keeps the labels'
    const cams = new Float32Array(CLASSES.length * W * H);
    c.labels.forEach((label, k) => cams.set(c.cams[k]!, label * W * H));
    for (const split of id === 'c' ? ['trainaug'] : ['trainaug', 'train']) {
      tidy(() => writeCam(paths.cams(split), tensor(cams, { shape: [CLASSES.length, H, W] }), c.labels, {
        id, classes: CLASSES, scales: [1], flip: false, method: 'mcis', backbone: 'tiny',
      }));
    }
  }
  return config;
}

const quiet = { progress: false as const, log: () => {} };

test('saliency stage: gen_gt.py rules on hand-made maps, scored, written for the training split, fed to the segmenter', async (t) => {
  const dir = await tempDir(t);
  const config = await tinyRun(dir);
  const lines: string[] = [];
  const summary = await saliencyMasks(config, { ...quiet, log: (l) => lines.push(l) });
  assert.deepEqual(summary.splits.map((s) => [s.split, s.images, s.computed]), [['train', 2, 2], ['trainaug', 3, 1]]);
  for (const [id, c] of Object.entries(CASES)) {
    const mask = await readMask(join(runPaths(config).saliency('trainaug'), `${id}.png`));
    assert.deepEqual(Array.from(mask.data), c.expected, `pseudo-mask of ${id}`);
  }
  // Scored on 'train' (a, b), in columns (every row is the same); an ignored pixel counts as a miss:
  // bg  gt = a 14 + b 5; predicted bg: a 8 (x 0, 1, 10..15), b 5 (x 15..19), all right -> IoU 13/19
  // red gt = a 6 + b 8; pred red: a 8 (x 2..9), b 5 (x 0..4); both: a 6 + b 5 = 11 -> IoU 11 / (14 + 13 - 11) = 11/16
  // green gt = b 7 (x 8..14); pred green: b 5 (x 10..14), all inside -> IoU 5/7
  const classes = summary.result!.classes;
  const iou = (name: string) => classes.find((c) => c.name === name)!.iou;
  assert.ok(Math.abs(iou('background')! - 13 / 19) < 1e-12, `background ${iou('background')}`);
  assert.ok(Math.abs(iou('red')! - 11 / 16) < 1e-12, `red ${iou('red')}`);
  assert.ok(Math.abs(iou('green')! - 5 / 7) < 1e-12, `green ${iou('green')}`);
  // ignored: a's 4 columns + b's 5, of 40 columns
  assert.ok(Math.abs(summary.ignoredShare - 9 / 40) < 1e-12, `ignored ${summary.ignoredShare}`);
  assert.ok(lines.some((l) => l.includes("saliency pseudo-mask mIoU on 'train'")));

  // The segmenter's training set takes them as pseudo-masks.
  const seg = resolveConfig({ ...config, seg: { ...config.seg, pseudoMasks: 'saliency' } });
  const trainSet = withPseudoMasks(seg, await readSplit(seg, 'trainaug'), 'trainaug');
  assert.deepEqual(trainSet.items.map((i) => i.maskPath), ['a', 'b', 'c'].map((id) => join(runPaths(config).saliency('trainaug'), `${id}.png`)));

  // A map of another size is resized to the image; a missing one is named with its image id.
  const maps = config.refine.saliency.dir!;
  await png(join(maps, 'a.png'), columns((x) => (x >= 2 && x <= 9 ? 255 : x >= 16 ? 100 : 0)).filter((_, i) => i < W * 2), W, 2);
  rmSync(runPaths(config).saliency('train'), { recursive: true });
  rmSync(runPaths(config).saliency('trainaug'), { recursive: true });
  const resized = await saliencyMasks(config, quiet);
  assert.equal(resized.resizedMaps, 1);
  assert.deepEqual(Array.from((await readMask(join(runPaths(config).saliency('train'), 'a.png'))).data), CASES.a.expected);
  rmSync(join(maps, 'b.png'));
  await assert.rejects(saliencyMasks(config, quiet), /no saliency map for image 'b' of split 'train': .*saliency-maps\/b\.png does not exist/);
});

test('saliency stage: in the default stages only with refine.saliency.dir; its fingerprint follows the maps', async (t) => {
  const dir = await tempDir(t);
  const base = { runDir: dir, data: { root: dir } };
  assert.ok(!resolveConfig(base).run.stages.includes('saliency'), 'no maps: not run by default');
  assert.deepEqual(resolveConfig({ ...base, refine: { saliency: { dir } } }).run.stages, stageNames());
  assert.throws(() => resolveConfig({ ...base, seg: { pseudoMasks: 'salency' } }), /seg\.pseudoMasks: expected one of .*saliency \(Saliency pseudo-masks\)/);
  await assert.rejects(saliencyMasks(resolveConfig({ ...base, run: { stages: ['saliency'] } }), quiet),
    /refine\.saliency\.dir: required by the 'saliency' stage/);

  const config = await tinyRun(dir);
  const actions = async () => (await runPipeline(config, quiet)).stages.map((s) => s.action);
  assert.deepEqual(await actions(), ['ran']);
  assert.deepEqual(await actions(), ['skipped']);
  // a map rewritten by the user: the stage reruns
  const map = join(config.refine.saliency.dir!, 'c.png');
  await png(map, columns(() => 10));
  utimesSync(map, new Date(), new Date(Date.now() + 5000));
  assert.deepEqual(await actions(), ['ran']);
  // a rule changed: reruns too
  const stricter = resolveConfig({ ...config, refine: { ...config.refine, saliency: { ...config.refine.saliency, bgThreshold: 64 } } });
  assert.deepEqual((await runPipeline(stricter, quiet)).stages.map((s) => s.action), ['ran']);
});
