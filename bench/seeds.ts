// What the method benchmarks share for judging a method over training seeds: which seeds (--seeds N, --seed-list),
// one run directory per seed (trained, or reused when it already holds the finished run with the same settings),
// and the mean and spread of each figure over the seeds.
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

import { readSafetensorsHeader } from '../src/engine/serialize/index.js';
import { readCamIndex } from '../src/cams/index.js';
import type { MiouResult } from '../src/eval/index.js';
import { listCheckpoints } from '../src/train/index.js';
import {
  type ScoredEvalReport, type TrainSummary, type WeaksegConfig, evaluateSeeds, makeCams, readRunConfig, scoredEval, readSplit, resolveConfig,
  runPaths, trainClassifier,
} from '../src/pipeline/index.js';
import { frequentMiou, pct, round } from './common.js';

/** The options every method benchmark takes for its seeds (parseArgs shapes). */
export const SEED_OPTIONS = {
  seeds: { type: 'string', default: '3' },
  'seed-list': { type: 'string' },
  'seed-dir': { type: 'string', multiple: true },
  retrain: { type: 'boolean', default: false },
  'skip-train': { type: 'boolean', default: false },
  'skip-cams': { type: 'boolean', default: false },
} as const;

/** --seed-list "0,3,5", else 0..--seeds - 1. */
export function seedList(args: { seeds?: string; 'seed-list'?: string }): number[] {
  const list = args['seed-list'] !== undefined ? args['seed-list'].split(',').map((s) => Number(s.trim()))
    : Array.from({ length: Number(args.seeds) }, (_, i) => i);
  if (list.length === 0 || list.some((s) => !Number.isSafeInteger(s) || s < 0) || new Set(list).size !== list.length) {
    throw new Error(`--seeds must be a positive count and --seed-list distinct non-negative integers, got ${args['seed-list'] ?? args.seeds}`);
  }
  return list;
}

/** <runDir>/seed-<n>, or the directory a --seed-dir n=DIR gives (e.g. one made by `weakseg run ... --seed n`). */
export function seedDirs(runDir: string, seeds: number[], given: string[] = []): Map<number, { dir: string; own: boolean }> {
  const out = new Map(seeds.map((s) => [s, { dir: join(runDir, `seed-${s}`), own: true }]));
  for (const g of given) {
    const m = /^(\d+)=(.+)$/.exec(g);
    if (!m) throw new Error(`--seed-dir must be SEED=DIR, got '${g}'`);
    if (!out.has(Number(m[1]))) throw new Error(`--seed-dir ${g}: seed ${m[1]} is not among the seeds run (${seeds.join(', ')})`);
    out.set(Number(m[1]), { dir: resolve(m[2]!), own: false });
  }
  return out;
}

/** The settings a seed's CAM figures depend on, with paths made absolute, as dotted keys. */
function outcomeSettings(c: WeaksegConfig): Record<string, unknown> {
  const flat: Record<string, unknown> = {};
  const put = (prefix: string, o: object) => {
    for (const [k, v] of Object.entries(o)) {
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) put(`${prefix}${k}.`, v);
      else flat[`${prefix}${k}`] = v;
    }
  };
  const { splits: _s, checkpoint: _ck, ...cams } = c.cams;
  put('', {
    data: { root: resolve(c.data.root), trainSplit: c.data.trainSplit, format: c.data.format, classes: c.data.classes ?? null },
    model: { ...c.model, weights: c.model.weights ? resolve(c.model.weights) : null },
    method: c.method,
    train: c.train, cams, eval: { split: c.eval.split, fitSplit: c.eval.fitSplit, threshold: c.eval.threshold, thresholds: c.eval.thresholds },
  });
  for (const [k, v] of Object.entries(flat)) flat[k] = JSON.stringify(v);
  return flat;
}

export interface SeedRun {
  seed: number;
  runDir: string;
  /** Training ran (fully or resumed) in this call; null when the finished run was reused. */
  train: TrainSummary | null;
  /** CAMs made in this call (ms per image), null when they were all there. */
  camMsPerImage: number | null;
  camImages: number;
  report: ScoredEvalReport;
  /** The engine threads its classifier was trained with (model.safetensors metadata; null for older files). */
  trainThreads: number | null;
}

/**
 * One seed's figures: trains in `dir` unless it holds the finished run (model.safetensors of all epochs) with the
 * same settings as `config`, resumes a run that stopped, makes the CAMs that are missing, and scores the seeds.
 * A directory holding a run with other settings is an error naming them, never overwritten.
 */
