// npm run bench:cam  [-- --seeds 3] [--seed-list 0,1,2] [--epochs 8] [--run-dir runs/bench-cam] [--seed-dir 1=runs/cam-seed1]
//                    [--retrain] [--skip-train] [--skip-cams] [--rounds 4] [--steps 2] [--cam-summary FILE]
//                    [--momentum 0.9] [--head-lr-mult 10]   (the new layers' lr as a multiple of the backbone's 0.01)
// npm run bench:seam [-- same options] [--ohem-ratio 0.2]   (this file with --method seam; the share of the largest
//                    ECR errors averaged, the official code's 0.2 by default, 1 the paper's plain mean)
// npm run bench:amr  [-- same options] [--spotlight-run-dir runs/bench-cam] [--variant code|paper]
//                    [--gaussian-scale code|mean] [--advcam-images 20] [--advcam-iterations 27]   (this file with --method amr;
//                    its settings are configs/amr-mobilenetv2-vocmini.json's method section)
// --quick: a smoke run of the whole protocol on a copy of voc-mini cut to 8 train_aug, 4 train and 4 val images,
// one epoch of batch 4, CAMs at scale 1 only, one timing round (AdvCAM: 1 image, 1 iteration); in runs/bench-<method>-quick (bench:amr --quick takes its spotlights
// from bench:cam --quick's run). Its figures say that the protocol runs, nothing about the method.
//
// A method (the CAM baseline, or SEAM) end to end on voc-mini, once per training seed (--seeds N: seeds 0..N-1,
// default 3; --seeds 1 for a quick run): train on train_aug with the MobileNetV2 ImageNet weights (the reference
// PyTorch run's settings), make CAMs for train and val, and score the seeds of train at the threshold chosen on val
// (leak-free), with train's own best-threshold curve for comparison. Each seed has its run directory
// (<run-dir>/seed-N, or --seed-dir N=DIR for one made by `weakseg run ... --seed N`); a seed whose directory holds
// the finished training with the same settings is not retrained, a stopped one resumes, missing CAMs are made
// (--retrain starts the seeds in <run-dir> afresh). The headline figures are means over the seeds with their
// standard deviations (`<key>_sd`) and each seed's (`per_seed`); SEAM's gain over the baseline is the difference
// of the means over the seeds both benchmarks have (bench:cam writes its per-seed figures to
// <run-dir>/bench-summary.json, which bench:seam reads, with <run-dir>/seed-N/metrics.json for the seeds a later
// run with another --seed-list left out of it). Then the training step is timed once in weakseg and in
// PyTorch (bench/cam_torch.py: the same model, built by hand) on the same batch, interleaved.
// AMR (bench/amr-extras.ts): each seed's spotlight is bench:cam's model of that seed; each branch is scored on its own
// too (spotlight_miou_valt, compensation_miou_valt), and AdvCAM on the first --advcam-images train images of the
// first seed (plain vs AdvCAM at that seed's val-chosen t, with AdvCAM's images/s).
// Needs ../shared (data and weights); PyTorch is optional (step_ratio is null without it).
// Ends with one JSON line.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { emptyCache, getNumThreads, tensor } from '../src/engine/index.js';
import { BatchLoader, trainTransform } from '../src/data/index.js';
import { mobilenetV2 } from '../src/backbones/index.js';
import { type Method, SEAM_DEFAULTS } from '../src/methods/index.js';
import { makeOptimizer } from '../src/train/index.js';
import { formatMiouTable } from '../src/eval/index.js';
import { buildMethod, readSplit, resolveConfig } from '../src/pipeline/index.js';
import { TUNED_GLIBC_ENV, TorchPeer, benchArgs, benchPaths, findTorchPython, frequentMiou, median, pct, round, stepTimer } from './common.js';
import { SEED_OPTIONS, type SeedRun, gainOver, meanSd, meansOver, readBaselinePerSeed, runSeed, seedDirs, seedList, threadsNote } from './seeds.js';
import { advcamSubset, amrSeedConfig, branchFigures, quickVocRoot } from './amr-extras.js';

