// npm run bench:pixelss [-- --seeds 3] [--seed-list 0,1,2] [--epochs 8] [--run-dir runs/bench-pixelss]
//                       [--seam-dir runs/bench-seam] [--seed-dir 1=DIR] [--retrain] [--skip-train] [--skip-cams]
//                       [--variants full,rcm-only,mam-only] [--skip-ablation] [--rounds 4] [--steps 2] [--warmup 2] [--quick]
//
// Pixel-level self-supervision (src/methods/pixelss.ts) end to end on voc-mini with MobileNetV2, bench:seam's
// protocol (bench/cam.ts): per training seed, train on train_aug, make CAMs for train and val, score the seeds of
// train at the threshold chosen on val. The MainNet is SEAM; the SupportNet is bench:seam's model of the same seed
// (<seam-dir>/seed-N/model.safetensors, frozen). Three variants per seed: the full method, RCM only (lambda_mam 0)
// and MAM only (lambda_rcm 0), in <run-dir>/seed-N, <run-dir>/rcm-only/seed-N and <run-dir>/mam-only/seed-N
// (--variants: a comma-separated subset, e.g. the ablation alone once the full runs are scored; --skip-ablation:
// the full method only). A finished run with the same settings is reused, as bench:seam does.
// gain_over_seam: the difference of the means over the seeds both have, against bench:seam's per-seed figures
// (<seam-dir>/bench-summary.json, and seed-N/metrics.json beside it for the seeds that file lacks). Then one
// training step is timed in weakseg and in PyTorch (bench/pixelss_torch.py, the same step transcribed, on the same
// weights and batch): step_ratio.
//
// --quick: a smoke run of the whole protocol in seconds to minutes: 16 train_aug, 8 train and 8 val images (a
// VOC folder of links in <run-dir>/quick-data), one epoch of batch 4 at 128 px, CAMs at scale 1 without flip, its
// own SEAM SupportNet trained the same way (the baseline of its gain), the step timed at batch 2, 128 px, once.
// Its figures say that the chain runs, nothing about the method.
// Needs ../shared (data and weights); PyTorch is optional (step_ratio is null without it). Ends with one JSON line.
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { getNumThreads } from '../src/engine/index.js';
import { readVoc } from '../src/data/index.js';
import { type WeaksegConfig, readSplit, resolveConfig } from '../src/pipeline/index.js';
import { loadModelWeights } from '../src/train/checkpoint.js';
import { benchArgs, benchPaths, findTorchPython, pct, round } from './common.js';
import { timePixelSsStep } from './pixelss-step.js';
import { SEED_OPTIONS, type SeedRun, gainOver, meansOver, readBaselinePerSeed, runSeed, seedDirs, seedList, threadsNote } from './seeds.js';

const { repo, voc, weights } = benchPaths();

const args = benchArgs(import.meta.url, {
  epochs: { type: 'string', default: '8' },
  'run-dir': { type: 'string' },
  'seam-dir': { type: 'string' },
  ...SEED_OPTIONS,
  variants: { type: 'string', default: 'full,rcm-only,mam-only' },
  'skip-ablation': { type: 'boolean', default: false },
  quick: { type: 'boolean', default: false },
  rounds: { type: 'string', default: '4' },
  steps: { type: 'string', default: '2' },
  warmup: { type: 'string', default: '2' },
  momentum: { type: 'string', default: '0.9' },
});

if (!existsSync(voc) || !existsSync(weights)) {
  console.log(`bench:pixelss needs ${voc} and ${weights} (../shared is absent); skipped`);
  console.log(JSON.stringify({ skipped: true }));
  process.exit(0);
}
const quick = args.quick!;
const runDir = resolve(args['run-dir'] ?? join(repo, 'runs', quick ? 'bench-pixelss-quick' : 'bench-pixelss'));
const seamDir = quick ? join(runDir, 'seam') : resolve(args['seam-dir'] ?? join(repo, 'runs', 'bench-seam'));
const seeds = seedList(args);
mkdirSync(runDir, { recursive: true });

/** --quick: a VOC folder of links to voc-mini with the first ids of each split. */
async function quickData(): Promise<string> {
  const root = join(runDir, 'quick-data');
  if (existsSync(join(root, 'ImageSets'))) return root;
  mkdirSync(join(root, 'ImageSets', 'Segmentation'), { recursive: true });
  for (const name of ['JPEGImages', 'SegmentationClass', 'image_labels.json']) symlinkSync(join(voc, name), join(root, name));
  const train = (await readVoc({ root: voc, split: 'train' })).items.slice(0, 16).map((i) => i.id);
  const val = (await readVoc({ root: voc, split: 'val' })).items.slice(0, 8).map((i) => i.id);
  const lists = { train_aug: train, train: train.slice(0, 8), val };
  for (const [split, ids] of Object.entries(lists)) writeFileSync(join(root, 'ImageSets', 'Segmentation', `${split}.txt`), `${ids.join('\n')}\n`);
  return root;
}

