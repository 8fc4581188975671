// npm run bench:mcis [-- --seeds 3] [--seed-list 0,1,2] [--epochs 8] [--run-dir runs/bench-mcis] [--seed-dir 1=DIR]
//                    [--retrain] [--skip-train] [--skip-cams] [--no-ablation] [--cam-summary FILE]
//                    [--rounds 3] [--steps 1] [--warmup 1] [--quick] [--extra-half alone|extra]
//
// MCIS on voc-mini with MobileNetV2, by bench:cam's protocol (bench/cam.ts, bench/seeds.ts): per training seed, train
// on train_aug (the CAM baseline's crops and schedule at the code's lr 0.001, as the voc-mini preset; 8 pairs a batch,
// each pair 2 images and 3 self-pair views), make the localisation maps of train and val (co-attention with 3
// partners per class and the self-pair views, test.py's aggregation), score the seeds of train at the threshold
// chosen on val. The ablation (the paper's): single-image only (the code's "don't use co-attention" loss, localised
// with the plain CAM at one scale, unflipped), + co-attention, + contrastive co-attention (the full method), each
// over the same seeds in <run-dir>/<variant>/seed-N.
// gain_over_cam: the full method's mean against bench:cam's (<repo>/runs/bench-cam/bench-summary.json, and
// seed-N/metrics.json for the seeds it lacks) over the seeds both have. Then one training step on a pair batch is
// timed in weakseg and in PyTorch (bench/mcis_torch.py --serve, the official loss and optimiser), each memory format
// in turn, interleaved; step_ratio takes each engine's faster format.
// --quick: a handful of images (24 train_aug, 8 train, 8 val in a temporary VOC root linking voc-mini's files), one
// seed, one epoch of a few steps, batch 2 pairs at 128 px, one timing round: checks the whole path in minutes; its
// figures mean nothing.
// --extra-half: data.extra's experiment (the paper's settings 2 and 3, extra tagged images). The main training split is
// half of train_aug (its even lines); 'alone' trains on it alone, 'extra' adds the other half (the odd lines) as a
// data.extra source of weight 1 (each epoch then draws as many of its images as of the main half). Evaluation is
// the usual: t chosen on val, seeds scored on train. In <repo>/runs/bench-mcis-half-<mode>, over a VOC root of links
// (<repo>/runs/voc-mini-half); compare the two runs' seed_miou_valt (README, "Extra training data").
// Needs ../shared; PyTorch is optional (step_ratio null without it). Ends with one JSON line.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { emptyCache, getNumThreads, tensor, tidy } from '../src/engine/index.js';
import { saveSafetensors } from '../src/engine/serialize/index.js';
import { BatchLoader, trainTransform } from '../src/data/index.js';
import { formatMiouTable } from '../src/eval/index.js';
import type { McisMethod } from '../src/methods/index.js';
import { makeOptimizer } from '../src/train/index.js';
import { buildMethod, readSplit, resolveConfig } from '../src/pipeline/index.js';
import { TUNED_GLIBC_ENV, TorchPeer, benchArgs, benchPaths, findTorchPython, median, pct, round, stepTimer } from './common.js';
import { SEED_OPTIONS, type SeedRun, gainOver, meansOver, readBaselinePerSeed, runSeed, seedDirs, seedList, threadsNote } from './seeds.js';

const { repo, voc, weights } = benchPaths();

const args = benchArgs(import.meta.url, {
  epochs: { type: 'string', default: '8' },
  'run-dir': { type: 'string' },
  'cam-summary': { type: 'string' },
  ...SEED_OPTIONS,
  'no-ablation': { type: 'boolean', default: false },
  rounds: { type: 'string', default: '3' },
  steps: { type: 'string', default: '1' },
  warmup: { type: 'string', default: '1' },
  quick: { type: 'boolean', default: false },
  'extra-half': { type: 'string' },
});
const half = args['extra-half'];
if (half !== undefined && half !== 'alone' && half !== 'extra') throw new Error(`--extra-half must be 'alone' or 'extra', got '${half}'`);

if (!existsSync(voc) || !existsSync(weights)) {
  console.log(`bench:mcis needs ${voc} and ${weights} (../shared is absent); skipped`);
  console.log(JSON.stringify({ skipped: true }));
  process.exit(0);
}
const quick = args.quick!;