const { repo, voc, weights } = benchPaths();

const args = benchArgs(import.meta.url, {
  method: { type: 'string', default: 'cam' },
  epochs: { type: 'string', default: '8' },
  'run-dir': { type: 'string' },
  'cam-summary': { type: 'string' },
  ...SEED_OPTIONS,
  rounds: { type: 'string', default: '4' },
  steps: { type: 'string', default: '2' },
  warmup: { type: 'string', default: '2' },
  momentum: { type: 'string', default: '0.9' },
  'head-lr-mult': { type: 'string', default: '10' },
  'ohem-ratio': { type: 'string' },
  quick: { type: 'boolean', default: false },
  'spotlight-run-dir': { type: 'string' },
  variant: { type: 'string', default: 'code' },
  'gaussian-scale': { type: 'string' },
  'advcam-images': { type: 'string' },
  'advcam-iterations': { type: 'string' },
});

const method = args.method as 'cam' | 'seam' | 'amr';
if (method !== 'cam' && method !== 'seam' && method !== 'amr') throw new Error(`--method must be cam, seam or amr, got '${args.method}'`);
const quick = args.quick!;
const tag = `bench:${method}`;
const ohemRatio = args['ohem-ratio'] === undefined ? undefined : Number(args['ohem-ratio']);
if (ohemRatio !== undefined && method !== 'seam') throw new Error(`--ohem-ratio is SEAM's (bench:seam), not ${tag}'s`);
if (!existsSync(voc) || !existsSync(weights)) {
  console.log(`${tag} needs ${voc} and ${weights} (../shared is absent); skipped`);
  console.log(JSON.stringify({ skipped: true }));
  process.exit(0);
}

const suffix = quick ? '-quick' : '';
const runDir = resolve(args['run-dir'] ?? join(repo, 'runs', `bench-${method}${suffix}`));
const camSummaryPath = resolve(args['cam-summary'] ?? join(repo, 'runs', `bench-cam${suffix}`, 'bench-summary.json'));
const spotlightRunDir = resolve(args['spotlight-run-dir'] ?? join(repo, 'runs', `bench-cam${suffix}`));
const seeds = quick && args['seed-list'] === undefined && args.seeds === '3' ? [0] : seedList(args);
const dirs = seedDirs(runDir, seeds, args['seed-dir']);
// SEAM's taps and settings: those of the reference PyTorch SEAM (PCM after features.6 and features.13).
const config = resolveConfig({
  runDir,
  data: { root: quick ? quickVocRoot(voc, join(repo, 'runs', 'voc-mini-quick'), { train_aug: 8, train: 4, val: 4 }) : voc, trainSplit: 'train_aug' },
  method: method === 'seam' ? { name: 'seam', pcmTaps: ['features.6', 'features.13'], ...(ohemRatio !== undefined ? { ohemRatio } : {}) }
    : method === 'amr' ? amrMethodSettings() : { name: 'cam' },
  model: { backbone: 'mobilenet_v2', weights, outputStride: 8 },
  train: {
    epochs: quick ? 1 : Number(args.epochs), batchSize: quick ? 4 : 16, cropSize: 224, scaleRange: [0.7, 1.3], flip: true, jitter: null,
    lr: 0.01, headLrMult: Number(args['head-lr-mult']), momentum: Number(args.momentum), weightDecay: 1e-4, polyPower: 0.9, seed: 0,
  },
  cams: { splits: ['train', 'val'], scales: quick ? [1] : [0.5, 1, 1.5, 2], flip: true },
  eval: { split: 'train', fitSplit: 'val', thresholds: { from: 0.05, to: 0.6, step: 0.01 } },
  runtime: { logEvery: 10 },
});

console.log(`${tag}: seeds ${seeds.join(', ')} in ${runDir}, ${getNumThreads()} engine threads`);