const TAPS = ['features.6', 'features.13'];
/** bench:seam's settings (bench/cam.ts), with the method given. */
function benchConfig(dir: string, method: Record<string, unknown>, dataRoot: string): WeaksegConfig {
  return resolveConfig({
    runDir: dir,
    data: { root: dataRoot, trainSplit: 'train_aug' },
    method,
    model: { backbone: 'mobilenet_v2', weights, outputStride: 8 },
    train: quick
      ? { epochs: 1, batchSize: 4, cropSize: 128, scaleRange: [0.7, 1.3], flip: true, jitter: null, lr: 0.01, headLrMult: 10,
          momentum: Number(args.momentum), weightDecay: 1e-4, polyPower: 0.9, seed: 0 }
      : { epochs: Number(args.epochs), batchSize: 16, cropSize: 224, scaleRange: [0.7, 1.3], flip: true, jitter: null,
          lr: 0.01, headLrMult: 10, momentum: Number(args.momentum), weightDecay: 1e-4, polyPower: 0.9, seed: 0 },
    cams: quick ? { splits: ['train', 'val'], scales: [1], flip: false } : { splits: ['train', 'val'], scales: [0.5, 1, 1.5, 2], flip: true },
    eval: { split: 'train', fitSplit: 'val', thresholds: { from: 0.05, to: 0.6, step: 0.01 } },
    runtime: { logEvery: 10, ...(quick ? { checkpointEverySteps: 0, threads: 1 } : {}) },
  });
}

const dataRoot = quick ? await quickData() : voc;
const VARIANTS = [
  { key: 'full', name: 'full', weights: {} },
  { key: 'rcm_only', name: 'rcm-only', weights: { lambdaMam: 0 } },
  { key: 'mam_only', name: 'mam-only', weights: { lambdaRcm: 0 } },
] as const;
const wanted = args.variants!.split(',').map((v) => v.trim()).filter(Boolean);
const unknown = wanted.filter((w) => !VARIANTS.some((v) => v.name === w));
if (unknown.length || !wanted.length) {
  throw new Error(`--variants: ${unknown.length ? `unknown ${unknown.join(', ')}; ` : ''}give a comma-separated subset of ${VARIANTS.map((v) => v.name).join(', ')}`);
}
const variants = VARIANTS.filter((v) => wanted.includes(v.name) && !(args['skip-ablation'] && v.key !== 'full'));
if (!variants.length) throw new Error('--skip-ablation leaves none of --variants to run (it keeps only full)');
const log = (l: string) => console.log(l);
const seedOptions = { retrain: args.retrain!, skipTrain: args['skip-train']!, skipCams: args['skip-cams']!, log };
console.log(`bench:pixelss${quick ? ' --quick' : ''}: seeds ${seeds.join(', ')} in ${runDir}, SupportNet from ${seamDir}, ` +
  `${getNumThreads()} engine threads`);

const seamRuns: SeedRun[] = [];
const runs: Record<string, SeedRun[]> = { full: [], rcm_only: [], mam_only: [] };
const fullDirs = seedDirs(runDir, seeds, args['seed-dir']);
for (const seed of seeds) {
  const support = join(seamDir, `seed-${seed}`);
  if (quick) {
    seamRuns.push(await runSeed(benchConfig(seamDir, { name: 'seam', pcmTaps: TAPS }, dataRoot), seed,
      { dir: support, own: true }, seedOptions));
  } else if (!existsSync(join(support, 'model.safetensors'))) {
    throw new Error(`no SEAM model for seed ${seed} in ${support}: run npm run bench:seam (with this seed) first, or give --seam-dir`);
  }
  for (const v of variants) {
    const method = { name: 'pixel-ss', support: 'frozen', supportMethod: 'seam', supportFrom: support, pcmTaps: TAPS, ...v.weights };
    const where = v.key === 'full' ? fullDirs.get(seed)! : { dir: join(runDir, v.name, `seed-${seed}`), own: true };
    const r = await runSeed(benchConfig(runDir, method, dataRoot), seed, where, seedOptions);
    runs[v.key]!.push(r);
    console.log(`seed ${seed}, ${v.key}: ${pct(r.report.result.miou)} % at t ${r.report.threshold} (chosen on val); ` +
      `best t on train ${r.report.curve.bestThreshold} -> ${pct(r.report.curve.bestMiou)} %`);
  }
}

// The baseline: bench:seam's per-seed figures (--quick: the SEAM support trained here).
const seamSummaryPath = join(seamDir, 'bench-summary.json');
const seamPerSeed = quick
  ? seamRuns.map((r) => ({ seed: r.seed, value: pct(r.report.result.miou), threads: r.trainThreads }))
  : readBaselinePerSeed(seamSummaryPath).map((p) => ({ seed: p.seed, value: p.seed_miou_valt, threads: p.train_threads }));
if (!seamPerSeed.length) console.log(`no bench:seam figures at ${seamSummaryPath}: gain_over_seam left out`);

