// The report stage on a fake run directory built here: a 3-image VOC-layout dataset (one class name and one
// image id carry markup), hand-made metrics, a training log, CAM files and seed PNGs.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { decode as decodePng } from 'fast-png';
import sharp from 'sharp';

import { tensor } from '../../src/engine/index.js';
import { type LabelMap, writeMask } from '../../src/data/index.js';
import { writeCam } from '../../src/cams/format.js';
import { type MiouResult } from '../../src/eval/miou.js';
import { escapeHtml } from '../../src/report/html.js';
import { type WeaksegConfig, resolveConfig, runPaths, writeReport } from '../../src/pipeline/index.js';

const CLASSES = ['cat', '<script>alert(1)</script>'];
const IDS = ['a1', 'b<i>2', 'c3'];
const W = 8;
const H = 6;

/** Class 1 in the left half of image i's mask, class 2 in the right half of the last image; 255 on the border row. */
function gtMask(i: number): LabelMap {
  const data = new Uint8Array(W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) data[y * W + x] = y === 0 ? 255 : x < W / 2 ? 1 : i === 2 ? 2 : 0;
  }
  return { width: W, height: H, data };
}

/** A MiouResult with the given mIoU and per-class IoUs (background, cat, the markup class). */
function result(miou: number, ious: (number | null)[]): MiouResult {
  return {
    numClasses: 3, miou, presentClasses: ious.filter((v) => v !== null).length, pixelAccuracy: 0.9, scoredPixels: 100,
    unpredictedPixels: 0,
    classes: ['background', ...CLASSES].map((name, id) => ({
      id, name, iou: ious[id] ?? null, precision: null, recall: null, tp: 0, gtPixels: 0, predPixels: 0,
    })),
  };
}

