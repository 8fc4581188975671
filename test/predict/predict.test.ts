// weakseg predict on a folder of good, corrupt, grayscale, CMYK, alpha, EXIF-rotated and huge images: bad files
// reported by path and skipped, masks at the upright image's size, JSON lines that agree with the PNGs, labels that
// agree with onnxruntime-node's argmax on the exported model, a rerun after kill -9 that redoes nothing already
// written, and the classifier path (given tags -> CAMs -> seeds -> CRF) for a run without a segmenter.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decode as decodePng } from 'fast-png';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';

import { decodeImage, normalizeToChw, readMask } from '../../src/data/index.js';
import { predict, type PredictionLine } from '../../src/predict/predict.js';
import { CLASSES, makeClassifierRun, makeSegmenterRun, runConfig, texture } from './fixtures.js';

const TMP = mkdtempSync(join(tmpdir(), 'weakseg-predict-'));
const SEG_RUN = join(TMP, 'run-seg');
const CLS_RUN = join(TMP, 'run-cls');
const IN = join(TMP, 'in');
const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
after(() => rmSync(TMP, { recursive: true, force: true }));

let onnx: Uint8Array;

before(async () => {
  onnx = makeSegmenterRun(SEG_RUN);
  makeClassifierRun(CLS_RUN);

  mkdirSync(join(IN, 'sub'), { recursive: true });
  await texture(80, 64, 1).png().toFile(join(IN, 'good.png'));
  const jpeg = await texture(64, 64, 2).jpeg().toBuffer();
  writeFileSync(join(IN, 'corrupt.jpg'), jpeg.subarray(0, jpeg.length >> 1));
  await texture(72, 56, 3).grayscale().png().toFile(join(IN, 'gray.png'));
  await texture(64, 48, 4).toColourspace('cmyk').jpeg().toFile(join(IN, 'cmyk.jpg'));
  await texture(64, 64, 5).ensureAlpha(0.4).png().toFile(join(IN, 'sub', 'alpha.png'));
  // Stored 60 wide x 40 high with EXIF orientation 6 (rotate 90 degrees): upright it is 40 x 60.
  await texture(60, 40, 6).jpeg().withMetadata({ orientation: 6 }).toFile(join(IN, 'rotated.jpg'));
  await texture(1600, 1200, 7).jpeg().toFile(join(IN, 'huge.jpg'));
  writeFileSync(join(IN, 'notes.txt'), 'not an image');
});

