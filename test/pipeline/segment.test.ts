// The 'seg-train' and 'seg-eval' stages end to end at tiny size: a temporary VOC-layout dataset of coloured squares,
// pseudo-masks written where the random-walk stage puts them, a tiny backbone. Training on a trivially learnable
// task lowers the loss; evaluation writes a prediction per image and records { split, result }.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';

import { manualSeed, tensor, tidy } from '../../src/engine/index.js';
import { loadSafetensors, saveSafetensors } from '../../src/engine/serialize/index.js';
import { DataError, Rng, encodeMask, readMask } from '../../src/data/index.js';
import { writeCam } from '../../src/cams/format.js';
import {
  type WeaksegConfig, backboneFromClassifier, buildMethod, buildSegmenter, evaluateSegmenter, readSplit, resolveConfig, runPaths, segTrainTransform,
  trainSegmenter, withPseudoMasks,
} from '../../src/pipeline/index.js';
import { vals } from '../helpers.js';
import { tempDir, writeFileDeep } from '../data/helpers.js';
import { TinyBackbone } from '../methods/tiny.js';

const CLASSES = ['red', 'green'];
const COLOURS: [number, number, number][] = [[220, 30, 30], [30, 200, 40]];
const [W, H] = [40, 32];

interface Scene { id: string; mask: Uint8Array }

/**
 * A VOC root with splits 'train' (8 images) and 'val' (4): grey images with one or two coloured squares; the
 * ground truth marks each square with its class id (1 red, 2 green) and a 255 line along the top row.
 */
async function makeVoc(root: string): Promise<{ train: Scene[]; val: Scene[] }> {
  const rng = new Rng(42);
  const scene = async (id: string, k: number): Promise<Scene> => {
    const rgb = new Uint8Array(W * H * 3).fill(128);
    const mask = new Uint8Array(W * H);
    const classes = k % 3 === 2 ? [0, 1] : [k % 2];
    for (const c of classes) {
      const side = 10;
      const x0 = c === 0 ? rng.int(W / 2 - side) : W / 2 + rng.int(W / 2 - side);
      const y0 = 1 + rng.int(H - side - 1);
      for (let y = y0; y < y0 + side; y++) {
        for (let x = x0; x < x0 + side; x++) {
          rgb.set(COLOURS[c]!, 3 * (y * W + x));
          mask[y * W + x] = c + 1;
        }
      }
    }
    mask.fill(255, 0, W);
    await writeFileDeep(join(root, 'JPEGImages', `${id}.jpg`), await sharp(rgb, { raw: { width: W, height: H, channels: 3 } }).jpeg({ quality: 98 }).toBuffer());
    await writeFileDeep(join(root, 'SegmentationClass', `${id}.png`), encodeMask({ width: W, height: H, data: mask }));
    return { id, mask };
  };
  const train = await Promise.all(Array.from({ length: 8 }, (_, i) => scene(`t${i}`, i)));
  const val = await Promise.all(Array.from({ length: 4 }, (_, i) => scene(`v${i}`, i + 1)));
  await writeFileDeep(join(root, 'ImageSets', 'Segmentation', 'train.txt'), `${train.map((s) => s.id).join('\n')}\n`);
  await writeFileDeep(join(root, 'ImageSets', 'Segmentation', 'val.txt'), `${val.map((s) => s.id).join('\n')}\n`);
  return { train, val };
}

/** Pseudo-masks = the ground truth with a 255 (uncertain) border of 1 px around each square, in <run>/pseudo/train. */
async function writePseudoMasks(config: WeaksegConfig, scenes: Scene[]): Promise<void> {
  for (const { id, mask } of scenes) {
    const pseudo = mask.slice();
    for (let y = 1; y < H - 1; y++) {
      for (let x = 1; x < W - 1; x++) {
        const p = y * W + x;
        const v = mask[p]!;
        if (v !== 255 && [p - 1, p + 1, p - W, p + W].some((q) => mask[q] !== 255 && mask[q] !== v)) pseudo[p] = 255;
      }
    }
    await writeFileDeep(join(runPaths(config).pseudo('train'), `${id}.png`), encodeMask({ width: W, height: H, data: pseudo }));
  }
}

