// node dist/bench/seam-crosscheck.js [--time] [--skip-check] [--dir DIR] [--keep] [--batch 2] [--crop 224]
//                                    [--rounds 3] [--steps 2] [--warmup 1] [--variant code|paper]
//
// Checks src/methods/seam.ts against bench/seam_torch.py, a line-by-line PyTorch transcription of the official
// SEAM code (YudeWang/SEAM) on the same hand-built MobileNetV2.
//
// Phase 1 (crosscheck): our SeamMethod on MobileNetV2 (ImageNet weights, output stride 8, PCM taps features.6 and
// features.13), seeded, saves its full state and a fixed batch of voc-mini images (random-scaled 224 crops, the
// training pipeline's) to DIR; computes our loss parts and the gradients of every trainable parameter; then
// seam_torch.py --crosscheck DIR runs the official loss on the same weights and batch. Printed: both sets of loss
// parts (ours `cls` and `min` are the code's loss_cls split in two), the four network outputs' differences, and
// the gradient differences of a few parameters (and of all of them).
// Relative differences: a scalar's |ours - torch| / |torch|; a tensor's max |ours - torch| / max |torch|.
// `--variant paper` (a control: SEAM_PAPER, no OHEM and no min-pool term, against the code's transcription) must
// show differences in ecr, min and the PCM gradients; the default `code` must agree.
//
// Phase 2 (--time): one SEAM training step (batch 16, 224 crop, SGD) timed in weakseg and in PyTorch on the same
// weights and batch, interleaved as bench/cam.ts does for CAM (PyTorch with glibc keeping freed memory, and as
// installed).
//
// Ends with one JSON line: { max_rel_diff_loss, max_rel_diff_grad, parts: {...}, ... }.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { type Tensor, emptyCache, getNumThreads, manualSeed, noGrad, tensor, tidy } from '../src/engine/index.js';
import { loadSafetensors, saveSafetensors } from '../src/engine/serialize/index.js';
import { BatchLoader, type Dataset, readVoc, trainTransform } from '../src/data/index.js';
import { mobilenetV2 } from '../src/backbones/index.js';
import { SEAM_PAPER, SeamMethod } from '../src/methods/seam.js';
import { makeOptimizer } from '../src/train/index.js';
import { TUNED_GLIBC_ENV, TorchPeer, benchArgs, benchPaths, findTorchPython, median, relScalar, relTensor, round, stepTimer } from './common.js';

const { repo, voc, weights } = benchPaths();
const torchScript = join(repo, 'bench', 'seam_torch.py');

const args = benchArgs(import.meta.url, {
  time: { type: 'boolean', default: false },
  'skip-check': { type: 'boolean', default: false },
  dir: { type: 'string' },
  keep: { type: 'boolean', default: false },
  batch: { type: 'string', default: '2' },
  crop: { type: 'string', default: '224' },
  seed: { type: 'string', default: '0' },
  rounds: { type: 'string', default: '3' },
  steps: { type: 'string', default: '2' },
  warmup: { type: 'string', default: '1' },
  variant: { type: 'string', default: 'code' },
});

if (!existsSync(voc) || !existsSync(weights)) {
  console.log(`seam-crosscheck needs ${voc} and ${weights} (../shared is absent); skipped`);
  console.log(JSON.stringify({ skipped: true }));
  process.exit(0);
}
const python = findTorchPython();
if (!python) {
  console.log('seam-crosscheck needs a Python with torch (set WEAKSEG_TORCH_PYTHON); skipped');
  console.log(JSON.stringify({ skipped: true }));
  process.exit(0);
}

const dir = args.dir ? resolve(args.dir) : mkdtempSync(join(tmpdir(), 'seam-crosscheck-'));
mkdirSync(dir, { recursive: true });
const threads = getNumThreads();
const ctx = { epoch: 0, step: 0, totalSteps: 1 };
const TAPS: [string, string] = ['features.6', 'features.13'];
console.log(`seam-crosscheck: ${dir}, ${threads} engine threads, PyTorch ${python}`);

if (args.variant !== 'code' && args.variant !== 'paper') throw new Error(`--variant must be code or paper, got ${args.variant}`);

