// npm run bench:chain [-- --model-run runs/bench-seam/seed-0] [--run-dir runs/bench-chain] [--quick] [--seg-variants all|a,b]
//   [--variants-on weak|matched] [--segmenters weak,matched,ceiling] [--no-irn]
//
// The pipeline after the classifier, on voc-mini with a trained model (bench:seam's by default): seeds -> CRF ->
// random walk (PSA) -> IRN -> DeepLab, plus the supervised ceiling (the same DeepLab on the ground-truth masks of
// the images of train_aug that have them) and the weak DeepLab on the pseudo-masks of exactly those images. Every
// free choice is made on `val` (the seed and CRF thresholds, the walk's background exponent, IRN's background
// score, and which refiner's masks DeepLab trains on); pseudo-masks are scored on `train`, the segmenters on `val`.
// Settings: configs/seam-mobilenetv2-vocmini-pipeline.json with the model run's method and model. Each run
// directory resumes like any `weakseg run`.
// --seg-variants: the segmenter candidates of issue 20, one at a time against a reference segmenter's settings, each
// trained (or, for the inference-only ones, evaluated) on the same pseudo-masks: a table of their val mIoU and the
// difference to the default, and `seg_variants` in the JSON line. 'all' or a comma-separated list of segVariants' names.
// --variants-on matched: each candidate changes the matched segmenter (the 437 images with ground truth, 648 steps,
// about 27 minutes of 2 cores) instead of the weak one (1,000 images, 1,500 steps, about 65): a cheaper comparison.
// --segmenters: which of the three reference segmenters to train (default all; `--segmenters=` none, the refiners
// only; the candidates' base always runs).
// --no-irn: the refiners without IRN (DeepLab then trains on the random walk's masks).
// --quick: a handful of images (a VOC root of links with shortened split lists), one epoch of each network, single
// scale; for development only (its figures mean nothing). The full run takes about an hour of 2 cores.
// Needs ../shared (data and weights). Ends with one JSON line.
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { mergeConfig, readConfigFile, readMetrics, resolveConfig, runPipeline, type WeaksegConfig } from '../src/pipeline/index.js';
import { benchArgs, benchPaths, frequentMiou, pct, round } from './common.js';

const { repo, voc, weights } = benchPaths();

const args = benchArgs(import.meta.url, {
  'model-run': { type: 'string' },
  'run-dir': { type: 'string' },
  quick: { type: 'boolean', default: false },
  'seg-variants': { type: 'string' },
  'variants-on': { type: 'string', default: 'weak' },
  segmenters: { type: 'string', default: 'weak,matched,ceiling' },
  'no-irn': { type: 'boolean', default: false },
});
const quick = args.quick!;
if (!existsSync(voc) || !existsSync(weights)) {
  console.log(`bench:chain needs ${voc} and ${weights} (../shared is absent); skipped`);
  console.log(JSON.stringify({ skipped: true }));
  process.exit(0);
}
const modelRun = resolve(args['model-run'] ?? join(repo, 'runs', 'bench-seam', 'seed-0'));
const runDir = resolve(args['run-dir'] ?? join(repo, 'runs', quick ? 'bench-chain-quick' : 'bench-chain'));

/** The model run's weights: model.safetensors, else (a training still running) its newest checkpoint. */
function modelWeights(): string {
  const model = join(modelRun, 'model.safetensors');
  if (existsSync(model)) return model;
  const dir = join(modelRun, 'checkpoints');
  const newest = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort().at(-1) : undefined;
  if (!newest) throw new Error(`bench:chain: ${modelRun} has no model.safetensors nor checkpoints; train it first (npm run bench:seam)`);
  // A checkpoint of a running training is copied, so that it cannot change under the chain.
  const copy = join(runDir, 'classifier.safetensors');
  mkdirSync(runDir, { recursive: true });
  copyFileSync(join(dir, newest), copy);
  console.log(`bench:chain: ${model} does not exist; using its newest checkpoint ${newest} (copied to ${copy})`);
  return copy;
}

/** --quick: a VOC root of links to voc-mini with split lists of a few images (train inside train_aug, as in VOC). */
function quickRoot(): string {
  const root = join(runDir, 'voc-quick');
  rmSync(root, { recursive: true, force: true });
  mkdirSync(join(root, 'ImageSets', 'Segmentation'), { recursive: true });
  for (const f of ['JPEGImages', 'SegmentationClass', 'image_labels.json']) symlinkSync(join(voc, f), join(root, f));
  const list = (s: string) => readFileSync(join(voc, 'ImageSets', 'Segmentation', `${s}.txt`), 'utf8').split('\n').filter(Boolean);
  const train = list('train').slice(0, 10);
  const extra = list('train_aug').filter((id) => !train.includes(id)).slice(0, 10);
  const write = (s: string, ids: string[]) => writeFileSync(join(root, 'ImageSets', 'Segmentation', `${s}.txt`), `${ids.join('\n')}\n`);
  write('train', train);
  write('train_aug', [...train, ...extra]);
  write('val', list('val').slice(0, 10));
  return root;
}