/** --quick's data: a VOC root whose split lists are the first few ids of voc-mini's, its files linked. */
function quickRoot(): string {
  const root = mkdtempSync(join(tmpdir(), 'bench-mcis-quick-'));
  for (const f of ['JPEGImages', 'SegmentationClass', 'image_labels.json']) symlinkSync(join(voc, f), join(root, f));
  mkdirSync(join(root, 'ImageSets', 'Segmentation'), { recursive: true });
  for (const [split, n] of [['train_aug', 24], ['train', 8], ['val', 8]] as const) {
    const ids = readFileSync(join(voc, 'ImageSets', 'Segmentation', `${split}.txt`), 'utf8').split('\n').filter(Boolean).slice(0, n);
    writeFileSync(join(root, 'ImageSets', 'Segmentation', `${split}.txt`), `${ids.join('\n')}\n`);
  }
  return root;
}
/**
 * --extra-half's data: `base`'s files linked, its split lists copied, and train_aug cut in two, its even lines as
 * train_aug_half and its odd lines as train_aug_other.
 */
function halfRoot(base: string): string {
  const root = join(repo, 'runs', `voc-mini-half${quick ? '-quick' : ''}`);
  rmSync(root, { recursive: true, force: true });
  for (const f of ['JPEGImages', 'SegmentationClass', 'image_labels.json']) {
    mkdirSync(root, { recursive: true });
    symlinkSync(resolve(base, f), join(root, f));
  }
  const lists = join(root, 'ImageSets', 'Segmentation');
  mkdirSync(lists, { recursive: true });
  const read = (split: string) => readFileSync(join(base, 'ImageSets', 'Segmentation', `${split}.txt`), 'utf8').split('\n').filter(Boolean);
  for (const split of ['train_aug', 'train', 'val']) writeFileSync(join(lists, `${split}.txt`), `${read(split).join('\n')}\n`);
  const ids = read('train_aug');
  writeFileSync(join(lists, 'train_aug_half.txt'), `${ids.filter((_, i) => i % 2 === 0).join('\n')}\n`);
  writeFileSync(join(lists, 'train_aug_other.txt'), `${ids.filter((_, i) => i % 2 === 1).join('\n')}\n`);
  return root;
}
const baseRoot = quick ? quickRoot() : voc;
const dataRoot = half ? halfRoot(baseRoot) : baseRoot;
const runName = `bench-mcis${half ? `-half-${half}` : ''}${quick ? '-quick' : ''}`;
const runDir = resolve(args['run-dir'] ?? join(repo, 'runs', runName));
if (quick) rmSync(runDir, { recursive: true, force: true });
const camSummaryPath = resolve(args['cam-summary'] ?? join(repo, 'runs', 'bench-cam', 'bench-summary.json'));
const seeds = quick ? [0] : seedList(args);
const [batchSize, crop] = quick ? [2, 128] : [8, 224];
// The code's rate. At the CAM baseline's 0.01 (extra layers 0.1) the loss went from 22.3 to 19,719 at the second step:
// the code's He fan-out initialisation of the 20-way classifier (std 0.32) starts with large logits.
const lr = 0.001;

/** The variants: the full method, and the ablation's two lesser ones. */
const VARIANTS = {
  full: { name: 'mcis' },
  co: { name: 'mcis', contrastive: false },
  single: { name: 'mcis', coAttention: false, contrastive: false, localization: 'single' },
} as const;
type Variant = keyof typeof VARIANTS;
const variants: Variant[] = args['no-ablation'] ? ['full'] : ['full', 'single', 'co'];

const configOf = (v: Variant) => resolveConfig({
  runDir: join(runDir, v),
  data: {
    root: dataRoot, trainSplit: half ? 'train_aug_half' : 'train_aug',
    extra: half === 'extra' ? [{ root: dataRoot, split: 'train_aug_other', weight: 1 }] : [],
  },
  method: VARIANTS[v],
  model: { backbone: 'mobilenet_v2', weights, outputStride: 8 },
  train: {
    epochs: quick ? 1 : Number(args.epochs), batchSize, cropSize: crop, scaleRange: [0.7, 1.3], flip: true, jitter: null,
    lr, headLrMult: 10, momentum: 0.9, weightDecay: 1e-4, polyPower: 0.9, seed: 0, ...(quick ? { maxSteps: 3 } : {}),
  },
  // MCIS localises with its own views and partners: one scale, no flip.
  cams: { splits: ['train', 'val'], scales: [1], flip: false },
  eval: { split: 'train', fitSplit: 'val', thresholds: { from: 0.05, to: 0.6, step: 0.01 } },
  runtime: { logEvery: 10 },
});

