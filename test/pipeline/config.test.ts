// The config's shape: the three fit sections (classifier, AffinityNet, segmenter) come from one schema with their
// own defaults (the values below are the ones each section had before they shared it), the runtime section holds
// the machine settings, and a config in the old shape is told where each field moved.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { join } from 'node:path';
import { IMAGENET_NORM, Rng } from '../../src/data/index.js';
import { fitTransform } from '../../src/pipeline/fit.js';
import { ConfigError, mergeConfig, resolveConfig } from '../../src/pipeline/index.js';
import { solidJpeg, tempDir, writeFileDeep } from '../data/helpers.js';

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

test('longSide and cutout in every fit section: absent by default, checked, and longSide refusing a scale range', () => {
  const nest = (name: string, value: Record<string, unknown>) => {
    const [head, sub] = name.split('.');
    return { ...base, [head!]: sub ? { [sub]: value } : value };
  };
  const section = (c: ReturnType<typeof resolveConfig>, name: string) =>
    name.split('.').reduce((o: Record<string, unknown>, k) => o[k] as Record<string, unknown>, c as unknown as Record<string, unknown>);
  const fails = (input: unknown, ...needles: string[]) => assert.throws(() => resolveConfig(input), (e: unknown) =>
    e instanceof ConfigError && needles.every((n) => e.message.includes(n)), needles.join(' / '));
  const plain = resolveConfig(base);
  for (const name of ['train', 'refine.affinity', 'refine.irn', 'seg']) {
    // Absent, they stay out of the resolved section (runs from before keep their fingerprints); null means none too.
    assert.ok(!('longSide' in section(plain, name)) && !('cutout' in section(plain, name)), name);
    assert.equal(section(resolveConfig(nest(name, { longSide: null, cutout: null })), name).longSide, null);
    // longSide alone drops the section's default scale range; one written beside it is refused, naming both.
    const s = section(resolveConfig(nest(name, { longSide: [320, 640] })), name);
    assert.deepEqual([s.longSide, s.scaleRange], [[320, 640], null], name);
    assert.deepEqual(section(resolveConfig(nest(name, { longSide: [320, 640], scaleRange: null })), name).longSide, [320, 640]);
    fails(nest(name, { longSide: [320, 640], scaleRange: [0.5, 1.5] }),
      `${name}.longSide and ${name}.scaleRange: both resize before the crop, give one`, '[320,640] and [0.5,1.5]');
    fails(nest(name, { longSide: [640, 320] }), `${name}.longSide: must be [low, high] with low <= high, got [640,320]`);
    fails(nest(name, { longSide: [320, 640.5] }), `${name}.longSide.1: must be whole pixels, got 640.5`);
    fails(nest(name, { longSide: [0, 640] }), `${name}.longSide.0:`);
    // Cutout: AMR's 3 squares unless told; the size is required and positive.
    assert.deepEqual(section(resolveConfig(nest(name, { cutout: { size: 128 } })), name).cutout, { size: 128, holes: 3 });
    fails(nest(name, { cutout: { size: 0 } }), `${name}.cutout.size:`);
    fails(nest(name, { cutout: {} }), `${name}.cutout.size: missing`);
    fails(nest(name, { cutout: { size: 8, count: 2 } }), `${name}.cutout.count: unknown setting`);
  }
  // The resolved config (as a run saves it) resolves again; a saved explicit scale range meets a new longSide with the error.
  const saved = resolveConfig({ ...base, train: { longSide: [448, 768] } });
  assert.deepEqual(resolveConfig(JSON.parse(JSON.stringify(saved))).train.longSide, [448, 768]);
  fails(mergeConfig(JSON.parse(JSON.stringify(plain)), { train: { longSide: [448, 768] } }), 'train.longSide and train.scaleRange');
  // model.dilate: IRN's stride-only ResNet; absent by default.
  assert.equal(resolveConfig({ ...base, model: { backbone: 'resnet50', dilate: false } }).model.dilate, false);
  assert.ok(!('dilate' in plain.model));
  fails({ ...base, model: { dilate: 'no' } }, 'model.dilate: expected boolean');
  fails({ ...base, model: { backbone: 'resnet38', dilate: false } }, "model.dilate: backbone 'resnet38' has no such option");
});

test("a section's longSide and cutout reach its training crops", async (t) => {
  const imagePath = join(await tempDir(t), 'a.jpg');
  await writeFileDeep(imagePath, await solidJpeg(40, 30));
  const item = { id: 'a', imagePath, labels: [0] };
  const crop = async (train: Record<string, unknown>) => {
    const s = resolveConfig({ ...base, train: { cropSize: 16, flip: false, ...train } }).train;
    return fitTransform(s, IMAGENET_NORM)(item, { rng: new Rng(4), epoch: 0, index: 0 });
  };
  // 40x30 to long side 20 is 20x15: a 16 px crop holds 16 columns of its 15 rows.
  const resized = await crop({ longSide: [20, 20] });
  assert.equal(resized.valid?.reduce((n, v) => n + v, 0), 16 * 15);
  // The cutout sets pixels to 0 (the solid colour normalises to no 0) and leaves the validity map.
  const cut = await crop({ longSide: [20, 20], cutout: { size: 4 } });
  assert.deepEqual(cut.valid, resized.valid);
  assert.ok(cut.image.some((v, i) => v !== resized.image[i]), 'the cutout changed pixels');
  assert.ok(cut.image.every((v, i) => v === resized.image[i] || v === 0), 'only to 0');
});
