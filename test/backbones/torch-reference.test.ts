// ResNet-50/101 against torchvision and ResNet-38 against a PyTorch transcription of the official resnet38d.py:
// the same seeded weights (random BatchNorm statistics included), the same 65x97 input, every tap and the output
// compared in eval mode, ResNet-50 at output stride 32 and 8 and ResNet-101 at 16 (torchvision's
// replace_stride_with_dilation). The weights are too big to commit: scripts/make-backbone-fixtures.py makes them
// here, with a Python that has torch and torchvision; without one these tests are skipped.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { noGrad, tensor, tidy } from '../../src/engine/index.js';
import { type Backbone, resnet101, resnet38, resnet50 } from '../../src/backbones/index.js';
import { findTorchPython } from '../../bench/common.js';
import './util.js'; // one engine thread

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const python = findTorchPython();
const hasTorchvision = python !== null && spawnSync(python, ['-c', 'import torchvision'], { timeout: 120_000 }).status === 0;
const skip = hasTorchvision ? false
  : 'no Python with torch and torchvision found (python3, /usr/bin/python3 or $WEAKSEG_TORCH_PYTHON; Debian: apt-get install python3-torchvision)';

const DIR = mkdtempSync(join(tmpdir(), 'weakseg-torch-ref-'));
after(() => rmSync(DIR, { recursive: true, force: true }));
let index: Record<string, number[]> = {};

before(() => {
  if (skip) return;
  const r = spawnSync(python!, [join(ROOT, 'scripts', 'make-backbone-fixtures.py'), DIR], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) throw new Error(`scripts/make-backbone-fixtures.py failed (${r.status}): ${r.stderr}`);
  index = JSON.parse(readFileSync(join(DIR, 'index.json'), 'utf8')) as Record<string, number[]>;
});

function f32(name: string): Float32Array {
  const b = readFileSync(join(DIR, name));
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/** Runs `net` on the fixture input with `taps` and compares each map with PyTorch's (max error vs the map's scale). */
function compare(net: Backbone, tag: string, maps: Record<string, string>): void {
  net.eval();
  noGrad(() => tidy(() => {
    const x = tensor(f32('input.f32'), { shape: [1, 3, 65, 97] });
    const out = net.forward(x, Object.keys(maps).filter((k) => k !== 'output'));
    for (const [ours, theirs] of Object.entries(maps)) {
      const t = ours === 'output' ? out.features : out.taps.get(ours)!;
      const key = `${tag}.${theirs}`;
      assert.deepEqual(t.shape, index[key], `${key}: shape`);
      const a = t.contiguous().toFloat32Array();
      const b = f32(`${key}.f32`);
      let maxErr = 0;
      let scale = 0;
      for (let i = 0; i < b.length; i++) {
        maxErr = Math.max(maxErr, Math.abs(a[i]! - b[i]!));
        scale = Math.max(scale, Math.abs(b[i]!));
      }
      assert.ok(scale > 0 && maxErr <= 1e-4 * scale, `${key}: max |ours - PyTorch| ${maxErr} against a largest value of ${scale}`);
    }
  }));
  net.dispose();
}

const RESNET_MAPS = { layer1: 'layer1', layer2: 'layer2', layer3: 'layer3', output: 'layer4' };

test('resnet50 matches torchvision at output stride 32 and 8', { skip }, () => {
  compare(resnet50({ weights: join(DIR, 'resnet50.pth'), outputStride: 32 }), 'resnet50.os32', RESNET_MAPS);
  compare(resnet50({ weights: join(DIR, 'resnet50.pth'), outputStride: 8 }), 'resnet50.os8', RESNET_MAPS);
});

test('resnet101 matches torchvision at output stride 16', { skip }, () => {
  compare(resnet101({ weights: join(DIR, 'resnet101.pth'), outputStride: 16 }), 'resnet101.os16', RESNET_MAPS);
});

test("resnet38 matches the transcription of the official resnet38d.py (conv3, conv4, conv5 and conv6)", { skip }, () => {
  compare(resnet38({ weights: join(DIR, 'resnet38.pth') }), 'resnet38.os8',
    { conv3: 'conv3', conv4: 'conv4', conv5: 'conv5', output: 'conv6' });
});