async function fakeRun(t: { after: (fn: () => void) => void }, metrics: Record<string, unknown>, galleryImages = 2): Promise<WeaksegConfig> {
  const root = mkdtempSync(join(tmpdir(), 'weakseg-report-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const voc = join(root, 'voc');
  mkdirSync(join(voc, 'ImageSets', 'Segmentation'), { recursive: true });
  mkdirSync(join(voc, 'JPEGImages'), { recursive: true });
  for (const split of ['train', 'val']) writeFileSync(join(voc, 'ImageSets', 'Segmentation', `${split}.txt`), `${IDS.join('\n')}\n`);
  for (const [i, id] of IDS.entries()) {
    await sharp({ create: { width: W, height: H, channels: 3, background: { r: 40 * i, g: 120, b: 200 } } }).jpeg().toFile(join(voc, 'JPEGImages', `${id}.jpg`));
    await writeMask(join(voc, 'SegmentationClass', `${id}.png`), gtMask(i));
  }
  const config = resolveConfig({ runDir: join(root, 'run'), data: { root: voc, classes: CLASSES }, run: { galleryImages } });
  const paths = runPaths(config);
  mkdirSync(paths.root, { recursive: true });
  writeFileSync(paths.config, JSON.stringify(config));
  writeFileSync(paths.metrics, JSON.stringify(metrics));
  return config;
}

/** CAMs (class 0 ramping left to right) and seeds for the train split. */
async function writeCamsAndSeeds(config: WeaksegConfig): Promise<LabelMap[]> {
  const paths = runPaths(config);
  const seeds: LabelMap[] = [];
  for (const [i, id] of IDS.entries()) {
    const cams = new Float32Array(2 * H * W);
    for (let p = 0; p < H * W; p++) cams[p] = (p % W) / (W - 1);
    writeCam(paths.cams('train'), tensor(cams, { shape: [2, H, W] }), [0], {
      id, classes: CLASSES, scales: [1], flip: false, method: 'cam', backbone: 'tiny',
    });
    const s = { width: W, height: H, data: new Uint8Array(W * H).map((_, p) => ((p % W) >= 4 ? 1 : 0) + (i === 2 ? 1 : 0)) };
    await writeMask(join(paths.seeds('train'), `${id}.png`), s);
    seeds.push(s);
  }
  return seeds;
}

const EVAL = {
  mode: 'leak-free', split: 'train', thresholdChosenOn: 'val', threshold: 0.3,
  result: result(0.25, [0.5, 0.25, 0]),
  curve: { thresholds: [0.1, 0.2, 0.3, 0.4], miou: [0.1, 0.2, 0.25, null], bestThreshold: 0.3, bestMiou: 0.25 },
  fitCurve: { split: 'val', thresholds: [0.1, 0.2, 0.3, 0.4], miou: [0.15, 0.22, 0.27, 0.2], bestThreshold: 0.3, bestMiou: 0.27 },
  seedsDir: null,
};

/** Every src/href value in the page. */
const references = (html: string) => [...html.matchAll(/\b(?:src|href)\s*=\s*(["'])(.*?)\1/gi)].map((m) => m[2]!);

test('a run with only train, cams and eval: the report renders them and names the missing stages', async (t) => {
  const config = await fakeRun(t, {
    train: { epochs: 2, steps: 4, epochLosses: [0.6, 0.3], secondsPerEpoch: 1.5, msPerStep: 750, dataWaitShare: 0.02 },
    cams: { checkpoint: 'x', splits: [{ split: 'train', dir: 'x', images: 3, seconds: 1, msPerImage: 333 }] },
    eval: EVAL,
  });
  const seeds = await writeCamsAndSeeds(config);
  const paths = runPaths(config);
  writeFileSync(paths.trainJsonLog, [
    { type: 'start' }, { type: 'step', step: 1, loss: 0.7 }, { type: 'step', step: 2, loss: 0.5 }, { type: 'epoch', step: 2, meanLoss: 0.6 },
  ].map((e) => JSON.stringify(e)).join('\n') + '\nnot json\n');

  const logs: string[] = [];
  const { path } = await writeReport(config, { log: (l) => logs.push(l) });
  assert.equal(path, join(paths.root, 'report', 'index.html'));
  assert.ok(logs.some((l) => l.includes(path)));
  const html = readFileSync(path, 'utf8');
  assert.deepEqual(JSON.parse(readFileSync(paths.metrics, 'utf8')).report, { path });
  assert.deepEqual(readdirSync(join(paths.root, 'report')), ['index.html'], 'no temporary file left behind');

  assert.match(html, /Missing stages \(no results in metrics\.json\): crf, affinity, random-walk, irn, irn-walk, seg-train, seg-eval\./);
  for (const s of ['train', 'cams', 'eval']) assert.match(html, new RegExp(`<span class="chip done">${s}</span>`));
  assert.match(html, /<td>CAM seeds<\/td><td>train<\/td><td class="num">25\.00<\/td>/);
  assert.match(html, /<td>CAM seeds<\/td><td>val<\/td><td class="num">27\.00<\/td>/);
  assert.match(html, /2 epochs, 4 steps, 1\.5 s\/epoch, 750 ms\/step, data wait 2\.0 %/);
  assert.match(html, /train\.log\.jsonl: 1 line\(s\) are not JSON \(first: line 5\); skipped/);
  assert.match(html, /Seed mIoU against the background threshold t/);
  assert.match(html, /Classifier loss/);

  // Escaping: the markup in the class name and the image id shows as text, never as elements.
  assert.ok(!/<script/i.test(html), 'no script element');
  assert.ok(!html.includes('<i>'), 'the id\'s <i> is not an element');
  assert.ok(html.includes(escapeHtml(CLASSES[1]!)));
  assert.ok(html.includes('b&lt;i&gt;2'));

  // Self-contained: every reference is a data URI or an in-page anchor; no stylesheet links, no CSS url().
  const refs = references(html);
  assert.ok(refs.length > 0);
  for (const r of refs) assert.ok(r.startsWith('data:') || r.startsWith('#'), `external reference ${r.slice(0, 60)}`);
  assert.ok(!/https?:\/\//i.test(html.replace(/data:[^"']*/g, '')), 'no http(s) URL anywhere');
  assert.ok(!/<link\b|url\(/i.test(html));

  // Gallery: the first 2 sorted ids with GT, columns image, CAM, seeds, ground truth; CRF and RW said missing.
  assert.match(html, /<div class="id">a1<\/div>/);
  assert.match(html, /<div class="id">b&lt;i&gt;2<\/div>/);
  assert.ok(!html.includes('<div class="id">c3</div>'));
  assert.match(html, /<th>Image<\/th><th>CAM<\/th><th>Seeds<\/th><th>Ground truth<\/th>/);
  assert.match(html, /so not shown: CRF \([^)]*crf\/train\), Random walk/);
  const pngs = [...html.matchAll(/src="data:image\/png;base64,([^"]+)"/g)].map((m) => decodePng(Buffer.from(m[1]!, 'base64')));
  const jpegs = [...html.matchAll(/src="data:image\/jpeg;base64,/g)];
  assert.equal(pngs.length, 4); // seeds + GT for 2 rows
  assert.equal(jpegs.length, 4); // image + CAM for 2 rows
  // Row order: a1 seeds, a1 GT, b<i>2 seeds, b<i>2 GT; 8x6 images are shown at full size.
  assert.deepEqual([...pngs[0]!.data], [...seeds[0]!.data]);
  assert.deepEqual([...pngs[1]!.data], [...gtMask(0).data]);
  assert.deepEqual([...pngs[2]!.data], [...seeds[1]!.data]);
  // Legend: the labels in the shown masks (0, 1, 255; class 2 only appears in c3).
  assert.match(html, /background<\/span><span><span class="sw" style="background: rgb\(128,0,0\)"><\/span>cat<\/span>/);
  assert.match(html, /void \/ uncertain/);
});

test('a run with every scoring stage: changes against the previous step, segmentation gallery', async (t) => {
  const config = await fakeRun(t, {
    eval: EVAL,
    crf: { split: 'train', result: result(0.3, [0.6, 0.3, 0]) },
    'random-walk': { split: 'train', result: result(0.28, [0.55, 0.29, 0]) },
    affinity: { epochs: 1, steps: 3, epochLosses: [0.4, 0.2], msPerStep: 10 },
    irn: { epochs: 1, steps: 3, epochLosses: [0.9], msPerStep: 10 },
    'irn-walk': { split: 'train', result: result(0.31, [0.6, 0.33, 0]), beta: 10, expTimes: 8, bgThreshold: 0.25 },
    'seg-train': { epochs: 1, steps: 2, epochLosses: [1.2], msPerStep: 20 },
    'seg-eval': { split: 'val', result: result(0.4, [0.7, 0.5, null]), resultWithTags: result(0.45, [0.72, 0.6, null]) },
    train: { epochs: 1, steps: 1 },
    cams: { splits: [] },
  }, 1);
  const paths = runPaths(config);
  await writeCamsAndSeeds(config);
  await writeMask(join(paths.crf('train'), 'a1.png'), gtMask(0));
  mkdirSync(paths.pseudo('train'), { recursive: true });
  await writeMask(join(paths.seg.predictions('val'), 'a1.png'), gtMask(0));
  const { path } = await writeReport(config, { log: () => {} });
  const html = readFileSync(path, 'utf8');

  assert.match(html, /Every stage of the run has results\./);
  // CRF 30 vs seeds 25 on train; RW 28 vs CRF 30; seg 40 on val vs the seeds' 27 on val (the fit split).
  assert.match(html, /Seeds \+ dense CRF<\/td><td>train<\/td><td class="num">30\.00<\/td><td><span class="up">\+5\.00<\/span> <span class="muted">vs CAM seeds<\/span>/);
  assert.match(html, /Random walk<\/td><td>train<\/td><td class="num">28\.00<\/td><td><span class="down">−2\.00<\/span> <span class="muted">vs Seeds \+ dense CRF<\/span>/);
  assert.match(html, /Segmentation net<\/td><td>val<\/td><td class="num">40\.00<\/td><td><span class="up">\+13\.00<\/span> <span class="muted">vs CAM seeds \(fit split\)<\/span>/);
  assert.match(html, /Segmentation net, told the tags<\/td><td>val<\/td><td class="num">45\.00<\/td><td><span class="up">\+18\.00<\/span> <span class="muted">vs CAM seeds \(fit split\)<\/span><\/td><td>a diagnostic/);
  assert.match(html, /IRN walk<\/td><td>train<\/td><td class="num">31\.00<\/td><td><span class="up">\+3\.00<\/span> <span class="muted">vs Random walk<\/span><\/td><td>IRN: beta 10, 2\^8 steps, background score 0\.25/);
  // Per-class chart: 4 series, and per-epoch training curves from metrics.json for affinity and seg (no logs).
  assert.match(html, /CAM seeds \(train\)/);
  assert.match(html, /Segmentation net \(val\)/);
  assert.match(html, /AffinityNet loss/);
  assert.match(html, /per-epoch means from metrics\.json/);
  // Galleries: CRF and (empty) random-walk columns, then the segmentation net on val.
  assert.match(html, /<th>Image<\/th><th>CAM<\/th><th>Seeds<\/th><th>CRF<\/th><th>Random walk<\/th><th>Ground truth<\/th>/);
  assert.match(html, /no random walk/);
  assert.match(html, /Segmentation net on &#39;val&#39;/);
  assert.match(html, /<th>Image<\/th><th>Prediction<\/th><th>Ground truth<\/th>/);
  for (const r of references(html)) assert.ok(r.startsWith('data:') || r.startsWith('#'));
});

test('unscored and malformed stage results are said on the page, not fatal', async (t) => {
  const config = await fakeRun(t, {
    eval: { ...EVAL, result: 'oops' },
    crf: { split: 'train', result: null, splits: [{ split: 'train', images: 3, msPerImage: 12.4 }] },
  }, 0);
  const { path } = await writeReport(config, { log: () => {} });
  const html = readFileSync(path, 'utf8');
  assert.match(html, /metrics\.json: eval\.result is not an mIoU result/);
  assert.match(html, /Seeds \+ dense CRF<\/td><td>train<\/td><td class="num">–<\/td><td><\/td><td>not scored: no ground truth/);
  assert.match(html, /<td>crf<\/td><td>train: 3 images, 12 ms\/image<\/td>/);
  assert.match(html, /run\.galleryImages is 0: no gallery\./);
});

test('an empty run directory still renders; a missing one is an error naming it', async (t) => {
  const config = await fakeRun(t, {});
  rmSync(runPaths(config).metrics);
  const { path } = await writeReport(config, { log: () => {} });
  const html = readFileSync(path, 'utf8');
  assert.match(html, /Missing stages \(no results in metrics\.json\): train, cams, eval, crf, affinity, random-walk, irn, irn-walk, seg-train, seg-eval\./);
  assert.match(html, /No stage has been scored yet/);
  assert.match(html, /metrics\.json does not exist/);
  const gone = resolveConfig({ runDir: join(tmpdir(), 'weakseg-no-such-run-xyz'), data: { root: '/nowhere' } });
  await assert.rejects(writeReport(gone, { log: () => {} }), /run directory .*weakseg-no-such-run-xyz does not exist/);
});

test('run.ceiling: every weak figure as a share of the supervised ceiling, and the ceiling row; a missing one is said', async (t) => {
  const config = await fakeRun(t, {
    eval: EVAL,
    crf: { split: 'train', result: result(0.3, [0.6, 0.3, 0]) },
    'seg-eval': { split: 'val', result: result(0.4, [0.7, 0.5, null]) },
  }, 0);
  const ceiling = join(runPaths(config).root, '..', 'ceiling');
  mkdirSync(ceiling, { recursive: true });
  writeFileSync(join(ceiling, 'metrics.json'), JSON.stringify({
    'seg-train': { pseudoMasks: 'groundTruth', images: 3 }, 'seg-eval': { split: 'val', result: result(0.5, [0.8, 0.7, null]) },
  }));
  const withCeiling = resolveConfig({ ...config, run: { ...config.run, ceiling } });
  const html = readFileSync((await writeReport(withCeiling, { log: () => {} })).path, 'utf8');
  assert.match(html, /<th class="num">% of ceiling<\/th>/);
  // 25/50, 30/50, 40/50 and the ceiling itself.
  assert.match(html, /CAM seeds<\/td><td>train<\/td><td class="num">25\.00<\/td><td><\/td><td class="num">50\.0<\/td>/);
  assert.match(html, /Seeds \+ dense CRF<\/td><td>train<\/td><td class="num">30\.00<\/td><td>.*?<\/td><td class="num">60\.0<\/td>/);
  assert.match(html, /Segmentation net<\/td><td>val<\/td><td class="num">40\.00<\/td><td>.*?<\/td><td class="num">80\.0<\/td>/);
  assert.match(html, /Supervised ceiling<\/td><td>val<\/td><td class="num">50\.00<\/td><td><\/td><td class="num">100\.0<\/td><td>the segmenter on ground-truth masks \(3 images/);

  const missing = resolveConfig({ ...config, run: { ...config.run, ceiling: join(ceiling, 'nowhere') } });
  const plain = readFileSync((await writeReport(missing, { log: () => {} })).path, 'utf8');
  assert.ok(!plain.includes('% of ceiling'));
  assert.match(plain, /run\.ceiling: .*nowhere\/metrics\.json does not exist/);
});
