// A submodule frozen for good (a teacher, a model loaded from another run) stays in eval mode when the trainer calls
// train() and gets no gradient, while the rest trains; loadModelWeights can load another run's model into it frozen.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { type Tensor, manualSeed, ones, tidy } from '../../src/engine/index.js';
import { saveSafetensors } from '../../src/engine/serialize/index.js';
import { Conv2d, Dropout, Module, SGD } from '../../src/nn/index.js';
import { loadModelWeights } from '../../src/train/index.js';
import { vals } from '../helpers.js';

class Branch extends Module {
  readonly conv = this.registerModule('conv', new Conv2d(2, 2, 1));
  readonly drop = this.registerModule('drop', new Dropout(0.5));
  forward(x: Tensor): Tensor {
    return this.drop.forward(this.conv.forward(x));
  }
}

class TwoBranch extends Module {
  readonly student = this.registerModule('student', new Branch());
  readonly teacher = this.registerModule('teacher', new Branch());
}

test('a frozen submodule stays in eval mode under train(), gets no gradient and is not updated', () => tidy(() => {
  manualSeed(1);
  const m = new TwoBranch();
  m.teacher.setFrozen(true);
  m.train();
  assert.equal(m.training, true);
  assert.equal(m.student.drop.training, true);
  assert.equal(m.teacher.training, false, 'the frozen module is in eval mode');
  assert.equal(m.teacher.drop.training, false, 'and so is everything inside it (its dropout is off)');
  assert.deepEqual(m.trainableParameters().length, 2, 'only the student trains');

  const x = ones([4, 2, 3, 3]);
  // Eval-mode dropout is the identity: the teacher's output is deterministic.
  assert.deepEqual(vals(m.teacher.forward(x)), vals(m.teacher.forward(x)));
  const before = vals(m.teacher.conv.weight);
  const opt = new SGD(m.trainableParameters(), { lr: 0.5 });
  m.student.forward(x).add(m.teacher.forward(x)).square().sum().backward();
  assert.equal(m.teacher.conv.weight.grad, null, 'no gradient reaches the frozen module');
  assert.ok(m.student.conv.weight.grad, 'the student gets one');
  opt.step();
  assert.deepEqual(vals(m.teacher.conv.weight), before);

  m.eval();
  m.teacher.setFrozen(false);
  assert.equal(m.teacher.training, false, 'unfrozen, it takes the mode last asked of it (eval)');
  m.train();
  assert.equal(m.teacher.drop.training, true);
  assert.equal(m.trainableParameters().length, 4);
  m.dispose();
}));

test('loadModelWeights: a run directory or checkpoint file, keys under a prefix, loaded frozen; strict otherwise', (t) => tidy(() => {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-frozen-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  manualSeed(2);
  const trained = new TwoBranch();
  saveSafetensors(join(dir, 'model.safetensors'), trained.stateDict(), { format: 'weakseg-model/1' });
  manualSeed(3);
  const target = new TwoBranch();
  loadModelWeights(dir, target.teacher, { prefix: 'student.', frozen: true });
  assert.deepEqual(vals(target.teacher.conv.weight), vals(trained.student.conv.weight));
  assert.ok(target.teacher.frozen);
  target.train();
  assert.equal(target.teacher.training, false);
  assert.throws(() => loadModelWeights(dir, target.student), /missing keys|unexpected keys/, 'without the prefix the keys do not match');
  assert.throws(() => loadModelWeights(join(dir, 'nothing'), target.student), /no such model file/);
  trained.dispose();
  target.dispose();
}));
