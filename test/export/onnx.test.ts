// ONNX export: onnxruntime-node's outputs on the exported model equal weakseg's own forward (logits, and the
// single-scale probabilities of src/segmentation/infer.ts) to 1e-4 at several image sizes, for the demo's TinyNet
// segmenter and MobileNetV2 (TensorFlow SAME padding, so its pads are computed in the graph) with LargeFOV and
// ASPP heads; the CAM classifier's logits and maps; the metadata; and a clear error for an unknown module.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as ort from 'onnxruntime-node';

import { manualSeed, noGrad, tensor, tidy } from '../../src/engine/index.js';
import { mobilenetV2, tinynet, type Backbone } from '../../src/backbones/index.js';
import { DeepLab } from '../../src/segmentation/index.js';
import { multiScaleProbabilities } from '../../src/segmentation/infer.js';
import { CamNet } from '../../src/methods/cam.js';
import { BatchNorm2d, Layer, Module } from '../../src/nn/index.js';
import { OPSET, classifierToOnnx, segmenterToOnnx } from '../../src/export/onnx.js';
import { describeOnnx, readOnnxMetadata } from '../../src/export/graph.js';
import { parseModelMetadata } from '../../src/export/metadata.js';
import { exportModule, UnsupportedModuleError } from '../../src/export/modules.js';
import { GraphBuilder } from '../../src/export/graph.js';
import { randArray } from '../helpers.js';
import { MOBILENET_WEIGHTS, needsShared } from '../backbones/util.js';

const CLASSES = ['cat', 'dog', 'car'];

/** Running statistics away from 0/1, so that exporting BatchNorm as the identity would fail. */
function randomizeBatchNorm(m: Module, seed: number): void {
  let s = seed;
  noGrad(() => {
    for (const [, mod] of m.namedModules()) {
      if (!(mod instanceof BatchNorm2d)) continue;
      const sd = mod.stateDict();
      const n = mod.numFeatures;
      sd.get('running_mean')!.copy_(tensor(Float32Array.from(randArray(n, s++, -0.2, 0.2))));
      sd.get('running_var')!.copy_(tensor(Float32Array.from(randArray(n, s++, 0.5, 1.5))));
      if (mod.affine) sd.get('bias')!.copy_(tensor(Float32Array.from(randArray(n, s++, -0.1, 0.1))));
    }
  });
}

async function maxAbsDiffs(net: DeepLab, sizes: [number, number][]): Promise<{ logits: number; probabilities: number }[]> {
  net.model.eval();
  const bytes = segmenterToOnnx(net.model, { classes: CLASSES, backbone: net.backbone, head: net.headName });
  const session = await ort.InferenceSession.create(bytes);
  const out: { logits: number; probabilities: number }[] = [];
  for (const [h, w] of sizes) {
    const data = Float32Array.from(randArray(3 * h * w, h * 1000 + w, -2, 2));
    const res = await session.run({ image: new ort.Tensor('float32', data, [1, 3, h, w]) });
    const diffs = tidy(() => {
      const x = tensor(data, { shape: [1, 3, h, w] });
      const logits = noGrad(() => net.forward(x));
      const probs = multiScaleProbabilities(net, x, { scales: [1], flip: false });
      const d = (ours: Float32Array, theirs: ort.Tensor, shape: number[]) => {
        assert.deepEqual([...theirs.dims], shape);
        const t = theirs.data as Float32Array;
        let m = 0;
        for (let i = 0; i < ours.length; i++) m = Math.max(m, Math.abs(ours[i]! - t[i]!));
        return m;
      };
      return {
        logits: d(logits.toFloat32Array(), res.logits!, logits.shape),
        probabilities: d(probs.toFloat32Array(), res.probabilities!, [1, ...probs.shape]),
      };
    });
    out.push(diffs);
  }
  await session.release();
  return out;
}

const SIZES: [number, number][] = [[64, 64], [67, 93], [96, 72], [121, 130]];

test('TinyNet + LargeFOV (the demo segmenter): onnxruntime equals the forward to 1e-4 at four sizes', async () => {
  manualSeed(1);
  const net = new DeepLab(tinynet({ outputStride: 8 }), { numClasses: CLASSES.length, head: 'largefov' });
  randomizeBatchNorm(net.model, 10);
  for (const d of await maxAbsDiffs(net, SIZES)) {
    assert.ok(d.logits <= 1e-4, `logits max abs diff ${d.logits}`);
    assert.ok(d.probabilities <= 1e-4, `probabilities max abs diff ${d.probabilities}`);
  }
  net.model.dispose();
});

