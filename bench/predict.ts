// npm run bench:predict [-- --images N --threads T]: images/s of `weakseg predict` (single scale, no flip, no CRF)
// on a MobileNetV2 LargeFOV segmenter (ImageNet backbone from ../shared where present, else random; 21 labels),
// and the network alone (forward + upsampled softmax, the same work in each engine) against onnxruntime-node on the
// exported model and against PyTorch (bench/predict_torch.py, the same network built by hand) on the same images.
//
//   images_per_s          weakseg predict end to end per image: decode, network, argmax, mask PNG, overlay JPEG, JSON
//                         line (the model's one-off loading excluded; predict_wall_s includes it)
//   network_images_per_s  { weakseg, ort, torch }: the network part on already-normalised tensors
//   torch_ratio           weakseg's network images/s over PyTorch's; ort_ratio the same over onnxruntime's
//   onnx_max_abs_diff     max abs difference of the logits, onnxruntime vs weakseg, over every image
// Images: the first N (default 24) of voc-mini's val split, else synthetic 400 x 300 textures.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';

import { getNumThreads, manualSeed, noGrad, setNumThreads, tensor, tidy } from '../src/engine/index.js';
import { saveSafetensors } from '../src/engine/serialize/index.js';
import { mobilenetV2 } from '../src/backbones/index.js';
import { DeepLab } from '../src/segmentation/index.js';
import { multiScaleProbabilities } from '../src/segmentation/infer.js';
import { decodeImage, normalizeToChw } from '../src/data/index.js';
import { resolveConfig } from '../src/pipeline/config.js';
import { segmenterToOnnx } from '../src/export/onnx.js';
import { predict } from '../src/predict/predict.js';
import { TorchPeer, benchArgs, findTorchPython, median, round } from './common.js';

const args = benchArgs(import.meta.url, { images: { type: 'string', default: '24' }, threads: { type: 'string' }, repeats: { type: 'string', default: '3' } });
const repo = fileURLToPath(new URL('../../', import.meta.url));
const shared = join(repo, '..', 'shared');
const weights = join(shared, 'weights', 'mobilenet_v2_imagenet.safetensors');
const vocImages = join(shared, 'data', 'voc-mini', 'JPEGImages');
const threads = Number(args.threads ?? Math.min(availableParallelism(), 2));
setNumThreads(threads);
const nImages = Number(args.images);
const repeats = Number(args.repeats);
const tmp = mkdtempSync(join(tmpdir(), 'weakseg-bench-predict-'));
const VOC = ['aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse',
  'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor'];

