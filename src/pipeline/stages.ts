// The stage registry: every stage of a run, in pipeline order, written once. `weakseg run` (run.ts), the CLI's
// per-stage commands, `--stages` and `--force`, the config's run.stages and seg.pseudoMasks, and the report all
// read it. A stage's name is kebab-case and is its one spelling everywhere: its command (`weakseg random-walk`),
// its entry in --stages, --force and run.stages, and its key in metrics.json and stages.json.
//
// This module loads no native code (a stage's run function imports its module when called), so the config and
// `weakseg --help` can read the registry at once.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { WeaksegConfig } from './config.js';
import { inferenceSettingKeys } from '../methods/index.js';
import type { StageHooks } from './common.js';
import { runPaths } from './paths.js';

/** The CLI flag groups a stage's command takes ('resume': --resume). */
export type OptionGroup = 'model' | 'train' | 'cams' | 'eval' | 'refine' | 'seg' | 'resume';

export interface Stage {
  /** kebab-case; see the header comment. */
  name: string;
  /** A human name (the report's rows and lists). */
  title: string;
  /** One line for --help. */
  description: string;
  /** The config section holding its settings (dotted path). */
  section: string;
  /** The flag groups of its command. */
  options: OptionGroup[];
  /** The stages whose outputs it reads (their fingerprints are part of its own). */
  inputs: (config: WeaksegConfig) => string[];
  /** The splits whose data (images, labels, masks) it reads (their fingerprints are part of its own). */
  reads?: (config: WeaksegConfig) => (string | null)[];
  /** It mixes in data.extra's sources (classifier training): their data is part of its fingerprint too. */
  readsExtraSources?: boolean;
  /** The settings that change its outputs (not logging, progress or machine settings). */
  settings: (config: WeaksegConfig) => unknown;
  /** What a rerun with changed inputs deletes first, so no stale output survives. */
  outputs: (config: WeaksegConfig) => string[];
  /** Per-image masks of a split that the segmenter can train on (seg.pseudoMasks names the stage). */
  pseudoMasks?: {
    dir: (config: WeaksegConfig, split: string) => string;
    /** What they are, for errors ("the seeds of eval.split ..."). */
    describe: (config: WeaksegConfig, split: string) => string;
  };
  /** Its trainer's JSON-lines log, for the report's loss curves. */
  trainLog?: (config: WeaksegConfig) => string;
  run: (config: WeaksegConfig, hooks: StageHooks) => Promise<unknown>;
  /** Rerun whenever another stage ran (cheap, and it summarises everything else). */
  always?: boolean;
  /** Whether it is in run.stages when the config does not list them (default: always); false where it lacks its input. */
  runsByDefault?: (config: WeaksegConfig) => boolean;
  /**
   * It splits its work over the ranks of a distributed run (data-parallel training, per-image inference); the
   * other stages run on rank 0 while the others wait.
   */
  distributed?: boolean;
}

/** A hash of a folder's file names, sizes and times (null: no folder), for a stage that reads user files outside the data. */
function folderStamp(dir: string | null): string | null {
  if (dir === null || !existsSync(dir)) return null;
  const hash = createHash('sha256');
  for (const name of readdirSync(dir).sort()) {
    const st = statSync(join(dir, name));
    hash.update(JSON.stringify([name, st.size, st.mtimeMs]));
  }
  return hash.digest('hex').slice(0, 16);
}

/** The method's settings that only the CAM stage reads and that are set (`{ method: {...} }`), or nothing. */
function inferenceSettingsOf(c: WeaksegConfig): { method?: Record<string, unknown> } {
  const set = inferenceSettingKeys(c.method.name).filter((k) => c.method[k] !== undefined);
  return set.length ? { method: Object.fromEntries(set.map((k) => [k, c.method[k]])) } : {};
}

function omit<T extends object>(o: T, keys: readonly (keyof T)[]): Partial<T> {
  const out: Partial<T> = { ...o };
  for (const k of keys) delete out[k];
  return out;
}

