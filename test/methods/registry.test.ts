// The method registry and the config's method section: what a definition must have, the union on the method name,
// the old shape's migration message, and `weakseg methods`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';

import { type MethodDefinition, methodDefaults, methodDefinition, methodNames, registerMethod } from '../../src/methods/index.js';
import { ConfigError, mergeConfig, resolveConfig } from '../../src/pipeline/config.js';
import { describeMethods } from '../../src/cli/main.js';

const base = { runDir: 'runs/x', data: { root: 'data' } };
const build = () => { throw new Error('not built in this test'); };

test('the registry rejects a method without a settings schema, with a setting lacking a default, a taken name, or an unknown inference setting', () => {
  const bad = (d: Partial<MethodDefinition>) => () => registerMethod(d as MethodDefinition);
  assert.throws(bad({ name: 'noschema', title: 'X', paper: 'p', build }), /method 'noschema' has no settings schema/);
  assert.throws(bad({ name: 'plainobject', title: 'X', paper: 'p', build, settings: { a: 1 } as unknown as z.ZodObject }),
    /has no settings schema/);
  assert.throws(bad({ name: 'nodefault', title: 'X', paper: 'p', build, settings: z.object({ k: z.number() }) }),
    /every setting needs a default \(k has none\)/);
  assert.throws(bad({ name: 'usesname', title: 'X', paper: 'p', build, settings: z.object({ name: z.string().default('a') }) }), /reserved/);
  assert.throws(bad({ name: 'seam', title: 'X', paper: 'p', build, settings: z.object({}) }), /already registered/);
  assert.throws(bad({ name: 'Bad Name', title: 'X', paper: 'p', build, settings: z.object({}) }), /lower case/);
  assert.throws(bad({ name: 'nopaper', title: 'X', paper: '', build, settings: z.object({}) }), /paper/);
  assert.throws(bad({ name: 'badinference', title: 'X', paper: 'p', build, settings: z.object({ k: z.number().default(1) }), inferenceSettings: ['k', 'q'] }),
    /inferenceSettings names no setting: q/);
  assert.deepEqual(methodNames().slice(0, 2), ['cam', 'seam'], 'nothing was registered by the failures');
});

test('a registered method appears in the config union with its defaults, and only its settings resolve', () => {
  assert.throws(() => resolveConfig({ ...base, method: { name: 'test-pairs' } }), new RegExp(`must name a method: ${methodNames().join(', ')}, got "test-pairs"`));
  registerMethod({
    name: 'test-pairs', title: 'TP', paper: 'a test', build,
    settings: z.object({ partners: z.number().int().positive().default(3), shareClass: z.number().default(1) }).strict(),
  });
  assert.ok(methodNames().includes('test-pairs'));
  assert.deepEqual(resolveConfig({ ...base, method: { name: 'test-pairs', partners: 5 } }).method, { name: 'test-pairs', partners: 5, shareClass: 1 });
  assert.throws(() => resolveConfig({ ...base, method: { name: 'test-pairs', variant: 'paper' } }),
    (e: unknown) => e instanceof ConfigError && /method\.variant: unknown setting; known here: name, partners, shareClass/.test(e.message));
  assert.match(describeMethods(), /test-pairs \(TP\): a test\n {2}partners = 3\n {2}shareClass = 1/);
  assert.match(describeMethods(), /\n {2}camSource = \(unset\) {2}\[inference\] {2}the map the CAM stage reads/);
  assert.match(describeMethods(), /\n {2}variant = "code" {2}'code'/, 'a training setting is not marked');
});

test('config.method: defaults per method, SEAM defaults from methods/seam.ts, unknown names and settings named', () => {
  assert.deepEqual(resolveConfig(base).method, { name: 'cam' });
  const seam = resolveConfig({ ...base, method: { name: 'seam', variant: 'paper' } }).method;
  assert.deepEqual(seam, { name: 'seam', ...methodDefaults('seam'), variant: 'paper' });
  assert.deepEqual(methodDefaults('seam'), { variant: 'code', transform: 'rescale', scaleFactor: 0.3, erLoss: 'l1', dropout: 0 });
  assert.throws(() => resolveConfig({ ...base, method: { name: 'nosuch' } }), /method\.name: must name a method: cam, seam/);
  assert.throws(() => resolveConfig({ ...base, method: { name: 'seam', varient: 'paper' } }), /did you mean 'method\.variant'/);
  assert.throws(() => methodDefinition('nope'), /unknown method 'nope' \(known: cam, seam/);
  // A later layer naming another method replaces the section (flags over a file), the same method merges.
  assert.deepEqual(mergeConfig({ method: { name: 'seam', variant: 'paper' } }, { method: { name: 'cam' } }), { method: { name: 'cam' } });
  assert.deepEqual(mergeConfig({ method: { name: 'seam', variant: 'paper' } }, { method: { name: 'seam', dropout: 0.5 } }),
    { method: { name: 'seam', variant: 'paper', dropout: 0.5 } });
});

test('a config in the old shape (model.method, a top-level seam section) gets a ConfigError that says how to write it', () => {
  const old = { ...base, model: { method: 'seam', backbone: 'resnet38' }, seam: { variant: 'paper', dropout: 0.5 } };
  assert.throws(() => resolveConfig(old, 'old.json'), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /^old\.json: "model\.method" and the top-level "seam" section are the old config shape/);
    assert.ok(e.message.includes('"method": {"name":"seam","variant":"paper","dropout":0.5}'), e.message);
    return true;
  });
  assert.throws(() => resolveConfig({ ...base, model: { method: 'cam' } }), /"model\.method" is the old config shape; .*"method": \{"name":"cam"\}/);
  assert.throws(() => resolveConfig({ ...base, seam: { variant: 'paper' } }), /"method": \{"name":"seam","variant":"paper"\}/);
});
