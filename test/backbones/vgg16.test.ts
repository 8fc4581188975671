// VGG-16 D1 (MCIS's backbone) against the official make_layers(cfg['D1']) in PyTorch (bench/mcis_torch.py), on
// torchvision's vgg16 state dict with random weights, written here by torchvision as .pth and as safetensors (the
// weights are too big to commit). Skipped without a Python that has torch and torchvision.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { manualSeed, noGrad, randn, tidy } from '../../src/engine/index.js';
import { loadSafetensors, saveSafetensors } from '../../src/engine/serialize/index.js';
import { createBackbone, vgg16 } from '../../src/backbones/index.js';
import { findTorchPython } from '../../bench/common.js';
import './util.js'; // one engine thread

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SCRIPT = join(ROOT, 'bench', 'mcis_torch.py');
const python = findTorchPython();
const hasTorchvision = python !== null && spawnSync(python, ['-c', 'import torchvision'], { timeout: 120_000 }).status === 0;
const skip = hasTorchvision ? false : 'no Python with torch and torchvision (python3, /usr/bin/python3 or $WEAKSEG_TORCH_PYTHON)';
const DIR = mkdtempSync(join(tmpdir(), 'weakseg-vgg16-'));
after(() => rmSync(DIR, { recursive: true, force: true }));

function py(args: string[]): void {
  const r = spawnSync(python!, [SCRIPT, ...args], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`mcis_torch.py ${args[0]} failed (${r.status}): ${r.stderr}`);
}

test('VGG-16 D1: layout, output stride 8, taps; the registry takes only its options', () => {
  const net = vgg16();
  const names = [...net.stateDict().keys()];
  assert.equal(names.length, 26, '13 convolutions, weight and bias');
  assert.ok(names.includes('features.28.weight') && !names.some((k) => k.startsWith('classifier')));
  net.eval();
  noGrad(() => tidy(() => {
    const out = net.forward(randn([1, 3, 64, 48]), ['conv3', 'conv4']);
    assert.deepEqual(out.features.shape, [1, 512, 8, 6]);
    assert.deepEqual(out.taps.get('conv3')!.shape, [1, 256, 16, 12]);
    assert.deepEqual(out.taps.get('conv4')!.shape, [1, 512, 8, 6]);
  }));
  assert.throws(() => createBackbone('vgg16', { padding: 'same' }), /unknown option 'padding'/);
  assert.throws(() => createBackbone('vgg16', { outputStride: 16 }), /outputStride must be one of 8/);
  net.dispose();
});

test("VGG-16 D1 loads torchvision's vgg16 state dict by name (.pth and .safetensors, classifier ignored) and matches make_layers(cfg['D1'])", { skip }, () => {
  manualSeed(2);
  const x = randn([1, 3, 45, 37]);
  saveSafetensors(join(DIR, 'x.safetensors'), { x });
  const [pth, st] = [join(DIR, 'vgg16.pth'), join(DIR, 'vgg16.safetensors')];
  // One Python run: torchvision writes both files, then the official make_layers runs on the .pth.
  py(['--make-vgg16', pth, st, '--features-only', '--forward-d1', pth, join(DIR, 'x.safetensors'), join(DIR, 'y.safetensors')]);
  const y = loadSafetensors(join(DIR, 'y.safetensors')).tensors.get('y')!;
  for (const weights of [pth, st]) {
    const net = vgg16({ weights });
    net.eval();
    noGrad(() => tidy(() => {
      const ours = net.forward(x).features;
      assert.deepEqual(ours.shape, y.shape);
      const err = ours.sub(y).abs().max().item();
      const scale = y.abs().max().item();
      assert.ok(scale > 0 && err <= 1e-4 * scale, `${weights}: max |ours - PyTorch| ${err} against ${scale}`);
    }));
    net.dispose();
  }
  for (const t of [x, y]) t.dispose();
});
