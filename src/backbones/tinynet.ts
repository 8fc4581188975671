// TinyNet: a small plain CNN (conv-BN-ReLU, randomly initialised) for the built-in demo, which must train a
// classifier, an affinity net and a segmenter from scratch in minutes on two CPU cores. No pretrained weights
// exist for it; `weights` loads a saved TinyNet, or the backbone of a trained weakseg model. Layout and
// state-dict keys ("<stage>.<i>.conv.weight", "<stage>.<i>.bn.*"):
//   stem     conv3x3 3 -> 16, stride 2                                  (stride 2)
//   layer1   conv3x3 16 -> 32, stride 2;  conv3x3 32 -> 32              (stride 4)
//   layer2   conv3x3 32 -> 64, stride 2;  conv3x3 64 -> 64              (stride 8)
//   layer3   conv3x3 64 -> 64, stride 2                                 (stride 16)
//   layer4   conv3x3 64 -> 64, stride 2                                 (stride 32)
// Output stride 8 or 16: the stages past it keep stride 1. By default they are not dilated (IRN's
// strides=(2, 2, 2, 1) way, `dilate: false`); `dilate: true` follows torchvision's rule (a stage's first conv at the
// previous rate, later ones at the accumulated rate; with one conv per stage: layer4 at rate 2 at OS 8). The
// receptive field at OS 8 is 71 px (87 px dilated): the demo's images are 64-96 px, and the wider the field, the
// more the CAM spreads over the whole neighbourhood of the discriminative part instead of staying on the object
// (in the demo's tuning, dilated and deeper variants put the best seed threshold at 0.7 and above).
import { type Tensor, tidy } from '../engine/index.js';
import { BatchNorm2d, Conv2d, Layer, type LoadReport, Module, Sequential, init } from '../nn/index.js';
import { type Backbone, type BackboneOutput, IMAGENET_NORM, type InputNorm } from './backbone.js';
import { type OutputStride, checkOutputStride, checkTaps } from './common.js';
import { buildWithWeights } from './weights.js';

/** The stages, shallow to deep: name, output channels, natural stride, convolutions. */
const STAGES: readonly { name: string; channels: number; stride: number; convs: number }[] = [
  { name: 'stem', channels: 16, stride: 2, convs: 1 },
  { name: 'layer1', channels: 32, stride: 4, convs: 2 },
  { name: 'layer2', channels: 64, stride: 8, convs: 2 },
  { name: 'layer3', channels: 64, stride: 16, convs: 1 },
  { name: 'layer4', channels: 64, stride: 32, convs: 1 },
];

export interface TinyNetOptions {
  /** 8 (default, as the CAM methods use), 16 or 32. */
  outputStride?: OutputStride;
  /** Dilate the stages past the output stride as torchvision (default false: only drop their stride). */
  dilate?: boolean;
  /** BatchNorm uses its running statistics and is not trained. Default false: from scratch, BN must learn. */
  frozenBatchNorm?: boolean;
  /** Default ImageNet's mean and std, as the other backbones, so the loaders need nothing special. */
  inputNorm?: InputNorm;
}

/** conv3x3 (no bias) -> BN -> ReLU, with keys "<i>.conv.weight" and "<i>.bn.*". */
export class ConvBNReLU extends Layer {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;

  constructor(inC: number, outC: number, o: { stride: number; dilation: number; frozen: boolean }) {
    super();
    this.conv = this.registerModule('conv', new Conv2d(inC, outC, 3, {
      stride: o.stride, padding: o.dilation, dilation: o.dilation, bias: false,
    }));
    this.bn = this.registerModule('bn', new BatchNorm2d(outC, { frozen: o.frozen }));
    // He initialisation for ReLU networks trained from scratch (torchvision's ResNet: fan_out, relu).
    init.kaimingNormal_(this.conv.weight, { mode: 'fan_out', nonlinearity: 'relu' });
  }

