// What the stages share: preparing the run directory, datasets by split, building the method, metrics.json.
import { accessSync, appendFileSync, constants, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { setNumThreads } from '../engine/index.js';
import { BadFileLog, type Dataset, describeCause, readFolder, readVoc, setMaxImagePixels } from '../data/index.js';
import type { Backbone, BlockHook } from '../backbones/backbone.js';
import { createBackbone } from '../backbones/index.js';
import { type Method, type MethodContext, methodDefinition } from '../methods/index.js';
import { loadModelWeights } from '../train/checkpoint.js';
import type { WeaksegConfig } from './config.js';
import { runPaths } from './paths.js';
import { isMainProcess } from './distributed.js';
import { writeFileAtomic, writingTo } from '../io/files.js';

export interface StageHooks {
  /** Where human-readable lines go (default: stdout). */
  log?: (line: string) => void;
  /** Progress bars: 'auto' (default) shows them on a terminal. */
  progress?: boolean | 'auto';
  signal?: AbortSignal;
  /** Continue an interrupted stage: keep the outputs already written (per-image files, checkpoints). */
  resume?: boolean;
  /** Builds the backbone instead of createBackbone (tests plug in tiny networks here). */
  backboneFactory?: (config: WeaksegConfig, options?: { blocks?: BlockHook }) => Backbone;
}

export function logger(hooks: StageHooks): (line: string) => void {
  return hooks.log ?? ((line: string) => process.stdout.write(`${line}\n`));
}

/** Writes JSON to a temporary name and renames it, so an interrupted run never leaves a truncated file. */
export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, `${JSON.stringify(value, null, 2)}
`);
}

/**
 * Creates the run directory. A failure names the folder that stopped it: a recursive mkdir under a read-only
 * mount can report ENOENT for the path asked for, which says nothing about why.
 */
function makeRunDir(root: string): void {
  try {
    mkdirSync(root, { recursive: true });
  } catch (e) {
    let existing = dirname(root);
    while (!existsSync(existing) && dirname(existing) !== existing) existing = dirname(existing);
    let why = describeCause(e);
    try {
      if (!statSync(existing).isDirectory()) why = `${existing} is a file, not a folder`;
      else accessSync(existing, constants.W_OK);
    } catch (access) {
      why = `${existing} is not writable (${describeCause(access)})`;
    }
    throw new Error(`cannot create the run directory ${root}: ${why}`, { cause: e });
  }
}

/** Creates the run directory, applies engine settings and saves the resolved config. */
export function prepareRun(config: WeaksegConfig): ReturnType<typeof runPaths> {
  const paths = runPaths(config);
  makeRunDir(paths.root);
  if (config.runtime.threads) setNumThreads(config.runtime.threads);
  setMaxImagePixels(config.data.maxImagePixels);
  // Rewritten only when it changes, so a finished run on read-only media can still be checked and skipped.
  const text = `${JSON.stringify(config, null, 2)}\n`;
  if (!existsSync(paths.config) || readFileSync(paths.config, 'utf8') !== text) writeJsonAtomic(paths.config, config);
  return paths;
}

/** Merges one stage's results into metrics.json ({ train, cams, eval, ... }). */
export function recordMetrics(config: WeaksegConfig, stage: string, value: unknown): void {
  if (!isMainProcess()) return; // rank 0 writes the run's records
  let all: Record<string, unknown> = {};
  try {
    all = readMetrics(config);
  } catch {
    // An unreadable metrics.json is replaced: the stage's own results are what it has to record.
  }
  all[stage] = value;
  writeJsonAtomic(runPaths(config).metrics, all);
}

