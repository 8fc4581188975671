// Stage 2: multi-scale + flip CAMs of every image of the chosen splits, one file per image (src/cams/format.ts).
import { existsSync, linkSync, mkdirSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import cliProgress from 'cli-progress';
import { type Tensor, emptyCache, noGrad, tensor, tidy } from '../engine/index.js';
import { BatchLoader, evalTransform } from '../data/index.js';
import { multiScaleCam } from '../cams/infer.js';
import { camPath, writeCam, writeCamIndex } from '../cams/format.js';
import { latestCheckpoint, loadModelWeights } from '../train/checkpoint.js';
import type { CamNormalization } from '../methods/method.js';
import type { WeaksegConfig } from './config.js';
import { type StageHooks, buildMethod, logger, prepareRun, readSplit, recordMetrics, runPaths } from './common.js';

export interface CamSplitSummary {
  split: string;
  dir: string;
  images: number;
  seconds: number;
  msPerImage: number;
}

export interface CamsSummary {
  checkpoint: string;
  splits: CamSplitSummary[];
}

/** The weights the CAM stage uses: cams.checkpoint, else the run's model.safetensors, else its newest checkpoint. */
export function camWeightsPath(config: WeaksegConfig): string {
  const paths = runPaths(config);
  const path = config.cams.checkpoint ?? (existsSync(paths.model) ? paths.model : latestCheckpoint(paths.checkpoints));
  if (!path) throw new Error(`${paths.root} has no trained model (model.safetensors or checkpoints/); run \`weakseg train\` first or set cams.checkpoint`);
  return path;
}

export async function makeCams(config: WeaksegConfig, hooks: StageHooks = {}): Promise<CamsSummary> {
  const paths = prepareRun(config);
  const log = logger(hooks);
  const weights = camWeightsPath(config);
  // Blocks cached for training's activation shapes would fill the allocator's cache and make every new image
  // size allocate fresh (page-faulting) memory; start from an empty cache.
  emptyCache();
  const c = config.cams;
  const summaries: CamSplitSummary[] = [];
  // Splits overlap (VOC's train is inside train_aug): an image's CAM is made once and hard-linked elsewhere.
  const madeThisRun = new Map<string, string>();
  let method: ReturnType<typeof buildMethod> | null = null;
  let normalization: CamNormalization = 'max';
  try {
    for (const split of c.splits) {
      const dataset = await readSplit(config, split);
      if (!method) {
        method = buildMethod(config, dataset.classes.length, hooks);
        loadModelWeights(weights, method.model);
        if (config.device !== 'cpu' || config.model.channelsLast) {
          method.model.to({ device: config.device, memoryFormat: config.model.channelsLast ? 'channels_last' : undefined });
        }
        method.model.eval();
        normalization = c.normalization === 'auto' ? method.camNormalization ?? 'max' : c.normalization;
        log(`CAMs with ${weights}: scales ${c.scales.join('/')}${c.flip ? ' + flips' : ''}, ${normalization} normalisation`);
      }
      const m = method;
      const dir = paths.cams(split);
      const useBar = (hooks.progress ?? 'auto') === 'auto' ? Boolean(process.stderr.isTTY) : Boolean(hooks.progress);
      const bar = useBar
        ? new cliProgress.SingleBar({ format: `CAMs ${split} |{bar}| {value}/{total} | {rate} img/s | ETA {eta_formatted}`, hideCursor: true, clearOnComplete: true, fps: 4 }, cliProgress.Presets.shades_classic)
        : null;
      const t0 = performance.now();
      // Resuming keeps the CAM files already written (each is written atomically, so a file is complete).
      for (const item of dataset.items) {
        const made = madeThisRun.get(item.id);
        const target = camPath(dir, item.id);
        if (made && made !== target) {
          mkdirSync(dirname(target), { recursive: true });
          rmSync(target, { force: true });
          linkSync(made, target);
        }
      }
      const written = new Set(dataset.items.filter((i) => (hooks.resume || madeThisRun.has(i.id)) && existsSync(camPath(dir, i.id))).map((i) => i.id));
      const todo = written.size ? { ...dataset, items: dataset.items.filter((i) => !written.has(i.id)) } : dataset;
      if (written.size) log(`CAMs ${split}: ${written.size} of ${dataset.items.length} already made (${hooks.resume ? 'resumed or ' : ''}shared with an earlier split)`);
      bar?.start(dataset.items.length, written.size, { rate: '-' });
      let made = 0;
      const loader = new BatchLoader(todo, evalTransform({ norm: m.backbone.inputNorm, withMask: false }), {
        batchSize: 1, shuffle: false, prefetch: 4, onBadFile: config.data.onBadFile,
      });
      for await (const batch of loader.epoch(0)) {
        hooks.signal?.throwIfAborted();
        const item = todo.items[batch.indices[0]!]!;
        noGrad(() => tidy(() => {
          const [, ch, h, w] = batch.shape;
          let image: Tensor = tensor(batch.images, { shape: [1, ch, h, w] });
          if (config.device !== 'cpu') image = image.to({ device: config.device });
          const cams = multiScaleCam(m, image, item.labels, { scales: c.scales, flip: c.flip, channelsLast: config.model.channelsLast, normalization });
          writeCam(dir, cams, item.labels, {
            id: item.id, classes: dataset.classes, scales: c.scales, flip: c.flip, method: m.name, backbone: m.backbone.name, normalization,
          });
        }));
        written.add(item.id);
        madeThisRun.set(item.id, camPath(dir, item.id));
        made++;
        const rate = made / ((performance.now() - t0) / 1000);
        bar?.update(written.size, { rate: rate.toFixed(2) });
        if (!bar && (written.size % 50 === 0 || written.size === dataset.items.length)) {
          log(`CAMs ${split}: ${written.size}/${dataset.items.length} (${rate.toFixed(2)} img/s)`);
        }
        await new Promise<void>((r) => setImmediate(r));
      }
      bar?.stop();
      const seconds = (performance.now() - t0) / 1000;
      const ids = dataset.items.map((i) => i.id).filter((id) => written.has(id));
      writeCamIndex(dir, {
        format: 'weakseg-cams/1', split, classes: dataset.classes, scales: [...c.scales], flip: c.flip, count: ids.length,
        ids, checkpoint: weights, method: m.name, backbone: m.backbone.name,
      });
      summaries.push({ split, dir, images: ids.length, seconds, msPerImage: made ? (1000 * seconds) / made : 0 });
      log(`CAMs ${split}: ${ids.length} images in ${seconds.toFixed(1)} s -> ${dir}`);
    }
  } finally {
    method?.model.dispose();
  }
  const summary: CamsSummary = { checkpoint: weights, splits: summaries };
  recordMetrics(config, 'cams', summary);
  return summary;
}
