// What the stages share: preparing the run directory, datasets by split, building the method, metrics.json.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { setNumThreads } from '../engine/index.js';
import { type BadFileLog, type Dataset, readFolder, readVoc } from '../data/index.js';
import type { Backbone } from '../backbones/backbone.js';
import { createBackbone } from '../backbones/index.js';
import { CamMethod } from '../methods/cam.js';
import { SEAM_PAPER, SeamMethod } from '../methods/seam.js';
import type { Method } from '../methods/method.js';
import type { WeaksegConfig } from './config.js';
import { runPaths } from './paths.js';

export interface StageHooks {
  /** Where human-readable lines go (default: stdout). */
  log?: (line: string) => void;
  /** Progress bars: 'auto' (default) shows them on a terminal. */
  progress?: boolean | 'auto';
  signal?: AbortSignal;
  /** Continue an interrupted stage: keep the outputs already written (per-image files, checkpoints). */
  resume?: boolean;
  /** Builds the backbone instead of createBackbone (tests plug in tiny networks here). */
  backboneFactory?: (config: WeaksegConfig) => Backbone;
}

export function logger(hooks: StageHooks): (line: string) => void {
  return hooks.log ?? ((line: string) => process.stdout.write(`${line}\n`));
}

/** Writes JSON to a temporary name and renames it, so an interrupted run never leaves a truncated file. */
export function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, path);
}

/** Creates the run directory, applies engine settings and saves the resolved config. */
export function prepareRun(config: WeaksegConfig): ReturnType<typeof runPaths> {
  const paths = runPaths(config);
  mkdirSync(paths.root, { recursive: true });
  if (config.runtime.threads) setNumThreads(config.runtime.threads);
  writeJsonAtomic(paths.config, config);
  return paths;
}

/** Merges one stage's results into metrics.json ({ train, cams, eval, ... }). */
export function recordMetrics(config: WeaksegConfig, stage: string, value: unknown): void {
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

/** The dataset of a split (VOC) or the whole folder (folder format). Labels only; masks where present. */
export async function readSplit(config: WeaksegConfig, split: string, badFiles?: BadFileLog): Promise<Dataset> {
  const d = config.data;
  if (d.format === 'folder') {
    return readFolder({
      root: d.root, labels: d.labels!, masks: d.masks, onBadFile: d.onBadFile, ...(d.classes ? { classes: d.classes } : {}),
      ...(badFiles ? { badFiles } : {}),
    });
  }
  const opts: Parameters<typeof readVoc>[0] = { root: d.root, split, onBadFile: d.onBadFile, ...(badFiles ? { badFiles } : {}) };
  if (d.labelsJson) opts.labelsJson = d.labelsJson;
  if (d.classes) opts.classes = d.classes;
  return readVoc(opts);
}

export function buildBackbone(config: WeaksegConfig, hooks: StageHooks): Backbone {
  if (hooks.backboneFactory) return hooks.backboneFactory(config);
  const m = config.model;
  return createBackbone(m.backbone, {
    weights: m.weights,
    outputStride: m.outputStride,
    ...(m.padding ? { padding: m.padding } : {}),
  });
}

/** SEAM's PCM taps: ResNet-38's conv4/conv5 as in the code; the reference run's features.6/.13 on MobileNetV2. */
function defaultPcmTaps(backbone: Backbone): [string, string] {
  const byName: Record<string, [string, string]> = {
    resnet38: ['conv4', 'conv5'],
    mobilenet_v2: ['features.6', 'features.13'],
    resnet50: ['layer2', 'layer3'],
    resnet101: ['layer2', 'layer3'],
  };
  const taps = byName[backbone.name];
  if (!taps) throw new Error(`SEAM: no default PCM taps for backbone '${backbone.name}'; set seam.pcmTaps`);
  return taps;
}

export function buildMethod(config: WeaksegConfig, numClasses: number, hooks: StageHooks): Method {
  const backbone = buildBackbone(config, hooks);
  switch (config.model.method) {
    case 'cam':
      return new CamMethod(backbone, { numClasses, headLrMult: config.train.headLrMult });
    case 'seam': {
      const s = config.seam;
      return new SeamMethod(backbone, {
        numClasses,
        pcmTaps: s.pcmTaps ?? defaultPcmTaps(backbone),
        transform: s.transform,
        scaleFactor: s.scaleFactor,
        erLoss: s.erLoss,
        dropout: s.dropout,
        headLrMult: config.train.headLrMult,
        ...(s.variant === 'paper' ? SEAM_PAPER : {}),
      });
    }
    default:
      throw new Error(`unknown method '${String(config.model.method)}'`);
  }
}