function configFor(dir: string, root: string, seg: Record<string, unknown> = {}): WeaksegConfig {
  return resolveConfig({
    runDir: join(dir, 'run'),
    data: { root, trainSplit: 'train', classes: CLASSES },
    runtime: { logEvery: 1, checkpointEverySteps: 0 },
    seg: { batchSize: 4, cropSize: 32, scaleRange: null, evalSplit: 'val', scales: [0.5, 1], ...seg },
  });
}

const tiny = { backboneFactory: () => new TinyBackbone({ channels: 8, strided: 1 }) };

// Both classifiers start from N(0, 0.01). At lr 0.01 LargeFOV fits the 8 training images (loss ~0 with its
// BatchNorms on batch statistics) yet predicts all background with the running statistics, even on those images:
// 4-image batches of one or two squares make batch statistics a poor stand-in for the population's. At 0.05
// both heads get past the all-background solution (mIoU ~30 % here).
for (const [head, epochs, lr] of [['largefov', 8, 0.05], ['aspp', 20, 0.05]] as const) {
  test(`seg stages end to end (${head}): the loss falls, predictions are written and scored`, { timeout: 120_000 }, async (t) => {
    const dir = await tempDir(t);
    const root = join(dir, 'voc');
    const { train, val } = await makeVoc(root);
    const config = configFor(dir, root, { head, epochs, lr });
    await writePseudoMasks(config, train);
    manualSeed(1);
    const lines: string[] = [];
    const hooks = { ...tiny, log: (l: string) => lines.push(l), progress: false };
    const trained = await trainSegmenter(config, hooks);
    assert.equal(trained.steps, 2 * epochs); // 8 images, batch 4
    const losses = trained.epochLosses;
    t.diagnostic(`epoch losses ${losses.map((l) => l.toFixed(3)).join(', ')}`);
    assert.ok(losses[losses.length - 1]! < 0.7 * losses[0]!, `the loss should fall: ${losses.map((l) => l.toFixed(3)).join(', ')}`);
    const paths = runPaths(config);
    assert.ok(existsSync(paths.seg.model));
    assert.ok(existsSync(join(paths.seg.checkpoints, `epoch-${String(epochs).padStart(3, '0')}.safetensors`)));
    assert.ok(readFileSync(paths.seg.trainLog, 'utf8').includes(`DeepLab ${head} on tiny`));

    const report = await evaluateSegmenter(config, hooks);
    t.diagnostic(`val mIoU ${(100 * (report.result?.miou ?? 0)).toFixed(1)} %`);
    assert.equal(report.split, 'val');
    assert.equal(report.images, 4);
    assert.equal(report.scoredImages, 4);
    for (const { id } of val) {
      const pred = await readMask(join(paths.seg.predictions('val'), `${id}.png`));
      assert.deepEqual([pred.width, pred.height], [W, H]);
      assert.ok(pred.data.every((v) => v <= 2), 'predictions are label ids 0..K-1');
    }
    // Every ground-truth pixel but the 255 top row is scored.
    assert.equal(report.result!.scoredPixels, 4 * W * (H - 1));
    assert.equal(report.result!.numClasses, 3);
    assert.ok(report.result!.miou !== null && report.result!.miou > 0.5, 'learned more than the all-background answer');
    const metrics = JSON.parse(readFileSync(paths.metrics, 'utf8'));
    assert.equal(metrics['seg-train'].steps, 2 * epochs);
    assert.equal(metrics['seg-train'].pseudoMasks, 'random-walk');
    assert.equal(metrics['seg-eval'].split, 'val');
    assert.equal(metrics['seg-eval'].result.scoredPixels, 4 * W * (H - 1));
    assert.deepEqual(metrics['seg-eval'].scales, [0.5, 1]);
    assert.ok(lines.some((l) => /segmenter mIoU on 'val': \d+\.\d\d %/.test(l)));
    // Told each image's tags: the ground truth holds only background and tagged classes, so ruling the other
    // classes out cannot turn a right pixel wrong: pixel accuracy never falls, over the same pixels.
    const told = report.resultWithTags!;
    assert.equal(told.scoredPixels, report.result!.scoredPixels);
    assert.ok(told.pixelAccuracy! >= report.result!.pixelAccuracy!, `${told.pixelAccuracy} < ${report.result!.pixelAccuracy}`);
    assert.ok(lines.some((l) => /told each image's tags, as the seeds are .*: \d+\.\d\d %/.test(l)));

    const moreClasses = resolveConfig({ ...config, data: { ...config.data, classes: [...CLASSES, 'blue'] } });
    await assert.rejects(evaluateSegmenter(moreClasses, hooks), /model\.safetensors: segmenter trained for 2 classes but split 'val' has 3/);

    if (head === 'largefov') {
      // The same with a dense CRF on the fused probabilities (the RGB image read back for its bilateral kernel).
      const withCrf = await evaluateSegmenter(resolveConfig({ ...config, seg: { ...config.seg, crf: 'psa' } }), hooks);
      t.diagnostic(`val mIoU with CRF ${(100 * (withCrf.result?.miou ?? 0)).toFixed(1)} %`);
      assert.equal(withCrf.crf, 'psa');
      assert.equal(withCrf.result!.scoredPixels, 4 * W * (H - 1));
      assert.ok(withCrf.result!.miou! > 0.5);
      assert.equal(JSON.parse(readFileSync(paths.metrics, 'utf8'))['seg-eval'].crf, 'psa');
    } else {
      // Resuming keeps (and scores) the predictions already written: a planted all-background one stays.
      const planted = join(paths.seg.predictions('val'), `${val[0]!.id}.png`);
      await writeFileDeep(planted, encodeMask({ width: W, height: H, data: new Uint8Array(W * H) }));
      const resumed = await evaluateSegmenter(config, { ...hooks, resume: true });
      assert.equal(resumed.keptImages, 4);
      assert.ok((await readMask(planted)).data.every((v) => v === 0));
      assert.ok(resumed.result!.miou! < report.result!.miou!, 'the planted prediction is scored');
      assert.equal(resumed.resultWithTags, null, 'kept predictions have no tagged counterpart');
    }

    // A second training run in the same directory must not silently overwrite the first.
    await assert.rejects(trainSegmenter(config, hooks), /already has checkpoints/);
  });
}

test('seg: a missing pseudo-mask names the file and the stage that makes it; a missing model names the stage', async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'voc');
  const { train } = await makeVoc(root);
  const config = configFor(dir, root);
  await writePseudoMasks(config, train);
  const gone = join(runPaths(config).pseudo('train'), 't3.png');
  rmSync(gone);
  await assert.rejects(trainSegmenter(config, tiny), (e: Error) => {
    assert.ok(e.message.includes(gone), e.message);
    assert.match(e.message, /1 of 8 images of split 'train' have no pseudo-mask/);
    assert.match(e.message, /'random-walk' stage/);
    return true;
  });
  for (const [source, stage] of [['crf', /'crf' stage/], ['eval', /the seeds the 'eval' stage writes of eval\.split \(now 'train'/]] as const) {
    const c = configFor(dir, root, { pseudoMasks: source });
    await assert.rejects(trainSegmenter(c, tiny), (e: Error) => {
      assert.ok(e.message.includes(join(dir, 'run', source === 'crf' ? 'crf' : 'seeds', 'train', 't0.png')), e.message);
      assert.match(e.message, stage);
      return true;
    });
  }
  await assert.rejects(evaluateSegmenter(config, tiny), /no segmentation model \(.*seg\/model\.safetensors.*\); run the 'seg-train' stage first/);
});

test("seg: 'groundTruth' trains on the images with ground truth, on it; 'withGroundTruth' keeps those images' pseudo-masks", async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'voc');
  const { train } = await makeVoc(root);
  // Two images lose their ground truth: the ceiling and the matched weak segmenter both train on the other six.
  for (const id of ['t1', 't4']) rmSync(join(root, 'SegmentationClass', `${id}.png`));
  // Their tags then come from a labels file (t1: green, t4: red).
  await writeFileDeep(join(root, 'image_labels.json'), JSON.stringify({ classes: CLASSES, labels: { t1: ['green'], t4: ['red'] } }));
  const withMasks = train.map((s) => s.id).filter((id) => id !== 't1' && id !== 't4');
  const ceiling = configFor(dir, root, { pseudoMasks: 'groundTruth' });
  assert.deepEqual(ceiling.seg.trainImages, 'all');
  const read = await readSplit(ceiling, 'train');
  assert.equal(read.items.length, 8);
  const supervised = withPseudoMasks(ceiling, read, 'train');
  assert.deepEqual(supervised.items.map((i) => i.id), withMasks);
  for (const item of supervised.items) assert.equal(item.maskPath, join(root, 'SegmentationClass', `${item.id}.png`));

  const weak = configFor(dir, root, { trainImages: 'withGroundTruth' });
  await writePseudoMasks(weak, train);
  const matched = withPseudoMasks(weak, read, 'train');
  assert.deepEqual(matched.items.map((i) => i.id), withMasks);
  for (const item of matched.items) assert.equal(item.maskPath, join(runPaths(weak).pseudo('train'), `${item.id}.png`));
  assert.equal(withPseudoMasks(configFor(dir, root), read, 'train').items.length, 8, "'all' keeps every image");

  // The ceiling trains end to end (no stage's masks needed) and records what it trained on.
  manualSeed(0);
  const summary = await trainSegmenter(ceiling, tiny);
  assert.equal(summary.images, 6);
  assert.equal(JSON.parse(readFileSync(runPaths(ceiling).metrics, 'utf8'))['seg-train'].pseudoMasks, 'groundTruth');

  for (const id of withMasks) rmSync(join(root, 'SegmentationClass', `${id}.png`));
  assert.throws(() => withPseudoMasks(ceiling, { classes: read.classes, items: read.items.map(({ maskPath: _, ...i }) => i) }, 'train'),
    /seg\.pseudoMasks 'groundTruth': no image of split 'train' has a ground-truth mask/);
});

