// MobileNetV2 (Sandler et al. 2018) in torchvision's `mobilenet_v2` layout, so its state dicts load by name:
//   features.0            ConvBNReLU6 3 -> 32, stride 2           (features.0.0 conv, features.0.1 BN)
//   features.1 .. .17     InvertedResidual blocks                 (features.i.conv.{0,1,...})
//   features.18           ConvBNReLU6 320 -> 1280, 1x1            (the `features: 'last'` output)
//   classifier            Dropout(0.2), Linear(1280, numClasses)  (optional: classifier.1.weight/bias)
// Output stride 8 or 16 follows TensorFlow DeepLab: once the running stride reaches the target, a stride-2
// block gets stride 1 and every later depthwise convolution the accumulated dilation rate. Stride-2 blocks
// are features.2, 4, 7 and 14; at OS 8, features.7 and .14 run at stride 1, features.8-14 at rate 2 and
// features.15-17 at rate 4. Padding is torchvision's symmetric padding or TensorFlow SAME, computed per
// convolution from the input size (the ImageNet weights here were trained with SAME).
import { F, type Tensor, tidy } from '../engine/index.js';
import { BatchNorm2d, Dropout, Layer, Linear, Module, ReLU6, Sequential, type LoadReport } from '../nn/index.js';
import { type Backbone, type BackboneOutput, type BlockHook, IMAGENET_NORM, type InputNorm } from './backbone.js';
import { BackboneConv2d, type DilatedConvImpl, type PaddingMode } from './conv.js';
import { type OutputStride, checkOutputStride, checkTaps, freezeModules } from './common.js';
import { buildWithWeights, inputNormFromMetadata } from './weights.js';

/** t (expansion), c (output channels), n (repeats), s (stride of the first block): the paper's Table 2. */
const INVERTED_RESIDUAL_SETTING: [number, number, number, number][] = [
  [1, 16, 1, 1],
  [6, 24, 2, 2],
  [6, 32, 3, 2],
  [6, 64, 4, 2],
  [6, 96, 3, 1],
  [6, 160, 3, 2],
  [6, 320, 1, 1],
];

/** Taps (outputs of features.i) offered to methods that read intermediate maps, shallow to deep. */
const TAP_BLOCKS: { index: number; channels: number; stride: number }[] = [
  { index: 3, channels: 24, stride: 4 },
  { index: 6, channels: 32, stride: 8 },
  { index: 13, channels: 96, stride: 16 },
  { index: 17, channels: 320, stride: 32 },
];

export interface MobileNetV2Options {
  /** 8 (default, as the reference implementation), 16, or 32 (the ImageNet classifier's). */
  outputStride?: OutputStride;
  /** Default 'same' when the weights' metadata asks for TensorFlow SAME padding, else 'symmetric'. */
  padding?: PaddingMode;
  /** BatchNorm uses its running statistics and is not trained (default true). */
  frozenBatchNorm?: boolean;
  /** Add torchvision's classifier (Dropout + Linear 1280 -> numClasses) for ImageNet checks. Default false. */
  withClassifier?: boolean;
  /** Classifier outputs; 1001 for the weights here (index 0 is a background class). Default 1000. */
  numClasses?: number;
  /** Overrides the weights' metadata (input_mean/input_std); ImageNet's when neither gives one. */
  inputNorm?: InputNorm;
  /** Stop gradients to features.0 .. features.freezeUpTo (e.g. 1 for the stem). Default: nothing frozen. */
  freezeUpTo?: number;
  /**
   * The map forward() returns: 'last' (default), the 1280-channel output of the final 1x1 conv features.18;
   * or 'features.17', the 320-channel output of the last inverted residual (features.18 is kept, unused, so
   * the same weights load).
   */
  features?: 'last' | 'features.17';
  /** How dilated depthwise convolutions run (default 'auto': the space-to-batch rewrite when training). */
  dilatedImpl?: DilatedConvImpl;
  /**
   * A module offered to every inverted residual (features.1-17; BlockInfo.residual says whether it adds its input
   * back), after the projection's BN and before the residual addition (keys features.i.<name>.*).
   */
  blocks?: BlockHook;
}

type ConvBNAct = Sequential;

interface BuildOptions {
  padding: PaddingMode;
  frozen: boolean;
  dilatedImpl: DilatedConvImpl;
}

