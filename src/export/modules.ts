// The module tree as ONNX nodes, in inference semantics (BatchNorm on its running statistics, dropout off).
// Each converter mirrors its module's forward(); a module with no converter is an error naming its path and class,
// never a silent approximation.
//
// TensorFlow SAME padding (MobileNetV2's ImageNet weights) depends on the input size for strided convolutions:
// the pads are computed in the graph from Shape(x), exactly as BackboneConv2d.padsFor and samePadding do:
//   out = ceil(n / s),  total = max((out - 1) s + (k - 1) d + 1 - n, 0),  pads = [floor(total / 2), the rest]
// so the exported model keeps dynamic height and width. (At stride 1 the pads do not depend on n.)
import type { Tensor } from '../engine/index.js';
import { tidy } from '../engine/index.js';
import { BatchNorm2d, Conv2d, Dropout, Dropout2d, Identity, type Module, ReLU, ReLU6, Sequential } from '../nn/index.js';
import { BackboneConv2d, samePadding } from '../backbones/conv.js';
import { InvertedResidual, MobileNetV2 } from '../backbones/mobilenet_v2.js';
import { ConvBNReLU, TinyNet } from '../backbones/tinynet.js';
import { AsppHead, DeepLabNet, LargeFovHead } from '../segmentation/deeplab.js';
import { CamNet } from '../methods/cam.js';
import type { GraphBuilder } from './graph.js';

export class UnsupportedModuleError extends Error {
  constructor(path: string, module: Module) {
    super(`the ONNX exporter does not know module '${path || '<root>'}' (${module.constructor.name}); ` +
      `it exports ${CONVERTERS.map(([c]) => c.name).join(', ')}`);
    this.name = 'UnsupportedModuleError';
  }
}

/** A module's converter: appends its nodes and returns the name of its output. */
type Converter<M extends Module> = (g: GraphBuilder, m: M, x: string, path: string) => string;

function floats(t: Tensor): Float32Array {
  return tidy(() => t.toFloat32Array());
}

function pairOf(v: number | [number, number]): [number, number] {
  return typeof v === 'number' ? [v, v] : v;
}

function conv(g: GraphBuilder, m: Conv2d, x: string, path: string, pads: [number, number, number, number]): string {
  const w = g.initializer(`${path}.weight`, m.weight.shape, floats(m.weight));
  const inputs = [x, w];
  if (m.bias) inputs.push(g.initializer(`${path}.bias`, m.bias.shape, floats(m.bias)));
  const [kh, kw] = [m.weight.size(2), m.weight.size(3)];
  const [pt, pl, pb, pr] = pads;
  return g.op('Conv', inputs, {
    kernel_shape: [kh, kw], strides: pairOf(m.opts.stride), dilations: pairOf(m.opts.dilation), group: m.opts.groups,
    pads: [pt, pl, pb, pr],
  }, path);
}

/** Conv2d and its subclasses with fixed padding (AtrousConv2d pads by its rate). */
const convSymmetric: Converter<Conv2d> = (g, m, x, path) => {
  const [ph, pw] = pairOf(m.opts.padding);
  return conv(g, m, x, path, [ph, pw, ph, pw]);
};