/** The splits that need CAMs: the scored split, the threshold's fit split, and the training split for refinement. */
export function camSplits(config: WeaksegConfig): string[] {
  const stages = new Set(config.run.stages);
  const needsTrainSplit = stages.has('affinity') || stages.has('random-walk') || stages.has('irn') || stages.has('irn-walk') ||
    stages.has('saliency') ||
    (stages.has('seg-train') && (!['random-walk', 'groundTruth'].includes(config.seg.pseudoMasks) || config.seg.ignoreBand !== null));
  const wanted = [...config.cams.splits, config.eval.split, config.eval.fitSplit, needsTrainSplit ? config.data.trainSplit : null];
  return [...new Set(wanted.filter((s): s is string => Boolean(s)))];
}

const STAGES: Stage[] = [
  {
    name: 'train', title: 'Classifier', section: 'train', options: ['model', 'train', 'resume'],
    description: 'train the classifier of a method from image-level tags (per-epoch checkpoints; --resume continues)',
    inputs: () => [],
    reads: (c) => [c.data.trainSplit],
    readsExtraSources: true,
    // data.extra only when there is any, so that runs from before it keep their fingerprints.
    settings: (c) => ({
      data: { ...omit(c.data, ['onBadFile', 'maxSkippedFraction', 'extra']), ...(c.data.extra.length ? { extra: c.data.extra } : {}) },
      model: c.model, method: omit(c.method, inferenceSettingKeys(c.method.name)), train: c.train,
    }),
    outputs: (c) => [runPaths(c).checkpoints, runPaths(c).model, runPaths(c).trainLog, runPaths(c).trainJsonLog],
    trainLog: (c) => runPaths(c).trainJsonLog,
    run: async (c, h) => (await import('./train.js')).trainClassifier(c, h),
    distributed: true,
  },
  {
    name: 'cams', title: 'CAMs', section: 'cams', options: ['model', 'cams', 'resume'],
    description: 'make multi-scale + flip CAMs of every image of the chosen splits (one safetensors file per image)',
    inputs: () => ['train'],
    reads: (c) => camSplits(c),
    // The method's inference settings only where any is set, so that runs from before them keep their fingerprints.
    settings: (c) => ({ ...omit(c.cams, ['splits']), splits: camSplits(c), ...inferenceSettingsOf(c) }),
    outputs: (c) => [join(runPaths(c).root, 'cams')],
    run: async (c, h) => (await import('./cams.js')).makeCams({ ...c, cams: { ...c.cams, splits: camSplits(c) } }, h),
    distributed: true,
  },
  {
    name: 'eval', title: 'Seeds', section: 'eval', options: ['eval'],
    description: 'score CAM seeds against ground truth: mIoU, per-class IoU, precision, recall, threshold curve',
    inputs: () => ['cams'],
    reads: (c) => [c.eval.split, c.eval.fitSplit],
    settings: (c) => c.eval,
    outputs: (c) => [join(runPaths(c).root, 'seeds')],
    pseudoMasks: {
      dir: (c, split) => runPaths(c).seeds(split),
      describe: (c, split) => `the seeds the 'eval' stage writes of eval.split (now '${c.eval.split}'; it must be '${split}')`,
    },
    run: async (c, h) => (await import('./evaluate.js')).evaluateSeeds(c, h),
  },
  {
    name: 'crf', title: 'Seeds + dense CRF', section: 'refine.crf', options: ['refine', 'resume'],
    description: 'refine the seeds with a dense CRF (threshold swept through the CRF on eval.fitSplit), and score them',
    inputs: () => ['eval'],
    reads: (c) => [c.eval.split, c.eval.fitSplit],
    settings: (c) => c.refine.crf,
    outputs: (c) => [join(runPaths(c).root, 'crf')],
    pseudoMasks: { dir: (c, split) => runPaths(c).crf(split), describe: () => "the 'crf' stage's masks (dense CRF on the seeds)" },
    run: async (c, h) => (await import('./crf.js')).crfSeeds(c, h),
    distributed: true,
  },
  {
    name: 'affinity', title: 'AffinityNet', section: 'refine.affinity', options: ['refine', 'resume'],
    description: "make affinity labels from CRF'd CAMs (la/ha exponents from the CRF threshold) and train the AffinityNet on them",
    // With refine.alphas 'fromThreshold' the labels' exponents come from the crf stage's threshold.
    inputs: (c) => (c.refine.alphas === 'fromThreshold' ? ['cams', 'crf'] : ['cams']),
    reads: (c) => [c.data.trainSplit],
    settings: (c) => ({
      trainSplit: c.data.trainSplit, crf: omit(c.refine.crf, ['threshold', 'thresholds']), alphas: c.refine.alphas,
      alphaLow: c.refine.alphaLow, alphaHigh: c.refine.alphaHigh, affinity: c.refine.affinity,
    }),
    outputs: (c) => [join(runPaths(c).root, 'affinity')],
    trainLog: (c) => runPaths(c).affinity.trainJsonLog,
    run: async (c, h) => (await import('./affinity.js')).trainAffinity(c, h), // makes its labels first
  },
  {
    name: 'random-walk', title: 'Random walk', section: 'refine.randomWalk', options: ['refine', 'resume'],
    description: "propagate CAMs with the AffinityNet's random walk into pseudo-masks (background exponent chosen on eval.fitSplit), and score them",
    inputs: () => ['cams', 'affinity'],
    reads: (c) => [c.eval.split, c.eval.fitSplit, c.data.trainSplit],
    settings: (c) => ({
      randomWalk: c.refine.randomWalk, split: c.eval.split, fitSplit: c.eval.fitSplit, trainSplit: c.data.trainSplit,
      ...(c.refine.randomWalk.crf ? { crfReferenceSize: c.refine.crf.referenceSize, crfWorkingSize: c.refine.crf.workingSize } : {}),
    }),
    outputs: (c) => [join(runPaths(c).root, 'pseudo')],
    pseudoMasks: {
      dir: (c, split) => runPaths(c).pseudo(split),
      describe: () => "the 'random-walk' stage's masks (random-walk refinement of the CAMs)",
    },
    run: async (c, h) => (await import('./random-walk.js')).randomWalkMasks(c, h),
    distributed: true,
  },
  {
    name: 'irn', title: 'IRNet', section: 'refine.irn', options: ['refine', 'resume'],
    description: "make IRN's inter-pixel relation labels from the CAMs (confFg/confBg) and train IRNet's boundary and displacement branches on them",
    inputs: () => ['cams'],
    reads: (c) => [c.data.trainSplit],
    settings: (c) => ({ trainSplit: c.data.trainSplit, irn: omit(c.refine.irn, ['walk']), crfReferenceSize: c.refine.crf.referenceSize,
      crfWorkingSize: c.refine.crf.workingSize, backbone: c.model }),
    outputs: (c) => [join(runPaths(c).root, 'irn')],
    trainLog: (c) => runPaths(c).irn.trainJsonLog,
    run: async (c, h) => (await import('./irn.js')).trainIrn(c, h),
  },
  {
    name: 'irn-walk', title: 'IRN walk', section: 'refine.irn.walk', options: ['refine', 'resume'],
    description: "propagate CAMs by the random walk on IRNet's boundary-derived affinities into pseudo-masks (background score chosen on eval.fitSplit), and score them",
    inputs: () => ['cams', 'irn'],
    reads: (c) => [c.eval.split, c.eval.fitSplit, c.data.trainSplit],
    settings: (c) => ({ walk: c.refine.irn.walk, split: c.eval.split, fitSplit: c.eval.fitSplit, trainSplit: c.data.trainSplit }),
    outputs: (c) => [join(runPaths(c).root, 'irn', 'pseudo')],
    pseudoMasks: { dir: (c, split) => runPaths(c).irn.pseudo(split), describe: () => "the 'irn-walk' stage's masks (IRN's random walk on the CAMs)" },
    run: async (c, h) => (await import('./irn.js')).irnWalkMasks(c, h),
    distributed: true,
  },
  {
    name: 'saliency', title: 'Saliency pseudo-masks', section: 'refine.saliency', options: ['refine', 'resume'],
    description: "pseudo-masks from the CAMs and the user's saliency maps (refine.saliency.dir) by MCIS's gen_gt.py rules, and score them",
    inputs: () => ['cams'],
    reads: (c) => [c.eval.split, c.data.trainSplit],
    // The maps are the user's files: their names, sizes and times are part of the fingerprint, as a split's images are.
    settings: (c) => ({ saliency: c.refine.saliency, maps: folderStamp(c.refine.saliency.dir), split: c.eval.split, trainSplit: c.data.trainSplit }),
    outputs: (c) => [join(runPaths(c).root, 'saliency')],
    pseudoMasks: {
      dir: (c, split) => runPaths(c).saliency(split),
      describe: () => "the 'saliency' stage's masks (gen_gt.py's rules on the CAMs and refine.saliency.dir's maps)",
    },
    run: async (c, h) => (await import('./saliency.js')).saliencyMasks(c, h),
    runsByDefault: (c) => c.refine.saliency.dir !== null,
  },
  {
    name: 'seg-train', title: 'Segmentation net training', section: 'seg', options: ['seg', 'resume'],
    description: 'train a DeepLab segmentation network on the pseudo-masks of the training split',
    inputs: (c) => [
      ...(c.seg.pseudoMasks === 'groundTruth' ? [] : [c.seg.pseudoMasks]),
      ...(c.seg.backboneInit === 'classifier' ? ['train'] : []),
      ...(c.seg.ignoreBand ? ['cams'] : []),
    ],
    reads: (c) => [c.data.trainSplit],
    settings: (c) => ({
      ...omit(c.seg, ['evalSplit', 'scales', 'testFlip', 'crf', 'workingSize']), backbone: c.seg.backbone ?? c.model.backbone,
      weights: c.seg.weights ?? c.model.weights, trainSplit: c.data.trainSplit,
    }),
    outputs: (c) => [runPaths(c).seg.checkpoints, runPaths(c).seg.model, runPaths(c).seg.trainLog, runPaths(c).seg.trainJsonLog, join(runPaths(c).root, 'seg', 'targets')],
    trainLog: (c) => runPaths(c).seg.trainJsonLog,
    run: async (c, h) => (await import('./segment.js')).trainSegmenter(c, h),
    distributed: true,
  },
  {
    name: 'seg-eval', title: 'Segmentation net', section: 'seg', options: ['seg', 'resume'],
    description: 'predict and score the segmentation network on a held-out split (multi-scale + flip, optional CRF)',
    inputs: () => ['seg-train'],
    reads: (c) => [c.seg.evalSplit],
    settings: (c) => ({
      split: c.seg.evalSplit, scales: c.seg.scales, flip: c.seg.testFlip, crf: c.seg.crf, workingSize: c.seg.workingSize,
      crfReferenceSize: c.seg.crf ? c.refine.crf.referenceSize : null, crfWorkingSize: c.seg.crf ? c.refine.crf.workingSize : null,
    }),
    outputs: (c) => [join(runPaths(c).root, 'seg', 'pred')],
    run: async (c, h) => (await import('./segment.js')).evaluateSegmenter(c, h),
    distributed: true,
  },
  {
    name: 'report', title: 'Report', section: 'run', options: [],
    description: "write the run's HTML report (report/index.html): scores, curves, per-class IoU, image gallery",
    inputs: () => [],
    reads: () => [],
    settings: (c) => [c.run.galleryImages, c.run.ceiling],
    outputs: () => [],
    run: async (c, h) => (await import('./report.js')).writeReport(c, h),
    always: true,
  },
];

