// npm run bench:cam  [-- --epochs 8] [--run-dir runs/bench-cam] [--resume] [--rounds 4] [--steps 2] [--skip-train] [--skip-cams]
// npm run bench:seam [-- same options]   (this file with --method seam)
//
// A method (the CAM baseline, or SEAM) end to end on voc-mini: train on train_aug with the MobileNetV2 ImageNet weights (the reference
// PyTorch run's settings), make CAMs for train and val, and score the seeds of train at the threshold chosen on
// val (leak-free), with train's own best-threshold curve for comparison. Then the training step is timed in
// weakseg and in PyTorch (bench/cam_torch.py: the same model, built by hand) on the same batch, interleaved.
// Needs ../shared (data and weights); PyTorch is optional (step_ratio is null without it).
// Ends with one JSON line.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { emptyCache, getNumThreads, tensor, tidy } from '../src/engine/index.js';
import { BatchLoader, trainTransform } from '../src/data/index.js';
import { mobilenetV2 } from '../src/backbones/index.js';
import type { Method } from '../src/methods/index.js';
import { makeOptimizer } from '../src/train/index.js';
import { formatMiouTable } from '../src/eval/index.js';
import { buildMethod, evaluateSeeds, makeCams, readSplit, resolveConfig, trainClassifier } from '../src/pipeline/index.js';
import { TUNED_GLIBC_ENV, TorchPeer, findTorchPython, median, round } from './common.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const shared = resolve(repo, '..', 'shared');
const voc = join(shared, 'data', 'voc-mini');
const weights = join(shared, 'weights', 'mobilenet_v2_imagenet.safetensors');

const { values: args } = parseArgs({
  options: {
    method: { type: 'string', default: 'cam' },
    epochs: { type: 'string', default: '8' },
    'run-dir': { type: 'string' },
    resume: { type: 'boolean', default: false },
    'skip-train': { type: 'boolean', default: false },
    'skip-cams': { type: 'boolean', default: false },
    rounds: { type: 'string', default: '4' },
    steps: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '2' },
    momentum: { type: 'string', default: '0.9' },
  },
});

const method = args.method as 'cam' | 'seam';
if (method !== 'cam' && method !== 'seam') throw new Error(`--method must be cam or seam, got '${args.method}'`);
const tag = `bench:${method}`;
if (!existsSync(voc) || !existsSync(weights)) {
  console.log(`${tag} needs ${voc} and ${weights} (../shared is absent); skipped`);
  console.log(JSON.stringify({ skipped: true }));
  process.exit(0);
}

const runDir = resolve(args['run-dir'] ?? join(repo, 'runs', `bench-${method}`));
const camSummaryPath = join(repo, 'runs', 'bench-cam', 'bench-summary.json');
// SEAM's taps and settings: those of the reference PyTorch SEAM (PCM after features.6 and features.13).
const config = resolveConfig({
  runDir,
  data: { root: voc, trainSplit: 'train_aug' },
  method: method === 'seam' ? { name: 'seam', pcmTaps: ['features.6', 'features.13'] } : { name: 'cam' },
  model: { backbone: 'mobilenet_v2', weights, outputStride: 8 },
  train: {
    epochs: Number(args.epochs), batchSize: 16, cropSize: 224, scaleRange: [0.7, 1.3], flip: true, jitter: null,
    lr: 0.01, headLrMult: 10, momentum: Number(args.momentum), weightDecay: 1e-4, polyPower: 0.9, seed: 0,
  },
  cams: { splits: ['train', 'val'], scales: [0.5, 1, 1.5, 2], flip: true },
  eval: { split: 'train', fitSplit: 'val', thresholds: { from: 0.05, to: 0.6, step: 0.01 } },
  runtime: { logEvery: 10 },
});

console.log(`${tag}: run ${runDir}, ${getNumThreads()} engine threads`);