/** torchvision's ConvBNReLU: Sequential(conv "0", BN "1", ReLU6 "2"); padding per `padding` mode. */
function convBNReLU6(
  inC: number, outC: number, kernel: number, b: BuildOptions,
  o: { stride?: number; dilation?: number; groups?: number } = {},
): ConvBNAct {
  const conv = new BackboneConv2d(inC, outC, kernel, {
    stride: o.stride ?? 1, dilation: o.dilation ?? 1, groups: o.groups ?? 1, bias: false,
    padding: b.padding, dilatedImpl: b.dilatedImpl,
  });
  return new Sequential(conv, new BatchNorm2d(outC, { frozen: b.frozen }), new ReLU6());
}

export class InvertedResidual extends Layer {
  readonly useResConnect: boolean;
  readonly conv: Sequential;
  /** The module a BlockHook inserted (applied after the projection), if any. */
  readonly inserted: Layer | null = null;

  constructor(
    readonly inChannels: number, readonly outChannels: number, readonly stride: number,
    readonly expandRatio: number, readonly dilation: number, b: BuildOptions,
    insert: { name: string; module: Layer } | null = null,
  ) {
    super();
    const hidden = Math.round(inChannels * expandRatio);
    this.useResConnect = stride === 1 && inChannels === outChannels;
    const layers: Layer[] = [];
    if (expandRatio !== 1) layers.push(convBNReLU6(inChannels, hidden, 1, b));
    layers.push(
      convBNReLU6(hidden, hidden, 3, b, { stride, dilation, groups: hidden }),
      new BackboneConv2d(hidden, outChannels, 1, { bias: false, padding: b.padding }),
      new BatchNorm2d(outChannels, { frozen: b.frozen }),
    );
    this.conv = this.registerModule('conv', new Sequential(...layers));
    if (insert) this.inserted = this.registerModule(insert.name, insert.module);
  }

  forward(x: Tensor): Tensor {
    const inserted = this.inserted;
    const branch = inserted ? (t: Tensor) => tidy(() => inserted.forward(this.conv.forward(t))) : (t: Tensor) => this.conv.forward(t);
    if (!this.useResConnect) return branch(x);
    return tidy(() => x.add(branch(x)));
  }
}

export class MobileNetV2 extends Module implements Backbone {
  readonly name = 'mobilenet_v2';
  readonly outChannels: number;
  /** Index of the last block forward() runs (18, or 17 with `features: 'features.17'`). */
  readonly lastBlock: number;
  readonly outputStride: OutputStride;
  readonly taps: { name: string; channels: number; stride: number }[];
  inputNorm: InputNorm;
  readonly features: Sequential;
  readonly classifier: Sequential | null;
  /** features.i's (stride, dilation) of its 3x3 convolution, for inspection and the layer benchmark. */
  readonly blockConfig: { stride: number; dilation: number }[] = [];
  /** What loading weights reported (set by mobilenetV2({ weights })). */
  loadReport: LoadReport | null = null;
  #padding: PaddingMode;

  constructor(o: MobileNetV2Options = {}) {
    super();
    this.outputStride = o.outputStride ?? 8;
    checkOutputStride(this.name, this.outputStride, [8, 16, 32]);
    this.inputNorm = o.inputNorm ?? IMAGENET_NORM;
    const out = o.features ?? 'last';
    if (out !== 'last' && out !== 'features.17') {
      throw new RangeError(`mobilenet_v2: features must be 'last' or 'features.17', got '${String(out)}'`);
    }
    if (o.freezeUpTo !== undefined && (!Number.isInteger(o.freezeUpTo) || o.freezeUpTo < 0 || o.freezeUpTo > 18)) {
      throw new RangeError(`mobilenet_v2: freezeUpTo must be a features index 0..18, got ${o.freezeUpTo}`);
    }
    this.lastBlock = out === 'last' ? 18 : 17;
    this.outChannels = out === 'last' ? 1280 : 320;
    this.#padding = o.padding ?? 'symmetric';
    const b: BuildOptions = {
      padding: this.#padding,
      frozen: o.frozenBatchNorm ?? true,
      dilatedImpl: o.dilatedImpl ?? 'auto',
    };

    // TensorFlow DeepLab's rule: once the running stride reaches the target, stop striding and dilate.
    let currentStride = 2;
    let rate = 1;
    const blocks: Layer[] = [convBNReLU6(3, 32, 3, b, { stride: 2 })];
    this.blockConfig.push({ stride: 2, dilation: 1 });
    let inC = 32;
    for (const [t, c, n, s] of INVERTED_RESIDUAL_SETTING) {
      for (let i = 0; i < n; i++) {
        const stride = i === 0 ? s : 1;
        let layerStride = stride;
        let layerRate = 1;
        if (currentStride === this.outputStride) {
          layerStride = 1;
          layerRate = rate;
          rate *= stride;
        } else {
          currentStride *= stride;
        }
        const index = blocks.length;
        const module = o.blocks?.create({
          stage: 'features', index, path: `features.${index}`, channels: c, stride: layerStride, dilation: layerRate,
          residual: layerStride === 1 && inC === c, // InvertedResidual's useResConnect
        });
        blocks.push(new InvertedResidual(inC, c, layerStride, t, layerRate, b, module ? { name: o.blocks!.name, module: module as Layer } : null));
        this.blockConfig.push({ stride: layerStride, dilation: layerRate });
        inC = c;
      }
    }
    blocks.push(convBNReLU6(inC, 1280, 1, b));
    this.blockConfig.push({ stride: 1, dilation: 1 });
    this.features = this.registerModule('features', new Sequential(...blocks));

    this.classifier = o.withClassifier
      ? this.registerModule('classifier', new Sequential(new Dropout(0.2), new Linear(1280, o.numClasses ?? 1000)))
      : null;

    this.taps = TAP_BLOCKS.filter((t) => t.index < this.lastBlock).map((t) => ({
      name: `features.${t.index}`, channels: t.channels, stride: Math.min(t.stride, this.outputStride),
    }));
    if (o.freezeUpTo !== undefined) freezeModules(this.features.layers.slice(0, o.freezeUpTo + 1));
  }