try {
  // ---- images ----
  const inDir = join(tmp, 'images');
  mkdirSync(inDir);
  let source: string;
  if (existsSync(vocImages)) {
    const val = join(shared, 'data', 'voc-mini', 'ImageSets', 'Segmentation', 'val.txt');
    const ids = (existsSync(val) ? readFileSync(val, 'utf8').split('\n').filter(Boolean) : readdirSync(vocImages).map((f) => f.replace(/\.jpg$/, '')))
      .slice(0, nImages);
    for (const id of ids) writeFileSync(join(inDir, `${id}.jpg`), readFileSync(join(vocImages, `${id}.jpg`)));
    source = `voc-mini val (${ids.length} images)`;
  } else {
    for (let i = 0; i < nImages; i++) {
      const raw = Buffer.alloc(400 * 300 * 3);
      for (let p = 0; p < raw.length; p++) raw[p] = (p * 7 + i * 31 + (p >> 9)) % 256;
      await sharp(raw, { raw: { width: 400, height: 300, channels: 3 } }).jpeg().toFile(join(inDir, `img${i}.jpg`));
    }
    source = `synthetic 400x300 (${nImages} images; ../shared absent)`;
  }

  // ---- the segmenter, saved as a run ----
  manualSeed(0);
  const backbone = existsSync(weights) ? mobilenetV2({ weights, outputStride: 8 }) : mobilenetV2({ outputStride: 8, padding: 'same' });
  const net = new DeepLab(backbone, { numClasses: VOC.length, head: 'largefov' });
  net.model.eval();
  const runDir = join(tmp, 'run');
  mkdirSync(join(runDir, 'seg'), { recursive: true });
  const state = join(runDir, 'seg', 'model.safetensors');
  saveSafetensors(state, net.model.stateDict(), { format: 'weakseg-segmenter/1', classes: JSON.stringify(VOC) });
  const config = resolveConfig({
    runDir, runtime: { threads }, data: { root: join(shared, 'data', 'voc-mini') },
    model: { backbone: 'mobilenet_v2', outputStride: 8, ...(existsSync(weights) ? { weights } : { padding: 'same' }) },
    seg: { head: 'largefov', scales: [1], testFlip: false, crf: null },
  });
  writeFileSync(join(runDir, 'config.json'), JSON.stringify(config));
  console.log(`bench:predict: ${source}, MobileNetV2 (${existsSync(weights) ? 'ImageNet weights' : 'random weights'}) + LargeFOV, ` +
    `${net.numLabels} labels, ${getNumThreads()} threads`);

  // ---- weakseg predict, end to end (a warm-up image first, in its own output folder) ----
  const first = readdirSync(inDir)[0]!;
  await predict(config, { input: join(inDir, first), out: join(tmp, 'warm') }, { log: () => {}, progress: false });
  const t0 = performance.now();
  const summary = await predict(config, { input: inDir, out: join(tmp, 'out') }, { log: () => {}, progress: false });
  const wallS = (performance.now() - t0) / 1000;
  // Per-image work (decode to JSON line); the wall time adds loading the model once.
  const imagesPerS = summary.imagesPerSecond;
  console.log(`weakseg predict: ${summary.predicted} images, ${imagesPerS.toFixed(2)} images/s (${wallS.toFixed(1)} s with start-up)`);

  // ---- the network alone: weakseg, onnxruntime-node, PyTorch on the same normalised images ----
  const inputs: { data: Float32Array; h: number; w: number }[] = [];
  for (const f of readdirSync(inDir).sort()) {
    const img = await decodeImage(join(inDir, f));
    inputs.push({ data: normalizeToChw(img, net.backbone.inputNorm), h: img.height, w: img.width });
  }
  const session = await ort.InferenceSession.create(segmenterToOnnx(net.model, { classes: VOC, backbone: net.backbone, head: 'largefov' }),
    { intraOpNumThreads: threads, interOpNumThreads: 1 });
  let onnxDiff = 0;
  for (const x of inputs) {
    const res = await session.run({ image: new ort.Tensor('float32', x.data, [1, 3, x.h, x.w]) });
    const ours = tidy(() => noGrad(() => net.forward(tensor(x.data, { shape: [1, 3, x.h, x.w] })).toFloat32Array()));
    const theirs = res.logits!.data as Float32Array;
    for (let i = 0; i < ours.length; i++) onnxDiff = Math.max(onnxDiff, Math.abs(ours[i]! - theirs[i]!));
  }
  const weaksegPass = () => {
    const s = performance.now();
    for (const x of inputs) tidy(() => multiScaleProbabilities(net, tensor(x.data, { shape: [1, 3, x.h, x.w] }), { scales: [1], flip: false }).dispose());
    return performance.now() - s;
  };
  const ortPass = async () => {
    const s = performance.now();
    for (const x of inputs) await session.run({ image: new ort.Tensor('float32', x.data, [1, 3, x.h, x.w]) });
    return performance.now() - s;
  };
  const python = findTorchPython();
  let peer: TorchPeer | null = null;
  let torchDiff: number | null = null;
  if (python) {
    const bin = join(tmp, 'images.bin');
    const ref = tidy(() => noGrad(() => net.forward(tensor(inputs[0]!.data, { shape: [1, 3, inputs[0]!.h, inputs[0]!.w] })).toFloat32Array()));
    const parts = [Buffer.from(`${JSON.stringify({ sizes: inputs.map((x) => [x.h, x.w]) })}\n`),
      ...inputs.map((x) => Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength)), Buffer.from(ref.buffer, ref.byteOffset, ref.byteLength)];
    writeFileSync(bin, Buffer.concat(parts));
    peer = new TorchPeer(python, join(repo, 'bench', 'predict_torch.py'), [String(threads), state, bin]);
    torchDiff = (await peer.run('check 1'))[0]!;
  } else {
    console.log('bench:predict: no Python with torch found; torch_ratio is null');
  }
  // Interleaved rounds, medians.
  const times: { weakseg: number[]; ort: number[]; torch: number[] } = { weakseg: [], ort: [], torch: [] };
  weaksegPass();
  await ortPass();
  if (peer) await peer.run('predict 1');
  for (let r = 0; r < repeats; r++) {
    times.weakseg.push(weaksegPass());
    times.ort.push(await ortPass());
    if (peer) times.torch.push(...(await peer.run('predict 1')));
  }
  peer?.close();
  await session.release();
  net.model.dispose();
  const ips = (ms: number[]) => (ms.length ? inputs.length / (median(ms) / 1000) : null);
  const network = { weakseg: ips(times.weakseg)!, ort: ips(times.ort)!, torch: ips(times.torch) };
  console.log(`network images/s: weakseg ${network.weakseg.toFixed(2)}, onnxruntime-node ${network.ort.toFixed(2)}, ` +
    `PyTorch ${network.torch === null ? '-' : network.torch.toFixed(2)}; logits max abs diff: onnxruntime ${onnxDiff.toExponential(2)}` +
    `${torchDiff === null ? '' : `, PyTorch ${torchDiff.toExponential(2)}`}`);
  console.log(JSON.stringify({
    bench: 'predict', images: inputs.length, source, threads,
    images_per_s: round(imagesPerS), predict_wall_s: round(wallS, 1), network_images_per_s: { weakseg: round(network.weakseg), ort: round(network.ort), torch: network.torch === null ? null : round(network.torch) },
    torch_ratio: network.torch === null ? null : round(network.weakseg / network.torch),
    ort_ratio: round(network.weakseg / network.ort),
    onnx_max_abs_diff: Number(onnxDiff.toExponential(3)), torch_max_abs_diff: torchDiff === null ? null : Number(torchDiff.toExponential(3)),
  }));
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