/** "randomWalk" -> "random-walk". */
export function kebabCase(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();
}

/** Adds a stage to the registry, at the end or before the stage `before`. */
export function registerStage(stage: Stage, options: { before?: string } = {}): void {
  if (!/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/.test(stage.name)) {
    throw new Error(`stage name '${stage.name}' is not kebab-case (e.g. '${kebabCase(stage.name)}')`);
  }
  if (findStage(stage.name)) throw new Error(`stage '${stage.name}' is already registered`);
  const at = options.before === undefined ? STAGES.length : STAGES.findIndex((s) => s.name === options.before);
  if (at < 0) throw new Error(`registerStage: no stage '${options.before}' to insert '${stage.name}' before`);
  STAGES.splice(at, 0, stage);
}

/** The registered stages in pipeline order. */
export function stages(): readonly Stage[] {
  return STAGES;
}

export function stageNames(): string[] {
  return STAGES.map((s) => s.name);
}

export function findStage(name: string): Stage | undefined {
  return STAGES.find((s) => s.name === name);
}

/** The stage of a name; an unknown one is an error listing the stages (and the kebab-case spelling of a camelCase one). */
export function stageNamed(name: string, where = 'stage'): Stage {
  const stage = findStage(name);
  if (stage) return stage;
  const kebab = kebabCase(name);
  const hint = kebab !== name && findStage(kebab) ? ` (stage names are kebab-case: write '${kebab}')` : '';
  throw new Error(`${where}: unknown stage '${name}'${hint}; stages: ${stageNames().join(', ')}`);
}
