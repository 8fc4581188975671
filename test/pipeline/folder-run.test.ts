// A folder of tagged photos and nothing else (no masks anywhere), as a practitioner brings it: the whole chain runs
// to a trained segmenter and its masks of every photo, with the free choices fixed by the rule of
// configs/seam-mobilenetv2-folder.json, every stage that would score says it did not, and the report's gallery
// shows the photos' masks. Without a fixed seed threshold the eval stage refuses, naming the setting to give.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { makeSyntheticDataset } from '../../src/data/index.js';
import { type WeaksegConfig, demoConfig, readConfigFile, readMetrics, runPaths, runPipeline } from '../../src/pipeline/index.js';
import { tempDir } from '../data/helpers.js';

const STAGES = ['train', 'cams', 'eval', 'crf', 'affinity', 'random-walk', 'seg-train', 'seg-eval', 'report'];
const quiet = { progress: false as const, log: () => {} };

/** The synthetic data's training images in a folder with a CSV of their tags, and no mask. */
async function taggedFolder(t: Parameters<typeof tempDir>[0]): Promise<{ dir: string; photos: string; labels: string; ids: string[] }> {
  const dir = await tempDir(t);
  const voc = join(dir, 'voc');
  await makeSyntheticDataset({ root: voc, seed: 5, train: 16, scored: 4, val: 4, size: 64 });
  const { labels } = JSON.parse(readFileSync(join(voc, 'image_labels.json'), 'utf8')) as { labels: Record<string, string[]> };
  const ids = readFileSync(join(voc, 'ImageSets', 'Segmentation', 'train_aug.txt'), 'utf8').trim().split('\n');
  const csv = ['path,tags', ...ids.map((id) => `JPEGImages/${id}.png,${labels[id]!.join(';')}`)];
  const file = join(dir, 'tags.csv');
  writeFileSync(file, `${csv.join('\n')}\n`);
  return { dir, photos: voc, labels: file, ids };
}

function folderConfig(runDir: string, photos: string, labels: string, evalOver: Record<string, unknown>): WeaksegConfig {
  // The folder preset's rule for every free choice, on the demo's TinyNet at smoke-test size.
  const preset = readConfigFile(join(import.meta.dirname, '..', '..', '..', 'configs', 'seam-mobilenetv2-folder.json')) as {
    eval: Record<string, unknown>; refine: { crf: Record<string, unknown>; randomWalk: Record<string, unknown> }; cams: { splits: string[] };
    seg: { evalSplit: string }; run: { stages: string[] };
  };
  assert.deepEqual(preset.run.stages, STAGES);
  return demoConfig({
    out: runDir, size: 'tiny',
    overrides: {
      data: { format: 'folder', root: photos, labels },
      train: { epochs: 1, batchSize: 8 },
      runtime: { logEvery: 1, checkpointEverySteps: 0, threads: 1 },
      cams: { workingSize: 56, splits: preset.cams.splits },
      eval: { ...preset.eval, ...evalOver },
      refine: {
        crf: { threshold: preset.refine.crf.threshold, workingSize: 60 },
        randomWalk: { ...preset.refine.randomWalk },
        affinity: { epochs: 1, batchSize: 4, cropSize: 64 },
      },
      seg: { epochs: 1, batchSize: 4, cropSize: 64, workingSize: 56, evalSplit: preset.seg.evalSplit },
      run: { stages: preset.run.stages },
    },
  });
}

test('a folder of tagged photos without masks: seeds, refinement and the segmenter, nothing scored', async (t) => {
  const { dir, photos, labels, ids } = await taggedFolder(t);
  const config = folderConfig(join(dir, 'run'), photos, labels, {});
  const summary = await runPipeline(config, quiet);
  assert.deepEqual(summary.stages.map((s) => [s.stage, s.action]), STAGES.map((s) => [s, 'ran']));

  const p = runPaths(config);
  const pngs = (d: string) => readdirSync(d, { recursive: true }).filter((f) => String(f).endsWith('.png')).length;
  // The ids of a folder are paths relative to it (JPEGImages/<id>): each stage writes a mask of every photo.
  for (const d of [p.seeds('train'), p.crf('train'), p.pseudo('train_aug'), p.seg.predictions('train')]) {
    assert.equal(pngs(d), ids.length, `${d}: one mask per photo`);
  }
  assert.ok(existsSync(p.seg.model) && existsSync(p.report));
  const metrics = readMetrics(config) as Record<string, { result?: unknown; threshold?: unknown; mode?: unknown; curve?: unknown }>;
  assert.equal(metrics.eval!.threshold, config.eval.threshold);
  assert.equal(metrics.eval!.mode, 'fixed');
  for (const stage of ['eval', 'crf', 'random-walk', 'seg-eval']) assert.equal(metrics[stage]!.result, null, `${stage}: not scored`);
  assert.equal(metrics.eval!.curve, null);
  assert.match(readFileSync(p.evalLog, 'utf8'), /has no ground-truth masks: its seeds are written to .*, not scored/);
  // The report shows what was made of the photos: a gallery without a ground-truth column.
  const html = readFileSync(p.report, 'utf8');
  assert.match(html, /not scored: no ground truth/);
  assert.match(html, /<th>Image<\/th><th>CAM<\/th><th>Seeds<\/th><th>CRF<\/th><th>Random walk<\/th><\/tr>/);
  assert.match(html, /<th>Image<\/th><th>Prediction<\/th><\/tr>/);
  assert.match(html, new RegExp(`Split &#39;train&#39; has no ground truth: its gallery shows the first ${config.run.galleryImages} images without it\\.`));
  assert.doesNotMatch(html, /Ground truth<\/th>/);
});

test('a folder without masks and no fixed seed threshold: the eval stage names eval.threshold', async (t) => {
  const { dir, photos, labels } = await taggedFolder(t);
  const config = folderConfig(join(dir, 'run'), photos, labels, { threshold: null, fitSplit: 'val' });
  await assert.rejects(runPipeline({ ...config, run: { ...config.run, stages: ['train', 'cams', 'eval'] } }, quiet),
    /eval: no ground-truth masks to choose the seed threshold on \('val', 'train' have none\); set eval\.threshold/);
});
