// The stage registry is the one list of stages: a stage registered here (a fake one that counts images) gets a
// CLI command and appears in --help, in --stages' default and choices, in seg.pseudoMasks' choices, in a run, and
// on the report; stage names are kebab-case everywhere.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { buildProgram } from '../../src/cli/main.js';
import {
  ConfigError, type WeaksegConfig, prepareRun, readMetrics, readSplit, recordMetrics, registerStage, resolveConfig, runPaths, runPipeline, stageNamed,
  stageNames,
} from '../../src/pipeline/index.js';
import { makeSyntheticDataset } from '../../src/data/index.js';
import { tempDir } from '../data/helpers.js';

const FAKE = 'count-images';

registerStage({
  name: FAKE, title: 'Image count', section: 'eval', options: ['eval'],
  description: 'count the images of eval.split (a stage registered by a test)',
  inputs: () => [],
  settings: (c) => c.eval.split,
  outputs: () => [],
  pseudoMasks: { dir: (c, split) => join(runPaths(c).root, 'counted', split), describe: () => 'nothing (a test stage)' },
  run: async (c: WeaksegConfig) => {
    prepareRun(c); // as every stage does: a stage command can be the first thing run in a directory
    const dataset = await readSplit(c, c.eval.split);
    recordMetrics(c, FAKE, { split: c.eval.split, images: dataset.items.length });
  },
}, { before: 'report' });

test('a registered stage is in the registry order, the config defaults and choices; names are kebab-case', () => {
  assert.deepEqual(stageNames(), ['train', 'cams', 'eval', 'crf', 'affinity', 'random-walk', 'irn', 'irn-walk', 'saliency', 'seg-train', 'seg-eval', FAKE, 'report']);
  const c = resolveConfig({ runDir: 'r', data: { root: 'd' } });
  assert.deepEqual(c.run.stages, stageNames().filter((s) => s !== 'saliency'),
    'run.stages defaults to every registered stage but saliency, which needs maps from the user (refine.saliency.dir)');
  assert.equal(resolveConfig({ runDir: 'r', data: { root: 'd' }, seg: { pseudoMasks: FAKE } }).seg.pseudoMasks, FAKE);
  assert.throws(() => resolveConfig({ runDir: 'r', data: { root: 'd' }, run: { stages: ['cams', 'countImages'] } }),
    (e: unknown) => e instanceof ConfigError && /run\.stages\.1: .*write 'count-images'/.test(e.message));
  assert.throws(() => resolveConfig({ runDir: 'r', data: { root: 'd' }, seg: { pseudoMasks: 'affinity' } }),
    (e: unknown) => e instanceof ConfigError && /seg\.pseudoMasks: expected one of eval \(Seeds\), crf .*count-images \(Image count\)/.test(e.message));
  const stage = { name: 'countAgain', title: '', description: '', section: 'eval', options: [], inputs: () => [], settings: () => null,
    outputs: () => [], run: async () => {} };
  assert.throws(() => registerStage(stage), /'countAgain' is not kebab-case \(e\.g\. 'count-again'\)/);
  assert.throws(() => registerStage({ ...stage, name: FAKE }), /already registered/);
});

test("a method's inference settings fingerprint the CAM stage, not the classifier; where none is set the CAM stage's is as before", () => {
  const config = (method: Record<string, unknown>) => resolveConfig({ runDir: 'r', data: { root: 'd' }, method });
  const fingerprinted = (c: WeaksegConfig) => ({ train: JSON.stringify(stageNamed('train').settings(c)), cams: JSON.stringify(stageNamed('cams').settings(c)) });
  const pcm = fingerprinted(config({ name: 'seam' }));
  const raw = fingerprinted(config({ name: 'seam', camSource: 'cam' }));
  assert.equal(raw.train, pcm.train, 'camSource does not retrain SEAM');
  assert.notEqual(raw.cams, pcm.cams, 'camSource remakes the CAMs');
  assert.notEqual(fingerprinted(config({ name: 'seam', ohemRatio: 0.5 })).train, pcm.train, 'ohemRatio retrains');
  const amr = fingerprinted(config({ name: 'amr', spotlight: 'x' }));
  const reweighted = fingerprinted(config({ name: 'amr', spotlight: 'x', compensationWeight: 0.3, branchMap: 'gradcam' }));
  assert.equal(reweighted.train, amr.train);
  assert.notEqual(reweighted.cams, amr.cams);
  const cam = config({ name: 'cam' });
  assert.ok(!('method' in (stageNamed('cams').settings(cam) as object)), 'no inference settings: the CAM stage fingerprint as before');
  assert.ok(!('method' in (stageNamed('cams').settings(config({ name: 'seam' })) as object)), 'camSource unset: as before it existed');
  assert.deepEqual((stageNamed('train').settings(cam) as { method: unknown }).method, cam.method);
});

test('a registered stage gets a command and is listed in --help, --stages and --pseudo-masks', () => {
  const program = buildProgram();
  const top = program.helpInformation();
  assert.match(top, new RegExp(`${FAKE} \\[options\\]\\s+count the images of eval\\.split`));
  const sub = (name: string) => program.commands.find((c) => c.name() === name)!;
  assert.ok(sub(FAKE).helpInformation().includes('--fit-split'), "its command takes the 'eval' flags");
  const run = sub('run').helpInformation().replace(/\s+/g, ' ');
  assert.match(run, /--stages <list> stages to run, comma-separated kebab-case names \(default all: [a-z,-]*seg-eval,count-images,report; saliency only with refine\.saliency\.dir\)/);
  assert.match(run, /choices: "eval", "crf", "random-walk", "irn-walk", "saliency", "count-images", "groundTruth"/);
});

test('a registered stage runs by its command and in `weakseg run`, is skipped when up to date, and shows on the report', async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'data');
  const s = await makeSyntheticDataset({ root: data, seed: 1, train: 8, scored: 4, val: 4, size: 32 });
  const base = { runDir: join(dir, 'run'), data: { root: data, classes: s.classes }, run: { galleryImages: 0 } };

  await buildProgram().parseAsync(['node', 'weakseg', FAKE, '-r', join(dir, 'cli'), '--data-root', data, '--split', 'val',
    '--set', `data.classes=${JSON.stringify(s.classes)}`]);
  const cli = resolveConfig({ ...base, runDir: join(dir, 'cli') });
  assert.deepEqual(readMetrics(cli)[FAKE], { split: 'val', images: 4 });

  const config = resolveConfig({ ...base, eval: { split: 'train' }, run: { stages: [FAKE, 'report'], galleryImages: 0 } });
  const quiet = { progress: false as const, log: () => {} };
  const first = await runPipeline(config, quiet);
  assert.deepEqual(first.stages.map((x) => [x.stage, x.action]), [[FAKE, 'ran'], ['report', 'ran']]);
  assert.deepEqual(readMetrics(config)[FAKE], { split: 'train', images: s.splits.train });
  const second = await runPipeline(config, quiet);
  // Nothing ran, so the report stands too (an up-to-date run writes nothing).
  assert.deepEqual(second.stages.map((x) => [x.stage, x.action]), [[FAKE, 'skipped'], ['report', 'skipped']]);
  await assert.rejects(runPipeline(config, { ...quiet, force: ['countImages'] }), /--force: unknown stage 'countImages' \(stage names are kebab-case: write 'count-images'\)/);

  const html = readFileSync(runPaths(config).report, 'utf8');
  assert.match(html, new RegExp(`<span class="chip done">${FAKE}</span>`));
  assert.match(html, new RegExp(`<td>${FAKE}</td><td>split train, ${s.splits.train} images</td>`));
});
