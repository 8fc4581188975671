// Helpers for the backbone tests: where ../shared is, and shape checks common to every backbone.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { type Tensor, noGrad, randn, setNumThreads, tidy } from '../../src/engine/index.js';
import type { Backbone } from '../../src/backbones/index.js';

// One intra-op thread for these small inputs (each test file runs in its own process): on a shared machine
// under load, libtorch's OpenMP threads wait on each other and the same forward pass can take 10-30x longer
// than on one thread. WEAKSEG_TEST_THREADS overrides.
setNumThreads(Number(process.env.WEAKSEG_TEST_THREADS ?? 1));

const ROOT = fileURLToPath(new URL('../../../', import.meta.url)); // dist/test/backbones/ -> repo root
export const SHARED = join(ROOT, '..', 'shared');
export const MOBILENET_WEIGHTS = join(SHARED, 'weights', 'mobilenet_v2_imagenet.safetensors');
export const VOC_MINI = join(SHARED, 'data', 'voc-mini');

/** A reason to skip a test when ../shared (weights, data) is absent, as in a user's fresh clone; else false. */
export function needsShared(...paths: string[]): string | false {
  const missing = paths.find((p) => !existsSync(p));
  return missing ? `../shared is absent (no ${missing}); skipping the check that needs it` : false;
}

/**
 * Runs the backbone on an N x 3 x H x W input with every tap and checks the feature map and each tap:
 * channels as declared and spatial size ceil(H / stride) (every stride-2 step here rounds up).
 */
export function checkShapes(b: Backbone, h: number, w: number, n = 1): void {
  noGrad(() => tidy(() => {
    const x: Tensor = randn([n, 3, h, w]);
    const out = b.forward(x, b.taps.map((t) => t.name));
    const os = b.outputStride;
    assert.deepEqual(out.features.shape, [n, b.outChannels, Math.ceil(h / os), Math.ceil(w / os)],
      `${b.name} OS ${os}: features`);
    assert.deepEqual([...out.taps.keys()], b.taps.map((t) => t.name), `${b.name}: taps returned`);
    for (const t of b.taps) {
      assert.deepEqual(out.taps.get(t.name)!.shape, [n, t.channels, Math.ceil(h / t.stride), Math.ceil(w / t.stride)],
        `${b.name} OS ${os}: tap ${t.name}`);
    }
    assert.equal(b.forward(x).taps.size, 0, 'no taps unless asked');
    assert.throws(() => b.forward(x, ['nope']), /unknown tap 'nope'/);
  }));
}
