// data.extra through the pipeline on the synthetic data with TinyNet: a source whose tags are partly wrong on
// purpose trains (unknown tags dropped with a warning, wrong known tags taken as given), its figures are recorded,
// training stays deterministic, evaluation sees the same images with and without it, the train stage's fingerprint
// follows data.extra, and a bad source's error names the source, the file and the field.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { SYNTHETIC_CLASSES, makeSyntheticDataset } from '../../src/data/index.js';
import { type WeaksegConfig, demoConfig, readMetrics, resolveConfig, runPaths, runPipeline } from '../../src/pipeline/index.js';
import { tempDir, truncatedJpeg, writeFileDeep } from '../data/helpers.js';

const STAGES = ['train', 'cams', 'eval'];

function config(runDir: string, data: string, extra: unknown[] = [], over: Record<string, unknown> = {}): WeaksegConfig {
  return demoConfig({
    out: runDir, size: 'tiny',
    overrides: {
      data: { root: data, extra },
      train: { epochs: 1, batchSize: 4, maxSteps: 3 },
      runtime: { logEvery: 1, checkpointEverySteps: 0, threads: 1 },
      cams: { workingSize: 64 },
      run: { stages: STAGES },
      ...over,
    },
  });
}

/**
 * The main data (12 training images) and a web-like folder source: another synthetic set's 12 training images
 * with a CSV of tags in which 3 images gain an unknown tag, 2 have a wrong (known) tag instead of theirs, and one
 * has only an unknown tag.
 */
async function fixture(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t);
  const data = join(dir, 'data');
  const webData = join(dir, 'web-data');
  await makeSyntheticDataset({ root: data, seed: 1, train: 12, scored: 4, val: 4, size: 64 });
  await makeSyntheticDataset({ root: webData, seed: 2, train: 12, scored: 4, val: 4, size: 64 });
  const { labels } = JSON.parse(readFileSync(join(webData, 'image_labels.json'), 'utf8')) as { labels: Record<string, string[]> };
  const ids = readFileSync(join(webData, 'ImageSets', 'Segmentation', 'train_aug.txt'), 'utf8').split('\n').filter(Boolean);
  const rows = ids.map((id, i) => {
    let tags = labels[id]!;
    if (i < 3) tags = [...tags, 'cat photo'];
    else if (i < 5) tags = [SYNTHETIC_CLASSES[(SYNTHETIC_CLASSES.indexOf(tags[0] as never) + 1) % 4]!];
    else if (i === 5) tags = ['kitten'];
    return `${id}.png,${tags.join(';')}`;
  });
  const csv = join(dir, 'web.csv');
  writeFileSync(csv, `path,tags\n${rows.join('\n')}\n`);
  const web = { format: 'folder', root: join(webData, 'JPEGImages'), labels: csv, weight: 0.5 };
  return { dir, data, web, csv, ids };
}

