// Loading weights by name from a torch.save .pth file (the engine's fixture, written by PyTorch): dtype
// conversion (float16 -> float32), rename / ignore of file keys, strict errors, metadata parsing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { dispose, empty } from '../../src/engine/index.js';
import { BatchNorm2d, Conv2d, Module, StateDictError } from '../../src/nn/index.js';
import { inputNormFromMetadata, loadWeights, readWeights } from '../../src/backbones/index.js';
import { vals } from '../helpers.js';
import './util.js';

const FIXTURES = join(fileURLToPath(new URL('../../../', import.meta.url)), 'test', 'fixtures');
const PTH = join(FIXTURES, 'tiny_state_dict.pth');
const EXPECTED = JSON.parse(readFileSync(join(FIXTURES, 'tiny_expected.json'), 'utf8')) as {
  state_dict: Record<string, { values: number[] }>;
};

/** A module shaped like the fixture's conv/bn part, plus a float32 parameter the file stores as float16. */
class Tiny extends Module {
  constructor() {
    super();
    this.registerModule('conv', new Conv2d(3, 4, 3));
    this.registerModule('bn', new BatchNorm2d(4));
    this.registerParameter('half', empty([2, 3]));
  }
}

test('readWeights reads a .pth state dict (no metadata)', () => {
  const f = readWeights(PTH);
  assert.deepEqual(f.metadata, {});
  assert.ok(f.tensors.has('conv.weight') && f.tensors.has('bn.num_batches_tracked'));
  assert.equal(f.tensors.get('f16')!.dtype, 'float16');
  dispose(f.tensors);
});

test('loadWeights: by name, float16 converted, rename and ignore applied, strict errors list the keys', () => {
  const m = new Tiny();
  const keep = new Set(['conv.weight', 'conv.bias', 'bn.weight', 'bn.bias', 'bn.running_mean', 'bn.running_var', 'f16']);
  const report = loadWeights(m, PTH, {
    rename: (k) => (k === 'f16' ? 'half' : k === 'bn.num_batches_tracked' ? null : k),
    ignore: (k) => !keep.has(k) && k !== 'half',
  });
  assert.deepEqual(report, { missing: [], unexpected: [], mismatched: [], loaded: 8 });
  const sd = m.stateDict();
  assert.equal(sd.get('half')!.dtype, 'float32');
  assert.deepEqual(vals(sd.get('half')!), EXPECTED.state_dict.f16!.values);
  for (const k of ['conv.bias', 'bn.running_var']) {
    assert.deepEqual(vals(sd.get(k)!), EXPECTED.state_dict[k]!.values.map((v) => Math.fround(v)), k);
  }

  assert.throws(() => loadWeights(m, PTH), (e: unknown) => {
    assert.ok(e instanceof StateDictError);
    assert.match(e.message, /missing keys \(1\): half; unexpected keys \(10\): nc, f16, bf16/);
    assert.match(e.message, /tiny_state_dict\.pth/);
    return true;
  });
  m.dispose();
});

test('inputNormFromMetadata parses input_mean / input_std', () => {
  assert.deepEqual(inputNormFromMetadata({ input_mean: '0.5,0.5,0.5', input_std: '0.5, 0.5, 0.5' }),
    { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
  assert.equal(inputNormFromMetadata({ padding: 'SAME' }), null);
  assert.throws(() => inputNormFromMetadata({ input_mean: '0.5,0.5', input_std: '1,1,1' }), /three comma-separated numbers/);
  assert.throws(() => inputNormFromMetadata({ input_mean: '0,0,0' }), /only one of input_mean and input_std/);
  assert.throws(() => inputNormFromMetadata({ input_mean: '0,0,0', input_std: '1,0,1' }), /must be positive/);
});
