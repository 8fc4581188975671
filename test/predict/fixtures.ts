// Small runs for the predict and export tests: a random TinyNet LargeFOV segmenter (its classifier scaled up so
// that it predicts several labels) and a CAM classifier with a seed threshold, saved as a run would save them.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

import { manualSeed, noGrad, randn } from '../../src/engine/index.js';
import { saveSafetensors } from '../../src/engine/serialize/index.js';
import { tinynet } from '../../src/backbones/index.js';
import { DeepLab, type LargeFovHead } from '../../src/segmentation/index.js';
import { CamNet } from '../../src/methods/cam.js';
import { resolveConfig } from '../../src/pipeline/config.js';
import { segmenterToOnnx } from '../../src/export/onnx.js';

export const CLASSES = ['cat', 'dog', 'car'];

export function runConfig(runDir: string) {
  return resolveConfig({ runDir, runtime: { threads: 1 }, data: { root: join(runDir, 'no-data'), classes: CLASSES }, model: { backbone: 'tinynet' },
    seg: { head: 'largefov', scales: [1], testFlip: false } });
}

/** A run with seg/model.safetensors; returns the segmenter's ONNX export for comparisons. */
export function makeSegmenterRun(runDir: string, seed = 7): Uint8Array {
  manualSeed(seed);
  const net = new DeepLab(tinynet({ outputStride: 8 }), { numClasses: CLASSES.length, head: 'largefov' });
  const cls = (net.model.head as LargeFovHead).cls_conv.weight;
  noGrad(() => cls.copy_(randn(cls.shape).mul(0.5)));
  net.model.eval();
  mkdirSync(join(runDir, 'seg'), { recursive: true });
  saveSafetensors(join(runDir, 'seg', 'model.safetensors'), net.model.stateDict(), { format: 'weakseg-segmenter/1', classes: JSON.stringify(CLASSES) });
  writeFileSync(join(runDir, 'config.json'), JSON.stringify(runConfig(runDir)));
  const onnx = segmenterToOnnx(net.model, { classes: CLASSES, backbone: net.backbone, head: 'largefov' });
  net.model.dispose();
  return onnx;
}

/** A run with only the classifier (model.safetensors) and the eval stage's threshold. */
export function makeClassifierRun(runDir: string): void {
  const camNet = new CamNet(tinynet({ outputStride: 8 }), CLASSES.length);
  mkdirSync(runDir, { recursive: true });
  saveSafetensors(join(runDir, 'model.safetensors'), camNet.stateDict(), { format: 'weakseg-model/1', classes: JSON.stringify(CLASSES) });
  camNet.dispose();
  writeFileSync(join(runDir, 'config.json'), JSON.stringify(runConfig(runDir)));
  writeFileSync(join(runDir, 'metrics.json'), JSON.stringify({ eval: { threshold: 0.3, mode: 'fixed', thresholdChosenOn: 'test' } }));
}

/** A textured test image: blocks of colour with noise, so that a random network predicts several labels. */
export function texture(w: number, h: number, seed: number): sharp.Sharp {
  const data = Buffer.alloc(w * h * 3);
  let s = seed;
  const r = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const block = (Math.floor(x / 24) + 3 * Math.floor(y / 24)) % 5;
      for (let c = 0; c < 3; c++) data[(y * w + x) * 3 + c] = Math.min(255, ((block * 53 + c * 97) % 256) * 0.8 + r() * 50);
    }
  }
  return sharp(data, { raw: { width: w, height: h, channels: 3 } });
}