test('seg: crops larger than the image pad the mask with 255; a pseudo-mask value that is no label is refused', async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'voc');
  const { train } = await makeVoc(root);
  const config = configFor(dir, root, { cropSize: 48 });
  await writePseudoMasks(config, train);
  const dataset = withPseudoMasks(config, await readSplit(config, 'train'), 'train');
  const backbone = new TinyBackbone();
  const transform = segTrainTransform(config, backbone, 3);
  const sample = await transform(dataset.items[0]!, { rng: new Rng(0, 0), epoch: 0, index: 0 });
  assert.deepEqual([sample.width, sample.height], [48, 48]);
  const { mask, valid } = sample;
  let padded = 0;
  for (let i = 0; i < 48 * 48; i++) {
    if (valid![i] === 0) {
      padded++;
      assert.equal(mask![i], 255, `padding pixel ${i}`);
    }
  }
  assert.equal(padded, 48 * 48 - W * H);
  assert.ok(mask!.some((v) => v === 1 || v === 2), 'the pseudo-mask itself is inside the crop');

  const bad = train[0]!.mask.slice();
  bad[5 * W + 5] = 7;
  await writeFileDeep(dataset.items[0]!.maskPath!, encodeMask({ width: W, height: H, data: bad }));
  await assert.rejects(transform(dataset.items[0]!, { rng: new Rng(0, 0), epoch: 0, index: 0 }), (e: Error) => {
    assert.ok(e instanceof DataError);
    assert.ok(e.message.includes(dataset.items[0]!.maskPath!));
    assert.match(e.message, /pseudo-mask value 7 is neither a label \(0\.\.2\) nor 255/);
    return true;
  });
  backbone.dispose();
});