function mobileNet(): Backbone {
  // The ImageNet weights (TensorFlow SAME padding) where ../shared has them; random weights with SAME padding else.
  return needsShared(MOBILENET_WEIGHTS) ? mobilenetV2({ outputStride: 8, padding: 'same' })
    : mobilenetV2({ weights: MOBILENET_WEIGHTS, outputStride: 8 });
}

for (const head of ['largefov', 'aspp'] as const) {
  test(`MobileNetV2 (SAME padding, pads computed in the graph) + ${head}: equal to 1e-4 at even and odd sizes`, async () => {
    manualSeed(2);
    const backbone = mobileNet();
    assert.equal((backbone as unknown as { padding: string }).padding, 'same');
    const net = new DeepLab(backbone, { numClasses: CLASSES.length, head });
    randomizeBatchNorm(net.model.head, 20);
    for (const d of await maxAbsDiffs(net, [[64, 64], [67, 93], [97, 80]])) {
      assert.ok(d.logits <= 1e-4, `logits max abs diff ${d.logits}`);
      assert.ok(d.probabilities <= 1e-4, `probabilities max abs diff ${d.probabilities}`);
    }
    net.model.dispose();
  });
}

test('the model declares opset >= 17, dynamic height and width, and its preprocessing and classes', () => {
  manualSeed(3);
  const net = new DeepLab(tinynet({ outputStride: 8 }), { numClasses: CLASSES.length, head: 'aspp' });
  const bytes = segmenterToOnnx(net.model, { classes: CLASSES, backbone: net.backbone, head: net.headName });
  const d = describeOnnx(bytes);
  assert.ok(d.opset >= 17 && OPSET >= 17, `opset ${d.opset}`);
  assert.deepEqual(d.inputs, ['image']);
  assert.deepEqual(d.outputs, ['logits', 'probabilities']);
  const info = parseModelMetadata(readOnnxMetadata(bytes), 'test');
  assert.equal(info.kind, 'segmenter');
  assert.deepEqual(info.labels, ['background', ...CLASSES]);
  assert.deepEqual(info.mean, net.backbone.inputNorm.mean);
  assert.deepEqual(info.std, net.backbone.inputNorm.std);
  assert.equal(info.outputStride, 8);
  net.model.dispose();
});

test('the CAM classifier: logits = W GAP(f) and cams = W * f as the method computes them', async () => {
  manualSeed(4);
  const net = new CamNet(tinynet({ outputStride: 8 }), CLASSES.length);
  randomizeBatchNorm(net, 30);
  net.eval();
  const bytes = classifierToOnnx(net, { classes: CLASSES, backbone: net.backbone });
  const session = await ort.InferenceSession.create(bytes);
  const [h, w] = [75, 61];
  const data = Float32Array.from(randArray(3 * h * w, 5, -2, 2));
  const res = await session.run({ image: new ort.Tensor('float32', data, [1, 3, h, w]) });
  tidy(() => noGrad(() => {
    const f = net.backbone.forward(tensor(data, { shape: [1, 3, h, w] })).features;
    const pairs: [Float32Array, ort.Tensor][] = [
      [net.classifier.logits(f).toFloat32Array(), res.logits!], [net.classifier.cams(f).toFloat32Array(), res.cams!],
    ];
    for (const [ours, theirs] of pairs) {
      const t = theirs.data as Float32Array;
      assert.equal(t.length, ours.length);
      for (let i = 0; i < ours.length; i++) assert.ok(Math.abs(ours[i]! - t[i]!) <= 1e-4, `[${i}] ${ours[i]} vs ${t[i]}`);
    }
  }));
  await session.release();
  net.dispose();
});

test('a module the exporter does not know is an error naming its path and class', () => {
  class Mystery extends Layer {
    forward(x: never): never { return x; }
  }
  class Holder extends Module {
    readonly inner = this.registerModule('inner', new Mystery());
  }
  const g = new GraphBuilder();
  const holder = new Holder();
  assert.throws(() => exportModule(g, holder, 'image'), (e: Error) =>
    e instanceof UnsupportedModuleError && /'<root>' \(Holder\)/.test(e.message));
  assert.throws(() => exportModule(g, holder.inner, 'x', 'head.inner'), /'head\.inner' \(Mystery\)/);
});
