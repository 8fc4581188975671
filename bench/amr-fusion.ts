// node dist/bench/amr-fusion.js [--run-dir runs/bench-amr] [--seeds 3 | --seed-list 0,1,2] [--weights 0,0.1,...,1]
//                              [--cam-summary runs/bench-cam/bench-summary.json]
//
// AMR's fusion weight chosen on val, from the branch maps bench:amr already wrote (no training, no inference). The
// code fuses the two branches 0.5 / 0.5 (method.compensationWeight); here each compensation weight w (the spotlight's
// 1 - w) fuses each image's two stored maps as the CAM stage does (each branch normalised on its own, then
// (1 - w) spotlight + w compensation), the pair (w, t) with the best mIoU on val is kept, and train is scored there,
// so no choice sees the split reported. Per seed, then means and spreads, and the gain over bench:cam's seeds.
// Needs bench:amr's seed directories with their branch-spotlight/ and branch-compensation/ CAMs of train and val.
// Ends with one JSON line.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { readMask } from '../src/data/index.js';
import { ThresholdSweep, formatMiouTable, withBackground } from '../src/eval/index.js';
import { readCam } from '../src/cams/index.js';
import { type WeaksegConfig, camFile, readConfigFile, readSplit, resolveConfig, thresholdList } from '../src/pipeline/index.js';
import { benchArgs, benchPaths, pct, round } from './common.js';
import { gainOver, meanSd, readBaselinePerSeed, seedList } from './seeds.js';

const { repo } = benchPaths();
const args = benchArgs(import.meta.url, {
  'run-dir': { type: 'string' },
  seeds: { type: 'string', default: '3' },
  'seed-list': { type: 'string' },
  weights: { type: 'string', default: '0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1' },
  'cam-summary': { type: 'string' },
});
const runDir = resolve(args['run-dir'] ?? join(repo, 'runs', 'bench-amr'));
const camSummaryPath = resolve(args['cam-summary'] ?? join(repo, 'runs', 'bench-cam', 'bench-summary.json'));
const weights = args.weights!.split(',').map(Number);
if (weights.length === 0 || weights.some((w) => !(w >= 0 && w <= 1))) throw new Error(`--weights: compensation weights in [0, 1], got '${args.weights}'`);
const seeds = seedList(args);

const branchConfig = (seedDir: string, branch: string): WeaksegConfig => {
  const dir = join(seedDir, `branch-${branch}`);
  const file = join(dir, 'config.json');
  if (!existsSync(file)) throw new Error(`bench:amr-fusion: ${file} is absent: run npm run bench:amr for this seed first`);
  return resolveConfig({ ...readConfigFile(file), runDir: dir });
};

/** One sweep per weight over `split`: each image's two branch maps read once and fused at every weight. */
async function sweeps(spot: WeaksegConfig, comp: WeaksegConfig, split: string, K: number, thresholds: number[]) {
  const dataset = await readSplit(spot, split);
  const out = weights.map(() => new ThresholdSweep(K, thresholds));
  for (const item of dataset.items.filter((i) => i.maskPath)) {
    const s = readCam(camFile(spot, split, item));
    const c = readCam(camFile(comp, split, item));
    if (s.width !== c.width || s.height !== c.height || s.labels.join() !== c.labels.join()) {
      throw new Error(`${item.id}: the branches' maps differ in size or labels (${s.width}x${s.height} [${s.labels}] against ${c.width}x${c.height} [${c.labels}])`);
    }
    const gt = await readMask(item.maskPath!);
    const fused = new Float32Array(s.cams.length);
    weights.forEach((w, k) => {
      for (let i = 0; i < fused.length; i++) fused[i] = (1 - w) * s.cams[i]! + w * c.cams[i]!;
      out[k]!.add({ labels: s.labels, cams: fused, width: s.width, height: s.height, gt: gt.data, id: item.id });
    });
  }
  return out;
}

const perSeed: { seed: number; weight: number; t: number; val_miou: number | null; seed_miou_valt: number | null; at_code_weight: number | null }[] = [];
for (const seed of seeds) {
  const seedDir = join(runDir, `seed-${seed}`);
  const spot = branchConfig(seedDir, 'spotlight');
  const comp = branchConfig(seedDir, 'compensation');
  const fitSplit = spot.eval.fitSplit;
  if (!fitSplit) throw new Error(`bench:amr-fusion: ${seedDir}'s config has no eval.fitSplit to choose the weight on`);
  const thresholds = thresholdList(spot.eval.thresholds);
  const classes = (await readSplit(spot, spot.eval.split)).classes;
  const K = classes.length + 1;
  const names = withBackground(classes);
  const fit = (await sweeps(spot, comp, fitSplit, K, thresholds)).map((s) => s.result(names));
  const report = await sweeps(spot, comp, spot.eval.split, K, thresholds);
  let best = 0;
  fit.forEach((f, k) => { if ((f.best.result.miou ?? -1) > (fit[best]!.best.result.miou ?? -1)) best = k; });
  const chosen = report[best]!.confusionAt(fit[best]!.best.index).score(names);
  const code = weights.indexOf(0.5);
  console.log(`\n-- seed ${seed}: best mIoU on ${fitSplit} per compensation weight: ` +
    weights.map((w, k) => `${w}: ${pct(fit[k]!.best.result.miou)} (t ${fit[k]!.best.threshold})`).join(', '));
  console.log(`seed ${seed}: weight ${weights[best]} and t ${fit[best]!.best.threshold} chosen on ${fitSplit}; ${spot.eval.split} at them: ${pct(chosen.miou)} %`);
  console.log(formatMiouTable(chosen));
  perSeed.push({
    seed, weight: weights[best]!, t: fit[best]!.best.threshold, val_miou: pct(fit[best]!.best.result.miou), seed_miou_valt: pct(chosen.miou),
    at_code_weight: code < 0 ? null : pct(report[code]!.confusionAt(fit[code]!.best.index).score(names).miou),
  });
}

const cam = readBaselinePerSeed(camSummaryPath);
const gain = gainOver(perSeed.map((p) => ({ seed: p.seed, value: p.seed_miou_valt })), cam.map((c) => ({ seed: c.seed, value: c.seed_miou_valt })));
const valt = meanSd(perSeed.map((p) => p.seed_miou_valt).filter((v): v is number => v !== null));
const codeW = meanSd(perSeed.map((p) => p.at_code_weight).filter((v): v is number => v !== null));
console.log(`\nfused at the weight chosen on val: ${valt.mean} % (sd ${valt.sd}) over seeds ${seeds.join(', ')}; at the code's 0.5: ${codeW.mean} %; ` +
  (gain.gain === undefined ? `no bench:cam figures for these seeds at ${camSummaryPath}` : `gain over bench:cam ${gain.gain} (sd ${gain.sd})`));
console.log(JSON.stringify({
  seed_miou_valt: valt.mean, seed_miou_valt_sd: valt.sd, at_code_weight_miou_valt: codeW.mean,
  gain_over_cam: gain.gain ?? null, gain_over_cam_sd: gain.sd ?? null, per_seed: perSeed,
}));