test('data.extra: a partly mistagged folder source trains, deterministically; eval unaffected; fingerprint follows it', { timeout: 240_000 }, async (t) => {
  const { dir, data, web } = await fixture(t);
  const lines: string[] = [];
  const hooks = { progress: false as const, log: (l: string) => lines.push(l) };

  const mixed = config(join(dir, 'mixed'), data, [web]);
  const first = await runPipeline(mixed, hooks);
  assert.deepEqual(first.stages.map((s) => s.action), ['ran', 'ran', 'ran']);
  const m = readMetrics(mixed) as { train: { steps: number; epochLosses: number[]; extra: unknown[] }; eval: { result: { miou: number } } };
  // 12 main images + round(0.5 x 12) = 6 draws of the source per epoch; 11 of its 12 images are usable
  assert.deepEqual(m.train.extra, [{ source: 'data.extra[0]', images: 11, weight: 0.5, drawsPerEpoch: 6, droppedTags: 4, droppedImages: 1, skipped: 0 }]);
  assert.equal(m.train.steps, 3);
  assert.ok(m.train.epochLosses.every(Number.isFinite));
  const warning = lines.find((l) => l.startsWith('warning: data.extra[0]'));
  assert.ok(warning && /4 tag\(s\) outside the classes dropped .*"cat photo".*1 image\(s\) left without a tag not used/.test(warning), warning);
  const trainLog = readFileSync(runPaths(mixed).trainLog, 'utf8');
  assert.match(trainLog, /12 images of 'train_aug' \+ data\.extra\[0\]: 11 images, weight 0\.5 \(6 draws per epoch\)/);

  // deterministic: the same config in another directory trains to the same losses and weights
  const again = config(join(dir, 'again'), data, [web]);
  await runPipeline(again, { ...hooks, log: () => {} });
  assert.deepEqual((readMetrics(again) as typeof m).train.epochLosses, m.train.epochLosses);
  assert.deepEqual(readFileSync(runPaths(again).model), readFileSync(runPaths(mixed).model));

  // eval stays on the main dataset: the same CAM files and scored images as a run without the source
  const alone = config(join(dir, 'alone'), data);
  await runPipeline(alone, { ...hooks, log: () => {} });
  const a = readMetrics(alone) as typeof m & { eval: { result: { classes: { name: string }[] } } };
  assert.equal(a.train.extra, undefined);
  assert.notDeepEqual(a.train.epochLosses, m.train.epochLosses, 'the extra images changed the batches');
  const files = (d: string) => readdirSync(d).sort();
  for (const split of ['train', 'val']) assert.deepEqual(files(runPaths(mixed).cams(split)), files(runPaths(alone).cams(split)));
  assert.deepEqual(files(runPaths(mixed).seeds('train')), files(runPaths(alone).seeds('train')));
  assert.equal(files(runPaths(mixed).cams('train')).filter((f) => f.includes('extra')).length, 0);
  assert.equal(files(runPaths(mixed).seeds('train')).length, 4 + 1, 'the 4 scored images and info.json');

  // the train stage's fingerprint follows data.extra: same config skipped, another weight reruns train and after
  assert.deepEqual((await runPipeline(mixed, { ...hooks, log: () => {} })).stages.map((s) => s.action), ['skipped', 'skipped', 'skipped']);
  const reweighted = config(join(dir, 'mixed'), data, [{ ...web, weight: 1 }]);
  assert.deepEqual((await runPipeline(reweighted, { ...hooks, log: () => {} })).stages.map((s) => s.action), ['ran', 'ran', 'ran']);
  // without data.extra the fingerprint is the one runs had before data.extra existed (no 'extra' key in it)
  assert.deepEqual(alone.data.extra, []);
});

test('data.extra: a bad source is an error naming the source, the file and the field', { timeout: 120_000 }, async (t) => {
  const { dir, data, web, csv, ids } = await fixture(t);
  const hooks = { progress: false as const, log: () => {} };
  const run = (extra: unknown[], over: Record<string, unknown> = {}) => runPipeline(config(join(dir, 'bad'), data, extra, over), hooks);

  await assert.rejects(run([web, { root: join(dir, 'nowhere') }]), /data\.extra\[1\]\.root: .*nowhere does not exist/);
  await assert.rejects(run([{ ...web, labels: join(dir, 'none.csv') }]), /data\.extra\[0\]\.labels: .*none\.csv does not exist/);
  assert.throws(() => resolveConfig({ runDir: dir, data: { root: data, extra: [{ format: 'folder', root: dir }] } }),
    /data\.extra\.0\.labels: required when format is 'folder'/);
  assert.throws(() => resolveConfig({ runDir: dir, data: { root: data, extra: [{ root: dir, wieght: 2 }] } }),
    /data\.extra\.0\.wieght: unknown setting \(did you mean 'data\.extra\.0\.weight'\?\)/);

  // a malformed labels file: named with the source and the field pointing at it
  const broken = join(dir, 'broken.csv');
  writeFileSync(broken, 'path,tags\na.png,"redcap\n');
  await assert.rejects(run([{ ...web, labels: broken }]), /data\.extra\[0\] \(folder .*, labels .*broken\.csv\): .*broken\.csv: line 2: unterminated quoted field/);
  // unknownTags 'bad': the first unknown tag fails the run, naming the file, the line and the tag
  await assert.rejects(run([{ ...web, unknownTags: 'bad' }]), /data\.extra\[0\] .*web\.csv: line 2 \(".*\.png"\): unknown tag "cat photo"/);

  // an unreadable image: found when it is loaded, named with its source; with onBadFile 'skip' it is skipped
  await writeFileDeep(join(web.root, 'broken.jpg'), await truncatedJpeg());
  writeFileSync(csv, `${readFileSync(csv, 'utf8')}broken.jpg,redcap\n`);
  const allExtra = { train: { epochs: 1, batchSize: 4 }, run: { stages: ['train'] } };
  await assert.rejects(run([{ ...web, weight: 5 }], allExtra), (e: Error) => {
    assert.match(e.message, /broken\.jpg: .*\(data\.extra\[0\], image "data\.extra\[0\]\/broken"\)/);
    return true;
  });
  assert.ok(ids.length === 12);
});