function buildSeam(variant = 'code'): SeamMethod {
  const extra = variant === 'paper' ? SEAM_PAPER : {};
  const seam = new SeamMethod(mobilenetV2({ weights, outputStride: 8 }), { numClasses: 20, pcmTaps: TAPS, ...extra });
  seam.model.train();
  return seam;
}

/** One batch of the training pipeline (random rescale, flip, crop; the backbone's normalisation). */
async function loadBatch(dataset: Dataset, n: number, crop: number, seed: number, norm: SeamMethod['backbone']['inputNorm']) {
  const loader = new BatchLoader(dataset, trainTransform({ cropSize: crop, scaleRange: [0.7, 1.3], norm }),
    { batchSize: n, seed, dropLast: true });
  return (await loader.epoch(0).next()).value!;
}

const sci = (x: number) => x.toExponential(3);

// ------------------------------------------------------------------------------------------ phase 1: crosscheck
type PartRow = { ours: number; torch: number; abs_diff: number; rel_diff: number };
let check: {
  max_rel_diff_loss: number; max_rel_diff_grad: number; max_rel_diff_grad_all: number;
  parts: Record<string, PartRow>; grads: Record<string, { rel_max: number; rel_l2: number; max_abs: number }>;
  outputs: Record<string, { rel_max: number; rel_l2: number; max_abs: number }>; ids: string[];
} | null = null;