function lines(out: string): PredictionLine[] {
  return readFileSync(join(out, 'predictions.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as PredictionLine);
}

test('a folder of good and bad images: bad ones reported by path, every other one masked at its upright size', async () => {
  const out = join(TMP, 'out-folder');
  const logs: string[] = [];
  const s = await predict(runConfig(SEG_RUN), { input: IN, out, maxSide: 256 }, { log: (l) => logs.push(l), progress: false });
  assert.equal(s.mode, 'segmenter');
  assert.equal(s.images, 7, 'notes.txt is not an image');
  assert.equal(s.predicted, 6);
  assert.deepEqual(s.badFiles.map((b) => b.path), [join(IN, 'corrupt.jpg')]);
  assert.ok(logs.some((l) => l.includes(join(IN, 'corrupt.jpg'))), 'the bad file is reported');
  const byId = new Map(lines(out).map((l) => [l.id, l]));
  assert.deepEqual([...byId.keys()].sort(), ['cmyk', 'good', 'gray', 'huge', 'rotated', 'sub/alpha']);
  const sizes: Record<string, [number, number]> = {
    good: [80, 64], gray: [72, 56], cmyk: [64, 48], 'sub/alpha': [64, 64], rotated: [40, 60], huge: [1600, 1200],
  };
  for (const [id, [w, h]] of Object.entries(sizes)) {
    const line = byId.get(id)!;
    assert.deepEqual([line.width, line.height], [w, h], id);
    const mask = await readMask(join(out, `${id}.png`));
    assert.deepEqual([mask.width, mask.height], [w, h], `${id} mask size`);
    const meta = await sharp(join(out, `${id}.jpg`)).metadata();
    assert.deepEqual([meta.width, meta.height, meta.format], [w, h, 'jpeg'], `${id} overlay`);
    // The JSON line agrees with the PNG: the same labels, with shares = pixel counts / pixels.
    const counts = new Map<number, number>();
    for (const v of mask.data) counts.set(v, (counts.get(v) ?? 0) + 1);
    assert.deepEqual(line.classes.map((c) => c.label).sort(), [...counts.keys()].sort(), `${id} labels`);
    for (const c of line.classes) {
      assert.ok(Math.abs(c.share - counts.get(c.label)! / (w * h)) < 1e-12, `${id} share of ${c.name}`);
      assert.equal(c.name, ['background', ...CLASSES][c.label]);
      assert.ok(c.confidence > 0 && c.confidence <= 1, `${id} confidence ${c.confidence}`);
    }
  }
  const text = decodePng(readFileSync(join(out, 'good.png'))).text;
  assert.deepEqual(JSON.parse(text.labels!), ['background', ...CLASSES]);
  assert.ok(new Set(lines(out).flatMap((l) => l.classes.map((c) => c.label))).size >= 2, 'the test net predicts several labels');
});

/** onnxruntime-node's probabilities (label-major, K x n) of the exported segmenter on an image: an independent forward. */
async function ortProbabilities(path: string): Promise<{ p: Float32Array; n: number }> {
  const image = await decodeImage(path);
  const session = await ort.InferenceSession.create(onnx);
  const res = await session.run({ image: new ort.Tensor('float32', normalizeToChw(image, { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }), [1, 3, image.height, image.width]) });
  await session.release();
  return { p: res.probabilities!.data as Float32Array, n: image.width * image.height };
}

test('the labels equal the argmax of onnxruntime-node on the exported model (an independent forward)', async () => {
  const out = join(TMP, 'out-single');
  await predict(runConfig(SEG_RUN), { input: join(IN, 'good.png'), out, crf: null }, { log: () => {}, progress: false });
  const { p, n } = await ortProbabilities(join(IN, 'good.png'));
  const mask = await readMask(join(out, 'good.png'));
  let compared = 0;
  for (let i = 0; i < n; i++) {
    const ps = [0, 1, 2, 3].map((k) => p[k * n + i]!);
    const sorted = [...ps].sort((a, b) => b - a);
    if (sorted[0]! - sorted[1]! < 1e-4) continue; // a tie within float noise
    assert.equal(mask.data[i], ps.indexOf(sorted[0]!), `pixel ${i}`);
    compared++;
  }
  assert.ok(compared > n * 0.9, `${compared} of ${n} pixels compared`);
});

test('given tags, the segmenter labels each pixel with the best of background and the tags, as onnxruntime\'s probabilities say', async () => {
  const out = join(TMP, 'out-tags');
  const s = await predict(runConfig(SEG_RUN), { input: join(IN, 'good.png'), out, crf: null, tags: ['dog'] }, { log: () => {}, progress: false });
  assert.equal(s.mode, 'segmenter');
  const line = lines(out)[0]!;
  assert.deepEqual(line.tags, ['dog']);
  assert.ok(line.classes.every((c) => c.label === 0 || c.label === 2), `labels ${line.classes.map((c) => c.name)}`);
  const { p, n } = await ortProbabilities(join(IN, 'good.png'));
  const mask = await readMask(join(out, 'good.png'));
  let compared = 0;
  let overruled = 0;
  for (let i = 0; i < n; i++) {
    const [bg, dog] = [p[i]!, p[2 * n + i]!];
    if (Math.abs(bg - dog) < 1e-4) continue;
    assert.equal(mask.data[i], bg > dog ? 0 : 2, `pixel ${i}`);
    compared++;
    if ([1, 3].some((k) => p[k * n + i]! > Math.max(bg, dog))) overruled++;
  }
  assert.ok(compared > n * 0.9, `${compared} of ${n} pixels compared`);
  assert.ok(overruled > 0, 'some pixels would take an untagged class without the tags');
});

test('a rerun after kill -9 redoes nothing already written and finishes the rest', async () => {
  const many = join(TMP, 'many');
  mkdirSync(many);
  for (let i = 0; i < 16; i++) await texture(128, 96, 100 + i).png().toFile(join(many, `img${String(i).padStart(2, '0')}.png`));
  const out = join(TMP, 'out-killed');
  const child = spawn(process.execPath, ['--single-threaded-gc', MAIN, 'predict', '-r', SEG_RUN, '-i', many, '-o', out,
    '--scales', '0.75,1,1.5', '--no-progress', '--threads', '1'], { stdio: 'ignore' });
  const exited = new Promise((r) => child.on('exit', r));
  const done = () => (existsSync(out) ? readdirSync(out).filter((f) => f.endsWith('.json')).length : 0);
  while (done() < 3) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGKILL');
  await exited;
  const before = new Map(readdirSync(out).filter((f) => /\.(json|png|jpg)$/.test(f)).map((f) => [f, statSync(join(out, f)).mtimeMs]));
  const finished = [...before.keys()].filter((f) => f.endsWith('.json'));
  assert.ok(finished.length >= 3 && finished.length < 16, `${finished.length} images done before the kill`);
  const s = await predict(runConfig(SEG_RUN), { input: many, out, scales: [0.75, 1, 1.5] }, { log: () => {}, progress: false });
  assert.equal(s.kept, finished.length);
  assert.equal(s.predicted, 16 - finished.length);
  for (const f of finished) {
    for (const ext of ['.json', '.png', '.jpg']) {
      const name = f.replace(/\.json$/, ext);
      assert.equal(statSync(join(out, name)).mtimeMs, before.get(name), `${name} was rewritten`);
    }
  }
  assert.equal(lines(out).length, 16);
});

test('without a segmenter: given tags -> CAMs -> seeds at the run threshold -> CRF; unknown tags are refused', async () => {
  const out = join(TMP, 'out-cls');
  const s = await predict(runConfig(CLS_RUN), { input: join(IN, 'good.png'), out, tags: ['dog'], scales: [1] }, { log: () => {}, progress: false });
  assert.equal(s.mode, 'classifier');
  const [line] = lines(out);
  assert.deepEqual(line!.tags, ['dog']);
  const mask = await readMask(join(out, 'good.png'));
  assert.ok(mask.data.every((v) => v === 0 || v === 2), 'only background and the tag');
  await assert.rejects(predict(runConfig(CLS_RUN), { input: join(IN, 'good.png'), out, tags: ['horse'] }, { log: () => {} }), /unknown class 'horse'/);
});

test('--on-bad-file fail stops at the corrupt image, naming it', async () => {
  await assert.rejects(predict(runConfig(SEG_RUN), { input: IN, out: join(TMP, 'out-fail'), onBadFile: 'fail', maxSide: 64 }, { log: () => {} }),
    (e: Error) => e.message.includes(join(IN, 'corrupt.jpg')));
});
