// `weakseg run`: every stage in order, from one config, in one run directory (IRN's run_sample.py, made
// resumable). Each stage's inputs (its config section and the fingerprints of the stages it reads) are hashed
// into stages.json: a stage whose fingerprint matches a finished record is skipped, one that was interrupted
// continues where it stopped (checkpoints, per-image files), and one whose inputs changed reruns, and with it
// everything downstream (their fingerprints include its own).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { WeaksegConfig } from './config.js';
import { type StageHooks, logger, prepareRun, runPaths, writeJsonAtomic } from './common.js';
import { trainClassifier } from './train.js';
import { makeCams } from './cams.js';
import { evaluateSeeds } from './evaluate.js';
import { crfSeeds, randomWalkMasks, trainAffinity } from './refine.js';
import { evaluateSegmenter, trainSegmenter } from './segment.js';
import { writeReport } from './report.js';

export type StageName = WeaksegConfig['run']['stages'][number];

interface StageDef {
  /** Stages whose outputs this one reads (their fingerprints are part of its own). */
  after: (config: WeaksegConfig) => StageName[];
  /** The settings that change this stage's outputs (not logging or progress settings). */
  inputs: (config: WeaksegConfig) => unknown;
  /** What a rerun with changed inputs deletes first, so no stale output survives. */
  outputs: (config: WeaksegConfig) => string[];
  run: (config: WeaksegConfig, hooks: StageHooks) => Promise<unknown>;
  /** Always rerun (cheap, and it summarises everything else). */
  always?: boolean;
}

function omit<T extends object>(o: T, keys: (keyof T)[]): Partial<T> {
  const out: Partial<T> = { ...o };
  for (const k of keys) delete out[k];
  return out;
}

/** The splits that need CAMs: the scored split, the threshold's fit split, and the training split for refinement. */
export function camSplits(config: WeaksegConfig): string[] {
  const stages = new Set(config.run.stages);
  const needsTrainSplit = stages.has('affinity') || stages.has('randomWalk') || (stages.has('seg') && config.seg.pseudoMasks !== 'randomWalk');
  const wanted = [...config.cams.splits, config.eval.split, config.eval.fitSplit, needsTrainSplit ? config.data.trainSplit : null];
  return [...new Set(wanted.filter((s): s is string => Boolean(s)))];
}

const STAGES: Record<StageName, StageDef> = {
  train: {
    after: () => [],
    inputs: (c) => ({
      data: omit(c.data, ['onBadFile']), model: c.model, seam: c.model.method === 'seam' ? c.seam : null,
      train: omit(c.train, ['logEvery', 'prefetch', 'keepCheckpoints', 'checkpointEverySteps']),
    }),
    outputs: (c) => [runPaths(c).checkpoints, runPaths(c).model, runPaths(c).trainLog, runPaths(c).trainJsonLog],
    run: (c, h) => trainClassifier(c, h),
  },
  cams: {
    after: () => ['train'],
    inputs: (c) => ({ ...omit(c.cams, ['splits']), splits: camSplits(c) }),
    outputs: (c) => [join(runPaths(c).root, 'cams')],
    run: (c, h) => makeCams({ ...c, cams: { ...c.cams, splits: camSplits(c) } }, h),
  },
  eval: {
    after: () => ['cams'],
    inputs: (c) => c.eval,
    outputs: (c) => [join(runPaths(c).root, 'seeds')],
    run: (c, h) => evaluateSeeds(c, h),
  },
  crf: {
    after: () => ['eval'],
    inputs: (c) => c.refine.crf,
    outputs: (c) => [join(runPaths(c).root, 'crf')],
    run: (c, h) => crfSeeds(c, h),
  },
  affinity: {
    // With refine.alphas 'fromThreshold' the labels' exponents come from the crf stage's threshold.
    after: (c) => (c.refine.alphas === 'fromThreshold' ? ['cams', 'crf'] : ['cams']),
    inputs: (c) => ({
      trainSplit: c.data.trainSplit, crf: omit(c.refine.crf, ['threshold', 'thresholds']), alphas: c.refine.alphas,
      alphaLow: c.refine.alphaLow, alphaHigh: c.refine.alphaHigh, affinity: c.refine.affinity,
    }),
    outputs: (c) => [join(runPaths(c).root, 'affinity')],
    run: (c, h) => trainAffinity(c, h), // makes its labels first
  },
  randomWalk: {
    after: () => ['cams', 'affinity'],
    inputs: (c) => ({
      randomWalk: c.refine.randomWalk, split: c.eval.split, fitSplit: c.eval.fitSplit, trainSplit: c.data.trainSplit,
      ...(c.refine.randomWalk.crf ? { crfReferenceSize: c.refine.crf.referenceSize } : {}),
    }),
    outputs: (c) => [join(runPaths(c).root, 'pseudo')],
    run: (c, h) => randomWalkMasks(c, h),
  },
  seg: {
    after: (c) => [({ randomWalk: 'randomWalk', crf: 'crf', seeds: 'eval' } as const)[c.seg.pseudoMasks]],
    inputs: (c) => ({
      ...omit(c.seg, ['evalSplit', 'scales', 'testFlip', 'crf']), backbone: c.seg.backbone ?? c.model.backbone,
      weights: c.seg.weights ?? c.model.weights, trainSplit: c.data.trainSplit,
    }),
    outputs: (c) => [runPaths(c).seg.checkpoints, runPaths(c).seg.model, runPaths(c).seg.trainLog, runPaths(c).seg.trainJsonLog],
    run: (c, h) => trainSegmenter(c, h),
  },
  segEval: {
    after: () => ['seg'],
    inputs: (c) => ({
      split: c.seg.evalSplit, scales: c.seg.scales, flip: c.seg.testFlip, crf: c.seg.crf,
      crfReferenceSize: c.seg.crf ? c.refine.crf.referenceSize : null,
    }),
    outputs: (c) => [join(runPaths(c).root, 'seg', 'pred')],
    run: (c, h) => evaluateSegmenter(c, h),
  },
  report: {
    after: () => [],
    inputs: (c) => c.run.galleryImages,
    outputs: () => [],
    run: (c, h) => writeReport(c, h),
    always: true,
  },
};