console.log(`bench:mcis${quick ? ' --quick' : ''}: seeds ${seeds.join(', ')}, variants ${variants.join(', ')} in ${runDir}, ` +
  `${getNumThreads()} engine threads`);

// ---- per variant and seed: train (or reuse), maps for train and val, seeds scored at the t chosen on val ----
const runs: Record<string, SeedRun[]> = {};
for (const v of variants) {
  const config = configOf(v);
  const dirs = seedDirs(config.runDir, seeds, v === 'full' ? args['seed-dir'] : []);
  runs[v] = [];
  for (const seed of seeds) {
    const r = await runSeed(config, seed, dirs.get(seed)!, {
      retrain: args.retrain!, skipTrain: args['skip-train']!, skipCams: args['skip-cams']!, log: (l) => console.log(`[${v}] ${l}`),
    });
    runs[v].push(r);
    console.log(`[${v}] seed ${seed}: ${pct(r.report.result.miou)} % at t ${r.report.threshold} (chosen on val); ` +
      `best t on train ${r.report.curve.bestThreshold} -> ${pct(r.report.curve.bestMiou)} %`);
  }
}
const perSeed = (v: Variant) => runs[v]!.map((r) => ({
  seed: r.seed, run_dir: r.runDir, trained: r.train !== null,
  seed_miou_valt: pct(r.report.result.miou), valt: r.report.threshold,
  seed_miou_best: pct(r.report.curve.bestMiou), best_t: r.report.curve.bestThreshold, train_threads: r.trainThreads,
}));
const headline = (v: Variant) => meansOver(perSeed(v), ['seed_miou_valt', 'seed_miou_best', 'valt', 'best_t']);

// ---- per-class IoU against the CAM baseline (its summary has no per-class figures: the full method's are printed) ----
const full = runs.full!;
console.log(`\n==== MCIS on voc-mini (MobileNetV2, output stride 8), seeds ${seeds.join(', ')} ====`);
for (const r of full) {
  console.log(`\n-- seed ${r.seed} (${r.runDir}): per-class scores on train at t = ${r.report.threshold} --`);
  console.log(formatMiouTable(r.report.result));
}

// ---- gain over the CAM baseline: means over the seeds both have ----
const camPerSeed = readBaselinePerSeed(camSummaryPath);
const gainFigures = gainOver(perSeed('full').map((p) => ({ seed: p.seed, value: p.seed_miou_valt })),
  camPerSeed.map((c) => ({ seed: c.seed, value: c.seed_miou_valt })));
const gain = quick || half ? null : gainFigures.gain ?? null; // --extra-half trains on other data than bench:cam
console.log(gain !== null ? `gain over bench:cam (seeds ${gainFigures.seeds.join(', ')}): ${gain} points (sd of the per-seed gains ${gainFigures.sd})`
  : `no gain_over_cam: ${quick ? '--quick' : half ? '--extra-half' : `no bench:cam figures for these seeds at ${camSummaryPath}`}`);
const threadsWarning = threadsNote([
  ...variants.flatMap((v) => perSeed(v).map((p) => ({ name: `${v} seed ${p.seed}`, threads: p.train_threads }))),
  ...camPerSeed.filter((c) => seeds.includes(c.seed)).map((c) => ({ name: `cam seed ${c.seed}`, threads: c.train_threads }))]);
if (threadsWarning) console.log(threadsWarning);
const ablation = Object.fromEntries(variants.map((v) => [v, headline(v).seed_miou_valt]));
console.log(`ablation (seed mIoU at the val-chosen t, mean over seeds): ${variants.map((v) => `${v} ${ablation[v]}`).join(', ')}`);

// ---- step time, ours vs the official loss in PyTorch, same weights and pair batch ----
const config = configOf('full');
const dataset = await readSplit(config, 'train_aug');
const probe = buildMethod(config, dataset.classes.length, {}) as McisMethod;
const loader = new BatchLoader(dataset, trainTransform({ cropSize: crop, scaleRange: [0.7, 1.3], norm: probe.backbone.inputNorm }),
  { batchSize, seed: 0, dropLast: true, prefetch: 0, pairs: probe.pairs });
