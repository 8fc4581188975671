// What bench:amr adds to bench/cam.ts's protocol: the spotlight of each seed (bench:cam's model of that seed), each
// branch's own seed mIoU (the fused CAM with the other branch's weight 0, from the same trained model), AdvCAM's
// figures on a stated subset of train (plain and AdvCAM maps of the same images at the seed's val-chosen t, with
// AdvCAM's images/s), and --quick's small copy of voc-mini (symlinks, a handful of images per split).
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { tensor } from '../src/engine/index.js';
import { ConfusionMatrix, type MiouResult, camsToSeeds, withBackground } from '../src/eval/index.js';
import { Rng, readMask } from '../src/data/index.js';
import { evalTransform } from '../src/data/transforms.js';
import { imageCams, localizeContexts } from '../src/cams/localize.js';
import { ADVCAM_DEFAULTS } from '../src/cams/advcam.js';
import {
  type WeaksegConfig, buildMethod, evaluateSeeds, inferenceModel, scoredEval, makeCams, readSplit, resolveConfig, runPaths,
} from '../src/pipeline/index.js';

/** The AMR config of one seed: its spotlight is the CAM benchmark's model of the same seed. */
export function amrSeedConfig(config: WeaksegConfig, spotlightRunDir: string, seed: number): WeaksegConfig {
  const spotlight = join(spotlightRunDir, `seed-${seed}`);
  if (!existsSync(join(spotlight, 'model.safetensors'))) {
    throw new Error(`bench:amr: no spotlight for seed ${seed}: ${spotlight}/model.safetensors is absent (run npm run bench:cam with this seed first, or give --spotlight-run-dir)`);
  }
  return resolveConfig({ ...config, method: { ...config.method, spotlight } });
}

/** One branch's seed mIoU: CAMs of the seed's trained AMR model with the other branch weighted 0, in <dir>/branch-<name>. */
export async function branchFigures(seedConfig: WeaksegConfig, seedDir: string, branch: 'spotlight' | 'compensation', log: (l: string) => void) {
  const model = runPaths({ ...seedConfig, runDir: seedDir }).model;
  const weights = branch === 'spotlight' ? { spotlightWeight: 1, compensationWeight: 0 } : { spotlightWeight: 0, compensationWeight: 1 };
  const config = resolveConfig({
    ...seedConfig, runDir: join(seedDir, `branch-${branch}`), method: { ...seedConfig.method, ...weights },
    cams: { ...seedConfig.cams, checkpoint: model },
  });
  await makeCams(config, { resume: true, progress: false, log });
  return scoredEval(await evaluateSeeds(config, { progress: false, log }));
}

/**
 * Plain and AdvCAM seeds of the first `images` items of `split` (scored at threshold t), with AdvCAM's images/s: the
 * trained model of `seedDir`, the stage's scales and flip, AdvCAM at its defaults (or `iterations`).
 */
export async function advcamSubset(seedConfig: WeaksegConfig, seedDir: string, o: { split: string; images: number; threshold: number; iterations?: number }) {
  const config = resolveConfig({ ...seedConfig, runDir: seedDir });
  const data = await readSplit(config, o.split);
  const items = data.items.filter((i) => i.maskPath).slice(0, o.images);
  const dataset = { ...data, items };
  const method = buildMethod(config, data.classes.length, {});
  inferenceModel(method.model, runPaths(config).model, config);
  const transform = evalTransform({ norm: method.backbone.inputNorm, withMask: false });
  const advcam = { ...ADVCAM_DEFAULTS, ...(o.iterations ? { iterations: o.iterations } : {}) };
  const K = data.classes.length + 1;
  const scored = { plain: new ConfusionMatrix(K), advcam: new ConfusionMatrix(K) };
  let advSeconds = 0;
  try {
    for (const mode of ['plain', 'advcam'] as const) {
      const inference = { scales: config.cams.scales, flip: config.cams.flip, advcam: mode === 'advcam' ? advcam : null };
      const contexts = localizeContexts(dataset, transform, inference);
      const t0 = performance.now();
      for (const item of items) {
        const s = await transform(item, { rng: new Rng(0), epoch: 0, index: 0 });
        const image = tensor(s.image, { shape: [1, s.channels, s.height, s.width] });
        const cams = await imageCams(method, image, item.labels, { ...inference, context: contexts(item) });
        const planes = new Float32Array(item.labels.length * s.height * s.width);
        item.labels.forEach((c, k) => planes.set(cams.select(0, c).toFloat32Array(), k * s.height * s.width));
        cams.dispose();
        image.dispose();
        const gt = await readMask(item.maskPath!);
        scored[mode].add(camsToSeeds(planes, item.labels, s.width, s.height, o.threshold), gt.data, item.id);
      }
      if (mode === 'advcam') advSeconds = (performance.now() - t0) / 1000;
    }
  } finally {
    method.model.dispose();
  }
  const names = withBackground(data.classes);
  const result = (m: ConfusionMatrix): MiouResult => m.score(names);
  return {
    split: o.split, images: items.length, ids: items.map((i) => i.id), threshold: o.threshold, iterations: advcam.iterations,
    plain: result(scored.plain), advcam: result(scored.advcam), advcamImagesPerSecond: items.length / Math.max(advSeconds, 1e-9),
  };
}

/**
 * A small copy of a VOC root for --quick in `dir` (remade each time, at a fixed path so that quick runs compare
 * equal): the folders symlinked, each split cut to its first `n` ids.
 */
export function quickVocRoot(root: string, dir: string, counts: Record<string, number>): string {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const name of ['JPEGImages', 'SegmentationClass', 'SegmentationClassAug', 'image_labels.json']) {
    if (existsSync(join(root, name))) symlinkSync(join(root, name), join(dir, name));
  }
  mkdirSync(join(dir, 'ImageSets', 'Segmentation'), { recursive: true });
  for (const [split, n] of Object.entries(counts)) {
    const ids = readFileSync(join(root, 'ImageSets', 'Segmentation', `${split}.txt`), 'utf8').split('\n').filter((l) => l.trim()).slice(0, n);
    writeFileSync(join(dir, 'ImageSets', 'Segmentation', `${split}.txt`), `${ids.join('\n')}\n`);
  }
  return dir;
}