// ---- 1. train ----
let train: Awaited<ReturnType<typeof trainClassifier>> | null = null;
if (!args['skip-train']) {
  if (!args.resume && existsSync(runDir)) rmSync(runDir, { recursive: true, force: true });
  train = await trainClassifier(config, { resume: args.resume, progress: false });
}

// ---- 2. CAMs for train and val ----
const cams = args['skip-cams'] ? null : await makeCams(config, { progress: false });

// ---- 3. seeds: t chosen on val, reported on train ----
const report = await evaluateSeeds(config, { progress: false });

// ---- 4. step time, ours vs PyTorch's, same model and batch, interleaved ----
// Each memory format is timed in turn (NCHW, then channels-last), ours interleaved with PyTorch's round by round,
// one format at a time so that only one PyTorch process holds its memory. step_ratio compares each engine in its
// faster format; the same-format ratios are reported too.
const dataset = await readSplit(config, 'train_aug');
const makeBench = (): Method => buildMethod(config, dataset.classes.length, {});
const norm = mobilenetV2({ weights, outputStride: 8 }).inputNorm;
// prefetch 0: nothing is decoded in the background while steps are timed.
const loader = new BatchLoader(dataset, trainTransform({ cropSize: 224, scaleRange: [0.7, 1.3], norm }),
  { batchSize: 16, seed: 0, dropLast: true, prefetch: 0 });
const batch = (await loader.epoch(0).next()).value!;
const batchFile = join(runDir, 'bench-batch.f32');
mkdirSync(runDir, { recursive: true });
writeFileSync(batchFile, Buffer.concat([Buffer.from(batch.images.buffer, batch.images.byteOffset, batch.images.byteLength),
  Buffer.from(batch.labels.buffer, batch.labels.byteOffset, batch.labels.byteLength)]));
const x0 = tensor(batch.images, { shape: batch.shape });
const y = tensor(batch.labels, { shape: [16, dataset.classes.length] });

const torchScript = join(repo, 'bench', `${method}_torch.py`);
const python = existsSync(torchScript) ? findTorchPython() : null;
const torchArgs = [String(getNumThreads()), '16', '224', '--batch-file', batchFile];
console.log(python ? `PyTorch peer: ${python}` : 'PyTorch peer: none found (set WEAKSEG_TORCH_PYTHON); step_ratio skipped');
const warmup = Number(args.warmup);
const rounds = Number(args.rounds);
const steps = Number(args.steps);
type Format = 'nchw' | 'cl';
/** Per format: our steps, PyTorch's with glibc keeping freed memory ("tuned"), PyTorch as installed (NCHW only). */
const timed: Record<Format, { ours: number[]; tuned: number[]; plain: number[] }> = {
  nchw: { ours: [], tuned: [], plain: [] }, cl: { ours: [], tuned: [], plain: [] },
};
for (const fmt of ['nchw', 'cl'] as const) {
  const m = makeBench();
  if (fmt === 'cl') m.model.to({ memoryFormat: 'channels_last' });
  const opt = makeOptimizer(m, { lr: 0.01, momentum: 0.9, weightDecay: 1e-4, polyPower: 0.9 });
  m.model.train();
  const x = fmt === 'cl' ? x0.channelsLast() : x0;
  emptyCache();
  const ourSteps = (n: number): number[] => {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      tidy(() => {
        const { loss } = m.loss({ images: x, labels: y, ids: batch.ids }, { epoch: 0, step: 0, totalSteps: 1 });
        opt.zeroGrad();
        loss.backward();
        opt.step();
      });
      out.push(performance.now() - t0);
    }
    return out;
  };
  const peerArgs = fmt === 'cl' ? [...torchArgs, '--channels-last'] : torchArgs;
  const tunedPeer = python ? new TorchPeer(python, torchScript, peerArgs, TUNED_GLIBC_ENV) : null;
  ourSteps(warmup);
  await tunedPeer?.run(`step ${warmup}`);
  const t = timed[fmt];
  for (let r = 0; r < rounds; r++) {
    t.ours.push(...ourSteps(steps));
    if (tunedPeer) t.tuned.push(...(await tunedPeer.run(`step ${steps}`)));
    await new Promise((res) => setImmediate(res));
  }
  tunedPeer?.close();
  // PyTorch as installed, timed on its own afterwards: its page-faulting steps disturb whatever runs next.
  if (python && fmt === 'nchw') {
    const plainPeer = new TorchPeer(python, torchScript, peerArgs);
    await plainPeer.run('step 1');
    t.plain.push(...(await plainPeer.run(`step ${Math.max(2, rounds)}`)));
    plainPeer.close();
  }
  opt.dispose();
  m.model.dispose();
  if (x !== x0) x.dispose();
  emptyCache();
}
const med = (xs: number[]) => (xs.length ? median(xs) : null);
const oursMs = { nchw: med(timed.nchw.ours)!, cl: med(timed.cl.ours)! };
const torchFmtMs = { nchw: med(timed.nchw.tuned), cl: med(timed.cl.tuned) };
const ourBest: Format = oursMs.cl < oursMs.nchw ? 'cl' : 'nchw';
const torchBest: Format | null = torchFmtMs.nchw === null || torchFmtMs.cl === null ? null
  : torchFmtMs.cl < torchFmtMs.nchw ? 'cl' : 'nchw';