  forward(x: Tensor): Tensor {
    return tidy(() => this.bn.forward(this.conv.forward(x)).relu_());
  }
}

export class TinyNet extends Module implements Backbone {
  readonly name = 'tinynet';
  readonly outChannels = 64;
  readonly outputStride: OutputStride;
  /** stem, layer1, layer2, layer3 (layer4 is the output); strides capped at the output stride. */
  readonly taps: { name: string; channels: number; stride: number }[];
  inputNorm: InputNorm;
  readonly stages: Sequential[] = [];
  /** Each stage's stride and the dilation of each of its convolutions, for inspection. */
  readonly stageConfig: { stride: number; dilations: number[] }[] = [];
  loadReport: LoadReport | null = null;

  constructor(o: TinyNetOptions = {}) {
    super();
    this.outputStride = o.outputStride ?? 8;
    checkOutputStride(this.name, this.outputStride, [8, 16, 32]);
    this.inputNorm = o.inputNorm ?? IMAGENET_NORM;
    const frozen = o.frozenBatchNorm ?? false;
    const dilate = o.dilate ?? false;

    let inC = 3;
    let stride = 1;
    let dilation = 1;
    for (const stage of STAGES) {
      const previousDilation = dilation;
      let stageStride = 2;
      if (stride >= this.outputStride) {
        if (dilate) dilation *= 2;
        stageStride = 1;
      } else {
        stride *= 2;
      }
      const convs: Layer[] = [new ConvBNReLU(inC, stage.channels, { stride: stageStride, dilation: previousDilation, frozen })];
      for (let i = 1; i < stage.convs; i++) convs.push(new ConvBNReLU(stage.channels, stage.channels, { stride: 1, dilation, frozen }));
      this.stages.push(this.registerModule(stage.name, new Sequential(...convs)));
      this.stageConfig.push({ stride: stageStride, dilations: convs.map((_, i) => (i === 0 ? previousDilation : dilation)) });
      inC = stage.channels;
    }
    this.taps = STAGES.slice(0, -1).map((t) => ({
      name: t.name, channels: t.channels, stride: Math.min(t.stride, this.outputStride),
    }));
  }

  /** Runs the five stages; returns layer4's map and the requested taps. */
  forward(x: Tensor, taps?: string[]): BackboneOutput {
    const want = checkTaps(this, taps);
    return tidy(() => {
      const out = new Map<string, Tensor>();
      let cur = x;
      this.stages.forEach((stage, i) => {
        cur = stage.forward(cur);
        const name = STAGES[i]!.name;
        if (want.has(name)) out.set(name, cur);
      });
      return { features: cur, taps: out };
    });
  }
}

export interface TinyNetLoadOptions extends TinyNetOptions {
  /**
   * A TinyNet state dict (.safetensors or .pth), or a weakseg model file (`weakseg train`'s model.safetensors,
   * format weakseg-model/1) whose backbone is a TinyNet: its "backbone.*" tensors are loaded and the rest ignored.
   * There are no ImageNet weights for TinyNet, so the demo's later networks (segmenter, affinity net) can start
   * from the classifier's backbone instead of from random weights. Without `weights`, the weights are random.
   */
  weights?: string;
  /** Default true: any missing or unexpected key is an error. */
  strict?: boolean;
}

/** Builds a TinyNet, randomly initialised or loaded from `weights`. */
export function tinynet(o: TinyNetLoadOptions = {}): TinyNet {
  return buildWithWeights(o.weights, () => new TinyNet(o), (file, model) => {
    if (file.metadata.format !== 'weakseg-model/1') return { strict: o.strict ?? true };
    if (file.metadata.backbone !== model.name) {
      throw new Error(`${o.weights}: a weakseg model on backbone '${file.metadata.backbone ?? '?'}', not ${model.name}`);
    }
    return { strict: o.strict ?? true, rename: (k) => (k.startsWith('backbone.') ? k.slice('backbone.'.length) : null) };
  });
}
