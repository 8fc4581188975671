// `weakseg run` on the built-in synthetic data at smoke-test size: every stage writes its outputs, a second run
// skips what is up to date (also with the data's files touched, and with a record fingerprinted the way runs made
// before content digests were), a changed setting reruns exactly its stage and those after it, and a run killed in the
// middle of a training stage resumes there (no finished stage repeated) and ends with the same metrics as a run
// that was never interrupted. Also `weakseg demo --tiny` end to end through the CLI.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { makeSyntheticDataset } from '../../src/data/index.js';
import { type RunSummary, type WeaksegConfig, demoConfig, readMetrics, runPaths, runPipeline, stageNamed } from '../../src/pipeline/index.js';
import { splitFingerprint } from '../../src/pipeline/fingerprint.js';
import { tempDir } from '../data/helpers.js';

const ALL = ['train', 'cams', 'eval', 'crf', 'affinity', 'random-walk', 'irn', 'irn-walk', 'seg-train', 'seg-eval', 'report'];

function smallConfig(runDir: string, dataRoot: string, over: Record<string, unknown> = {}): WeaksegConfig {
  return demoConfig({
    out: runDir, size: 'tiny',
    overrides: {
      data: { root: dataRoot },
      train: { epochs: 1, batchSize: 8 },
      runtime: { logEvery: 1, checkpointEverySteps: 2 },
      // Working sizes under the 80-pixel images: CAMs, CRFs and predictions are made downscaled and upscaled back
      // (a size mismatch would fail the scoring against the masks).
      cams: { workingSize: 64 },
      refine: { affinity: { epochs: 1, batchSize: 4, cropSize: 80 }, irn: { epochs: 1, batchSize: 4, cropSize: 80, radius: 5 }, crf: { workingSize: 60 } },
      seg: { epochs: 1, batchSize: 4, cropSize: 64, evalSplit: 'val', workingSize: 56 },
      ...over,
    },
  });
}

/** A temporary folder holding a small synthetic dataset in <dir>/data. */
async function syntheticData(t: Parameters<typeof tempDir>[0], seed: number): Promise<{ dir: string; data: string }> {
  const dir = await tempDir(t);
  const data = join(dir, 'data');
  await makeSyntheticDataset({ root: data, seed, train: 24, scored: 8, val: 8, size: 80 });
  return { dir, data };
}

const quiet = { progress: false as const, log: () => {} };
const filesUnder = (dir: string): string[] => readdirSync(dir, { withFileTypes: true, recursive: true })
  .filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
const stamp = (path: string) => { const st = statSync(path); return [st.size, st.mtimeMs]; };
const actions = (s: RunSummary) => Object.fromEntries(s.stages.map((x) => [x.stage, x.action]));
const metricsOf = (c: WeaksegConfig) => readMetrics(c) as Record<string, { result?: { miou: number | null } } | undefined>;
const scores = (c: WeaksegConfig) => {
  const m = metricsOf(c);
  return ['eval', 'crf', 'random-walk', 'seg-eval'].map((s) => m[s]?.result?.miou);
};

test('run: all stages, then skipped when up to date, rerun from the changed stage on', async (t) => {
  const { dir, data } = await syntheticData(t, 3);
  const config = smallConfig(join(dir, 'run'), data);

  const first = await runPipeline(config, quiet);
  assert.deepEqual(first.stages.map((s) => s.stage), ALL);
  assert.ok(first.stages.every((s) => s.action === 'ran'));
  const p = runPaths(config);
  for (const path of [p.model, p.cams('train'), p.cams('val'), p.cams('train_aug'), p.seeds('train'), p.crf('train'),
    p.affinity.model, p.pseudo('train'), p.pseudo('train_aug'), p.seg.model, p.seg.predictions('val'), p.report]) {
    assert.ok(existsSync(path), `${path} written`);
  }
  for (const s of scores(config)) assert.ok(typeof s === 'number' && s >= 0 && s <= 1, `a score in [0, 1]: ${s}`);
  // IRN's labels are scored against the ground truth as the affinity labels are, on the same training images.
  type LabelScore = { images: number; agreement: Record<'bgPos' | 'fgPos' | 'neg', { pairs: number; agree: number | null }> };
  const labelsOf = (stage: string) => (metricsOf(config) as unknown as Record<string, { labels: { score: LabelScore } }>)[stage]!.labels;
  const irnLabels = labelsOf('irn');
  assert.ok(irnLabels.score.images > 0 && irnLabels.score.images === labelsOf('affinity').score.images, JSON.stringify(irnLabels.score));
  for (const g of ['bgPos', 'fgPos', 'neg'] as const) {
    const { pairs, agree } = irnLabels.score.agreement[g];
    assert.ok(pairs > 0 && agree !== null && agree >= 0 && agree <= 1, `IR label ${g} pairs: ${JSON.stringify(irnLabels.score.agreement[g])}`);
  }

  const second = await runPipeline(config, quiet);
  assert.deepEqual(actions(second), Object.fromEntries(ALL.map((s) => [s, 'skipped'])), 'nothing new: even the report stands');

  // The same files with new modification times (a dataset copied back in place): still nothing to do.
  const later = new Date(Date.now() + 60_000);
  for (const file of filesUnder(data)) utimesSync(file, later, later);
  assert.deepEqual(actions(await runPipeline(config, quiet)), Object.fromEntries(ALL.map((s) => [s, 'skipped'])), 'touched data');

  // A record written before content digests, fingerprinted by file sizes and times (the format of those runs, built
  // here by hand for the train stage), stands while the files are untouched and is rewritten to the new fingerprint.
  const stagesFile = join(p.root, 'stages.json');
  const records = JSON.parse(readFileSync(stagesFile, 'utf8')) as Record<string, { fingerprint: string }>;
  const current = records.train!.fingerprint;
  const split = config.data.trainSplit;
  const legacySplit = await splitFingerprint(config, split, (item) =>
    [item.id, item.labels, stamp(item.imagePath), item.maskPath ?? null, item.maskPath ? stamp(item.maskPath) : null]);
  records.train!.fingerprint = createHash('sha256')
    .update(JSON.stringify({ stage: 'train', inputs: stageNamed('train').settings(config), upstream: [], splits: { [split]: legacySplit } }))
    .digest('hex').slice(0, 16);
  writeFileSync(stagesFile, JSON.stringify(records));
  rmSync(join(p.root, 'data-digests.json'));
  assert.deepEqual(actions(await runPipeline(config, quiet)), Object.fromEntries(ALL.map((s) => [s, 'skipped'])), 'a pre-digest record');
  assert.equal((JSON.parse(readFileSync(stagesFile, 'utf8')) as typeof records).train!.fingerprint, current);

  // A segmentation setting changed: the classifier, CAMs and refinement stay, seg and what follows rerun.
  const changed = smallConfig(join(dir, 'run'), data, { seg: { epochs: 2, batchSize: 4, cropSize: 64, evalSplit: 'val', workingSize: 56 } });
  const third = await runPipeline(changed, quiet);
  assert.deepEqual(actions(third), {
    train: 'skipped', cams: 'skipped', eval: 'skipped', crf: 'skipped', affinity: 'skipped', 'random-walk': 'skipped',
    irn: 'skipped', 'irn-walk': 'skipped', 'seg-train': 'ran', 'seg-eval': 'ran', report: 'ran',
  });
});

