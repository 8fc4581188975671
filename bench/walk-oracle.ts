// npm run bench:walk-oracle [-- --run-dir runs/bench-chain/chain] [--logt N] [--beta B]
//
// How much of the random walk's shortfall is its affinities' (issue 20): the walk of a finished bench:chain run is
// repeated on the images of the scored split (eval.split, `train`) with three affinity fields, at the settings the
// run chose on `val` (beta, steps, background exponent; --logt and --beta replace the run's):
//   net     AffinityNet's field, as the random-walk stage walks it;
//   labels  the pairs of the affinity labels it was trained on (1 inside a labelled region, 0 across, 0.5 where an end
//           is unlabelled): a perfectly trained net's field;
//   truth   the ground truth's pairs (1 inside a region, 0 across, 0.5 at VOC's unlabelled band): an upper bound for
//           any affinity net on these CAMs.
// Each scored like the stage (mIoU on eval.split), beside the seeds and the CRF of the same run; before them, the
// affinity labels and the net's field against the ground truth's pairs (AffinityAgreement, as the affinity and
// random-walk stages record them). A diagnostic that reads the ground truth of the split it reports: its `truth` row
// is an oracle, never a result. Ends with one JSON line.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { readCam } from '../src/cams/format.js';
import { BatchLoader, evalTransform, readMask } from '../src/data/index.js';
import { tidy } from '../src/engine/index.js';
import {
  SplitScore, affinityLabelPath, scoreAffinityLabels, buildAffinityNet, camFile, inferenceModel, paddedDeviceImage, readConfigFile, readMetrics,
  readSplit, resolveConfig, runPaths,
} from '../src/pipeline/index.js';
import type { PairLabels } from '../src/refine/affinity-labels.js';
import { AffinityAgreement, type AffinityAgreementResult, gridPairLabels } from '../src/refine/affinity-score.js';
import { type AffinityField, randomWalkMask } from '../src/refine/random-walk.js';
import { benchArgs, frequentMiou, pct, round } from './common.js';

const args = benchArgs(import.meta.url, { 'run-dir': { type: 'string', default: 'runs/bench-chain/chain' }, logt: { type: 'string' }, beta: { type: 'string' } });
const runDir = args['run-dir']!;
if (!existsSync(join(runDir, 'config.json'))) {
  console.error(`bench:walk-oracle: ${runDir} is not a run directory (no config.json): run npm run bench:chain first, or pass --run-dir DIR`);
  process.exit(1);
}
const config = resolveConfig({ ...readConfigFile(join(runDir, 'config.json')), runDir }, `bench:walk-oracle ${runDir}`);
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const metrics = readMetrics(config) as Json;
const rw = metrics['random-walk'];
if (!rw?.result) {
  console.error(`bench:walk-oracle: ${runDir} has no scored random-walk stage in metrics.json: finish the run first`);
  process.exit(1);
}
const { bgAlpha } = rw as { bgAlpha: number };
const beta = args.beta === undefined ? (rw.beta as number) : Number(args.beta);
const logt = args.logt === undefined ? (rw.logt as number) : Number(args.logt);
if (!(beta > 0) || !Number.isInteger(logt) || logt < 0) throw new Error(`bench:walk-oracle: --beta must be positive and --logt a non-negative integer, got ${args.beta}, ${args.logt}`);
const split = config.eval.split;
const dataset = await readSplit(config, split);
const items = dataset.items.filter((item) => item.maskPath && existsSync(affinityLabelPath(config, item.id)));
const affinityNet = buildAffinityNet(config, dataset.classes.length, { log: () => {} });
inferenceModel(affinityNet.model, runPaths(config).affinity.model, config, false);
const o = { stride: affinityNet.stride, radius: affinityNet.radius, numClasses: dataset.classes.length };
console.log(`bench:walk-oracle: ${items.length} images of '${split}', beta ${beta}, 2^${logt} steps, background exponent ${bgAlpha} ` +
  `(the run's chose beta ${rw.beta}, 2^${rw.logt} steps and the exponent on '${config.eval.fitSplit}')`);

const labelScore = (await scoreAffinityLabels(config, await readSplit(config, config.data.trainSplit), o))!;
const netAgreement = new AffinityAgreement();