const QUICK = {
  cams: { scales: [1], flip: false },
  eval: { thresholds: { step: 0.05 } },
  refine: {
    crf: { thresholds: { step: 0.1 } },
    affinity: { epochs: 1, batchSize: 4, cropSize: 192 },
    irn: { epochs: 1, batchSize: 4, cropSize: 192 },
  },
  seg: { epochs: 1, batchSize: 4, cropSize: 192, scales: [1], testFlip: false },
  run: { galleryImages: 2 },
};

if (!existsSync(join(modelRun, 'config.json'))) {
  console.error(`bench:chain: ${modelRun} is not a run directory (no config.json): run npm run bench:seam first, or pass --model-run DIR`);
  process.exit(1);
}
// The segmenter candidates, each one change to a reference segmenter's settings (b). PSA's band is put around the
// seed threshold t chosen on val as PSA's affinity exponents 24 and 4 sit around its random walk's 6 (t 0.092 and
// 0.276 around 0.222): [0.4 t, 1.25 t].
type SegVariant = { what: string; seg: Record<string, unknown>; evalOnly?: boolean };
const segVariants = (b: WeaksegConfig['seg'], t: number): Record<string, SegVariant> => ({
  'schedule-2x': { what: 'twice the epochs', seg: { epochs: 2 * b.epochs } },
  'lr-10x': { what: `seg.lr ${round(10 * b.lr, 6)} (10x; head ${b.headLrMult}x that)`, seg: { lr: 10 * b.lr } },
  'head-bn-frozen': { what: "seg.batchNorm 'frozen'", seg: { batchNorm: 'frozen' } },
  'classifier-init': { what: "seg.backboneInit 'classifier'", seg: { backboneInit: 'classifier' } },
  'ignore-band': { what: `seg.ignoreBand [${round(0.4 * t, 3)}, ${round(Math.min(1, 1.25 * t), 3)}]`, seg: { ignoreBand: [round(0.4 * t, 3), round(Math.min(1, 1.25 * t), 3)] } },
  'repeat-factor': { what: "seg.sampling 'repeatFactor', t 0.1", seg: { sampling: 'repeatFactor', repeatThreshold: 0.1 } },
  aspp: { what: "seg.head 'aspp'", seg: { head: 'aspp' } },
  // deeplab-pytorch trains ASPP at 2.5e-4 (the branches 10x): at the LargeFOV rate it diverged on voc-mini.
  'aspp-v2-lr': { what: "seg.head 'aspp' at deeplab-pytorch's seg.lr 2.5e-4 (head 10x)", seg: { head: 'aspp', lr: 2.5e-4 } },
  // The presets' 321 (the codebase's) beat 256 on both seeds measured; 256 is voc-mini's image size, 2.5 times cheaper a step.
  'crop-256': { what: "seg.cropSize 256 (voc-mini's image size; the presets train on 321, the codebase's)", seg: { cropSize: 256 } },
  'single-scale': { what: 'inference at scale 1, no flip', seg: { scales: [1], testFlip: false }, evalOnly: true },
  crf: { what: "seg.crf 'psa' on the predictions", seg: { crf: 'psa' }, evalOnly: true },
});
// The reference segmenters: the weak one, the same on exactly the images with ground truth, the supervised ceiling.
const SEGMENTERS = {
  weak: { dir: 'seg', seg: {} },
  matched: { dir: 'seg-matched', seg: { trainImages: 'withGroundTruth' } },
  ceiling: { dir: 'ceiling', seg: { pseudoMasks: 'groundTruth' } },
} as const;
type Segmenter = keyof typeof SEGMENTERS;
const isSegmenter = (s: string): s is Segmenter => s in SEGMENTERS;
const variantsOn = args['variants-on']!;
if (variantsOn !== 'weak' && variantsOn !== 'matched') throw new Error(`bench:chain: --variants-on must be weak or matched, not '${variantsOn}'`);
const segmenters = args.segmenters!.split(',').filter(Boolean);
const unknownSeg = segmenters.filter((s) => !isSegmenter(s));
if (unknownSeg.length) throw new Error(`bench:chain: unknown --segmenters ${unknownSeg.join(', ')} (known: ${Object.keys(SEGMENTERS).join(', ')})`);
const variantNames = Object.keys(segVariants({ epochs: 1, lr: 1, headLrMult: 1 } as WeaksegConfig['seg'], 0.25));
const wanted = args['seg-variants'] === undefined ? [] : args['seg-variants'] === 'all' ? variantNames : args['seg-variants'].split(',');
const unknown = wanted.filter((v) => !variantNames.includes(v));
if (unknown.length) throw new Error(`bench:chain: unknown --seg-variants ${unknown.join(', ')} (known: ${variantNames.join(', ')}, or all)`);

