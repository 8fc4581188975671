// ResNet-50 / ResNet-101 (He et al. 2016, torchvision's v1.5: the stride sits on the 3x3 convolution) in
// torchvision's layout, so its state dicts load by name:
//   conv1, bn1 (7x7 stride 2), max pool, layer1..layer4 of Bottleneck blocks
//   (conv1/bn1 1x1, conv2/bn2 3x3, conv3/bn3 1x1 expanding 4x, downsample.0 conv / downsample.1 BN),
//   fc (optional, for an ImageNet head).
// Output stride 16 or 8 as torchvision's `replace_stride_with_dilation`: layer4 (and layer3 for OS 8)
// stop striding; the first block of such a layer keeps the previous dilation and later blocks use
// the accumulated one. `dilate: false` instead only drops the stride, IRN's strides=(2, 2, 2, 1).
import { F, type Tensor, tidy } from '../engine/index.js';
import {
  BatchNorm2d, Conv2d, Layer, Linear, type LoadReport, MaxPool2d, Module, Sequential,
} from '../nn/index.js';
import { type Backbone, type BackboneOutput, type BlockHook, IMAGENET_NORM, type InputNorm } from './backbone.js';
import { type OutputStride, checkOutputStride, checkTaps, freezeModules } from './common.js';
import { buildWithWeights } from './weights.js';

export const RESNET_DEPTHS = { resnet50: [3, 4, 6, 3], resnet101: [3, 4, 23, 3] } as const;
export type ResNetName = keyof typeof RESNET_DEPTHS;

/** The stages freezeUpTo can name, shallow to deep ('conv1' is the stem: conv1 and bn1). */
const STAGES = ['conv1', 'layer1', 'layer2', 'layer3', 'layer4'] as const;
export type ResNetStage = (typeof STAGES)[number];

export interface ResNetOptions {
  /** 16 (default, as IRN/AMR), 8 or 32. */
  outputStride?: OutputStride;
  /** Replace strides with dilation (torchvision, default true) or only drop them (IRN: false). */
  dilate?: boolean;
  /** BatchNorm uses its running statistics and is not trained (FixedBatchNorm; default true). */
  frozenBatchNorm?: boolean;
  /** Stop gradients to the stages up to this one: 'conv1' (IRN/AMR freeze the stem), 'layer1', ... */
  freezeUpTo?: ResNetStage;
  /** Add torchvision's fc (2048 -> numClasses, default 1000). Without it a file's fc.* keys are ignored. */
  withClassifier?: boolean;
  numClasses?: number;
  inputNorm?: InputNorm;
  /** A module inserted into every block, after bn3 and before the residual addition (keys layerN.i.<name>.*). */
  blocks?: BlockHook;
}

export class Bottleneck extends Layer {
  static readonly expansion = 4;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  readonly downsample: Sequential | null;
  /** The module a BlockHook inserted (applied after bn3), if any. */
  readonly inserted: Layer | null = null;

  constructor(
    inplanes: number, planes: number,
    o: { stride: number; dilation: number; downsample: boolean; frozen: boolean; insert?: { name: string; module: Layer } | null },
  ) {
    super();
    const frozen = { frozen: o.frozen };
    const out = planes * Bottleneck.expansion;
    this.conv1 = this.registerModule('conv1', new Conv2d(inplanes, planes, 1, { bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(planes, frozen));
    this.conv2 = this.registerModule('conv2', new Conv2d(planes, planes, 3, {
      stride: o.stride, padding: o.dilation, dilation: o.dilation, bias: false,
    }));
    this.bn2 = this.registerModule('bn2', new BatchNorm2d(planes, frozen));
    this.conv3 = this.registerModule('conv3', new Conv2d(planes, out, 1, { bias: false }));
    this.bn3 = this.registerModule('bn3', new BatchNorm2d(out, frozen));
    this.downsample = o.downsample
      ? this.registerModule('downsample', new Sequential(
        new Conv2d(inplanes, out, 1, { stride: o.stride, bias: false }), new BatchNorm2d(out, frozen)))
      : null;
    if (o.insert) this.inserted = this.registerModule(o.insert.name, o.insert.module);
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      let out = this.bn1.forward(this.conv1.forward(x)).relu();
      out = this.bn2.forward(this.conv2.forward(out)).relu();
      out = this.bn3.forward(this.conv3.forward(out));
      if (this.inserted) out = this.inserted.forward(out);
      const identity = this.downsample ? this.downsample.forward(x) : x;
      return out.add_(identity).relu_();
    });
  }
}

export class ResNet extends Module implements Backbone {
  readonly outChannels = 2048;
  readonly outputStride: OutputStride;
  readonly taps: { name: string; channels: number; stride: number }[];
  inputNorm: InputNorm;
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly maxpool = new MaxPool2d(3, { stride: 2, padding: 1 });
  readonly layers: [Sequential, Sequential, Sequential, Sequential];
  readonly fc: Linear | null;
  /** (stride, dilation) of each layer's first and later blocks, for inspection. */
  readonly layerConfig: { stride: number; firstDilation: number; dilation: number }[] = [];
  loadReport: LoadReport | null = null;

