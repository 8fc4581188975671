import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { ConfigError, resolveConfig, thresholdList } from '../../src/pipeline/config.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const bin = join(root, 'dist', 'src', 'cli', 'main.js');

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: root, timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('--help works for the program and every command', () => {
  const top = cli('--help');
  assert.equal(top.code, 0, top.err);
  for (const c of ['train', 'cams', 'eval', 'run', 'config']) assert.match(top.out, new RegExp(`\\b${c}\\b`));
  for (const [cmd, flag] of [['train', '--resume'], ['cams', '--scales'], ['eval', '--fit-split'], ['run', '--epochs'], ['config', '--set']]) {
    const r = cli(cmd!, '--help');
    assert.equal(r.code, 0, `${cmd} --help: ${r.err}`);
    assert.match(r.out, new RegExp(`Usage: weakseg ${cmd}`));
    assert.ok(r.out.includes(flag!), `${cmd} --help mentions ${flag}`);
  }
});

test('a bad config file gives a message naming the field', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'bad.json');
  writeFileSync(file, JSON.stringify({
    runDir: join(dir, 'run'),
    data: { root: '/data/voc' },
    train: { batchSize: '16', lr: -1, epoch: 3 },
    cams: { scales: [0.5, 'x'] },
  }));
  const r = cli('config', '-c', file);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /train\.batchSize: expected number, got "16"/);
  assert.match(r.err, /train\.lr: .*>0.*got -1/);
  assert.match(r.err, /train\.epoch: unknown setting \(did you mean 'train\.epochs'\?\)/);
  assert.match(r.err, /cams\.scales\.1: expected number/);

  const missing = cli('config', '-r', join(dir, 'run2'));
  assert.equal(missing.code, 2);
  assert.match(missing.err, /data: missing/);

  writeFileSync(file, '{ "runDir": "x", ');
  const syntax = cli('config', '-c', file);
  assert.equal(syntax.code, 2);
  assert.match(syntax.err, /is not valid JSON/);

  const flag = cli('train', '-r', join(dir, 'run3'), '--data-root', '/nowhere', '--epochs', 'many');
  assert.notEqual(flag.code, 0);
  assert.match(flag.err, /--epochs must be a number, got 'many'/);
});

test('flags, --set and the config file combine; defaults fill the rest', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'ok.json');
  writeFileSync(file, JSON.stringify({ runDir: join(dir, 'run'), data: { root: '/data/voc' }, train: { epochs: 3, lr: 0.02 } }));
  const r = cli('config', '-c', file, '--lr', '0.05', '--set', 'train.scaleRange=[0.5,1.5]', '--fit-split', 'none', '--momentum', '0',
    '--normalization', 'minmax');
  assert.equal(r.code, 0, r.err);
  const c = JSON.parse(r.out);
  assert.equal(c.train.epochs, 3);
  assert.equal(c.train.lr, 0.05);
  assert.equal(c.train.momentum, 0);
  assert.deepEqual(c.train.scaleRange, [0.5, 1.5]);
  assert.equal(c.eval.fitSplit, null);
  assert.equal(c.train.batchSize, 16);
  assert.deepEqual(c.cams.scales, [0.5, 1, 1.5, 2]);
  assert.equal(c.cams.normalization, 'minmax');
  assert.equal(c.model.backbone, 'mobilenet_v2');
});

test('resolveConfig: typed defaults and errors', () => {
  const c = resolveConfig({ runDir: 'r', data: { root: 'd' } });
  assert.equal(c.train.momentum, 0.9);
  assert.equal(c.train.headLrMult, 10);
  assert.equal(c.eval.thresholds.from, 0.05);
  assert.throws(() => resolveConfig({ runDir: 'r', data: { root: 'd' }, model: { outputStride: 4 } }),
    (e: unknown) => e instanceof ConfigError && /model\.outputStride/.test(e.message));
  const ts = thresholdList({ from: 0.05, to: 0.6, step: 0.01 });
  assert.equal(ts.length, 56);
  assert.equal(ts[0], 0.05);
  assert.equal(ts[55], 0.6);
});

test('stage names have one spelling, kebab-case: --help says so, a camelCase one is refused naming it', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.match(cli('--help').out, /stage names are kebab-case everywhere: commands, --stages, --force, run\.stages/);
  assert.match(cli('run', '--help').out.replace(/\s+/g, ' '), /--stages <list> stages to run, comma-separated kebab-case names \(default all: train,cams,eval,crf,affinity,random-walk,irn,irn-walk,saliency,seg-train,seg-eval,report; saliency only with refine\.saliency\.dir\)/);
  const run = ['-r', join(dir, 'run'), '--data-root', join(dir, 'nowhere')];
  const stages = cli('config', ...run, '--stages', 'train,randomWalk');
  assert.equal(stages.code, 2, stages.err);
  assert.match(stages.err, /run\.stages\.1: .*\(stage names are kebab-case: write 'random-walk'\), got "randomWalk"/);
  const pseudo = cli('config', ...run, '--set', 'seg.pseudoMasks=randomWalk');
  assert.equal(pseudo.code, 2, pseudo.err);
  assert.match(pseudo.err, /seg\.pseudoMasks: .*write 'random-walk'/);
  const force = cli('run', ...run, '--force', 'segEval');
  assert.equal(force.code, 2, force.err);
  assert.match(force.err, /--force: unknown stage 'segEval' \(stage names are kebab-case: write 'seg-eval'\)/);
  const ok = cli('config', ...run, '--stages', 'crf,random-walk', '--pseudo-masks', 'crf');
  assert.equal(ok.code, 0, ok.err);
  assert.deepEqual(JSON.parse(ok.out).run.stages, ['crf', 'random-walk']);
});

test('--set and config files refuse __proto__, constructor and prototype paths', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const path of ['__proto__.x', 'train.__proto__.polluted', 'constructor.prototype.x']) {
    const r = cli('config', '-r', join(dir, 'run'), '--data-root', dir, '--set', `${path}=1`);
    assert.equal(r.code, 2, `${path}: ${r.out}`);
    assert.match(r.err, new RegExp(`'${path.replace(/\./g, '\\.')}': (.*is not a setting name|empty path segment)`));
    assert.doesNotMatch(r.err, /unknown setting/); // Object.prototype was not written
  }
  const file = join(dir, 'proto.json');
  writeFileSync(file, '{ "runDir": "x", "data": { "root": "d" }, "train": { "__proto__": { "lr": 5 } } }');
  const r = cli('config', '-c', file);
  assert.equal(r.code, 2);
  assert.match(r.err, /train\.__proto__: unknown setting/); // an own key, reported; no prototype was replaced
});