const saved = readConfigFile(join(modelRun, 'config.json'));
let base = mergeConfig(readConfigFile(join(repo, 'configs', 'seam-mobilenetv2-vocmini-pipeline.json')), {
  data: { root: quick ? quickRoot() : voc, trainSplit: 'train_aug' },
  method: saved.method, model: { ...(saved.model as object), weights },
  cams: { checkpoint: modelWeights() },
  runtime: { logEvery: 20 },
});
if (quick) base = mergeConfig(base, QUICK);
const REFINERS = ['cams', 'eval', 'crf', 'affinity', 'random-walk', ...(args['no-irn'] ? [] : ['irn', 'irn-walk'])];
const configOf = (dir: string, over: Record<string, unknown>): WeaksegConfig => resolveConfig(mergeConfig(base, { runDir: join(runDir, dir), ...over }), `bench:chain ${dir}`);
const log = (l: string) => console.log(l);
const hooks = { log, progress: false, resume: true };

// 1. The refiners, with every choice on val; then DeepLab on the masks of the refiner that scored best on val.
const chain = configOf('chain', { run: { stages: [...REFINERS, 'report'] } });
await runPipeline(chain, hooks);
type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const metrics = readMetrics(chain) as Json;
const valOf = { 'random-walk': metrics['random-walk']?.fit?.best?.miou ?? null, 'irn-walk': metrics['irn-walk']?.fit?.best?.miou ?? null };
const refiner = (valOf['irn-walk'] ?? -1) > (valOf['random-walk'] ?? -1) ? 'irn-walk' : 'random-walk';
log(`bench:chain: DeepLab trains on the '${refiner}' masks (val mIoU of the refiners: random walk ${valOf['random-walk']}, IRN ${valOf['irn-walk']})`);
const seg = (dir: string, over: Record<string, unknown>) =>
  configOf(dir, { seg: { pseudoMasks: refiner, ...over }, run: { stages: ['seg-train', 'seg-eval'] } });
/** The segmenters read the chain's pseudo-masks: they share its run directory's refinement outputs by links. */
const linkChain = (c: WeaksegConfig): WeaksegConfig => {
  mkdirSync(c.runDir, { recursive: true });
  for (const d of ['pseudo', 'irn', 'cams']) if (!existsSync(join(c.runDir, d)) && existsSync(join(chain.runDir, d))) symlinkSync(join(chain.runDir, d), join(c.runDir, d));
  return c;
};
// 2-4. The reference segmenters asked for; the candidates' base whenever there are candidates.
const runs = Object.fromEntries(Object.entries(SEGMENTERS).map(([name, r]) => [name, seg(r.dir, r.seg)])) as Record<Segmenter, WeaksegConfig>;
for (const [name, c] of Object.entries(runs)) if (segmenters.includes(name) || (wanted.length && name === variantsOn)) await runPipeline(linkChain(c), hooks);
const segEval = (c: WeaksegConfig) => (readMetrics(c) as Json)['seg-eval'];
const segResult = (c: WeaksegConfig) => segEval(c)?.result;
const segMiou = (c: WeaksegConfig) => segResult(c)?.miou ?? null;
// The seeds are told each image's tags and the segmenters are not: on classes seen in a handful of images only the
// seeds score, so the frequent classes are reported beside the mIoU over all classes.
const segFrequent = (c: WeaksegConfig) => { const r = segResult(c); return r ? frequentMiou(r) : null; };
// The segmenters told each image's tags too (seg-eval's resultWithTags): level terms with the seeds on all classes.
const segTagged = (c: WeaksegConfig) => segEval(c)?.resultWithTags?.miou ?? null;
const segTaggedFrequent = (c: WeaksegConfig) => { const r = segEval(c)?.resultWithTags; return r ? frequentMiou(r) : null; };
const ceiling = segMiou(runs.ceiling);

