// `weakseg demo`: the whole pipeline on a built-in synthetic dataset (src/data/synthetic.ts) whose objects are
// found by their small coloured cap, so the plain CAM misses most of each object and every refinement step has
// something to recover. Runs from scratch on a CPU in minutes, deterministic for a seed, resumable like any run.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeSyntheticDataset } from '../data/synthetic.js';
import type { MiouResult } from '../eval/index.js';
import { mergeConfig, readConfigFile, resolveConfig, type WeaksegConfig } from './config.js';
import { logger, readMetrics, type StageHooks } from './common.js';
import { runPipeline } from './run.js';

/** configs/demo.json in the package (two levels above dist/src/pipeline, or src/pipeline). */
export function demoConfigPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../../..', '../..']) {
    const p = resolve(here, up, 'configs', 'demo.json');
    if (existsSync(p)) return p;
  }
  throw new Error(`configs/demo.json not found above ${here}; is the package installed completely?`);
}

export interface DemoOptions extends StageHooks {
  /** The run directory; the dataset goes to <out>/data. */
  out: string;
  seed?: number;
  /** A minutes-long run (default) or a seconds-long smoke run ('tiny', for tests). */
  size?: 'default' | 'tiny';
  /** Extra config settings merged over the demo's (same shape as a config file). */
  overrides?: Record<string, unknown>;
}

export interface DemoResult {
  seed_miou: number | null;
  crf_miou: number | null;
  rw_miou: number | null;
  irn_miou: number | null;
  seg_miou: number | null;
  report: string | null;
}

const TINY_DATA = { train: 48, scored: 16, val: 16 };

/** Smoke-test sizes: a handful of images and steps, same stages. */
const TINY: Record<string, unknown> = {
  train: { epochs: 2, batchSize: 8 },
  cams: { scales: [1] },
  refine: { affinity: { epochs: 1, batchSize: 4 }, irn: { epochs: 1, batchSize: 4 } },
  seg: { epochs: 1, batchSize: 4, scales: [1] },
  run: { galleryImages: 3 },
};

export function demoConfig(o: DemoOptions): WeaksegConfig {
  const base = readConfigFile(demoConfigPath());
  const out = resolve(o.out);
  // The segmenter starts from the classifier's backbone (this run's model.safetensors): nothing pretrained exists
  // for tinynet, and from random weights it lost 5 points of val mIoU here. IRNet's frozen backbone is the
  // classifier's too (frozen random features would leave its branches nothing to read).
  const local = {
    runDir: out, data: { root: join(out, 'data') }, train: { seed: o.seed ?? 0 },
    seg: { weights: join(out, 'model.safetensors') }, refine: { irn: { weights: join(out, 'model.safetensors') } },
  };
  let merged = mergeConfig(base, local);
  if (o.size === 'tiny') merged = mergeConfig(merged, TINY);
  if (o.overrides) merged = mergeConfig(merged, o.overrides);
  return resolveConfig(merged, 'demo configuration');
}

const pct = (r: { result?: MiouResult } | undefined): number | null =>
  r?.result?.miou === null || r?.result?.miou === undefined ? null : Math.round(10000 * r.result.miou) / 100;

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const log = logger(o);
  const config = demoConfig(o);
  // Regenerated every time (about a second): the same seed gives the same bytes, so a resumed run sees the same data.
  const s = await makeSyntheticDataset({ root: config.data.root, seed: o.seed ?? 0, ...(o.size === 'tiny' ? TINY_DATA : {}) });
  log(`demo data: ${s.splits.train_aug} training images (${s.splits.train} of them scored), ${s.splits.val} validation ` +
    `images, ${s.size}x${s.size} px, classes ${s.classes.join(', ')}; the caps that identify the class cover ` +
    `${(100 * s.capShare).toFixed(0)} % of each object -> ${config.data.root}`);
  await runPipeline(config, o);
  const metrics = readMetrics(config) as Record<string, { result?: MiouResult; path?: string } | undefined>;
  const result: DemoResult = {
    seed_miou: pct(metrics.eval),
    crf_miou: pct(metrics.crf),
    rw_miou: pct(metrics['random-walk']),
    irn_miou: pct(metrics['irn-walk']),
    seg_miou: pct(metrics['seg-eval']),
    report: metrics.report?.path ?? null,
  };
  const f = (v: number | null) => (v === null ? '-' : `${v.toFixed(1)} %`);
  log(`demo mIoU: seeds ${f(result.seed_miou)} (${config.eval.split}) -> CRF ${f(result.crf_miou)} -> random walk ` +
    `${f(result.rw_miou)}, IRN ${f(result.irn_miou)}; segmentation network ${f(result.seg_miou)} (${config.seg.evalSplit})`);
  if (result.report) log(`report: ${result.report}`);
  return result;
}