/** TensorFlow SAME pads of one strided convolution, from the input's runtime size: [0, 0, top, left, 0, 0, bottom, right]. */
function samePadsInGraph(g: GraphBuilder, x: string, path: string, k: [number, number], s: [number, number], d: [number, number]): string {
  const hw = g.op('Slice', [g.op('Shape', [x], {}, `${path}.shape`), g.int64(`${path}.c2`, [2]), g.int64(`${path}.c4`, [4])], {}, `${path}.hw`);
  const stride = g.int64(`${path}.stride`, s);
  const out = g.op('Div', [g.op('Add', [hw, g.int64(`${path}.sm1`, [s[0] - 1, s[1] - 1])]), stride], {}, `${path}.out`);
  // (out - 1) * s + (k - 1) * d + 1 - n, clamped at 0.
  const span = g.int64(`${path}.span`, [(k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1]);
  const need = g.op('Sub', [g.op('Add', [g.op('Mul', [g.op('Sub', [out, g.int64(`${path}.one`, [1, 1])]), stride]), span]), hw]);
  const total = g.op('Max', [need, g.int64(`${path}.zero`, [0, 0])], {}, `${path}.total`);
  const before = g.op('Div', [total, g.int64(`${path}.two`, [2, 2])], {}, `${path}.before`);
  const after = g.op('Sub', [total, before], {}, `${path}.after`);
  const zeros = g.int64(`${path}.nc`, [0, 0]);
  return g.op('Concat', [zeros, before, zeros, after], { axis: 0 }, `${path}.pads`);
}

const backboneConv: Converter<BackboneConv2d> = (g, m, x, path) => {
  const k: [number, number] = [m.weight.size(2), m.weight.size(3)];
  const s = pairOf(m.opts.stride);
  const d = pairOf(m.opts.dilation);
  if (m.padding === 'symmetric') return convSymmetric(g, m, x, path);
  if (s[0] === 1 && s[1] === 1) {
    // At stride 1 the SAME total is (k - 1) d whatever the size, so the pads are constants (samePadding of any n).
    const [pt, pb] = samePadding(1, k[0], 1, d[0]);
    const [pl, pr] = samePadding(1, k[1], 1, d[1]);
    return conv(g, m, x, path, [pt, pl, pb, pr]);
  }
  const padded = g.op('Pad', [x, samePadsInGraph(g, x, path, k, s, d)], { mode: 'constant' }, `${path}.padded`);
  return conv(g, m, padded, path, [0, 0, 0, 0]);
};

const batchNorm: Converter<BatchNorm2d> = (g, m, x, path) => {
  const sd = m.stateDict();
  const n = m.numFeatures;
  const scale = m.affine ? floats(sd.get('weight')!) : new Float32Array(n).fill(1);
  const bias = m.affine ? floats(sd.get('bias')!) : new Float32Array(n);
  return g.op('BatchNormalization', [
    x,
    g.initializer(`${path}.weight`, [n], scale),
    g.initializer(`${path}.bias`, [n], bias),
    g.initializer(`${path}.running_mean`, [n], floats(sd.get('running_mean')!)),
    g.initializer(`${path}.running_var`, [n], floats(sd.get('running_var')!)),
  ], { epsilon: { float: m.eps } }, path);
};

function relu6(g: GraphBuilder, x: string, path: string): string {
  return g.op('Clip', [x, g.initializer(`${path}.min`, [], new Float32Array([0])), g.initializer(`${path}.max`, [], new Float32Array([6]))], {}, path);
}

function child(path: string, name: string): string {
  return path ? `${path}.${name}` : name;
}

const sequential: Converter<Sequential> = (g, m, x, path) =>
  m.layers.reduce((cur, layer, i) => exportModule(g, layer, cur, child(path, String(i))), x);

const invertedResidual: Converter<InvertedResidual> = (g, m, x, path) => {
  const y = exportModule(g, m.conv, x, child(path, 'conv'));
  return m.useResConnect ? g.op('Add', [x, y], {}, `${path}.sum`) : y;
};

const convBNReLU: Converter<ConvBNReLU> = (g, m, x, path) =>
  g.op('Relu', [exportModule(g, m.bn, exportModule(g, m.conv, x, child(path, 'conv')), child(path, 'bn'))], {}, `${path}.relu`);

const mobileNetV2: Converter<MobileNetV2> = (g, m, x, path) =>
  m.features.layers.slice(0, m.lastBlock + 1)
    .reduce((cur, layer, i) => exportModule(g, layer, cur, child(path, `features.${i}`)), x);

const tinyNet: Converter<TinyNet> = (g, m, x, path) => {
  const names = m.taps.map((t) => t.name).concat('layer4');
  return m.stages.reduce((cur, stage, i) => exportModule(g, stage, cur, child(path, names[i]!)), x);
};

const largeFov: Converter<LargeFovHead> = (g, m, x, path) => {
  const a = g.op('Relu', [exportModule(g, m.bn_fov, exportModule(g, m.conv_fov, x, child(path, 'conv_fov')), child(path, 'bn_fov'))]);
  const b = g.op('Relu', [exportModule(g, m.bn_fov2, exportModule(g, m.conv_fov2, a, child(path, 'conv_fov2')), child(path, 'bn_fov2'))]);
  return exportModule(g, m.cls_conv, b, child(path, 'cls_conv')); // dropout1 is the identity at inference
};

const aspp: Converter<AsppHead> = (g, m, x, path) =>
  m.branches.map((c, i) => exportModule(g, c, x, child(path, `c${i}`)))
    .reduce((sum, y) => g.op('Add', [sum, y], {}, `${path}.sum`));

const deepLab: Converter<DeepLabNet> = (g, m, x, path) =>
  exportModule(g, m.head, exportModule(g, m.backbone, x, child(path, 'backbone')), child(path, 'head'));

const passThrough: Converter<Module> = (_g, _m, x) => x;

/** Most specific classes first (instanceof picks the first match). */
const CONVERTERS: [abstract new (...args: any[]) => Module, Converter<any>][] = [
  [BackboneConv2d, backboneConv],
  [Conv2d, convSymmetric],
  [BatchNorm2d, batchNorm],
  [ReLU, (g, _m, x, path) => g.op('Relu', [x], {}, path)],
  [ReLU6, (g, _m, x, path) => relu6(g, x, path)],
  [Dropout, passThrough],
  [Dropout2d, passThrough],
  [Identity, passThrough],
  [Sequential, sequential],
  [InvertedResidual, invertedResidual],
  [ConvBNReLU, convBNReLU],
  [MobileNetV2, mobileNetV2],
  [TinyNet, tinyNet],
  [LargeFovHead, largeFov],
  [AsppHead, aspp],
  [DeepLabNet, deepLab],
];

/** Appends the nodes of `module` applied to the value `x`; returns the output value's name. */
export function exportModule(g: GraphBuilder, module: Module, x: string, path = ''): string {
  const entry = CONVERTERS.find(([cls]) => module instanceof cls);
  if (!entry) throw new UnsupportedModuleError(path, module);
  return entry[1](g, module, x, path);
}

/**
 * The CAM classifier: `logits` = W GAP(f) (N x C) and `cams` = W * f (N x C x h x w, not rectified: src/cams
 * applies the ReLU after fusing). SEAM and other methods have their own heads and are refused by name.
 */
export function exportCamNet(g: GraphBuilder, net: Module, x: string): { logits: string; cams: string } {
  if (!(net instanceof CamNet)) {
    throw new UnsupportedModuleError('', net);
  }
  const f = exportModule(g, net.backbone, x, 'backbone');
  const weight = net.classifier.weight;
  const w = g.initializer('classifier.conv.weight', weight.shape, floats(weight));
  const cams = g.op('Conv', [f, w], { kernel_shape: [1, 1] }, 'cams');
  const pooled = g.op('GlobalAveragePool', [f]);
  const logits = g.op('Flatten', [g.op('Conv', [pooled, w], { kernel_shape: [1, 1] })], { axis: 1 }, 'logits');
  return { logits, cams };
}
