// The shipped config presets must stay valid as the schema evolves.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import type { ResNet } from '../../src/backbones/index.js';
import { buildBackbone, resolveConfig } from '../../src/pipeline/index.js';

const dir = resolve(import.meta.dirname, '..', '..', '..', 'configs');

test('every preset in configs/ validates, with the method and settings its name promises', () => {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  assert.ok(files.length >= 3, `expected the presets in ${dir}`);
  for (const f of files) {
    const c = resolveConfig(JSON.parse(readFileSync(join(dir, f), 'utf8')), f);
    if (f === 'demo.json') {
      // the built-in demo: the CAM baseline on TinyNet, from scratch, over the synthetic dataset's classes
      assert.deepEqual([c.method.name, c.model.backbone, c.model.weights, c.data.classes],
        ['cam', 'tinynet', undefined, ['redcap', 'greencap', 'bluecap', 'goldcap']]);
      continue;
    }
    assert.ok(f.startsWith(`${c.method.name}-`), `${f}: method ${c.method.name}`);
    if (f.includes('resnet38')) {
      // the paper's setting: ResNet-38, 448 crops of images resized to a long side in [448, 768] (train_SEAM.py's
      // RandomResizeLong), batch 8, 8 epochs, lr 0.01, and the code's momentum quirk
      assert.deepEqual([c.model.backbone, c.train.cropSize, c.train.longSide, c.train.scaleRange, c.train.batchSize, c.train.epochs,
        c.train.lr, c.train.momentum], ['resnet38', 448, [448, 768], null, 8, 8, 0.01, 0]);
    }
    if (f.includes('resnet50')) {
      // IRN's train_cam and AMR's train_amr: long side in [320, 640], crop 512, no cutout (AMR adds it only in its own
      // train_cam, which its README command does not run); IRN's ResNet-50, strides (2, 2, 2, 1) without dilation
      assert.deepEqual([c.model.outputStride, c.model.dilate, c.train.longSide, c.train.scaleRange, c.train.cropSize, c.train.cutout],
        [16, false, [320, 640], null, 512, undefined]);
      // which reaches the network: layer4 keeps stride 1 and dilation 1 (no weights: the preset's file is not here)
      const backbone = buildBackbone({ ...c, model: { ...c.model, weights: undefined } }, {});
      assert.deepEqual((backbone as ResNet).layerConfig.map((l) => [l.stride, l.dilation]), [[1, 1], [2, 1], [2, 1], [1, 1]]);
      backbone.dispose();
    }
    if (f.includes('vgg16')) {
      // MCIS's released recipe: VGG-16 D1, 256 px, 5 pairs, 15 epochs, nesterov SGD at 0.001, x0.1 at epochs 5 and 10
      assert.deepEqual([c.model.backbone, c.train.cropSize, c.train.batchSize, c.train.epochs, c.train.lr, c.train.nesterov,
        c.train.schedule.type, c.train.schedule.epochs], ['vgg16', 256, 5, 15, 0.001, true, 'step', [5, 10]]);
    }
    if (f === 'mcis-mobilenetv2-vocmini-pipeline.json') {
      // the voc-mini MCIS preset's classifier and localisation (one 256-px pass with its own views), then SEAM's chain
      const classifier = resolveConfig(JSON.parse(readFileSync(join(dir, 'mcis-mobilenetv2-vocmini.json'), 'utf8')), f);
      assert.deepEqual([c.method, c.model, c.train, c.cams.scales, c.cams.flip],
        [classifier.method, classifier.model, classifier.train, [1], false]);
    }
    if (f === 'amr-resnet50-voc.json') {
      // the official AMR code's setting: ResNet-50 OS 16, crop 512, batch 16, 8 epochs, lr 0.01 (compensation 10x),
      // AdvCAM over Grad-CAM branches and seeds at a fixed background 0.20
      assert.deepEqual([c.model.backbone, c.model.outputStride, c.train.cropSize, c.train.batchSize, c.train.epochs, c.train.lr,
        c.method.variant, c.method.compensationLrMult, c.method.branchMap, c.cams.advcam?.iterations, c.eval.threshold],
      ['resnet50', 16, 512, 16, 8, 0.01, 'code', 10, 'gradcam', 27, 0.2]);
      // and its IRN (methods-reference.md 6(e)): IR labels at 0.60/0.33, batch 16 of 512 crops, 3 epochs, lr 0.1,
      // the walk on CAMs^1.5 with beta 10, 2^8 steps and a background score of 0.25
      const i = c.refine.irn;
      assert.deepEqual([i.confFg, i.confBg, i.batchSize, i.cropSize, i.epochs, i.lr, i.walk.camExponent, i.walk.beta, i.walk.expTimes, i.walk.bgThreshold],
        [0.6, 0.33, 16, 512, 3, 0.1, 1.5, 10, 8, 0.25]);
    }
  }
});
