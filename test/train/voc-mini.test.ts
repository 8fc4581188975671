// End to end on real data: a few training steps on a handful of voc-mini images lower the loss, and the CAM
// and evaluation stages run on them. Needs ../shared (data and MobileNetV2 weights); skipped without it.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { evaluateSeeds, makeCams, resolveConfig, scoredEval, trainClassifier } from '../../src/pipeline/index.js';
import { readCam, readCamIndex } from '../../src/cams/index.js';
import { readMask } from '../../src/data/index.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const shared = resolve(root, '..', 'shared');
const voc = join(shared, 'data', 'voc-mini');
const weights = join(shared, 'weights', 'mobilenet_v2_imagenet.safetensors');
const skip = existsSync(voc) && existsSync(weights) ? false : `needs ${voc} and ${weights} (../shared is absent)`;

/** A VOC root whose split 'few' lists the first n ids of voc-mini's 'train' (images, masks and labels linked). */
function fewImagesRoot(dir: string, n: number): string {
  const ids = readFileSync(join(voc, 'ImageSets', 'Segmentation', 'train.txt'), 'utf8').split('\n').filter(Boolean).slice(0, n);
  const r = join(dir, 'voc');
  mkdirSync(join(r, 'ImageSets', 'Segmentation'), { recursive: true });
  writeFileSync(join(r, 'ImageSets', 'Segmentation', 'few.txt'), `${ids.join('\n')}\n`);
  for (const d of ['JPEGImages', 'SegmentationClass', 'image_labels.json']) symlinkSync(join(voc, d), join(r, d));
  return r;
}

test('voc-mini: a few steps lower the loss, then CAMs and seeds are made and scored', { skip, timeout: 600_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-vocmini-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = resolveConfig({
    runDir: join(dir, 'run'),
    data: { root: fewImagesRoot(dir, 8), trainSplit: 'few' },
    model: { weights },
    train: { epochs: 4, batchSize: 4, cropSize: 160 },
    runtime: { logEvery: 1 },
    cams: { splits: ['few'], scales: [0.5, 1] },
    eval: { split: 'few', fitSplit: 'few' },
  });
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  const trained = await trainClassifier(config, { log, progress: false });
  assert.equal(trained.steps, 8);
  const [first, ...rest] = trained.epochLosses;
  assert.ok(rest[rest.length - 1]! < first!, `loss should fall over the epochs: ${trained.epochLosses.map((l) => l.toFixed(4)).join(', ')}`);
  assert.ok(existsSync(join(config.runDir, 'model.safetensors')));
  assert.ok(existsSync(join(config.runDir, 'checkpoints', 'epoch-004.safetensors')));
  assert.ok(lines.some((l) => /data wait \d+\.\d% of the time/.test(l)), 'the log reports the data-wait share');

  const cams = await makeCams(config, { log, progress: false });
  assert.equal(cams.splits[0]!.images, 8);
  const index = readCamIndex(join(config.runDir, 'cams', 'few'));
  assert.equal(index.count, 8);
  const cam = readCam(join(config.runDir, 'cams', 'few', `${index.ids[0]}.safetensors`));
  const gt = await readMask(join(voc, 'SegmentationClass', `${index.ids[0]}.png`));
  assert.deepEqual([cam.width, cam.height], [gt.width, gt.height], 'CAMs at the original resolution');
  assert.ok(cam.labels.length >= 1);

  const report = scoredEval(await evaluateSeeds(config, { log, progress: false }));
  assert.equal(report.mode, 'leak-free');
  // The fit split is the scored one here, so its per-class scores at the chosen t are the report's.
  assert.deepEqual(report.fitCurve!.result, report.result);
  // Against all-background masks, scored by hand from the ground truth: background IoU = its share of the scored
  // pixels, every other class present 0.
  let bg = 0;
  let scored = 0;
  const present = new Set<number>();
  for (const id of index.ids) {
    for (const v of (await readMask(join(voc, 'SegmentationClass', `${id}.png`))).data) {
      if (v === 255) continue;
      scored++;
      if (v === 0) bg++;
      present.add(v);
    }
  }
  const allBackground = bg / scored / present.size;
  t.diagnostic(`seed mIoU ${report.result.miou} at t ${report.threshold}; all-background masks ${allBackground}`);
  assert.ok(report.result.miou !== null && report.result.miou > allBackground + 0.08,
    `seed mIoU ${report.result.miou} against ${allBackground} for all-background masks`);
  assert.ok(lines.some((l) => l.includes('[leak-free] seed mIoU')));
  const metrics = JSON.parse(readFileSync(join(config.runDir, 'metrics.json'), 'utf8'));
  assert.deepEqual(Object.keys(metrics).sort(), ['cams', 'eval', 'train']);
  assert.ok(existsSync(join(config.runDir, 'seeds', 'few', `${index.ids[0]}.png`)));
});
