// `weakseg run`: every stage in order, from one config, in one run directory (IRN's run_sample.py, made
// resumable). Each stage's inputs (its config section and the fingerprints of the stages it reads) are hashed
// into stages.json: a stage whose fingerprint matches a finished record is skipped, one that was interrupted
// continues where it stopped (checkpoints, per-image files), and one whose inputs changed reruns, and with it
// everything downstream (their fingerprints include its own). The stages, their order and what each reads are the
// registry's (stages.ts).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { WeaksegConfig } from './config.js';
import { type StageHooks, logger, prepareRun, writeJsonAtomic } from './common.js';
import { runPaths } from './paths.js';
import { stageNamed, stages } from './stages.js';

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

function fingerprint(stage: string, config: WeaksegConfig, records: StageRecords): string {
  const def = stageNamed(stage);
  const upstream = def.inputs(config).map((s) => [s, records[s]?.fingerprint ?? null]);
  return createHash('sha256').update(JSON.stringify({ stage, inputs: def.settings(config), upstream })).digest('hex').slice(0, 16);
}

export interface RunOptions extends StageHooks {
  /** Rerun these stages even when they are up to date (the stages after them rerun only if their inputs changed). */
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
  const log = logger(options);
  const records = readRecords(config);
  const summary: RunSummary = { runDir: paths.root, stages: [] };
  for (const name of options.force ?? []) stageNamed(name, '--force');
  const order = stages().filter((s) => config.run.stages.includes(s.name));
  for (const def of order) {
    options.signal?.throwIfAborted();
    const stage = def.name;
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