/** AMR's voc-mini settings: the preset's method section (its spotlight comes from bench:cam), variant and scale from the flags. */
function amrMethodSettings(): Record<string, unknown> {
  const preset = JSON.parse(readFileSync(join(repo, 'configs', 'amr-mobilenetv2-vocmini.json'), 'utf8')) as { method: Record<string, unknown> };
  const { spotlight: _spotlight, ...settings } = preset.method;
  return { ...settings, variant: args.variant, ...(args['gaussian-scale'] ? { gaussianScale: args['gaussian-scale'] } : {}) };
}

// ---- 1-3. per seed: train (or reuse), CAMs for train and val, seeds scored at the t chosen on val ----
const runs: SeedRun[] = [];
const seedConfig = (seed: number) => (method === 'amr' ? amrSeedConfig(config, spotlightRunDir, seed) : config);
for (const seed of seeds) {
  const r = await runSeed(seedConfig(seed), seed, dirs.get(seed)!, {
    retrain: args.retrain!, skipTrain: args['skip-train']!, skipCams: args['skip-cams']!, log: (l) => console.log(l),
  });
  runs.push(r);
  console.log(`seed ${seed}: ${pct(r.report.result.miou)} % at t ${r.report.threshold} (chosen on val); ` +
    `best t on train ${r.report.curve.bestThreshold} -> ${pct(r.report.curve.bestMiou)} %; frequent-7 ${pct(frequentMiou(r.report.result))} %`);
}

// ---- 4. step time, ours vs PyTorch's, same model and batch, interleaved ----
// Each memory format is timed in turn (NCHW, then channels-last), ours interleaved with PyTorch's round by round,
// one format at a time so that only one PyTorch process holds its memory. step_ratio compares each engine in its
// faster format; the same-format ratios are reported too.
const dataset = await readSplit(config, 'train_aug');
const timeBatch = quick ? 4 : 16;
const makeBench = (): Method => buildMethod(seedConfig(seeds[0]!), dataset.classes.length, {});
const norm = mobilenetV2({ weights, outputStride: 8 }).inputNorm;
// prefetch 0: nothing is decoded in the background while steps are timed.
const loader = new BatchLoader(dataset, trainTransform({ cropSize: 224, scaleRange: [0.7, 1.3], norm }),
  { batchSize: timeBatch, seed: 0, dropLast: true, prefetch: 0 });
const batch = (await loader.epoch(0).next()).value!;
const batchFile = join(runDir, 'bench-batch.f32');
mkdirSync(runDir, { recursive: true });
writeFileSync(batchFile, Buffer.concat([Buffer.from(batch.images.buffer, batch.images.byteOffset, batch.images.byteLength),
  Buffer.from(batch.labels.buffer, batch.labels.byteOffset, batch.labels.byteLength)]));
const x0 = tensor(batch.images, { shape: batch.shape });
const y = tensor(batch.labels, { shape: [timeBatch, dataset.classes.length] });

const torchScript = join(repo, 'bench', `${method}_torch.py`);
const python = existsSync(torchScript) ? findTorchPython() : null;
const torchArgs = [String(getNumThreads()), String(timeBatch), '224', '--batch-file', batchFile,
  ...(method === 'amr' ? ['--gaussian-scale', String(config.method.gaussianScale)] : [])];