const stepMs = oursMs[ourBest];
const torchMs = torchBest ? torchFmtMs[torchBest] : null;
const torchDefaultMs = med(timed.nchw.plain);
const fmtName = (f: Format) => (f === 'cl' ? 'channels-last' : 'NCHW');

// ---- report ----
const pct = (v: number | null | undefined) => (v === null || v === undefined ? null : round(100 * v, 2));
const FREQUENT = ['background', 'cat', 'cow', 'dog', 'horse', 'person', 'sheep'];
const frequent = report.result.classes.filter((c) => FREQUENT.includes(c.name));
const frequentMiou = frequent.every((c) => c.iou !== null) ? frequent.reduce((s, c) => s + c.iou!, 0) / frequent.length : null;

console.log(`\n==== ${method === 'seam' ? 'SEAM (from the PCM output)' : 'CAM baseline'} on voc-mini (MobileNetV2, output stride 8) ====`);
console.log(`[${report.mode}] seed mIoU on train at t = ${report.threshold} (chosen on ${report.thresholdChosenOn}): ` +
  `${pct(report.result.miou)} %`);
console.log(`[oracle, leaky] best t on train itself: ${report.curve.bestThreshold} -> ${pct(report.curve.bestMiou)} %`);
console.log('best-threshold curve on train (t: mIoU %):');
for (let i = 0; i < report.curve.thresholds.length; i += 5) {
  console.log('  ' + report.curve.thresholds.slice(i, i + 5).map((t, k) => `${t.toFixed(2)}: ${pct(report.curve.miou[i + k] ?? null)}`).join('   '));
}
if (report.fitCurve) console.log(`val curve: best t ${report.fitCurve.bestThreshold} -> ${pct(report.fitCurve.bestMiou)} % on val`);
console.log(`per-class scores on train at t = ${report.threshold} [${report.mode}]:`);
console.log(formatMiouTable(report.result));
console.log(`frequent-7 mIoU (background, cat, cow, dog, horse, person, sheep): ${pct(frequentMiou)} %`);
if (train) {
  console.log(`training: ${train.epochs} epochs, ${train.steps} steps, ${train.secondsPerEpoch.toFixed(1)} s per epoch, ` +
    `${train.msPerStep.toFixed(0)} ms per step (compute), data wait ${(100 * train.dataWaitShare).toFixed(2)} % of the time`);
}
if (cams) for (const s of cams.splits) console.log(`CAMs ${s.split}: ${s.images} images, ${s.msPerImage.toFixed(0)} ms per image`);
for (const f of ['nchw', 'cl'] as const) {
  const tm = torchFmtMs[f];
  console.log(`training step (batch 16, 224 px, ${fmtName(f)}), median of ${timed[f].ours.length}: weakseg ${oursMs[f].toFixed(0)} ms` +
    (tm !== null ? `, PyTorch ${tm.toFixed(0)} ms (glibc keeping freed memory), ratio ${(oursMs[f] / tm).toFixed(3)}` : ''));
}
if (torchMs !== null && torchBest) {
  console.log(`step_ratio, each engine in its faster format: weakseg ${fmtName(ourBest)} ${stepMs.toFixed(0)} ms / ` +
    `PyTorch ${fmtName(torchBest)} ${torchMs.toFixed(0)} ms = ${(stepMs / torchMs).toFixed(3)}; ` +
    `PyTorch as installed (NCHW, default malloc) ${torchDefaultMs!.toFixed(0)} ms (ratio ${(stepMs / torchDefaultMs!).toFixed(3)})`);
}