test('run: killed inside a training stage, rerun resumes there and ends with the uninterrupted metrics', async (t) => {
  const { dir, data } = await syntheticData(t, 4);

  const whole = smallConfig(join(dir, 'whole'), data);
  await runPipeline(whole, quiet);

  // Stop the affinity net's training after its third step (a rolling checkpoint was written at step 2).
  const cut = smallConfig(join(dir, 'cut'), data);
  const abort = new AbortController();
  let inAffinity = false;
  const log = (line: string) => {
    if (line.startsWith('== ')) inAffinity = line.startsWith('== affinity');
    if (inAffinity && /step 3\/\d+/.test(line)) abort.abort(new Error('killed for the test'));
  };
  await assert.rejects(runPipeline(cut, { progress: false, log, signal: abort.signal }), /killed for the test/);
  assert.ok(existsSync(join(runPaths(cut).affinity.checkpoints, 'last.safetensors')), 'a mid-epoch checkpoint exists');
  assert.ok(!existsSync(runPaths(cut).affinity.model), 'the affinity stage did not finish');

  const lines: string[] = [];
  const resumed = await runPipeline(cut, { progress: false, log: (l) => lines.push(l) });
  assert.deepEqual(actions(resumed), {
    train: 'skipped', cams: 'skipped', eval: 'skipped', crf: 'skipped', affinity: 'resumed', 'random-walk': 'ran',
    irn: 'ran', 'irn-walk': 'ran', 'seg-train': 'ran', 'seg-eval': 'ran', report: 'ran',
  });
  assert.ok(lines.includes('== affinity: resuming where it stopped'), 'the log says where it resumed');
  // Step 3 was logged before the kill and replayed after it: each step is in the logs once.
  const jsonSteps = readFileSync(runPaths(cut).affinity.trainJsonLog, 'utf8').trim().split('\n')
    .map((l) => JSON.parse(l) as { type: string; step: number }).filter((e) => e.type === 'step').map((e) => e.step);
  assert.deepEqual(jsonSteps, [...new Set(jsonSteps)].sort((a, b) => a - b), 'JSON log: each step once, in order');
  assert.ok(jsonSteps.includes(3));
  const textSteps = [...readFileSync(runPaths(cut).affinity.trainLog, 'utf8').matchAll(/\(global (\d+)\//g)].map((m) => Number(m[1]));
  assert.deepEqual(textSteps, [...new Set(textSteps)].sort((a, b) => a - b), 'text log: each step once, in order');
  assert.deepEqual(scores(cut), scores(whole), 'same seed, CRF, random-walk and segmentation scores as the uninterrupted run');
});

test('weakseg demo --tiny prints each stage and ends with the JSON line', async (t) => {
  const dir = await tempDir(t);
  const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
  const out = execFileSync(process.execPath, [cli, 'demo', '--tiny', '--out', join(dir, 'demo'), '--no-progress'], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
  });
  const last = out.trim().split('\n').pop()!;
  const result = JSON.parse(last) as Record<string, unknown>;
  assert.deepEqual(Object.keys(result), ['seed_miou', 'crf_miou', 'rw_miou', 'irn_miou', 'seg_miou', 'report']);
  for (const k of ['seed_miou', 'crf_miou', 'rw_miou', 'irn_miou', 'seg_miou']) {
    const v = result[k];
    assert.ok(typeof v === 'number' && v >= 0 && v <= 100, `${k} is a percentage: ${String(v)}`);
  }
  assert.ok(typeof result.report === 'string' && existsSync(result.report), 'the report exists');
  assert.match(readFileSync(result.report as string, 'utf8'), /<html/);
  assert.match(out, /demo mIoU: seeds/);
});
