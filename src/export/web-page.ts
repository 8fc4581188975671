// `weakseg export --web DIR`: a self-contained static page that segments an image the user drops or picks, with
// onnxruntime-web in the browser (WebGPU where the browser offers an adapter, else WebAssembly). Nothing is fetched
// from the network: the page, the model and onnxruntime-web's module and WebAssembly binary are all written to DIR.
//
//   DIR/index.html      the page (its script inline; the model's labels, preprocessing and colours embedded)
//   DIR/model.onnx      the segmenter (src/export/onnx.ts: its `probabilities` output is at the input's size)
//   DIR/ort/            onnxruntime-web's WebGPU build and the WebAssembly binary it loads
//
// The page downsizes images whose longer side exceeds maxSide (default 512) before the network, so a phone photo
// does not take minutes in WebAssembly; the mask is shown over the image at that size.
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import { vocColormap } from '../data/mask.js';
import type { OnnxModelInfo } from './metadata.js';

/** onnxruntime-web's files the page needs: the WebGPU-capable bundle and the binary it imports. */
const ORT_FILES = ['ort.webgpu.min.mjs', 'ort-wasm-simd-threaded.asyncify.mjs', 'ort-wasm-simd-threaded.asyncify.wasm'];

export interface WebPageOptions {
  /** Longest image side fed to the network (default 512). */
  maxSide?: number;
  title?: string;
}

function ortDist(): string {
  // The package's "node" export resolves inside dist/.
  return dirname(createRequire(import.meta.url).resolve('onnxruntime-web'));
}