export const STAGE_ORDER = Object.keys(STAGES) as StageName[];

interface StageRecord {
  fingerprint: string;
  state: 'running' | 'done';
  startedAt: string;
  finishedAt?: string;
  seconds?: number;
}
type StageRecords = Partial<Record<StageName, StageRecord>>;

function stagesPath(config: WeaksegConfig): string {
  return join(runPaths(config).root, 'stages.json');
}

function readRecords(config: WeaksegConfig): StageRecords {
  const path = stagesPath(config);
  if (!existsSync(path)) return {};
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as StageRecords;
  } catch (e) {
    throw new Error(`${path} is not valid JSON (${(e as Error).message}); delete it to rerun every stage`);
  }
}

function fingerprint(stage: StageName, config: WeaksegConfig, records: StageRecords): string {
  const def = STAGES[stage];
  const upstream = def.after(config).map((s) => [s, records[s]?.fingerprint ?? null]);
  return createHash('sha256').update(JSON.stringify({ stage, inputs: def.inputs(config), upstream })).digest('hex').slice(0, 16);
}

export interface RunOptions extends StageHooks {
  /** Rerun these stages even when they are up to date (the stages after them rerun only if their inputs changed). */
  force?: StageName[];
}

export interface RunSummary {
  runDir: string;
  /** What happened to each stage of config.run.stages. */
  stages: { stage: StageName; action: 'ran' | 'resumed' | 'skipped'; seconds: number }[];
}

/** Runs config.run.stages in order, skipping the ones that are up to date; see the header comment. */
export async function runPipeline(config: WeaksegConfig, options: RunOptions = {}): Promise<RunSummary> {
  const paths = prepareRun(config);
  const log = logger(options);
  const records = readRecords(config);
  const summary: RunSummary = { runDir: paths.root, stages: [] };
  const order = STAGE_ORDER.filter((s) => config.run.stages.includes(s));
  for (const stage of order) {
    options.signal?.throwIfAborted();
    const def = STAGES[stage];
    const fp = fingerprint(stage, config, records);
    const previous = records[stage];
    const sameInputs = previous?.fingerprint === fp;
    if (sameInputs && previous.state === 'done' && !def.always && !options.force?.includes(stage)) {
      log(`== ${stage}: up to date, skipped`);
      summary.stages.push({ stage, action: 'skipped', seconds: 0 });
      continue;
    }
    const resume = sameInputs && previous.state === 'running';
    if (!resume) {
      if (previous) log(`== ${stage}: ${sameInputs ? 'rerun requested' : 'inputs changed'}; its earlier outputs are removed`);
      for (const p of def.outputs(config)) rmSync(p, { recursive: true, force: true });
    }
    log(`== ${stage}${resume ? ': resuming where it stopped' : ''}`);
    records[stage] = { fingerprint: fp, state: 'running', startedAt: new Date().toISOString() };
    writeJsonAtomic(stagesPath(config), records);
    const t0 = performance.now();
    await def.run(config, { ...options, resume });
    const seconds = (performance.now() - t0) / 1000;
    records[stage] = { ...records[stage]!, state: 'done', finishedAt: new Date().toISOString(), seconds };
    writeJsonAtomic(stagesPath(config), records);
    summary.stages.push({ stage, action: resume ? 'resumed' : 'ran', seconds });
  }
  return summary;
}