  constructor(readonly name: ResNetName, o: ResNetOptions = {}) {
    super();
    const depths = RESNET_DEPTHS[name];
    if (!depths) throw new RangeError(`unknown ResNet '${String(name)}' (known: ${Object.keys(RESNET_DEPTHS).join(', ')})`);
    this.outputStride = o.outputStride ?? 16;
    checkOutputStride(name, this.outputStride, [8, 16, 32]);
    this.inputNorm = o.inputNorm ?? IMAGENET_NORM;
    const frozen = o.frozenBatchNorm ?? true;
    const dilate = o.dilate ?? true;
    const upTo = o.freezeUpTo === undefined ? -1 : STAGES.indexOf(o.freezeUpTo);
    if (o.freezeUpTo !== undefined && upTo < 0) {
      throw new RangeError(`${name}: freezeUpTo must be one of ${STAGES.join(', ')}, got '${o.freezeUpTo}'`);
    }

    this.conv1 = this.registerModule('conv1', new Conv2d(3, 64, 7, { stride: 2, padding: 3, bias: false }));
    this.bn1 = this.registerModule('bn1', new BatchNorm2d(64, { frozen }));
    let inplanes = 64;
    let dilation = 1;
    let stride = 4; // after conv1 and the max pool
    const insert = (stage: string, index: number, channels: number, blockStride: number, blockDilation: number) => {
      const module = o.blocks?.create({ stage, index, path: `${stage}.${index}`, channels, stride: blockStride, dilation: blockDilation, residual: true });
      return module ? { name: o.blocks!.name, module: module as Layer } : null;
    };
    const makeLayer = (planes: number, blocks: number, layerStride: number): Sequential => {
      const stage = `layer${this.layerConfig.length + 1}`;
      const previousDilation = dilation;
      if (layerStride > 1 && stride >= this.outputStride) {
        if (dilate) dilation *= layerStride;
        layerStride = 1;
      } else {
        stride *= layerStride;
      }
      const list: Layer[] = [new Bottleneck(inplanes, planes, {
        stride: layerStride, dilation: previousDilation, frozen,
        downsample: layerStride !== 1 || inplanes !== planes * Bottleneck.expansion,
        insert: insert(stage, 0, planes * Bottleneck.expansion, layerStride, previousDilation),
      })];
      inplanes = planes * Bottleneck.expansion;
      for (let i = 1; i < blocks; i++) {
        list.push(new Bottleneck(inplanes, planes, {
          stride: 1, dilation, downsample: false, frozen, insert: insert(stage, i, inplanes, 1, dilation),
        }));
      }
      this.layerConfig.push({ stride: layerStride, firstDilation: previousDilation, dilation });
      return new Sequential(...list);
    };
    this.layers = [
      this.registerModule('layer1', makeLayer(64, depths[0], 1)),
      this.registerModule('layer2', makeLayer(128, depths[1], 2)),
      this.registerModule('layer3', makeLayer(256, depths[2], 2)),
      this.registerModule('layer4', makeLayer(512, depths[3], 2)),
    ];
    this.fc = o.withClassifier ? this.registerModule('fc', new Linear(2048, o.numClasses ?? 1000)) : null;

    const natural = [4, 8, 16];
    this.taps = ['layer1', 'layer2', 'layer3'].map((n, i) => ({
      name: n, channels: 256 * 2 ** i, stride: Math.min(natural[i]!, this.outputStride),
    }));
    if (upTo >= 0) freezeModules([this.conv1, this.bn1, ...this.layers.slice(0, upTo)]);
  }

  /** The stem and the four layers; returns layer4's 2048-channel map and the requested taps. */
  forward(x: Tensor, taps?: string[]): BackboneOutput {
    const want = checkTaps(this, taps);
    return tidy(() => {
      const out = new Map<string, Tensor>();
      let cur = this.maxpool.forward(this.bn1.forward(this.conv1.forward(x)).relu_());
      this.layers.forEach((layer, i) => {
        const next = layer.forward(cur);
        const name = `layer${i + 1}`;
        if (want.has(name)) out.set(name, next);
        cur = next;
      });
      return { features: cur, taps: out };
    });
  }

  /** ImageNet logits: fc(global average pool(features)). Needs `withClassifier`. */
  classify(x: Tensor): Tensor {
    const fc = this.fc;
    if (!fc) throw new Error(`${this.name}: built without a classifier (pass withClassifier: true)`);
    return tidy(() => fc.forward(F.globalAvgPool(this.forward(x).features)));
  }
}

export interface ResNetLoadOptions extends ResNetOptions {
  /** A torchvision-layout state dict (.pth from torchvision, or .safetensors). Without it, random weights. */
  weights?: string;
  /** Default true: any missing or unexpected key is an error. */
  strict?: boolean;
}

function build(name: ResNetName, o: ResNetLoadOptions): ResNet {
  return buildWithWeights(o.weights, () => new ResNet(name, o), () => ({
    strict: o.strict ?? true, ...(o.withClassifier ? {} : { ignore: (k: string) => k.startsWith('fc.') }),
    ...(o.blocks ? { allowMissing: [`layer*.*.${o.blocks.name}.*`] } : {}),
  }));
}

export function resnet50(o: ResNetLoadOptions = {}): ResNet {
  return build('resnet50', o);
}

export function resnet101(o: ResNetLoadOptions = {}): ResNet {
  return build('resnet101', o);
}
