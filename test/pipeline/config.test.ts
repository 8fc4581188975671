// The config's shape: the three fit sections (classifier, AffinityNet, segmenter) come from one schema with their
// own defaults (the values below are the ones each section had before they shared it), the runtime section holds
// the machine settings, and a config in the old shape is told where each field moved.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ConfigError, resolveConfig } from '../../src/pipeline/index.js';

const base = { runDir: 'r', data: { root: 'd' } };
const fitKeys = ['epochs', 'batchSize', 'cropSize', 'scaleRange', 'flip', 'jitter', 'lr', 'headLrMult', 'momentum', 'nesterov',
  'weightDecay', 'polyPower', 'seed'];

test('the fit sections share their fields and checks, each with its own defaults', () => {
  const c = resolveConfig(base);
  const sections = { train: c.train, 'refine.affinity': c.refine.affinity, seg: c.seg } as Record<string, Record<string, unknown>>;
  for (const [name, s] of Object.entries(sections)) {
    for (const k of fitKeys) assert.ok(k in s, `${name}.${k}`);
    assert.equal(s.nesterov, false, `${name}.nesterov`);
    assert.equal(s.flip, true);
    assert.equal(s.momentum, 0.9);
    assert.equal(s.headLrMult, 10);
    assert.equal(s.polyPower, 0.9);
    assert.equal(s.seed, 0);
    // The scale-range check (once only the classifier's) holds in every section.
    const [head, ...rest] = name.split('.');
    const bad = rest.length ? { [head!]: { [rest[0]!]: { scaleRange: [1.5, 0.5] } } } : { [head!]: { scaleRange: [1.5, 0.5] } };
    assert.throws(() => resolveConfig({ ...base, ...bad }),
      (e: unknown) => e instanceof ConfigError && e.message.includes(`${name}.scaleRange: must be [low, high] with low <= high`), name);
  }
  const pick = (s: Record<string, unknown>) => [s.epochs, s.batchSize, s.cropSize, s.scaleRange, s.jitter, s.lr, s.weightDecay];
  assert.deepEqual(pick(sections.train!), [8, 16, 224, [0.7, 1.3], null, 0.01, 1e-4]);
  assert.deepEqual(pick(sections['refine.affinity']!), [8, 8, 448, [0.9, 1.1], { brightness: 0.3, contrast: 0.3, saturation: 0.3 }, 0.01, 5e-4]);
  assert.deepEqual(pick(sections.seg!), [10, 8, 321, [0.5, 1.5], null, 0.001, 5e-4]);
  // What only one section has stays its own.
  assert.equal(c.refine.affinity.radius, 5);
  assert.equal(c.seg.head, 'largefov');
  assert.equal(c.seg.pseudoMasks, 'random-walk');
  assert.throws(() => resolveConfig({ ...base, train: { radius: 3 } }), /train\.radius: unknown setting/);
  // Jitter, once missing from the segmenter's settings, is accepted there now.
  assert.deepEqual(resolveConfig({ ...base, seg: { jitter: { brightness: 0.2 } } }).seg.jitter, { brightness: 0.2 });
});

test('the runtime section: its defaults, and where an old config\'s fields moved', () => {
  const c = resolveConfig(base);
  assert.deepEqual(c.runtime, { device: 'cpu', channelsLast: false, prefetch: 3, logEvery: 10, checkpointEverySteps: 20, keepCheckpoints: 0 });
  assert.equal(resolveConfig({ ...base, runtime: { device: 'cuda:1', threads: 2 } }).runtime.threads, 2);
  assert.throws(() => resolveConfig({ ...base, runtime: { device: 'gpu' } }), /runtime\.device: must be 'cpu', 'cuda' or 'cuda:N'/);
  const old = {
    ...base, device: 'cpu', threads: 1, model: { channelsLast: true },
    train: { epochs: 2, prefetch: 2, logEvery: 5, checkpointEverySteps: 0, keepCheckpoints: 1 },
  };
  assert.throws(() => resolveConfig(old, 'old.json'), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /^invalid old\.json:/);
    for (const [from, to] of [['device', 'device'], ['threads', 'threads'], ['model.channelsLast', 'channelsLast'], ['train.prefetch', 'prefetch'],
      ['train.logEvery', 'logEvery'], ['train.checkpointEverySteps', 'checkpointEverySteps'], ['train.keepCheckpoints', 'keepCheckpoints']]) {
      assert.ok(e.issues.includes(`${from}: moved to runtime.${to}`), `${from} -> runtime.${to} in ${e.issues.join(' | ')}`);
    }
    return true;
  });
});