/** metrics.json as recorded so far ({} before any stage); an unreadable file is an error naming it. */
export function readMetrics(config: WeaksegConfig): Record<string, unknown> {
  const { metrics } = runPaths(config);
  if (!existsSync(metrics)) return {};
  try {
    return JSON.parse(readFileSync(metrics, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${metrics}: cannot read (${(e as Error).message})`);
  }
}

/** What a split is called in logs: its name (VOC) or the labels file (folder format, which has no splits). */
export function splitName(config: WeaksegConfig, split: string): string {
  if (split.startsWith('data.extra[')) return split; // an extra training source (extra.ts)
  return config.data.format === 'folder' ? `'${config.data.labels}'` : `'${split}'`;
}

/** "N images of 'split'" for logs, with the number skipped as bad when there were any. */
export function imageCount(config: WeaksegConfig, split: string, dataset: { items: unknown[]; skipped?: number }): string {
  const skipped = dataset.skipped ? ` (${dataset.skipped} skipped as bad: ${runPaths(config).skipped})` : '';
  return `${dataset.items.length} images of ${splitName(config, split)}${skipped}`;
}

/**
 * The log of files skipped as bad while `split` is read or loaded: each is reported on stderr once and appended
 * to the run's skipped.jsonl, and more than data.maxSkippedFraction of the split's `total` files is an error.
 */
export function skippedFilesLog(config: WeaksegConfig, split: string, total: number): BadFileLog {
  const { skipped } = runPaths(config);
  const seen = new Set<string>();
  return new BadFileLog((bad) => {
    if (seen.has(bad.path)) return; // the same file again, in a later epoch
    seen.add(bad.path);
    process.stderr.write(`weakseg: skipped ${bad.path}: ${bad.reason}\n`);
    mkdirSync(dirname(skipped), { recursive: true });
    writingTo(skipped, () => appendFileSync(skipped, `${JSON.stringify({ time: new Date().toISOString(), split, ...bad })}\n`));
    checkSkipped(config, split, seen.size, total);
  });
}

/** Throws when `skipped` of a split's `total` files exceed data.maxSkippedFraction (or leave nothing). */
function checkSkipped(config: WeaksegConfig, split: string, skipped: number, total: number): void {
  const max = config.data.maxSkippedFraction;
  if (skipped >= total || skipped > max * total) {
    throw new Error(`${skipped} of ${total} files of ${splitName(config, split)} were skipped as bad, more than ` +
      `data.maxSkippedFraction = ${max} allows; see ${runPaths(config).skipped}`);
  }
}

/**
 * The dataset of a split (VOC) or the whole folder (folder format). Labels only; masks where present. Files
 * skipped as bad go to `badFiles`, by default the run's skipped-files log (skippedFilesLog).
 */
export async function readSplit(config: WeaksegConfig, split: string, badFiles?: BadFileLog): Promise<Dataset & { skipped: number }> {
  const d = config.data;
  // Counted here, then logged and checked against the split's size once it is known.
  const log = badFiles ?? new BadFileLog(() => {});
  let read: Dataset;
  if (d.format === 'folder') {
    read = await readFolder({
      root: d.root, labels: d.labels!, masks: d.masks, onBadFile: d.onBadFile, ...(d.classes ? { classes: d.classes } : {}),
      badFiles: log,
    });
  } else {
    const opts: Parameters<typeof readVoc>[0] = { root: d.root, split, onBadFile: d.onBadFile, badFiles: log };
    if (d.labelsJson) opts.labelsJson = d.labelsJson;
    if (d.classes) opts.classes = d.classes;
    read = await readVoc(opts);
  }
  if (!badFiles) {
    const report = skippedFilesLog(config, split, read.items.length + log.count);
    for (const bad of log.entries) report.record(bad);
  }
  return { classes: read.classes, items: read.items, skipped: log.count };
}

export function buildBackbone(config: WeaksegConfig, hooks: StageHooks, options: { blocks?: BlockHook } = {}): Backbone {
  if (hooks.backboneFactory) return hooks.backboneFactory(config, options);
  const m = config.model;
  return createBackbone(m.backbone, {
    weights: m.weights,
    outputStride: m.outputStride,
    ...(m.padding ? { padding: m.padding } : {}),
    ...(m.dilate !== undefined ? { dilate: m.dilate } : {}),
    ...(options.blocks ? { blocks: options.blocks } : {}),
  });
}

/** Builds config.method through the method registry, with its settings as resolved and a context for its networks. */
export function buildMethod(config: WeaksegConfig, numClasses: number, hooks: StageHooks): Method {
  const { name, ...settings } = config.method;
  const definition = methodDefinition(name);
  const context: MethodContext = {
    numClasses,
    headLrMult: config.train.headLrMult,
    backbone: (options) => buildBackbone(config, hooks, options),
    loadModel: (into, source, options) => {
      loadModelWeights(source, into, options);
    },
  };
  return definition.build(definition.settings.parse(settings), context);
}