const perSeed = (rs: SeedRun[]) => rs.map((r) => ({
  seed: r.seed, run_dir: r.runDir, trained: r.train !== null, seed_miou_valt: pct(r.report.result.miou), valt: r.report.threshold,
  seed_miou_best: pct(r.report.curve.bestMiou), best_t: r.report.curve.bestThreshold, train_threads: r.trainThreads,
}));
const full = perSeed(runs.full!);
const headline = meansOver(full, ['seed_miou_valt', 'seed_miou_best', 'valt']);
const values = (rs: SeedRun[]) => rs.map((r) => ({ seed: r.seed, value: pct(r.report.result.miou) }));
const gain = gainOver(values(runs.full!), seamPerSeed);
const threadsWarning = threadsNote([
  ...Object.entries(runs).flatMap(([v, rs]) => rs.map((r) => ({ name: `${v.replace('_', '-')} seed ${r.seed}`, threads: r.trainThreads }))),
  ...seamPerSeed.filter((b) => seeds.includes(b.seed)).map((b) => ({ name: `seam seed ${b.seed}`, threads: b.threads }))]);
if (threadsWarning) console.log(threadsWarning);
const ablation = Object.fromEntries(['rcm_only', 'mam_only'].flatMap((k) => {
  if (!runs[k]!.length) return [];
  const m = meansOver(perSeed(runs[k]!), ['seed_miou_valt']);
  const g = gainOver(values(runs[k]!), seamPerSeed);
  return [[`${k}_miou_valt`, m.seed_miou_valt], [`${k}_miou_valt_sd`, m.seed_miou_valt_sd], [`${k}_gain_over_seam`, g.gain]];
}));

// One step timed against the PyTorch transcription (the SupportNet: the first seed's SEAM model).
const python = findTorchPython();
const dataset = await readSplit(benchConfig(runDir, { name: 'seam', pcmTaps: TAPS }, dataRoot), 'train_aug');
const supportOfFirst = join(seamDir, `seed-${seeds[0]}`);
const timing = await timePixelSsStep({
  dataset, weights, dir: runDir, python, torchScript: join(repo, 'bench', 'pixelss_torch.py'),
  batch: quick ? 2 : 16, crop: quick ? 128 : 224, rounds: quick ? 1 : Number(args.rounds), steps: quick ? 1 : Number(args.steps),
  warmup: quick ? 1 : Number(args.warmup), log,
  loadSupport: (into) => loadModelWeights(supportOfFirst, into, { frozen: true }),
});

console.log(`\n==== pixel-ss (SEAM MainNet, bench:seam's SupportNet) on voc-mini${quick ? ' --quick' : ''}, seeds ${seeds.join(', ')} ====`);
for (const k of Object.keys(runs)) {
  for (const r of runs[k]!) console.log(`${k.padEnd(9)} seed ${r.seed}: ${pct(r.report.result.miou)} % at t ${r.report.threshold}`);
}
for (const s of seamPerSeed) console.log(`SEAM      seed ${s.seed}: ${s.value} %`);
console.log(`${runs.full!.length ? `mean: ${headline.seed_miou_valt} % (sd ${headline.seed_miou_valt_sd}); ` +
  `gain over SEAM ${gain.gain ?? '-'} (sd ${gain.sd ?? '-'}, seeds ${gain.seeds.join(', ')})` : 'full method not run (--variants)'}; RCM only ${ablation.rcm_only_miou_valt ?? '-'} %, MAM only ${ablation.mam_only_miou_valt ?? '-'} %`);

const summary = {
  method: 'pixel-ss',
  quick,
  seeds,
  ...headline,
  gain_over_seam: gain.gain ?? null,
  gain_over_seam_sd: gain.sd ?? null,
  gain_seeds: gain.seeds,
  threads_note: threadsWarning,
  rcm_only_miou_valt: null,
  mam_only_miou_valt: null,
  ...ablation,
  per_seed: seeds.map((seed) => ({
    ...(full.find((p) => p.seed === seed) ?? { seed, seed_miou_valt: null }),
    rcm_only_miou_valt: pct(runs.rcm_only!.find((r) => r.seed === seed)?.report.result.miou),
    mam_only_miou_valt: pct(runs.mam_only!.find((r) => r.seed === seed)?.report.result.miou),
    seam_miou_valt: seamPerSeed.find((s) => s.seed === seed)?.value ?? null,
  })),
  step_ratio: timing.step_ratio,
  step_ms: timing.step_ms,
  torch_step_ms: timing.torch_step_ms,
  step_ratio_vs_default_torch: timing.step_ratio_vs_default_torch,
  step_loss_rel_diff_vs_torch: timing.loss_rel_diff_vs_torch,
  step_batch: timing.batch,
  step_crop: timing.crop,
  epochs: quick ? 1 : Number(args.epochs),
  threads: getNumThreads(),
};
writeFileSync(join(runDir, 'bench-summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
console.log(JSON.stringify(summary));