  /** Switches every convolution between TensorFlow SAME and torchvision's symmetric padding. */
  setPadding(mode: PaddingMode): this {
    for (const [, m] of this.namedModules()) if (m instanceof BackboneConv2d) m.padding = mode;
    this.#padding = mode;
    return this;
  }

  get padding(): PaddingMode {
    return this.#padding;
  }

  /** Runs features.0 .. features.18 (or .17); returns the last map and the requested taps. */
  forward(x: Tensor, taps?: string[]): BackboneOutput {
    const want = checkTaps(this, taps);
    return tidy(() => {
      const out = new Map<string, Tensor>();
      let cur = x;
      this.features.layers.slice(0, this.lastBlock + 1).forEach((block, i) => {
        const next = block.forward(cur);
        if (cur !== x && !out.has(`features.${i - 1}`)) cur.dispose(); // not needed any more (autograd keeps its own)
        cur = next;
        if (want.has(`features.${i}`)) out.set(`features.${i}`, cur);
      });
      return { features: cur, taps: out };
    });
  }

  /** ImageNet logits: classifier(global average pool(features)). Needs `withClassifier` and features 'last'. */
  classify(x: Tensor): Tensor {
    if (!this.classifier) throw new Error('mobilenet_v2: built without a classifier (pass withClassifier: true)');
    if (this.lastBlock !== 18) throw new Error("mobilenet_v2: classify needs features: 'last'");
    const classifier = this.classifier;
    return tidy(() => classifier.forward(F.globalAvgPool(this.forward(x).features)));
  }
}

export interface MobileNetV2LoadOptions extends MobileNetV2Options {
  /** A .safetensors or .pth state dict in torchvision's layout. Without it the weights are random. */
  weights?: string;
  /** Default true: any missing or unexpected key is an error (see loadWeightsInto). */
  strict?: boolean;
}

/**
 * Builds a MobileNetV2 and loads weights by name. Float16 files are converted to float32. The file's
 * metadata chooses the padding (`padding` mentioning SAME) and the input normalisation (`input_mean`,
 * `input_std`) unless the options set them. A file's ImageNet classifier is ignored when the model has none.
 */
export function mobilenetV2(o: MobileNetV2LoadOptions = {}): MobileNetV2 {
  return buildWithWeights(o.weights, (file) => {
    if (!file) return new MobileNetV2(o);
    const padding: PaddingMode = o.padding ?? (/\bsame\b/i.test(file.metadata.padding ?? '') ? 'same' : 'symmetric');
    const inputNorm = o.inputNorm ?? inputNormFromMetadata(file.metadata) ?? IMAGENET_NORM;
    return new MobileNetV2({ ...o, padding, inputNorm });
  }, () => ({
    strict: o.strict ?? true, ...(o.withClassifier ? {} : { ignore: (k: string) => k.startsWith('classifier.') }),
    ...(o.blocks ? { allowMissing: [`features.*.${o.blocks.name}.*`] } : {}),
  }));
}
