// Deterministic training: the same command twice writes the same model file, byte for byte, with every random
// source in play (shuffling, rescale, flip, crop and colour jitter, the new layers' initialisation, dropout); the
// second run even decodes with a different prefetch depth, so batch contents cannot depend on timing. Another
// seed changes the weights. The thread count and the deterministic mode are recorded with the weights.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { isDeterministic } from '../../src/engine/index.js';
import { loadSafetensors, readSafetensorsHeader } from '../../src/engine/serialize/index.js';
import { makeSyntheticDataset } from '../../src/data/index.js';
import { type WeaksegConfig, demoConfig, readMetrics, runPaths, trainClassifier } from '../../src/pipeline/index.js';
import { tempDir } from '../data/helpers.js';

const quiet = { progress: false as const, log: () => {} };

function config(dir: string, data: string, name: string, seed: number, prefetch = 3): WeaksegConfig {
  return demoConfig({
    out: join(dir, name), size: 'tiny', seed,
    overrides: {
      runtime: { threads: 1, prefetch, checkpointEverySteps: 0 },
      data: { root: data },
      // SEAM on TinyNet: dropout before the CAM head, so libtorch's generator is used during training too.
      method: { name: 'seam', pcmTaps: ['layer1', 'layer2'], dropout: 0.5 },
      train: {
        epochs: 2, batchSize: 4, cropSize: 48, maxSteps: 5,
        jitter: { brightness: 0.3, contrast: 0.3, saturation: 0.3 },
      },
    },
  });
}

function weights(path: string): Map<string, Float32Array> {
  const { tensors } = loadSafetensors(path);
  const out = new Map([...tensors].map(([k, t]) => [k, t.toFloat32Array()]));
  for (const t of tensors.values()) t.dispose();
  return out;
}

test('two deterministic trainings write identical model files; another seed gives other weights', async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'data');
  await makeSyntheticDataset({ root: data, seed: 2, train: 16, scored: 4, val: 4, size: 64 });

  const a = config(dir, data, 'a', 0);
  const b = config(dir, data, 'b', 0, 0);
  const c = config(dir, data, 'c', 1);
  for (const cfg of [a, b, c]) await trainClassifier(cfg, quiet);
  assert.equal(isDeterministic(), false, "libtorch's mode is restored after training");

  const [fa, fb, fc] = [a, b, c].map((cfg) => runPaths(cfg).model);
  assert.ok(readFileSync(fa!).equals(readFileSync(fb!)), 'same seed: byte-identical model files');

  const meta = readSafetensorsHeader(fa!).metadata;
  assert.deepEqual([meta.seed, meta.threads, meta.deterministic], ['0', '1', 'true'], 'deterministic by default on the CPU');
  const m = readMetrics(a) as { train: { threads: number; deterministic: boolean; steps: number } };
  assert.deepEqual([m.train.threads, m.train.deterministic, m.train.steps], [1, true, 5]);
  assert.match(readFileSync(runPaths(a).trainLog, 'utf8'), /seed 0, 1 engine threads, deterministic algorithms on/);

  // Seed 1: every trained tensor differs (new layers from another initialisation, the backbone from other data).
  const wa = weights(fa!);
  const wc = weights(fc!);
  const differing = [...wa].filter(([k, v]) => !k.endsWith('num_batches_tracked') &&
    v.some((x, i) => x !== wc.get(k)![i])).map(([k]) => k);
  assert.ok(differing.includes('fc8.weight') && differing.includes('f9.weight') &&
    differing.includes('backbone.stem.0.conv.weight'), `tensors that differ with seed 1: ${differing.join(', ')}`);
  assert.equal(readSafetensorsHeader(fc!).metadata.seed, '1');
});