console.log(python ? `PyTorch peer: ${python}` : 'PyTorch peer: none found (set WEAKSEG_TORCH_PYTHON); step_ratio skipped');
const warmup = quick ? 1 : Number(args.warmup);
const rounds = quick ? 1 : Number(args.rounds);
const steps = quick ? 1 : Number(args.steps);
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
  const ourSteps = stepTimer(m, opt, { images: x, labels: y, ids: batch.ids });
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
const perSeed = runs.map((r) => ({
  seed: r.seed,
  run_dir: r.runDir,
  trained: r.train !== null,
  seed_miou_valt: pct(r.report.result.miou),
  valt: r.report.threshold,
  seed_miou_best: pct(r.report.curve.bestMiou),
  best_t: r.report.curve.bestThreshold,
  seed_miou_frequent7: pct(frequentMiou(r.report.result)),
  train_threads: r.trainThreads,
}));
const title = method === 'seam' ? 'SEAM (from the PCM output)' : method === 'amr' ? `AMR (variant '${args.variant}', fused 0.5/0.5, no AdvCAM)` : 'CAM baseline';
console.log(`\n==== ${title} on voc-mini (MobileNetV2, output stride 8), training seeds ${seeds.join(', ')} ====`);
for (const r of runs) {
  const rep = r.report;
  console.log(`\n-- seed ${r.seed} (${r.runDir}) --`);
  console.log(`[${rep.mode}] seed mIoU on train at t = ${rep.threshold} (chosen on ${rep.thresholdChosenOn}): ${pct(rep.result.miou)} %`);
  console.log(`[oracle, leaky] best t on train itself: ${rep.curve.bestThreshold} -> ${pct(rep.curve.bestMiou)} %`);
  console.log('best-threshold curve on train (t: mIoU %):');
  for (let i = 0; i < rep.curve.thresholds.length; i += 5) {
    console.log('  ' + rep.curve.thresholds.slice(i, i + 5).map((t, k) => `${t.toFixed(2)}: ${pct(rep.curve.miou[i + k] ?? null)}`).join('   '));
  }
  if (rep.fitCurve) console.log(`val curve: best t ${rep.fitCurve.bestThreshold} -> ${pct(rep.fitCurve.bestMiou)} % on val`);
  console.log(`per-class scores on train at t = ${rep.threshold} [${rep.mode}]:`);
  console.log(formatMiouTable(rep.result));
  if (r.train) {
    console.log(`training: ${r.train.epochs} epochs, ${r.train.steps} steps, ${r.train.secondsPerEpoch.toFixed(1)} s per epoch, ` +
      `${r.train.msPerStep.toFixed(0)} ms per step (compute), data wait ${(100 * r.train.dataWaitShare).toFixed(2)} % of the time`);
  }
  if (r.camMsPerImage !== null) console.log(`CAMs: ${r.camImages} images, ${r.camMsPerImage.toFixed(0)} ms per image`);
}
// Per-class IoU over the seeds: where a method's spread comes from.
const classNames = runs[0]!.report.result.classes.map((c) => c.name);
const cell = (v: number | null) => (v === null ? '-' : (100 * v).toFixed(1)).padStart(8);
console.log(`\nper-class IoU (%) on train at each seed's val-chosen t:`);
console.log(`${'class'.padEnd(12)}${seeds.map((s) => `seed ${s}`.padStart(8)).join('')}${'mean'.padStart(8)}${'sd'.padStart(8)}`);
for (const [i, name] of classNames.entries()) {
  const ious = runs.map((r) => r.report.result.classes[i]!.iou);
  const { mean, sd } = meanSd(ious.filter((v): v is number => v !== null).map((v) => 100 * v), 1);
  const fixed = (v: number | null) => (v === null ? '-' : v.toFixed(1)).padStart(8);
  console.log(`${name.padEnd(12)}${ious.map(cell).join('')}${fixed(mean)}${fixed(sd)}`);
}
const headline = meansOver(perSeed, ['seed_miou_valt', 'seed_miou_best', 'seed_miou_frequent7', 'valt', 'best_t']);
const withSd = (k: string) => `${headline[k] ?? '-'} % (sd ${headline[`${k}_sd`] ?? '-'})`;
console.log(`\nmean over seeds ${seeds.join(', ')}: seed mIoU ${withSd('seed_miou_valt')} at the val-chosen t; ` +
  `best t ${withSd('seed_miou_best')}; frequent-7 ${withSd('seed_miou_frequent7')}`);