if (!args['skip-check']) {
  const n = Number(args.batch);
  const crop = Number(args.crop);
  manualSeed(Number(args.seed));
  const seam = buildSeam(args.variant);
  if (args.variant !== 'code') console.log(`control run: our ${args.variant} variant against the code's transcription`);
  const ds = await readVoc({ root: voc, split: 'train' });
  // Images with two or more classes first: they exercise max_onehot / the seed's per-pixel top class.
  const multi = ds.items.filter((it) => it.labels.length >= 2);
  const dataset: Dataset = { classes: ds.classes, items: [...multi, ...ds.items.filter((it) => it.labels.length < 2)].slice(0, Math.max(n, 8)) };
  const batch = await loadBatch(dataset, n, crop, Number(args.seed), seam.backbone.inputNorm);
  console.log(`batch: ${batch.ids.join(', ')} (labels ${batch.ids.map((_, i) =>
    ds.classes.filter((__, c) => batch.labels[i * 20 + c]).join('+')).join(', ')}), ${batch.shape.join('x')}`);

  const x = tensor(batch.images, { shape: batch.shape });
  const y = tensor(batch.labels, { shape: [n, 20] });
  saveSafetensors(join(dir, 'model.safetensors'), seam.model.stateDict());
  saveSafetensors(join(dir, 'batch.safetensors'), { images: x, labels: y });

  // Ours: the four network outputs (no grad), then the loss and its gradients.
  const outputs = noGrad(() => tidy(() => {
    const v1 = seam.model.forward(x);
    const v2 = seam.model.forward(seam.transform(x));
    return { cam1: v1.cam, cam_rv1: v1.camRv, cam2: v2.cam, cam_rv2: v2.camRv };
  }));
  const named = [...seam.model.namedParameters()].filter(([, p]) => p.requiresGrad);
  for (const [, p] of named) p.grad = null;
  const ours = tidy(() => {
    const { loss, parts } = seam.loss({ images: x, labels: y, ids: batch.ids }, ctx);
    const v = Object.fromEntries(Object.entries(parts!).map(([k, t]) => [k, t.item()]));
    const total = loss.item();
    loss.backward();
    // loss_cls_code in float32 arithmetic, as torch adds them
    return { ...v, loss_cls_code: Math.fround(v.cls! + (v.min ?? 0)), total } as Record<string, number>;
  });

  const r = spawnSync(python, [torchScript, String(threads), String(n), String(crop), '--crosscheck', dir],
    { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`seam_torch.py --crosscheck failed (${r.status}):\n${r.stderr}`);
  if (r.stderr.trim()) process.stderr.write(`[torch] ${r.stderr}`);
  const theirs = loadSafetensors(join(dir, 'torch.safetensors')).tensors;

  const parts: Record<string, PartRow> = {};
  for (const k of ['cls', 'min', 'er', 'ecr', 'loss_cls_code', 'total']) {
    const t = theirs.get(`loss.${k}`)!.item();
    const o = ours[k] ?? 0;  // no min part with minPool off (the paper variant)
    parts[k] = { ours: o, torch: t, abs_diff: Math.abs(o - t), rel_diff: relScalar(o, t) };
  }
  console.log('\nloss parts (ours cls + min = the code\'s loss_cls):');
  console.log('  part            ours              torch             |diff|       rel');
  for (const [k, p] of Object.entries(parts)) {
    console.log(`  ${k.padEnd(14)}  ${p.ours.toPrecision(10).padEnd(16)}  ${p.torch.toPrecision(10).padEnd(16)}  ${sci(p.abs_diff)}  ${sci(p.rel_diff)}`);
  }

  const outRows: Record<string, { rel_max: number; rel_l2: number; max_abs: number }> = {};
  console.log('\nnetwork outputs (upsampled to the view size), max|diff| / max|torch|, ||diff|| / ||torch||:');
  for (const [k, t] of Object.entries(outputs)) {
    const d = relTensor(t, theirs.get(`out.${k}`)!);
    outRows[k] = { rel_max: d.relMax, rel_l2: d.relL2, max_abs: d.maxAbs };
    console.log(`  ${k.padEnd(8)} [${t.shape.join('x')}]  ${sci(d.relMax)}  ${sci(d.relL2)}  (max abs ${sci(d.maxAbs)})`);
  }

  const FEW = ['fc8.weight', 'f8_3.weight', 'f8_4.weight', 'f9.weight', 'backbone.features.0.0.weight',
    'backbone.features.10.conv.1.0.weight', 'backbone.features.18.0.weight'];
  const grads: Record<string, { rel_max: number; rel_l2: number; max_abs: number }> = {};
  let worstAll = { name: '', rel: 0 };
  for (const [name, p] of named) {
    const g = p.grad;
    const tg = theirs.get(`grad.${name}`);
    if (!g || !tg) throw new Error(`gradient of ${name}: ours ${g ? 'present' : 'missing'}, torch ${tg ? 'present' : 'missing'}`);
    const d = relTensor(g, tg);
    g.dispose();
    if (d.relMax > worstAll.rel) worstAll = { name, rel: d.relMax };
    if (FEW.includes(name)) grads[name] = { rel_max: d.relMax, rel_l2: d.relL2, max_abs: d.maxAbs };
  }
  console.log('\ngradients, max|diff| / max|torch|, ||diff|| / ||torch||:');
  for (const [k, d] of Object.entries(grads)) console.log(`  ${k.padEnd(38)} ${sci(d.rel_max)}  ${sci(d.rel_l2)}  (max abs ${sci(d.max_abs)})`);
  console.log(`  worst of all ${named.length} trainable parameters: ${worstAll.name} ${sci(worstAll.rel)}`);

  check = {
    max_rel_diff_loss: Math.max(...Object.values(parts).map((p) => p.rel_diff)),
    max_rel_diff_grad: Math.max(...Object.values(grads).map((g) => g.rel_max)),
    max_rel_diff_grad_all: worstAll.rel,
    parts, grads, outputs: outRows, ids: batch.ids,
  };
  for (const t of theirs.values()) t.dispose();
  for (const t of Object.values(outputs)) t.dispose();
  seam.model.dispose();
  x.dispose();
  y.dispose();
  emptyCache();
}

// ----------------------------------------------------------------------------------------------- phase 2: timing
let timing: Record<string, number | null> | null = null;
if (args.time) {
  const n = 16;
  const crop = 224;
  manualSeed(0);
  const seam = buildSeam();
  const ds = await readVoc({ root: voc, split: 'train_aug' });
  const batch = await loadBatch(ds, n, crop, 0, seam.backbone.inputNorm);
  const batchFile = join(dir, 'time-batch.f32');
  writeFileSync(batchFile, Buffer.concat([Buffer.from(batch.images.buffer, batch.images.byteOffset, batch.images.byteLength),
    Buffer.from(batch.labels.buffer, batch.labels.byteOffset, batch.labels.byteLength)]));
  const modelFile = join(dir, 'time-model.safetensors');
  saveSafetensors(modelFile, seam.model.stateDict());
  const opt = makeOptimizer(seam, { lr: 0.01, momentum: 0.9, weightDecay: 1e-4, polyPower: 0.9 });
  const x = tensor(batch.images, { shape: batch.shape });
  const y = tensor(batch.labels, { shape: [n, 20] });
  emptyCache();

  const ourSteps = stepTimer(seam, opt, { images: x, labels: y, ids: batch.ids });
  const torchArgs = [String(threads), String(n), String(crop), '--batch-file', batchFile, '--weights', modelFile];
  // As bench/cam.ts: "tuned" = glibc keeping freed memory (the strongest PyTorch here, the ratio's reference).
  const peers = {
    tuned: new TorchPeer(python, torchScript, torchArgs, TUNED_GLIBC_ENV),
    default: new TorchPeer(python, torchScript, torchArgs),
  };
  const warmup = Number(args.warmup);
  const rounds = Number(args.rounds);
  const steps = Number(args.steps);
  ourSteps(warmup);
  await peers.tuned.run(`step ${warmup}`);
  await peers.default.run('step 1');
  const ours: number[] = [];
  const tuned: number[] = [];
  const plain: number[] = [];
  for (let r = 0; r < rounds; r++) {
    ours.push(...ourSteps(steps));
    tuned.push(...(await peers.tuned.run(`step ${steps}`)));
    plain.push(...(await peers.default.run('step 1')));
    await new Promise((res) => setImmediate(res));
  }
  peers.tuned.close();
  peers.default.close();
  const oursMs = median(ours);
  const tunedMs = median(tuned);
  const plainMs = median(plain);
  console.log(`\nSEAM training step (batch ${n}, ${crop} px, ${threads} threads), medians: weakseg ${oursMs.toFixed(0)} ms ` +
    `(${ours.map((t) => t.toFixed(0)).join(', ')}), PyTorch ${tunedMs.toFixed(0)} ms with glibc keeping freed memory ` +
    `(${tuned.map((t) => t.toFixed(0)).join(', ')}; ratio ${(oursMs / tunedMs).toFixed(3)}), PyTorch as installed ` +
    `${plainMs.toFixed(0)} ms (${plain.map((t) => t.toFixed(0)).join(', ')}; ratio ${(oursMs / plainMs).toFixed(3)})`);
  timing = {
    step_ms: round(oursMs, 1), torch_step_ms: round(tunedMs, 1), step_ratio: round(oursMs / tunedMs, 3),
    torch_default_step_ms: round(plainMs, 1), step_ratio_vs_default_torch: round(oursMs / plainMs, 3),
    samples: ours.length, threads,
  };
  opt.dispose();
  seam.model.dispose();
}

if (!args.keep && !args.dir) rmSync(dir, { recursive: true, force: true });
else console.log(`files kept in ${dir}`);

const r6 = (v: number) => Number(v.toPrecision(6));
console.log(JSON.stringify({
  max_rel_diff_loss: check ? r6(check.max_rel_diff_loss) : null,
  max_rel_diff_grad: check ? r6(check.max_rel_diff_grad) : null,
  max_rel_diff_grad_all: check ? r6(check.max_rel_diff_grad_all) : null,
  parts: check ? Object.fromEntries(Object.entries(check.parts).map(([k, p]) =>
    [k, { ours: r6(p.ours), torch: r6(p.torch), abs_diff: r6(p.abs_diff), rel_diff: r6(p.rel_diff) }])) : null,
  grads: check ? Object.fromEntries(Object.entries(check.grads).map(([k, g]) => [k, r6(g.rel_max)])) : null,
  outputs: check ? Object.fromEntries(Object.entries(check.outputs).map(([k, g]) => [k, r6(g.rel_max)])) : null,
  ids: check?.ids ?? null,
  timing,
}));