test("seg candidates: backboneInit 'classifier' copies the run's classifier backbone; ignoreBand writes the banded targets", async (t) => {
  const dir = await tempDir(t);
  const root = join(dir, 'voc');
  const { train } = await makeVoc(root);
  const config = configFor(dir, root, {
    backboneInit: 'classifier', ignoreBand: [0.1, 0.3], sampling: 'repeatFactor', repeatThreshold: 1, batchNorm: 'frozen',
    epochs: 1, maxSteps: 1,
  });
  const paths = runPaths(config);
  await writePseudoMasks(config, train);
  // The run's classifier: the CAM method on the tiny backbone, its weights drawn from seed 5.
  manualSeed(5);
  const classifier = buildMethod(config, 2, tiny);
  saveSafetensors(paths.model, classifier.model.stateDict(), { format: 'weakseg-model/1' });
  classifier.model.dispose();
  // CAMs of the training images: 0.9 on the squares, 0.2 elsewhere, so the band [0.1, 0.3) is every pixel off them.
  for (const { id, mask } of train) {
    const labels = [...new Set(Array.from(mask).filter((v) => v === 1 || v === 2))].map((v) => v - 1);
    const planes = new Float32Array(2 * W * H);
    for (let c = 0; c < 2; c++) for (let p = 0; p < W * H; p++) planes[c * W * H + p] = mask[p] === c + 1 ? 0.9 : 0.2;
    tidy(() => writeCam(paths.cams('train'), tensor(planes, { shape: [2, H, W] }), labels, {
      id, classes: CLASSES, scales: [1], flip: false, method: 'cam', backbone: 'tiny',
    }));
  }

  // The classifier-initialised backbone holds exactly the file's backbone.* tensors.
  manualSeed(6);
  const net = buildSegmenter(config, 2, tiny);
  const file = loadSafetensors(paths.model).tensors;
  const backboneKeys = [...file.keys()].filter((k) => k.startsWith('backbone.'));
  assert.ok(backboneKeys.length >= 4);
  const own = net.backbone.stateDict();
  assert.ok(backboneKeys.some((k) => vals(own.get(k.slice(9))!).some((v, i) => v !== vals(file.get(k)!)[i])), 'differs before');
  assert.equal(backboneFromClassifier(config, net, 2, tiny), paths.model);
  for (const k of backboneKeys) assert.deepEqual(vals(net.backbone.stateDict().get(k.slice(9))!), vals(file.get(k)!), k);
  net.model.dispose();
  for (const v of file.values()) v.dispose();
  const other = resolveConfig({ ...config, seg: { ...config.seg, backbone: 'resnet50' } });
  const unused = buildSegmenter(config, 2, tiny);
  assert.throws(() => backboneFromClassifier(other, unused, 2, tiny), /needs the classifier's backbone, but seg\.backbone is 'resnet50'/);
  unused.model.dispose();

  const lines: string[] = [];
  const summary = await trainSegmenter(config, { ...tiny, log: (l: string) => lines.push(l), progress: false });
  assert.equal(summary.steps, 1);
  // Targets: the pseudo-mask on the squares, 255 everywhere else (the band; the top row and the borders were 255).
  for (const { id, mask } of train) {
    const target = await readMask(join(paths.seg.targets('train'), `${id}.png`));
    const pseudo = await readMask(join(paths.pseudo('train'), `${id}.png`));
    const expected = Array.from(mask, (v, p) => (v === 1 || v === 2 ? pseudo.data[p]! : 255));
    assert.deepEqual(Array.from(target.data), expected, id);
  }
  const metrics = JSON.parse(readFileSync(paths.metrics, 'utf8'))['seg-train'];
  assert.match(metrics.backboneInit, /the classifier's, .*model\.safetensors/);
  // Both classes are in 5 of the 8 images: with t = 1 every image is repeated sqrt(1 / 0.625) times, with t = 0.5 none.
  assert.equal(metrics.repeatedImages, 8);
  assert.ok(metrics.ignoredShare > 0.5 && metrics.ignoredShare < 1);
  assert.ok(lines.some((l) => l.includes('head BatchNorm frozen') && l.includes('repeat-factor sampling (t 1: 8 images')), lines.join('\n'));
  assert.throws(() => configFor(dir, root, { ignoreBand: [0.5, 0.2] }), /seg\.ignoreBand.*low must not exceed high/s);
  const half = resolveConfig({ ...config, runDir: join(dir, 'run2'), seg: { ...config.seg, repeatThreshold: 0.5, backboneInit: 'weights', ignoreBand: null } });
  await writePseudoMasks(half, train);
  await trainSegmenter(half, tiny);
  assert.equal(JSON.parse(readFileSync(runPaths(half).metrics, 'utf8'))['seg-train'].repeatedImages, 0);
});