for (const f of ['nchw', 'cl'] as const) {
  const tm = torchFmtMs[f];
  console.log(`training step (batch ${timeBatch}, 224 px, ${fmtName(f)}), median of ${timed[f].ours.length}: weakseg ${oursMs[f].toFixed(0)} ms` +
    (tm !== null ? `, PyTorch ${tm.toFixed(0)} ms (glibc keeping freed memory), ratio ${(oursMs[f] / tm).toFixed(3)}` : ''));
}
if (torchMs !== null && torchBest) {
  console.log(`step_ratio, each engine in its faster format: weakseg ${fmtName(ourBest)} ${stepMs.toFixed(0)} ms / ` +
    `PyTorch ${fmtName(torchBest)} ${torchMs.toFixed(0)} ms = ${(stepMs / torchMs).toFixed(3)}; ` +
    `PyTorch as installed (NCHW, default malloc) ${torchDefaultMs!.toFixed(0)} ms (ratio ${(stepMs / torchDefaultMs!).toFixed(3)})`);
}

// The gain over the baseline: the difference of the two means over the seeds both have.
const camPerSeed = method !== 'cam' ? readBaselinePerSeed(camSummaryPath) : [];
const common = perSeed.filter((p) => camPerSeed.some((c) => c.seed === p.seed));
const gainOf = (key: 'seed_miou_valt' | 'seed_miou_frequent7') =>
  gainOver(common.map((p) => ({ seed: p.seed, value: p[key] })), camPerSeed.map((c) => ({ seed: c.seed, value: c[key] })));
const gain = gainOf('seed_miou_valt');
const gainFrequent = gainOf('seed_miou_frequent7');
if (method !== 'cam') {
  console.log(common.length
    ? `baseline (bench:cam, same data, backbone and schedule), seeds ${common.map((p) => p.seed).join(', ')}: ` +
      `${meanSd(common.map((p) => camPerSeed.find((c) => c.seed === p.seed)!.seed_miou_valt!)).mean} % at its val-chosen t; ` +
      `gain ${gain.gain} (sd of the per-seed gains ${gain.sd})`
    : `no baseline figures for seeds ${seeds.join(', ')} at ${camSummaryPath}: run npm run bench:cam with them first for gain_over_cam`);
}
const threadsWarning = threadsNote([...perSeed.map((p) => ({ name: `${method} seed ${p.seed}`, threads: p.train_threads })),
  ...camPerSeed.filter((c) => common.some((p) => p.seed === c.seed)).map((c) => ({ name: `cam seed ${c.seed}`, threads: c.train_threads }))]);