/** Writes the page, the model and onnxruntime-web's files to `dir`; returns the page's path. */
export function writeWebPage(dir: string, model: Uint8Array, info: OnnxModelInfo, options: WebPageOptions = {}): string {
  if (info.kind !== 'segmenter') throw new Error(`the web page needs a segmenter model, got a ${info.kind}`);
  mkdirSync(join(dir, 'ort'), { recursive: true });
  const dist = ortDist();
  for (const f of ORT_FILES) copyFileSync(join(dist, f), join(dir, 'ort', f));
  writeFileAtomic(join(dir, 'model.onnx'), model);
  const palette = vocColormap().slice(0, info.labels.length);
  const settings = { labels: info.labels, mean: info.mean, std: info.std, palette, maxSide: options.maxSide ?? 512 };
  const page = join(dir, 'index.html');
  writeFileAtomic(page, pageHtml(settings, options.title ?? 'weakseg: segment an image'));
  return page;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

function pageHtml(settings: object, title: string): string {
  // JSON inside a script element: "</" must not close it.
  const json = JSON.stringify(settings).replace(/<\//g, '<\\/');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #f4f4f2; color: #222; }
  header { padding: 12px 20px; background: #2b3a4a; color: #fff; }
  header h1 { font-size: 18px; margin: 0; }
  main { display: flex; gap: 20px; padding: 20px; flex-wrap: wrap; }
  #drop { border: 2px dashed #8a96a3; border-radius: 8px; padding: 16px; min-width: 320px; min-height: 240px;
          display: flex; align-items: center; justify-content: center; background: #fff; }
  #drop.over { border-color: #2b7bd6; background: #eef5ff; }
  #drop canvas { width: min(640px, 70vw); height: auto; max-height: 75vh; object-fit: contain; image-rendering: pixelated; }
  aside { min-width: 240px; }
  .swatch { display: inline-block; width: 14px; height: 14px; margin-right: 6px; vertical-align: -2px; border: 1px solid #0003; }
  #legend li { list-style: none; margin: 3px 0; }
  #legend { padding: 0; }
  #status { color: #555; }
</style>
</head>
<body>
<header><h1>${escapeHtml(title)}</h1></header>
<main>
  <div id="drop"><span id="hint">Drop an image here, or pick one below</span><canvas id="view" hidden></canvas></div>
  <aside>
    <p><input type="file" id="file" accept="image/*"></p>
    <p><label>Mask opacity <input type="range" id="opacity" min="0" max="100" value="50"></label> <span id="opacityValue">50 %</span></p>
    <p id="status">Loading the model...</p>
    <p id="time"></p>
    <ul id="legend"></ul>
  </aside>
</main>
<script type="application/json" id="settings">${json}</script>
<script type="module">
import * as ort from './ort/ort.webgpu.min.mjs';

const S = JSON.parse(document.getElementById('settings').textContent);
const $ = (id) => document.getElementById(id);
ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
// Threads need SharedArrayBuffer, which only cross-origin-isolated pages get (weakseg serve sends the headers).
if (!self.crossOriginIsolated) ort.env.wasm.numThreads = 1;

let session = null;
let backend = 'wasm';
let last = null; // { rgba, labels, width, height }

async function createSession() {
  const adapter = navigator.gpu ? await navigator.gpu.requestAdapter().catch(() => null) : null;
  if (adapter) {
    try {
      session = await ort.InferenceSession.create('model.onnx', { executionProviders: ['webgpu'] });
      backend = 'webgpu';
      return;
    } catch (e) {
      console.warn('WebGPU session failed, using WebAssembly', e);
    }
  }
  session = await ort.InferenceSession.create('model.onnx', { executionProviders: ['wasm'] });
  backend = 'wasm';
}

function draw() {
  if (!last) return;
  const { rgba, labels, width, height } = last;
  const a = Number($('opacity').value) / 100;
  const canvas = $('view');
  canvas.width = width;
  canvas.height = height;
  const out = new ImageData(width, height);
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    for (let c = 0; c < 3; c++) {
      const v = rgba[4 * i + c];
      // Background (label 0) stays as the image; every class is blended with its VOC colour.
      out.data[4 * i + c] = l === 0 ? v : Math.round((1 - a) * v + a * S.palette[l][c]);
    }
    out.data[4 * i + 3] = 255;
  }
  canvas.getContext('2d').putImageData(out, 0, 0);
  $('opacityValue').textContent = Math.round(a * 100) + ' %';
}

async function segment(blob) {
  if (!session) return;
  $('status').textContent = 'Segmenting...';
  const t0 = performance.now();
  const bitmap = await createImageBitmap(blob, { imageOrientation: 'from-image', premultiplyAlpha: 'none' });
  const scale = Math.min(1, S.maxSide / Math.max(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale));
  const height = Math.max(1, Math.round(bitmap.height * scale));
  const work = new OffscreenCanvas(width, height);
  const ctx = work.getContext('2d');
  ctx.fillStyle = '#000'; // transparent pixels on black, as weakseg's decoder flattens alpha
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(bitmap, 0, 0, width, height);
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const n = width * height;
  const input = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < 3; c++) input[c * n + i] = (rgba[4 * i + c] / 255 - S.mean[c]) / S.std[c];
  }
  const t1 = performance.now();
  const result = await session.run({ image: new ort.Tensor('float32', input, [1, 3, height, width]) });
  const probs = await result.probabilities.getData();
  const t2 = performance.now();
  const K = S.labels.length;
  const labels = new Uint8Array(n);
  const count = new Float64Array(K);
  const conf = new Float64Array(K);
  for (let i = 0; i < n; i++) {
    let best = 0;
    let bp = probs[i];
    for (let k = 1; k < K; k++) {
      const p = probs[k * n + i];
      if (p > bp) { bp = p; best = k; }
    }
    labels[i] = best;
    count[best] += 1;
    conf[best] += bp;
  }
  const classes = [];
  for (let k = 0; k < K; k++) {
    if (count[k] > 0) classes.push({ label: k, name: S.labels[k], share: count[k] / n, confidence: conf[k] / count[k] });
  }
  classes.sort((x, y) => y.share - x.share);
  last = { rgba, labels, width, height };
  $('hint').hidden = true;
  $('view').hidden = false;
  draw();
  const legend = $('legend');
  legend.replaceChildren(...classes.map((c) => {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = 'rgb(' + S.palette[c.label].join(',') + ')';
    li.append(sw, c.name + ': ' + (100 * c.share).toFixed(1) + ' % (confidence ' + c.confidence.toFixed(2) + ')');
    return li;
  }));
  const ms = { total: performance.now() - t0, network: t2 - t1 };
  $('time').textContent = width + ' x ' + height + ' px in ' + ms.total.toFixed(0) + ' ms (network ' + ms.network.toFixed(0) + ' ms, ' + backend + ')';
  $('status').textContent = 'Done.';
  window.weaksegResult = { width, height, backend, ms, classes };
}

$('file').addEventListener('change', (e) => { const f = e.target.files[0]; if (f) segment(f); });
$('opacity').addEventListener('input', draw);
const drop = $('drop');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const f = e.dataTransfer.files[0];
  if (f) segment(f);
});

try {
  await createSession();
  $('status').textContent = 'Model loaded (' + backend + '). Pick or drop an image.';
  window.weaksegReady = backend;
} catch (e) {
  $('status').textContent = 'Could not load the model: ' + e.message;
  window.weaksegError = String(e);
}
</script>
</body>
</html>
`;
}