export async function runSeed(base: WeaksegConfig, seed: number, where: { dir: string; own: boolean },
  o: { retrain: boolean; skipTrain: boolean; skipCams: boolean; log: (line: string) => void }): Promise<SeedRun> {
  const { dir } = where;
  if (o.retrain && existsSync(dir)) {
    if (!where.own) throw new Error(`--retrain would delete ${dir}, given with --seed-dir; retrain it yourself or drop --seed-dir`);
    rmSync(dir, { recursive: true, force: true });
  }
  let config = resolveConfig({ ...base, runDir: dir, train: { ...base.train, seed } });
  const saved = readRunConfig(dir);
  if (saved) {
    const theirs = resolveConfig(saved, join(dir, 'config.json'));
    const [want, have] = [outcomeSettings(config), outcomeSettings(theirs)];
    const differ = [...new Set([...Object.keys(want), ...Object.keys(have)])].filter((k) => want[k] !== have[k]);
    if (differ.length) {
      throw new Error(`${dir} holds a run with other settings (${differ.slice(0, 6).map((k) => `${k}: ${have[k] ?? 'unset'} there, ` +
        `${want[k] ?? 'unset'} here`).join('; ')}${differ.length > 6 ? `; and ${differ.length - 6} more` : ''}); ` +
        'give another --run-dir or --seed-dir');
    }
    config = { ...theirs, runDir: dir }; // its own file, so its other sections (refinement, ...) stay as they are
  }
  const paths = runPaths(config);
  const finished = existsSync(paths.model) &&
    readSafetensorsHeader(paths.model).metadata.epochs_completed === String(config.train.epochs);
  let train: TrainSummary | null = null;
  if (finished) {
    o.log(`seed ${seed}: reusing the finished training in ${dir}`);
  } else if (o.skipTrain) {
    throw new Error(`seed ${seed}: ${dir} holds no finished training (model.safetensors of ${config.train.epochs} epochs) and --skip-train was given`);
  } else {
    const resume = listCheckpoints(paths.checkpoints).length > 0 || existsSync(join(paths.checkpoints, 'last.safetensors'));
    o.log(`seed ${seed}: ${resume ? 'resuming' : 'training'} in ${dir}`);
    rmSync(join(dir, 'cams'), { recursive: true, force: true }); // made from another model, if any
    train = await trainClassifier(config, { resume, progress: false, log: o.log });
  }
  let camMsPerImage: number | null = null;
  let camImages = 0;
  const missing: string[] = [];
  for (const split of base.cams.splits) {
    const size = (await readSplit(config, split)).items.length;
    let count = -1;
    try { count = readCamIndex(paths.cams(split)).count; } catch { /* no index yet */ }
    if (count !== size) missing.push(split);
  }
  if (missing.length && o.skipCams) throw new Error(`seed ${seed}: CAMs of ${missing.join(', ')} are incomplete in ${dir} and --skip-cams was given`);
  if (missing.length) {
    const cams = await makeCams({ ...config, cams: { ...config.cams, splits: missing } }, { resume: true, progress: false, log: o.log });
    camImages = cams.splits.reduce((s, c) => s + c.images, 0);
    camMsPerImage = cams.splits.reduce((s, c) => s + c.msPerImage * c.images, 0) / Math.max(1, camImages);
  }
  const report = scoredEval(await evaluateSeeds(config, { progress: false, log: o.log }));
  return { seed, runDir: dir, train, camMsPerImage, camImages, report, trainThreads: trainThreads(dir) };
}

/** The engine threads the model in `runDir` was trained with (its model.safetensors metadata), null if unknown. */
export function trainThreads(runDir: string): number | null {
  const model = join(runDir, 'model.safetensors');
  const threads = existsSync(model) ? Number(readSafetensorsHeader(model).metadata.threads) : NaN;
  return Number.isInteger(threads) && threads > 0 ? threads : null;
}

/**
 * A warning when the runs behind one figure (a method's seeds, and its baseline's for a gain) were trained at
 * different engine thread counts: the thread count changes the order of float sums, and on a training of hundreds
 * of steps that moves the result as a different seed does (README, "Reproducibility"). Null when they agree.
 */
export function threadsNote(runs: { name: string; threads: number | null }[]): string | null {
  const counts = [...new Set(runs.map((r) => r.threads).filter((t): t is number => t !== null))].sort((a, b) => a - b);
  if (counts.length < 2) return null;
  const at = counts.map((t) => `${t}: ${runs.filter((r) => r.threads === t).map((r) => r.name).join(', ')}`);
  return `note: these figures come from trainings at different engine thread counts (${at.join('; ')}); ` +
    'a thread count moves a training\'s result as a seed does, so compare them as different seeds\' figures';
}