/** 1 inside a region, 0 across, 0.5 where an end is unlabelled: a field from a label map's pairs. */
function fieldOfPairs(p: PairLabels, grid: { height: number; width: number }): AffinityField {
  return tidy(() => {
    const known = p.bgPos.add(p.fgPos).add(p.neg);
    const weights = p.bgPos.add(p.fgPos).add(known.neg().add(1).mul(0.5));
    return { ...grid, radius: o.radius, weights: weights.contiguous().toFloat32Array().slice() };
  });
}

const scores = { net: new SplitScore(dataset), labels: new SplitScore(dataset), truth: new SplitScore(dataset) };
const loader = new BatchLoader({ ...dataset, items }, evalTransform({ norm: affinityNet.backbone.inputNorm, withMask: false }), { batchSize: 1, shuffle: false, prefetch: 4 });
let done = 0;
for await (const batch of loader.epoch(0)) {
  const item = items[batch.indices[0]!]!;
  const netField = tidy(() => affinityNet.affinityField(paddedDeviceImage(batch, config, affinityNet.stride)));
  const grid = { height: netField.height, width: netField.width };
  const [gt, labels] = [await readMask(item.maskPath!), await readMask(affinityLabelPath(config, item.id))];
  // The ground truth's pairs serve twice: to score the net's field and as the oracle field.
  const truth = tidy(() => {
    const pairs = gridPairLabels(gt, grid, o);
    netAgreement.addWeights(netField.weights, pairs);
    return fieldOfPairs(pairs, grid);
  });
  const cams = readCam(camFile(config, split, item));
  const fields = { net: netField, labels: tidy(() => fieldOfPairs(gridPairLabels(labels, grid, o), grid)), truth };
  for (const [name, field] of Object.entries(fields) as [keyof typeof fields, AffinityField][]) {
    await scores[name].add(item, randomWalkMask(cams, field, { beta, logt, bgAlpha, stride: affinityNet.stride }));
  }
  if (++done % 50 === 0) console.log(`bench:walk-oracle: ${done}/${items.length}`);
}
affinityNet.model.dispose();

const groups = (r: AffinityAgreementResult, coverage?: Record<string, number | null>) => (['bgPos', 'fgPos', 'neg'] as const).map((g) =>
  `${{ bgPos: 'background pairs', fgPos: 'same-object pairs', neg: 'pairs across a boundary' }[g]}: ` +
  `${coverage ? `${pct(coverage[g])} % labelled, ` : ''}mean ${r[g].meanAffinity?.toFixed(3)}, ${pct(r[g].agree)} % right`).join('; ');
const net = netAgreement.result();
console.log(`\naffinity labels of the ${labelScore.images} images of '${config.data.trainSplit}' with ground truth: ${groups(labelScore.agreement, labelScore.coverage)}`);
console.log(`AffinityNet's field on '${split}': ${groups(net)}`);
const results = Object.fromEntries(Object.entries(scores).map(([k, s]) => [k, s.result()!]));
const row = (name: string, miou: number | null, f7: number | null, what: string) => console.log(`| ${name} | ${miou ?? '-'} | ${f7 ?? '-'} | ${what} |`);
console.log(`\n| '${split}' | mIoU % | frequent-7 % | |\n| --- | --- | --- | --- |`);
row('seeds', pct(metrics.eval?.result?.miou), null, `threshold ${metrics.eval?.threshold}`);
row('CRF', pct(metrics.crf?.result?.miou), null, 'the run\'s crf stage');
row('walk, net', pct(results.net!.miou), pct(frequentMiou(results.net!)), `AffinityNet's field (the stage scored ${pct(rw.result.miou)} at its settings)`);
row('walk, labels', pct(results.labels!.miou), pct(frequentMiou(results.labels!)), 'the field of its training labels');
row('walk, truth', pct(results.truth!.miou), pct(frequentMiou(results.truth!)), 'the ground truth\'s field (oracle)');
console.log(JSON.stringify({
  images: items.length, beta, logt, bg_alpha: bgAlpha, seed_miou: pct(metrics.eval?.result?.miou), crf_miou: pct(metrics.crf?.result?.miou),
  labels_boundary_right: pct(labelScore.agreement.neg.agree), net_boundary_right: pct(net.neg.agree),
  walk_net_miou: pct(results.net!.miou), walk_labels_miou: pct(results.labels!.miou), walk_truth_miou: pct(results.truth!.miou),
}));