const variants: Record<string, { what: string; miou: number | null; delta: number | null }> = {};
// 5. The candidates, each one change to the base's settings (--variants-on).
const baseRun = runs[variantsOn];
const SEG_VARIANTS = segVariants(baseRun.seg, metrics.eval?.threshold ?? 0.25);
for (const name of wanted) {
  const v = SEG_VARIANTS[name]!;
  const c = linkChain(seg(`${SEGMENTERS[variantsOn].dir}-${name}`, { ...SEGMENTERS[variantsOn].seg, ...v.seg }));
  const only = v.evalOnly ? resolveConfig({ ...c, run: { ...c.run, stages: ['seg-eval'] } }, `bench:chain ${c.runDir}`) : c;
  if (v.evalOnly) {
    // Inference-only candidates score the base segmenter's model (a link; its evaluation reruns each time).
    mkdirSync(join(only.runDir, 'seg'), { recursive: true });
    const model = join(only.runDir, 'seg', 'model.safetensors');
    if (!existsSync(model)) symlinkSync(join(baseRun.runDir, 'seg', 'model.safetensors'), model);
  }
  await runPipeline(only, { ...hooks, ...(v.evalOnly ? { force: ['seg-eval'] } : {}) });
  const miou = segMiou(only);
  const base = segMiou(baseRun);
  variants[name] = { what: v.what, miou: pct(miou), delta: miou !== null && base !== null ? round(100 * (miou - base), 2) : null };
}
if (wanted.length) {
  log(`bench:chain: segmenter candidates on the '${refiner}' masks, each a change to the ${variantsOn} segmenter (val mIoU %, difference to its ${pct(segMiou(baseRun))})`);
  log('| candidate | setting | seg mIoU (val) | delta |');
  log('| --- | --- | --- | --- |');
  for (const [name, v] of Object.entries(variants)) log(`| ${name} | ${v.what} | ${v.miou ?? '-'} | ${v.delta === null ? '-' : `${v.delta >= 0 ? '+' : ''}${v.delta}`} |`);
}
const summary = {
  quick,
  model: modelRun,
  seed_miou: pct(metrics.eval?.result?.miou),
  crf_miou: pct(metrics.crf?.result?.miou),
  rw_miou: pct(metrics['random-walk']?.result?.miou),
  irn_miou: pct(metrics['irn-walk']?.result?.miou),
  seg_pseudo_masks: refiner,
  seg_miou_val: pct(segMiou(runs.weak)),
  seg_matched_miou_val: pct(segMiou(runs.matched)),
  seg_tagged_miou_val: pct(segTagged(runs.weak)),
  ceiling_tagged_miou_val: pct(segTagged(runs.ceiling)),
  seed_miou_val: pct(metrics.eval?.fitCurve?.bestMiou),
  ceiling_miou_val: pct(ceiling),
  seg_miou_val_frequent7: pct(segFrequent(runs.weak)),
  seg_matched_miou_val_frequent7: pct(segFrequent(runs.matched)),
  seed_miou_val_frequent7: pct(metrics.eval?.fitCurve?.result ? frequentMiou(metrics.eval.fitCurve.result) : null),
  ceiling_miou_val_frequent7: pct(segFrequent(runs.ceiling)),
  seg_tagged_miou_val_frequent7: pct(segTaggedFrequent(runs.weak)),
  seg_of_ceiling: ceiling && segMiou(runs.weak) !== null ? round(segMiou(runs.weak) / ceiling, 3) : null,
  ...(wanted.length ? { seg_variants: variants, seg_variants_on: variantsOn } : {}),
  run_dir: runDir,
};
log(`bench:chain${quick ? ' (quick: figures of a handful of images, for development only)' : ''}: seeds ${summary.seed_miou} -> CRF ${summary.crf_miou} ` +
  `-> random walk ${summary.rw_miou}, IRN ${summary.irn_miou} (train); DeepLab ${summary.seg_miou_val} on val (seeds ${summary.seed_miou_val}; ` +
  `on the ground-truth images' pseudo-masks ${summary.seg_matched_miou_val}; supervised ceiling ${summary.ceiling_miou_val}; told the tags: DeepLab ` +
  `${summary.seg_tagged_miou_val}, ceiling ${summary.ceiling_tagged_miou_val}); ` +
  `frequent-7 on val: DeepLab ${summary.seg_miou_val_frequent7}, seeds ${summary.seed_miou_val_frequent7}, matched ${summary.seg_matched_miou_val_frequent7}, ` +
  `ceiling ${summary.ceiling_miou_val_frequent7}; DeepLab told the tags ${summary.seg_tagged_miou_val_frequent7}`);
console.log(JSON.stringify(summary));
