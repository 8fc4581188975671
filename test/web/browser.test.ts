// The exported web page in real headless Chromium (Debian's chromium, driven by puppeteer-core; nothing downloads
// a browser): it loads the model with onnxruntime-web, segments a test image picked in its file input, and its
// reported classes and shares and a pixel of its overlay must match onnxruntime-node's prediction on the same
// model. The screenshot is kept as a test artefact (test-artifacts/web-page.png). Also: `weakseg serve` basics.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';

import { manualSeed, noGrad, randn } from '../../src/engine/index.js';
import { tinynet } from '../../src/backbones/index.js';
import { DeepLab, type LargeFovHead } from '../../src/segmentation/index.js';
import { segmenterToOnnx } from '../../src/export/onnx.js';
import { readOnnxMetadata } from '../../src/export/graph.js';
import { parseModelMetadata } from '../../src/export/metadata.js';
import { decodeImage, normalizeToChw, vocColormap } from '../../src/data/index.js';
import { writeWebPage } from '../../src/export/web-page.js';
import { serveDirectory } from '../../src/web/serve.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CHROMIUM = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => p && existsSync(p));
const TMP = mkdtempSync(join(tmpdir(), 'weakseg-web-'));
after(() => rmSync(TMP, { recursive: true, force: true }));
const CLASSES = ['cat', 'dog', 'car'];

async function site(): Promise<{ dir: string; bytes: Uint8Array }> {
  manualSeed(7);
  const net = new DeepLab(tinynet({ outputStride: 8 }), { numClasses: CLASSES.length, head: 'largefov' });
  const w = (net.model.head as LargeFovHead).cls_conv.weight;
  noGrad(() => w.copy_(randn(w.shape).mul(0.5)));
  const bytes = segmenterToOnnx(net.model, { classes: CLASSES, backbone: net.backbone, head: 'largefov' });
  net.model.dispose();
  const dir = join(TMP, 'site');
  writeWebPage(dir, bytes, parseModelMetadata(readOnnxMetadata(bytes), 'test'));
  return { dir, bytes };
}

test('serve: the page with isolation headers and wasm type; 404 outside the folder; a folder without a page is refused', async () => {
  const { dir } = await site();
  const s = await serveDirectory(dir, { port: 0 });
  try {
    const page = await fetch(s.url);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get('cross-origin-embedder-policy'), 'require-corp');
    assert.match(await page.text(), /ort\.webgpu\.min\.mjs/);
    const wasm = await fetch(`${s.url}ort/ort-wasm-simd-threaded.asyncify.wasm`, { method: 'HEAD' });
    assert.equal(wasm.headers.get('content-type'), 'application/wasm');
    assert.equal((await fetch(`${s.url}..%2f..%2fetc/passwd`)).status, 404);
  } finally {
    await s.close();
  }
  await assert.rejects(serveDirectory(TMP, { port: 0 }), /index\.html does not exist/);
});

test('the page in headless Chromium segments a picked image as onnxruntime-node does', {
  skip: CHROMIUM ? false : 'no Chromium installed (apt-get install chromium, or set CHROMIUM_PATH); skipping the browser test',
  timeout: 180_000,
}, async () => {
  const { default: puppeteer } = await import('puppeteer-core');
  const { dir, bytes } = await site();
  // A test image with structure, stored as PNG without a colour profile, so the browser decodes the same pixels.
  const [W, H] = [96, 72];
  const raw = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const b = (Math.floor(x / 24) + 3 * Math.floor(y / 24)) % 5;
      for (let c = 0; c < 3; c++) raw[(y * W + x) * 3 + c] = Math.min(255, ((b * 53 + c * 97) % 256) * 0.8 + ((x * 7 + y * 13 + c * 5) % 50));
    }
  }
  const imagePath = join(TMP, 'test.png');
  await sharp(raw, { raw: { width: W, height: H, channels: 3 } }).png().toFile(imagePath);

  // onnxruntime-node's prediction on the same model and pixels.
  const image = await decodeImage(imagePath);
  const session = await ort.InferenceSession.create(bytes);
  const res = await session.run({ image: new ort.Tensor('float32', normalizeToChw(image, { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] }), [1, 3, H, W]) });
  await session.release();
  const p = res.probabilities!.data as Float32Array;
  const n = W * H;
  const K = CLASSES.length + 1;
  const labels = new Uint8Array(n);
  const margin = new Float32Array(n);
  const counts = new Array<number>(K).fill(0);
  for (let i = 0; i < n; i++) {
    const ps = Array.from({ length: K }, (_, k) => p[k * n + i]!);
    const best = ps.indexOf(Math.max(...ps));
    labels[i] = best;
    margin[i] = ps[best]! - Math.max(...ps.filter((_, k) => k !== best));
    counts[best]!++;
  }
  assert.ok(counts.filter((c) => c > 0).length >= 2, 'the test model predicts several labels');

  const s = await serveDirectory(dir, { port: 0 });
  const browser = await puppeteer.launch({ executablePath: CHROMIUM!, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1000, height: 700 });
    await page.goto(s.url);
    await page.waitForFunction('window.weaksegReady || window.weaksegError', { timeout: 60_000 });
    assert.equal(await page.evaluate('window.weaksegError ?? null'), null);
    const input = await page.$('#file');
    await (input as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(imagePath);
    await page.waitForFunction('window.weaksegResult', { timeout: 60_000 });
    const result = await page.evaluate('window.weaksegResult') as { width: number; height: number; classes: { label: number; share: number }[] };
    assert.deepEqual([result.width, result.height], [W, H]);
    assert.deepEqual(result.classes.map((c) => c.label).sort(), counts.flatMap((c, k) => (c > 0 ? [k] : [])).sort());
    for (const c of result.classes) assert.ok(Math.abs(c.share - counts[c.label]! / n) <= 2 / n, `share of label ${c.label}`);
    // A confidently labelled non-background pixel of the overlay: the image blended half-way with the label's colour.
    let at = -1;
    for (let i = 0; i < n && at < 0; i++) if (labels[i]! > 0 && margin[i]! > 0.05) at = i;
    assert.ok(at >= 0, 'a confident foreground pixel exists');
    const [x, y] = [at % W, Math.floor(at / W)];
    const got = await page.evaluate(`Array.from(document.getElementById('view').getContext('2d').getImageData(${x}, ${y}, 1, 1).data.slice(0, 3))`) as number[];
    const colour = vocColormap()[labels[at]!]!;
    const want = [0, 1, 2].map((c) => Math.round(0.5 * image.data[3 * at + c]! + 0.5 * colour[c]!));
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(got[c]! - want[c]!) <= 1, `overlay pixel (${x}, ${y}): ${got} vs ${want}`);
    mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true });
    await page.screenshot({ path: join(ROOT, 'test-artifacts', 'web-page.png') as `${string}.png` });
  } finally {
    await browser.close();
    await s.close();
  }
});
