// Whole networks as ONNX models: the segmenter (logits at the output stride, and class probabilities at the
// input's size as weakseg's single-scale prediction computes them) and the CAM classifier.
//
//   input          image          float32 N x 3 x H x W, RGB pixels in [0, 1] normalised: (x - mean) / std
//   segmenter      logits         N x K x h x w                       the network's forward
//                  probabilities  N x K x H x W = softmax(bilinear_up(logits, H x W, corners aligned))
//   classifier     logits         N x C  (sigmoid for tags)           cams  N x C x h x w (before the ReLU)
//
// H and W are dynamic: every size-dependent quantity (SAME pads, the upsampling target) is computed in the graph.
import type { Backbone } from '../backbones/backbone.js';
import type { DeepLabNet } from '../segmentation/deeplab.js';
import type { Module } from '../nn/index.js';
import { GraphBuilder, OPSET } from './graph.js';
import { exportCamNet, exportModule } from './modules.js';
import { modelMetadata, type ModelDescription } from './metadata.js';

const IMAGE = { name: 'image', dtype: 'float32' as const, shape: ['batch', 3, 'height', 'width'] };

function withEval<T>(net: Module, fn: () => T): T {
  const wasTraining = [...net.namedModules()].map(([, m]) => m.training);
  net.eval();
  try {
    return fn();
  } finally {
    [...net.namedModules()].forEach(([, m], i) => { m.training = wasTraining[i]!; });
  }
}

/** The segmenter as an ONNX model (inference semantics whatever the module's train/eval mode). */
export function segmenterToOnnx(net: DeepLabNet, description: ModelDescription): Uint8Array {
  return withEval(net, () => {
    const g = new GraphBuilder([IMAGE.name, 'logits', 'probabilities']);
    const image = IMAGE.name;
    const logits = exportModule(g, net, image);
    const batchAndLabels = g.op('Slice', [g.op('Shape', [logits]), g.int64('c0', [0]), g.int64('c2', [2])]);
    const imageHw = g.op('Slice', [g.op('Shape', [image]), g.int64('c2', [2]), g.int64('c4', [4])]);
    const size = g.op('Concat', [batchAndLabels, imageHw], { axis: 0 }, 'probabilities.size');
    const up = g.op('Resize', [logits, '', '', size], { mode: 'linear', coordinate_transformation_mode: 'align_corners' }, 'logits.up');
    const probabilities = g.op('Softmax', [up], { axis: 1 }, 'probabilities.value');
    const K = description.classes.length + 1;
    return g.encode({
      name: `weakseg segmenter (${description.backbone.name}, ${description.head ?? 'head'})`,
      inputs: [IMAGE],
      outputs: [
        { name: 'logits', dtype: 'float32', shape: ['batch', K, 'logits_height', 'logits_width'], from: logits },
        { name: 'probabilities', dtype: 'float32', shape: ['batch', K, 'height', 'width'], from: probabilities },
      ],
      metadata: modelMetadata({ ...description, kind: 'segmenter' }),
      docString: 'weakseg segmentation network: label 0 is background, label i the class classes[i - 1]',
    });
  });
}

/** The CAM classifier (`CamNet`) as an ONNX model with `logits` and `cams`. */
export function classifierToOnnx(net: Module & { backbone: Backbone }, description: ModelDescription): Uint8Array {
  return withEval(net, () => {
    const g = new GraphBuilder([IMAGE.name, 'logits', 'cams']);
    const image = IMAGE.name;
    const { logits, cams } = exportCamNet(g, net, image);
    const C = description.classes.length;
    return g.encode({
      name: `weakseg classifier (${description.backbone.name})`,
      inputs: [IMAGE],
      outputs: [
        { name: 'logits', dtype: 'float32', shape: ['batch', C], from: logits },
        { name: 'cams', dtype: 'float32', shape: ['batch', C, 'cams_height', 'cams_width'], from: cams },
      ],
      metadata: modelMetadata({ ...description, kind: 'classifier' }),
      docString: 'weakseg CAM classifier: sigmoid(logits) are the tag scores; cams are rectified, fused and normalised by weakseg',
    });
  });
}

export { OPSET };