if (threadsWarning) console.log(threadsWarning);
const trained = runs.filter((r) => r.train !== null).map((r) => r.train!);
const camRuns = runs.filter((r) => r.camMsPerImage !== null);
const summary = {
  method,
  seeds,
  ...headline,
  gain_over_cam: gain.gain,
  gain_over_cam_sd: gain.sd,
  gain_over_cam_frequent7: gainFrequent.gain,
  gain_over_cam_frequent7_sd: gainFrequent.sd,
  gain_seeds: method !== 'cam' ? common.map((p) => p.seed) : undefined,
  threads_note: threadsWarning,
  per_seed: perSeed.map((p) => ({
    ...p,
    ...(method !== 'cam' && camPerSeed.some((c) => c.seed === p.seed) && p.seed_miou_valt !== null
      ? { gain_over_cam: round(p.seed_miou_valt - camPerSeed.find((c) => c.seed === p.seed)!.seed_miou_valt!, 2) } : {}),
  })),
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
  // Training and CAM figures: means over the seeds trained (CAMs made) in this call; null when all were reused.
  data_wait_share: trained.length ? round(trained.reduce((s, t) => s + t.dataWaitShare, 0) / trained.length, 4) : null,
  epoch_s: trained.length ? round(trained.reduce((s, t) => s + t.secondsPerEpoch, 0) / trained.length, 1) : null,
  train_step_ms: trained.length ? round(trained.reduce((s, t) => s + t.msPerStep, 0) / trained.length, 1) : null,
  epochs: config.train.epochs,
  cam_ms_per_image: camRuns.length ? round(camRuns.reduce((s, r) => s + r.camMsPerImage! * r.camImages, 0) /
    camRuns.reduce((s, r) => s + r.camImages, 0), 1) : null,
  threads: getNumThreads(),
  momentum: config.train.momentum,
  head_lr_mult: config.train.headLrMult,
  ...(method === 'seam' ? { ohem_ratio: ohemRatio ?? SEAM_DEFAULTS.ohemRatio } : {}),
  quick,
  ...(method === 'amr' ? await amrFigures() : {}),
};
/** AMR: each branch on its own (means over the seeds, per class too), and AdvCAM on a subset of the first seed's train. */
async function amrFigures() {
  const branches: Record<string, (number | null)[]> = { spotlight: [], compensation: [] };
  const perClass: Record<string, Record<string, (number | null)[]>> = { spotlight: {}, compensation: {} };
  for (const r of runs) {
    for (const b of ['spotlight', 'compensation'] as const) {
      const rep = await branchFigures(seedConfig(r.seed), r.runDir, b, (l) => console.log(l));
      branches[b]!.push(pct(rep.result.miou));
      for (const c of rep.result.classes) (perClass[b]![c.name] ??= []).push(pct(c.iou));
      console.log(`seed ${r.seed}, ${b} branch alone: ${pct(rep.result.miou)} % at t ${rep.threshold} (chosen on val)`);
    }
  }
  console.log('\nper-class IoU (%) on train, mean over seeds: fused / spotlight alone / compensation alone / CAM baseline not stored per class');
  for (const [i, name] of classNames.entries()) {
    const mean = (xs: (number | null)[]) => meanSd(xs.filter((v): v is number => v !== null), 1).mean;
    const fused = mean(runs.map((r) => pct(r.report.result.classes[i]!.iou)));
    console.log(`${name.padEnd(12)}${[fused, mean(perClass.spotlight![name] ?? []), mean(perClass.compensation![name] ?? [])].map((v) => String(v ?? '-').padStart(8)).join('')}`);
  }
  const first = runs[0]!;
  const images = Number(args['advcam-images'] ?? (quick ? 1 : 20));
  const adv = await advcamSubset(seedConfig(first.seed), first.runDir, {
    split: 'train', images, threshold: first.report.threshold ?? 0.2,
    ...(args['advcam-iterations'] ?? quick ? { iterations: Number(args['advcam-iterations'] ?? 1) } : {}),
  });
  console.log(`\nAdvCAM (${adv.iterations} iterations, the code's quirk on) on the first ${adv.images} train images of seed ${first.seed} at t ${adv.threshold}: ` +
    `${pct(adv.advcam.miou)} % vs ${pct(adv.plain.miou)} % without; ${adv.advcamImagesPerSecond.toFixed(3)} images/s with AdvCAM`);
  const m = (xs: (number | null)[]) => meanSd(xs.filter((v): v is number => v !== null), 2);
  return {
    variant: args.variant,
    spotlight_miou_valt: m(branches.spotlight!).mean, spotlight_miou_valt_sd: m(branches.spotlight!).sd,
    compensation_miou_valt: m(branches.compensation!).mean, compensation_miou_valt_sd: m(branches.compensation!).sd,
    spotlight_run_dir: spotlightRunDir,
    advcam: {
      split: adv.split, images: adv.images, seed: first.seed, threshold: adv.threshold, iterations: adv.iterations,
      miou: pct(adv.advcam.miou), miou_plain: pct(adv.plain.miou), images_per_s: round(adv.advcamImagesPerSecond, 4),
      per_class: Object.fromEntries(adv.advcam.classes.map((c, i) => [c.name, [pct(c.iou), pct(adv.plain.classes[i]!.iou)]])),
    },
  };
}

writeFileSync(join(runDir, 'bench-summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
console.log(JSON.stringify(summary));