const baseline = method === 'seam' && existsSync(camSummaryPath)
  ? (JSON.parse(readFileSync(camSummaryPath, 'utf8')) as { seed_miou_valt: number | null; seed_miou_frequent7: number | null })
  : null;
if (method === 'seam') {
  console.log(baseline
    ? `baseline (bench:cam, same data, backbone and schedule): ${baseline.seed_miou_valt} % at its val-chosen t`
    : `no baseline figures at ${camSummaryPath}: run npm run bench:cam first for gain_over_cam`);
}
const summary = {
  method,
  seed_miou_valt: pct(report.result.miou),
  gain_over_cam: baseline?.seed_miou_valt != null && report.result.miou !== null
    ? round(100 * report.result.miou - baseline.seed_miou_valt, 2) : undefined,
  gain_over_cam_frequent7: baseline?.seed_miou_frequent7 != null && frequentMiou !== null
    ? round(100 * frequentMiou - baseline.seed_miou_frequent7, 2) : undefined,
  valt: report.threshold,
  seed_miou_best: pct(report.curve.bestMiou),
  best_t: report.curve.bestThreshold,
  seed_miou_frequent7: pct(frequentMiou),
  step_ratio: torchMs !== null ? round(stepMs / torchMs, 3) : null,
  step_ms: round(stepMs, 1),
  torch_step_ms: torchMs !== null ? round(torchMs, 1) : null,
  step_format: fmtName(ourBest),
  torch_step_format: torchBest ? fmtName(torchBest) : null,
  step_ratio_nchw: torchFmtMs.nchw !== null ? round(oursMs.nchw / torchFmtMs.nchw, 3) : null,
  step_ratio_channels_last: torchFmtMs.cl !== null ? round(oursMs.cl / torchFmtMs.cl, 3) : null,
  step_ms_nchw: round(oursMs.nchw, 1),
  step_ms_channels_last: round(oursMs.cl, 1),
  torch_step_ms_nchw: torchFmtMs.nchw !== null ? round(torchFmtMs.nchw, 1) : null,
  torch_step_ms_channels_last: torchFmtMs.cl !== null ? round(torchFmtMs.cl, 1) : null,
  step_ratio_vs_default_torch: torchDefaultMs !== null ? round(stepMs / torchDefaultMs, 3) : null,
  torch_default_step_ms: torchDefaultMs !== null ? round(torchDefaultMs, 1) : null,
  data_wait_share: train ? round(train.dataWaitShare, 4) : null,
  epoch_s: train ? round(train.secondsPerEpoch, 1) : null,
  train_step_ms: train ? round(train.msPerStep, 1) : null,
  epochs: train?.epochs ?? null,
  cam_ms_per_image: cams ? round(cams.splits.reduce((s, c) => s + c.msPerImage * c.images, 0) / cams.splits.reduce((s, c) => s + c.images, 0), 1) : null,
  threads: getNumThreads(),
  momentum: config.train.momentum,
};
writeFileSync(join(runDir, 'bench-summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
console.log(JSON.stringify(summary));
