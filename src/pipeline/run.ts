// `weakseg run`: every stage in order, from one config, in one run directory (IRN's run_sample.py, made
// resumable). Each stage's inputs (its config section, the data of the splits it reads, and the fingerprints and
// outputs of the stages it reads) are hashed into stages.json: a stage whose fingerprint matches a finished record
// is skipped, one that was interrupted continues where it stopped (checkpoints, per-image files), and one whose
// inputs changed reruns, and with it everything downstream (their fingerprints include its own). A rerun removes
// only what the stage wrote (manifest.ts). The stages, their order and what each reads are the registry's
// (stages.ts).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { WeaksegConfig } from './config.js';
import { type StageHooks, logger, prepareRun, writeJsonAtomic } from './common.js';
import { runPaths } from './paths.js';
import { stageNamed, stages } from './stages.js';
import { type Manifest, readManifest, recordStageOutputs, removeStageOutputs } from './manifest.js';
import { ContentDigests, type ItemKey, dataFingerprints, extraSourcesFingerprint, legacyItemKey } from './fingerprint.js';
import { alone, fromMain, worldGroup } from './distributed.js';

// How long the other ranks wait for rank 0 to finish a stage it runs alone (a lost rank 0 fails them at once).
const STAGE_WAIT_MS = 7 * 24 * 3600 * 1000;
const ACTIONS = ['skipped', 'ran', 'resumed'] as const;

interface StageRecord {
  fingerprint: string;
  state: 'running' | 'done';
  startedAt: string;
  finishedAt?: string;
  seconds?: number;
}
type StageRecords = Partial<Record<string, StageRecord>>;

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

async function fingerprint(
  stage: string, config: WeaksegConfig, records: StageRecords, manifest: Manifest,
  data: (splits: readonly string[]) => Promise<Record<string, string>>, key: ItemKey,
): Promise<string> {
  const def = stageNamed(stage);
  // An upstream stage's outputs as written (a forced rerun keeps its fingerprint but changes its files).
  const upstream = def.inputs(config).map((s) => [s, records[s]?.fingerprint ?? null, manifest[s]?.digest ?? null]);
  const splits = await data((def.reads?.(config) ?? []).filter((s): s is string => Boolean(s)));
  const extra = def.readsExtraSources && config.data.extra.length ? await extraSourcesFingerprint(config, key) : undefined;
  return createHash('sha256').update(JSON.stringify({ stage, inputs: def.settings(config), upstream, splits, extra })).digest('hex').slice(0, 16);
}

export interface RunOptions extends StageHooks {
  /** Rerun these stages, and every stage after them, even when they are up to date. */
  force?: string[];
}

export interface RunSummary {
  runDir: string;
  /** What happened to each stage of config.run.stages. */
  stages: { stage: string; action: 'ran' | 'resumed' | 'skipped'; seconds: number }[];
}

