// npm run bench:epochs -- --run-dir runs/bench-seam/seed-0 [--run-dir runs/bench-seam/seed-1 ...] [--split val]
//                         [--epochs 2,4,8] [--threshold 0.28]
//
// The seeds of every epoch's checkpoint of finished (or stopped) trainings, scored on one split: where a method
// swings with the training seed (issue 22: SEAM on voc-mini), whether the failing seed never found the objects or
// found them and lost them later. The split defaults to `val`, the one thresholds are chosen on, so the split the
// benchmarks report (`train`) is never looked at. For each checkpoint <run>/checkpoints/epoch-NNN.safetensors the
// CAMs of the split are made with the run's own settings (cams.checkpoint) in <run>/epochs/epoch-NNN and scored
// over the threshold sweep: the best t and its mIoU, the mIoU at --threshold if given, and each class's IoU and
// precision at the best t (a class that fills its images shows as low precision). Finished epochs are reused.
// Needs the runs' data (../shared for bench runs). Ends with one JSON line.
import { join, resolve } from 'node:path';

import { readCamIndex } from '../src/cams/index.js';
import { listCheckpoints } from '../src/train/index.js';
import { evaluateSeeds, makeCams, readRunConfig, readSplit, resolveConfig, scoredEval } from '../src/pipeline/index.js';
import { benchArgs, pct, round } from './common.js';

const args = benchArgs(import.meta.url, {
  'run-dir': { type: 'string', multiple: true },
  split: { type: 'string', default: 'val' },
  epochs: { type: 'string' },
  threshold: { type: 'string' },
});
const runDirs = (args['run-dir'] ?? []).map((d) => resolve(d));
if (runDirs.length === 0) throw new Error('give --run-dir DIR (a weakseg run directory with checkpoints/epoch-NNN.safetensors), once per run');
const split = args.split!;
const fixedT = args.threshold === undefined ? null : Number(args.threshold);
if (fixedT !== null && !(fixedT >= 0 && fixedT <= 1)) throw new Error(`--threshold must be in [0, 1], got '${args.threshold}'`);
const onlyEpochs = args.epochs?.split(',').map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--epochs: '${s}' is not an epoch number`);
  return n;
});

interface EpochFigures {
  epoch: number;
  best_t: number;
  best_miou: number | null;
  miou_at_t: number | null;
  /** Per class at the best t: IoU and precision, in %. */
  classes: Record<string, { iou: number | null; precision: number | null }>;
}

const runs: { run: string; seed: number | null; epochs: EpochFigures[] }[] = [];
for (const dir of runDirs) {
  const saved = readRunConfig(dir);
  if (!saved) throw new Error(`${dir}: no config.json (not a weakseg run directory)`);
  const base = resolveConfig(saved, join(dir, 'config.json'));
  const checkpoints = listCheckpoints(join(dir, 'checkpoints')).filter((c) => !onlyEpochs || onlyEpochs.includes(c.epoch));
  if (checkpoints.length === 0) throw new Error(`${dir}: no epoch checkpoints${onlyEpochs ? ` among epochs ${onlyEpochs.join(', ')}` : ''} in checkpoints/`);
  const size = (await readSplit(base, split)).items.length;
  const figures: EpochFigures[] = [];
  for (const c of checkpoints) {
    const config = resolveConfig({
      ...base,
      runDir: join(dir, 'epochs', `epoch-${String(c.epoch).padStart(3, '0')}`),
      cams: { ...base.cams, splits: [split], checkpoint: c.path },
      eval: { ...base.eval, split, fitSplit: null, threshold: null, writeSeeds: false },
    });
    let count = -1;
    try { count = readCamIndex(join(config.runDir, 'cams', split)).count; } catch { /* not made yet */ }
    const quiet = { progress: false as const, log: () => {} };
    if (count !== size) await makeCams(config, { ...quiet, resume: true });
    const report = scoredEval(await evaluateSeeds(config, quiet));
    const at = fixedT === null ? -1 : report.curve.thresholds.findIndex((t) => Math.abs(t - fixedT) < 1e-9);
    if (fixedT !== null && at < 0) throw new Error(`--threshold ${fixedT} is not on the sweep (${report.curve.thresholds[0]}..${report.curve.thresholds.at(-1)})`);
    const classes: EpochFigures['classes'] = {};
    for (const k of report.result.classes) classes[k.name] = { iou: pct(k.iou), precision: pct(k.precision) };
    const f: EpochFigures = {
      epoch: c.epoch, best_t: report.curve.bestThreshold, best_miou: pct(report.curve.bestMiou),
      miou_at_t: at >= 0 ? pct(report.curve.miou[at]) : null, classes,
    };
    figures.push(f);
    console.log(`${dir} epoch ${c.epoch}: best t on '${split}' ${f.best_t} -> ${f.best_miou} %` +
      (fixedT !== null ? `; at t ${fixedT}: ${f.miou_at_t} %` : ''));
  }
  runs.push({ run: dir, seed: base.train.seed ?? null, epochs: figures });
}

// The classes whose IoU moves most between runs at the last epoch scored: where two seeds part.
const last = runs.map((r) => r.epochs.at(-1)!);
if (runs.length > 1) {
  const names = Object.keys(last[0]!.classes);
  const spread = names.map((n) => {
    const ious = last.map((e) => e.classes[n]?.iou).filter((v): v is number => typeof v === 'number');
    return { n, range: ious.length > 1 ? Math.max(...ious) - Math.min(...ious) : 0 };
  }).sort((a, b) => b.range - a.range).slice(0, 6);
  console.log(`classes that differ most at the last epoch scored (IoU range over runs): ${spread.map((s) => `${s.n} ${s.range.toFixed(1)}`).join(', ')}`);
}
console.log(JSON.stringify({
  bench: 'epochs', split, threshold: fixedT,
  runs: runs.map((r) => ({ run: r.run, seed: r.seed, best_miou: r.epochs.map((e) => e.best_miou), best_t: r.epochs.map((e) => e.best_t),
    miou_at_t: fixedT === null ? undefined : r.epochs.map((e) => e.miou_at_t), epochs: r.epochs.map((e) => e.epoch),
    last_classes: r.epochs.at(-1)!.classes })),
}));
