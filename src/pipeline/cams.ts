// Stage 2: multi-scale + flip CAMs of every image of the chosen splits, one file per image (src/cams/format.ts).
import { existsSync } from 'node:fs';
import { emptyCache, noGrad, tidy } from '../engine/index.js';
import { BatchLoader, evalTransform } from '../data/index.js';
import { imageCams, localizeContexts } from '../cams/localize.js';
import { camPath, writeCam, writeCamIndex } from '../cams/format.js';
import { latestCheckpoint } from '../train/checkpoint.js';
import type { CamNormalization } from '../methods/method.js';
import type { WeaksegConfig } from './config.js';
import { type StageHooks, buildMethod, logger, prepareRun, readSplit, recordMetrics, skippedFilesLog } from './common.js';
import { runPaths } from './paths.js';
import { ImageShare, StageOutputs, deviceImage, inferenceModel, progress, workingShape } from './per-image.js';

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

/** AdvCAM's cost note: a two-branch method climbs each branch. */
const perBranch = (m: { localize?: unknown }) => (m.localize ? ', per branch' : '');

export async function makeCams(config: WeaksegConfig, hooksIn: StageHooks = {}): Promise<CamsSummary> {
  const paths = prepareRun(config);
  // Distributed: each rank makes the CAMs of its share of every split (ImageShare); rank 0 writes the indexes.
  const share = ImageShare.of(config, hooksIn);
  const hooks = share.hooks;
  const log = logger(hooks);
  const weights = camWeightsPath(config);
  // Blocks cached for training's activation shapes would fill the allocator's cache and make every new image
  // size allocate fresh (page-faulting) memory; start from an empty cache.
  emptyCache();
  const c = config.cams;
  const summaries: CamSplitSummary[] = [];
  // Splits overlap (VOC's train is inside train_aug): an image's CAM is made once and hard-linked elsewhere.
  const outputs = new StageOutputs(hooks.resume ?? false);
  let method: ReturnType<typeof buildMethod> | null = null;
  let normalization: CamNormalization = 'max';
  try {
    for (const split of c.splits) {
      const dataset = await readSplit(config, split);
      if (!method) {
        method = buildMethod(config, dataset.classes.length, hooks);
        inferenceModel(method.model, weights, config);
        normalization = c.normalization === 'auto' ? method.camNormalization ?? 'max' : c.normalization;
        log(`CAMs with ${weights}: scales ${c.scales.join('/')}${c.flip ? ' + flips' : ''}, ${normalization} normalisation` +
          (c.advcam ? `, AdvCAM ${c.advcam.iterations} iterations (a forward and backward pass each, per class and scale${perBranch(method)})` : ''));
      }
      const m = method;
      const dir = paths.cams(split);
      const mine = share.mine(dataset.items);
      const written = new Set(mine.filter((i) => outputs.existing(i.id, camPath(dir, i.id))).map((i) => i.id));
      const todo = { ...dataset, items: mine.filter((i) => !written.has(i.id)) };
      if (written.size) log(`CAMs ${split}: ${written.size} of ${dataset.items.length} already made (${hooks.resume ? 'resumed or ' : ''}shared with an earlier split)`);
      const bar = progress(hooks, `CAMs ${split}`, mine.length, written.size);
      let made = 0;
      const transform = evalTransform({ norm: m.backbone.inputNorm, withMask: false });
      const loader = new BatchLoader(todo, transform, {
        batchSize: 1, shuffle: false, prefetch: 4, onBadFile: config.data.onBadFile,
        badFiles: skippedFilesLog(config, split, todo.items.length),
      });
      const inference = { scales: c.scales, flip: c.flip, channelsLast: config.runtime.channelsLast, normalization, advcam: c.advcam };
      const contexts = m.localize ? localizeContexts(dataset, transform, { device: config.runtime.device, ...inference }) : null;
      for await (const batch of loader.epoch(0)) {
        hooks.signal?.throwIfAborted();
        const item = todo.items[batch.indices[0]!]!;
        const [, , h, w] = batch.shape;
        const work = workingShape(h, w, c.workingSize);
        const image = deviceImage(batch, config, work);
        try {
          const cams = await imageCams(m, image, item.labels, { ...inference, ...(contexts ? { context: contexts(item) } : {}) });
          try {
            noGrad(() => tidy(() => writeCam(dir, cams, item.labels, {
              ...(work ? { size: [h, w] as [number, number] } : {}),
              id: item.id, classes: dataset.classes, scales: c.scales, flip: c.flip, method: m.name, backbone: m.backbone.name, normalization,
            })));
          } finally {
            cams.dispose();
          }
        } finally {
          image.dispose();
        }
        written.add(item.id);
        outputs.add(item.id, camPath(dir, item.id));
        made++;
        bar.tick();
        await new Promise<void>((r) => setImmediate(r));
      }
      const seconds = bar.stop();
      // Every rank's files are written: all of them can be linked into later splits, and counted in the index.
      const ids = share.joinSplit(outputs, dataset.items, (i) => camPath(dir, i.id)).map((i) => i.id);
      if (share.isMain) {
        writeCamIndex(dir, {
          format: 'weakseg-cams/1', split, classes: dataset.classes, scales: [...c.scales], flip: c.flip, count: ids.length,
          ids, checkpoint: weights, method: m.name, backbone: m.backbone.name,
        });
      }
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