/** Runs config.run.stages in order, skipping the ones that are up to date; see the header comment. */
export async function runPipeline(config: WeaksegConfig, options: RunOptions = {}): Promise<RunSummary> {
  const paths = prepareRun(config);
  // Distributed: rank 0 decides and records; the ranks run a distributed stage together, any other on rank 0 alone.
  const group = worldGroup(config);
  if (group && group.rank !== 0) return followMain(config, options, group);
  const decide = (action: (typeof ACTIONS)[number]) => { if (group) fromMain(group, [ACTIONS.indexOf(action)]); };
  const log = logger(options);
  const records = readRecords(config);
  const summary: RunSummary = { runDir: paths.root, stages: [] };
  for (const name of options.force ?? []) stageNamed(name, '--force');
  const all = stages();
  const firstForced = Math.min(...(options.force ?? []).map((s) => all.findIndex((d) => d.name === s)));
  const order = all.filter((s) => config.run.stages.includes(s.name));
  const digests = new ContentDigests(join(paths.root, 'data-digests.json'));
  const data = dataFingerprints(config, digests.itemKey);
  // Records written before content digests, as they were read: a stage's old fingerprint holds its upstream's old ones.
  const before: StageRecords = JSON.parse(JSON.stringify(records));
  let legacyData: ReturnType<typeof dataFingerprints> | undefined;
  for (const def of order) {
    options.signal?.throwIfAborted();
    const stage = def.name;
    const manifest = readManifest(paths.root);
    const fp = await fingerprint(stage, config, records, manifest, data, digests.itemKey);
    digests.save();
    // A record made before content digests stands while its data is untouched (same sizes and times) and nothing
    // before it ran in this call; it is rewritten with the new fingerprint.
    const old = records[stage];
    if (old && old.fingerprint !== fp && summary.stages.every((s) => s.action === 'skipped')) {
      legacyData ??= dataFingerprints(config, legacyItemKey);
      if (old.fingerprint === await fingerprint(stage, config, before, manifest, legacyData, legacyItemKey)) {
        records[stage] = { ...old, fingerprint: fp };
        writeJsonAtomic(stagesPath(config), records);
      }
    }
    const previous = records[stage];
    const sameInputs = previous?.fingerprint === fp;
    const forced = all.indexOf(def) >= firstForced;
    // A stage marked `always` reruns whenever another stage ran: with nothing new a finished run writes nothing.
    const stale = def.always && summary.stages.some((s) => s.action !== 'skipped');
    if (sameInputs && previous.state === 'done' && !stale && !forced) {
      log(`== ${stage}: up to date, skipped`);
      decide('skipped');
      summary.stages.push({ stage, action: 'skipped', seconds: 0 });
      continue;
    }
    const resume = sameInputs && previous.state === 'running' && !forced;
    if (!resume) {
      if (previous) log(`== ${stage}: ${sameInputs ? 'rerun requested' : 'inputs changed'}; its earlier outputs are removed`);
      // Files of an interrupted run, or of a run from before manifests, are known by their time.
      const since = previous && (previous.state === 'running' || !manifest[stage]) ? Date.parse(previous.startedAt) : null;
      removeStageOutputs(paths.root, stage, def.outputs(config), since);
    }
    log(`== ${stage}${resume ? ': resuming where it stopped' : ''}`);
    records[stage] = { fingerprint: fp, state: 'running', startedAt: new Date().toISOString() };
    writeJsonAtomic(stagesPath(config), records);
    const t0 = performance.now();
    decide(resume ? 'resumed' : 'ran');
    if (!group || def.distributed) await def.run(config, { ...options, resume });
    else await alone(() => def.run(config, { ...options, resume }));
    group?.barrier(STAGE_WAIT_MS);
    const seconds = (performance.now() - t0) / 1000;
    recordStageOutputs(paths.root, stage, def.outputs(config));
    records[stage] = { ...records[stage]!, state: 'done', finishedAt: new Date().toISOString(), seconds };
    writeJsonAtomic(stagesPath(config), records);
    summary.stages.push({ stage, action: resume ? 'resumed' : 'ran', seconds });
  }
  return summary;
}

/** A rank other than 0 in a distributed run: the stages rank 0 runs, joined where they are distributed. */
async function followMain(config: WeaksegConfig, options: RunOptions, group: NonNullable<ReturnType<typeof worldGroup>>): Promise<RunSummary> {
  const summary: RunSummary = { runDir: runPaths(config).root, stages: [] };
  const quiet = { ...options, log: () => {}, progress: false as const };
  for (const def of stages().filter((s) => config.run.stages.includes(s.name))) {
    const action = ACTIONS[fromMain(group, [0])[0]!]!;
    if (action !== 'skipped') {
      const t0 = performance.now();
      if (def.distributed) await def.run(config, { ...quiet, resume: action === 'resumed' });
      group.barrier(STAGE_WAIT_MS);
      summary.stages.push({ stage: def.name, action, seconds: (performance.now() - t0) / 1000 });
    } else {
      summary.stages.push({ stage: def.name, action, seconds: 0 });
    }
  }
  return summary;
}