const b = (await loader.epoch(0).next()).value!;
const nc = dataset.classes.length;
const x1 = tensor(b.images, { shape: b.shape });
const x2 = tensor(b.partner!.images, { shape: b.shape });
const l1 = tensor(b.labels, { shape: [batchSize, nc] });
const l2 = tensor(b.partner!.labels, { shape: [batchSize, nc] });
mkdirSync(runDir, { recursive: true });
const batchFile = join(runDir, 'bench-batch.safetensors');
const modelFile = join(runDir, 'bench-model.safetensors');
saveSafetensors(batchFile, { input1: x1, input2: x2, label1: l1, label2: l2 });
saveSafetensors(modelFile, probe.model.stateDict());
probe.model.dispose();
const python = findTorchPython();
const script = join(repo, 'bench', 'mcis_torch.py');
const optimizer = { lr, momentum: 0.9, weightDecay: 1e-4, nesterov: true, polyPower: 0.9 };
type Format = 'nchw' | 'cl';
const timed: Record<Format, { ours: number[]; torch: number[] }> = { nchw: { ours: [], torch: [] }, cl: { ours: [], torch: [] } };
for (const fmt of ['nchw', 'cl'] as const) {
  const m = buildMethod(config, nc, {}) as McisMethod;
  if (fmt === 'cl') m.model.to({ memoryFormat: 'channels_last' });
  m.model.train();
  const opt = makeOptimizer(m, optimizer);
  const [a, p] = fmt === 'cl' ? [x1.channelsLast(), x2.channelsLast()] : [x1, x2];
  const batch = { images: a, labels: l1, ids: b.ids, partner: { images: p, labels: l2, ids: b.partner!.ids } };
  const ourSteps = stepTimer(m, opt, batch, 2);
  const peer = python ? new TorchPeer(python, script, ['--threads', String(getNumThreads()), '--serve', String(batchSize), String(crop),
    '--weights', modelFile, '--batch-file', batchFile, ...(fmt === 'cl' ? ['--channels-last'] : [])], TUNED_GLIBC_ENV) : null;
  ourSteps(Number(args.warmup));
  await peer?.run(`step ${args.warmup}`);
  for (let r = 0; r < (quick ? 1 : Number(args.rounds)); r++) {
    timed[fmt].ours.push(...ourSteps(Number(args.steps)));
    if (peer) timed[fmt].torch.push(...(await peer.run(`step ${args.steps}`)));
  }
  peer?.close();
  opt.dispose();
  m.model.dispose();
  if (a !== x1) { a.dispose(); p.dispose(); }
  emptyCache();
}
for (const t of [x1, x2, l1, l2]) t.dispose();
const med = (xs: number[]) => (xs.length ? median(xs) : null);
const ours = Math.min(med(timed.nchw.ours)!, med(timed.cl.ours)!);
const torchBoth = [med(timed.nchw.torch), med(timed.cl.torch)].filter((x): x is number => x !== null);
const torchMs = torchBoth.length ? Math.min(...torchBoth) : null;
for (const f of ['nchw', 'cl'] as const) {
  console.log(`pair step (${batchSize} pairs, ${crop} px, ${f === 'cl' ? 'channels-last' : 'NCHW'}): weakseg ${med(timed[f].ours)!.toFixed(0)} ms` +
    (timed[f].torch.length ? `, PyTorch (official loss) ${med(timed[f].torch)!.toFixed(0)} ms` : ''));
}
if (quick) for (const root of new Set([baseRoot, dataRoot])) rmSync(root, { recursive: true, force: true });

const summary = {
  method: 'mcis',
  quick,
  extra_half: half ?? null,
  seeds,
  ...headline('full'),
  gain_over_cam: gain,
  gain_over_cam_sd: quick ? null : gainFigures.sd ?? null,
  gain_seeds: gainFigures.seeds,
  threads_note: threadsWarning,
  ablation,
  per_seed: perSeed('full'),
  step_ratio: torchMs !== null ? round(ours / torchMs, 3) : null,
  step_ms: round(ours, 1),
  torch_step_ms: torchMs !== null ? round(torchMs, 1) : null,
  epochs: config.train.epochs,
  batch_pairs: batchSize,
  threads: getNumThreads(),
};
writeFileSync(join(runDir, 'bench-summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
console.log(JSON.stringify(summary));