/** Mean and sample standard deviation (n - 1; null for one value), rounded. */
export function meanSd(xs: number[], digits = 2): { mean: number | null; sd: number | null } {
  if (xs.length === 0) return { mean: null, sd: null };
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : null;
  return { mean: round(mean, digits), sd: sd === null ? null : round(sd, digits) };
}

/** `{ key: mean, key_sd: sd }` for each key over per-seed records (null values left out). */
export function meansOver<T extends Record<string, unknown>>(perSeed: T[], keys: (keyof T & string)[]): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const k of keys) {
    const { mean, sd } = meanSd(perSeed.map((r): unknown => r[k]).filter((v): v is number => typeof v === 'number'));
    out[k] = mean;
    out[`${k}_sd`] = sd;
  }
  return out;
}

/**
 * A method's gain over a baseline on the seeds both have: the difference of the two means (same seed: same data
 * order and augmentation) and the spread of the per-seed differences. Values are per seed; nulls are left out.
 */
export function gainOver(ours: { seed: number; value: number | null }[], baseline: { seed: number; value: number | null }[]):
  { gain: number | undefined; sd: number | null | undefined; seeds: number[] } {
  const pairs = ours.flatMap((o) => {
    const b = baseline.find((x) => x.seed === o.seed);
    return o.value !== null && b && b.value !== null ? [{ seed: o.seed, ours: o.value, theirs: b.value }] : [];
  });
  if (pairs.length === 0) return { gain: undefined, sd: undefined, seeds: [] };
  const mean = (xs: number[]) => meanSd(xs, 6).mean!;
  return {
    gain: round(mean(pairs.map((p) => p.ours)) - mean(pairs.map((p) => p.theirs)), 2),
    sd: meanSd(pairs.map((p) => p.ours - p.theirs)).sd,
    seeds: pairs.map((p) => p.seed),
  };
}

/** One seed of a baseline benchmark (bench:cam, bench:seam), as a method's gain reads it. */
export interface BaselineSeed {
  seed: number; seed_miou_valt: number | null; seed_miou_frequent7: number | null;
  /** Its classifier's engine threads (from its model file), null if unknown. */
  train_threads: number | null;
}

/**
 * A baseline benchmark's per-seed figures: the `per_seed` of its bench-summary.json, and for each seed that file
 * lacks, the leak-free evaluation in `seed-N/metrics.json` beside it. A run with another --seed-list rewrites the
 * summary with its own seeds only, so a gain read from the summary alone would silently cover fewer seeds. An
 * older single-run summary without `per_seed` was seed 0's. Empty where neither exists.
 */
export function readBaselinePerSeed(summaryPath: string): BaselineSeed[] {
  type SummarySeed = Partial<BaselineSeed> & { seed: number; run_dir?: string };
  type Summary = { per_seed?: SummarySeed[]; seed_miou_valt?: number | null; seed_miou_frequent7?: number | null };
  const summary = existsSync(summaryPath) ? (JSON.parse(readFileSync(summaryPath, 'utf8')) as Summary) : null;
  const dir = dirname(summaryPath);
  const out: BaselineSeed[] = summary
    ? (summary.per_seed ?? [{ seed: 0, seed_miou_valt: summary.seed_miou_valt ?? null, seed_miou_frequent7: summary.seed_miou_frequent7 ?? null }])
      .map((p) => ({
        seed: p.seed, seed_miou_valt: p.seed_miou_valt ?? null, seed_miou_frequent7: p.seed_miou_frequent7 ?? null,
        train_threads: p.train_threads ?? trainThreads(p.run_dir ?? join(dir, `seed-${p.seed}`)),
      }))
    : [];
  const seedDirNames = existsSync(dir) ? readdirSync(dir).filter((n) => /^seed-\d+$/.test(n)) : [];
  for (const name of seedDirNames) {
    const seed = Number(name.slice(5));
    const metricsPath = join(dir, name, 'metrics.json');
    if (out.some((p) => p.seed === seed) || !existsSync(metricsPath)) continue;
    type Metrics = { eval?: { mode?: string; split?: string; thresholdChosenOn?: string; result?: MiouResult } };
    const e = (JSON.parse(readFileSync(metricsPath, 'utf8')) as Metrics).eval;
    // Only the benchmarks' own protocol counts: train scored at the threshold chosen on val.
    if (!e?.result || e.mode !== 'leak-free' || e.split !== 'train' || e.thresholdChosenOn !== 'val') continue;
    const f7 = frequentMiou(e.result);
    out.push({ seed, seed_miou_valt: pct(e.result.miou), seed_miou_frequent7: pct(f7), train_threads: trainThreads(join(dir, name)) });
  }
  return out.sort((a, b) => a.seed - b.seed);
}
