// Stage 'saliency': pseudo-masks from the CAMs and the user's saliency maps by the rules of MCIS's (and OAA's)
// gen_gt.py (src/refine/saliency.ts) -> saliency/<split>/<id>.png (0 background, class index + 1, 255 ignored),
// scored on eval.split; the segmenter trains on them with seg.pseudoMasks 'saliency'. weakseg has no saliency model:
// refine.saliency.dir is a folder of maps the user made, one PNG per image id (grey levels 0..255, a colour map's
// luma as OpenCV reads it in grey; another size than the image's is resized to it, bilinearly). Records
// { split, result, ignoredShare, ... } in metrics.json under 'saliency'.
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { decodeImage, resizeBilinear } from '../data/index.js';
import { readCam } from '../cams/format.js';
import { type MiouResult, formatMiouTable } from '../eval/index.js';
import { IGNORE, type SaliencyRules, saliencyPseudoMask } from '../refine/saliency.js';
import type { WeaksegConfig } from './config.js';
import { type StageHooks, logger, prepareRun, readSplit, recordMetrics } from './common.js';
import { runPaths } from './paths.js';
import { type RefineSplitSummary, SplitScore, StageOutputs, camFile, pct, progress, unique } from './per-image.js';

export interface SaliencySummary {
  /** The split scored (eval.split). */
  split: string;
  dir: string;
  rules: SaliencyRules;
  /** null when the split has no ground truth. */
  result: MiouResult | null;
  /** Share of the scored split's pixels left ignored (255) by the rules. */
  ignoredShare: number;
  /** Maps whose size was not the image's (resized). */
  resizedMaps: number;
  splits: RefineSplitSummary[];
}

/** refine.saliency.dir, checked: the stage cannot run without it. */
export function saliencyDir(config: WeaksegConfig): string {
  const dir = config.refine.saliency.dir;
  if (dir === null) {
    throw new Error("refine.saliency.dir: required by the 'saliency' stage (a folder of saliency maps, one PNG per image id); " +
      'weakseg makes no saliency maps itself');
  }
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`refine.saliency.dir: ${resolve(dir)} is not a folder`);
  return dir;
}

/**
 * The saliency map of an image (0..255 per pixel) at width x height: grey levels as they are, colour as OpenCV's
 * grey reading (0.299 R + 0.587 G + 0.114 B, rounded). A missing file names the image id and the file.
 */
export async function readSaliency(dir: string, id: string, split: string, width: number, height: number): Promise<{ map: Uint8Array; resized: boolean }> {
  const path = join(dir, `${id}.png`);
  if (!existsSync(path)) {
    throw new Error(`no saliency map for image '${id}' of split '${split}': ${path} does not exist (refine.saliency.dir holds one PNG per image id)`);
  }
  let image = await decodeImage(path);
  const resized = image.width !== width || image.height !== height;
  if (resized) image = { ...resizeBilinear(image, width, height), channels: 3 };
  const map = new Uint8Array(width * height);
  for (let i = 0; i < map.length; i++) {
    const [r, g, b] = [image.data[3 * i]!, image.data[3 * i + 1]!, image.data[3 * i + 2]!];
    map[i] = r === g && g === b ? r : Math.round(0.299 * r + 0.587 * g + 0.114 * b);
  }
  return { map, resized };
}

export function saliencyRules(config: WeaksegConfig): SaliencyRules {
  const { fgThreshold, conflict, bgThreshold, attThreshold, minForeground } = config.refine.saliency;
  return { fgThreshold, conflict, bgThreshold, attThreshold, minForeground };
}

export async function saliencyMasks(config: WeaksegConfig, hooks: StageHooks = {}): Promise<SaliencySummary> {
  const paths = prepareRun(config);
  const log = logger(hooks);
  const mapsDir = saliencyDir(config);
  const rules = saliencyRules(config);
  const scoredSplit = config.eval.split;
  const trainSplit = config.data.trainSplit;
  // The training split whenever its CAMs were made (the segmenter's input), as the crf stage does.
  const splits = unique([scoredSplit, ...(existsSync(paths.cams(trainSplit)) ? [trainSplit] : [])]);
  log(`saliency pseudo-masks (gen_gt.py's rules: cues < ${rules.fgThreshold} -> 0, several > ${rules.conflict} -> ignored, ` +
    `salient background >= ${rules.bgThreshold} -> ignored, < ${100 * rules.minForeground} % foreground -> all ignored) ` +
    `from the CAMs and ${mapsDir}: ${splits.join(', ')}`);
  const outputs = new StageOutputs(hooks.resume ?? false);
  const summaries: RefineSplitSummary[] = [];
  let result: MiouResult | null = null;
  let ignored = 0;
  let pixels = 0;
  let resizedMaps = 0;
  for (const split of splits) {
    const dataset = await readSplit(config, split);
    const camPaths = dataset.items.map((item) => camFile(config, split, item));
    const dir = paths.saliency(split);
    const score = split === scoredSplit ? new SplitScore(dataset) : null;
    const bar = progress(hooks, `saliency ${split}`, dataset.items.length);
    const tally = { computed: 0, computeMs: 0 };
    for (const [i, item] of dataset.items.entries()) {
      hooks.signal?.throwIfAborted();
      const mask = await outputs.maskAt(item.id, join(dir, `${item.id}.png`), tally, async () => {
        const record = readCam(camPaths[i]!);
        const { width, height } = record;
        const saliency = await readSaliency(mapsDir, item.id, split, width, height);
        if (saliency.resized) resizedMaps++;
        return { width, height, data: saliencyPseudoMask(record.cams, record.labels, saliency.map, height, width, rules) };
      });
      if (score) {
        await score.add(item, mask);
        for (const v of mask.data) if (v === IGNORE) ignored++;
        pixels += mask.data.length;
      }
      bar.tick();
    }
    const seconds = bar.stop();
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'info.json'), `${JSON.stringify({ split, saliencyDir: mapsDir, rules,
      format: 'VOC palette PNG: 0 background, class index + 1 for objects, 255 ignored' }, null, 2)}\n`);
    const { computed, computeMs } = tally;
    summaries.push({ split, dir, images: dataset.items.length, computed, seconds, msPerImage: computed ? computeMs / computed : 0 });
    log(`saliency ${split}: ${dataset.items.length} images (${computed} computed) in ${seconds.toFixed(1)} s -> ${dir}`);
    if (score) {
      result = score.result();
      if (result) log(`${formatMiouTable(result)}\nsaliency pseudo-mask mIoU on '${split}': ${pct(result.miou)} % (${pct(pixels ? ignored / pixels : 0)} % of pixels ignored)`);
      else log(`saliency ${split}: no ground-truth masks, not scored`);
    }
  }
  if (resizedMaps) log(`note: ${resizedMaps} saliency map(s) were not their image's size and were resized to it`);
  const summary: SaliencySummary = {
    split: scoredSplit, dir: mapsDir, rules, result, ignoredShare: pixels ? ignored / pixels : 0, resizedMaps, splits: summaries,
  };
  recordMetrics(config, 'saliency', summary);
  return summary;
}
