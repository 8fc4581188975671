// `weakseg run` never deletes what it did not write, and reruns what reads changed data or a rerun stage's outputs
// (issue 15, items 1 and 9), on the built-in synthetic data with the first two stages at smoke-test size.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { makeSyntheticDataset } from '../../src/data/index.js';
import { camPath, readCam } from '../../src/cams/index.js';
import { type RunSummary, demoConfig, runPaths, runPipeline } from '../../src/pipeline/index.js';
import { tempDir } from '../data/helpers.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const quiet = { progress: false as const, log: () => {} };
/** Every file under `dir` with its size and modification time. */
function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort().map((f) => {
    const st = statSync(join(dir, f));
    return `${f} ${st.size} ${st.mtimeMs}`;
  });
}
const actions = (s: RunSummary) => Object.fromEntries(s.stages.map((x) => [x.stage, x.action]));

test('run: foreign files in output folders are never deleted; changed data and --force rerun what follows', async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'data');
  await makeSyntheticDataset({ root: data, seed: 5, train: 16, scored: 4, val: 4, size: 64 });
  const runDir = join(dir, 'run');
  const config = demoConfig({
    out: runDir, size: 'tiny',
    overrides: { data: { root: data }, train: { epochs: 1, batchSize: 8 }, cams: { scales: [1], workingSize: 40 }, run: { stages: ['train', 'cams', 'report'], galleryImages: 0 } },
  });
  const configFile = join(dir, 'config.json');
  writeFileSync(configFile, JSON.stringify(config));

  // The user's own file in a folder the train stage writes, and no stages.json: refused, nothing removed.
  mkdirSync(join(runDir, 'checkpoints'), { recursive: true });
  writeFileSync(join(runDir, 'checkpoints', 'mine.pth'), 'x');
  const r = spawnSync(process.execPath, [cli, 'run', '-c', configFile, '-r', runDir, '--no-progress'], { encoding: 'utf8', timeout: 60_000 });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /stage 'train' would rerun, but its output folders hold 1 file\(s\) that weakseg run did not write: .*checkpoints\/mine\.pth\. Nothing was deleted/);
  assert.equal(readFileSync(join(runDir, 'checkpoints', 'mine.pth'), 'utf8'), 'x');

  // Moved away, the run goes through; a user file dropped into cams/ later blocks the cams rerun the same way.
  writeFileSync(join(dir, 'mine.pth'), readFileSync(join(runDir, 'checkpoints', 'mine.pth')));
  spawnSync('rm', [join(runDir, 'checkpoints', 'mine.pth')]);
  assert.deepEqual(actions(await runPipeline(config, quiet)), { train: 'ran', cams: 'ran', report: 'ran' });
  const p = runPaths(config);
  // The 64 x 64 images were inferred at the 40-pixel working size; their CAMs are stored at full size.
  const camIndex = JSON.parse(readFileSync(join(p.cams('train'), 'index.json'), 'utf8')) as { ids: string[] };
  const cam = readCam(camPath(p.cams('train'), camIndex.ids[0]!));
  assert.deepEqual([cam.width, cam.height], [64, 64]);
  writeFileSync(join(p.root, 'cams', 'notes.txt'), 'mine');
  const camsBefore = readdirSync(p.cams('train')).length;
  const noFlip = { ...config, cams: { ...config.cams, flip: !config.cams.flip } };
  await assert.rejects(runPipeline(noFlip, quiet), /stage 'cams' would rerun, .*cams\/notes\.txt/);
  assert.equal(readFileSync(join(p.root, 'cams', 'notes.txt'), 'utf8'), 'mine');
  assert.equal(readdirSync(p.cams('train')).length, camsBefore, 'the CAMs are all still there');
  spawnSync('rm', [join(p.root, 'cams', 'notes.txt')]);
  assert.deepEqual(actions(await runPipeline(config, quiet)), { train: 'skipped', cams: 'skipped', report: 'skipped' });
  // Up to date: nothing in the run directory is written (a finished run on read-only media can be checked).
  const before = tree(runDir);
  assert.deepEqual(actions(await runPipeline(config, quiet)), { train: 'skipped', cams: 'skipped', report: 'skipped' });
  assert.deepEqual(tree(runDir), before);

  // A changed tag in the labels file: the classifier and the CAMs are stale.
  const labelsPath = join(data, 'image_labels.json');
  const labels = JSON.parse(readFileSync(labelsPath, 'utf8')) as { classes: string[]; labels: Record<string, string[]> };
  const trainId = readFileSync(join(data, 'ImageSets', 'Segmentation', 'train_aug.txt'), 'utf8').split('\n')[0]!.trim();
  labels.labels[trainId] = labels.classes.filter((c) => !labels.labels[trainId]!.includes(c)).slice(0, 1);
  writeFileSync(labelsPath, JSON.stringify(labels));
  assert.deepEqual(actions(await runPipeline(config, quiet)), { train: 'ran', cams: 'ran', report: 'ran' });

  // --force train reruns the CAMs too, although no setting changed.
  const forced = spawnSync(process.execPath, [cli, 'run', '-r', runDir, '--force', 'train', '--no-progress'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(forced.status, 0, forced.stderr);
  assert.match(forced.stdout, /== train: rerun requested/);
  assert.match(forced.stdout, /== cams: (rerun requested|inputs changed); its earlier outputs are removed/);
  assert.ok(existsSync(p.cams('train')));
});
