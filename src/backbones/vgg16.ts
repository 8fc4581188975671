// VGG-16 "D1" (OAA's and MCIS's backbone; GuoleiSun/MCIS_wsss › Classifier/models/vgg.py, cfg 'D1'): torchvision's
// VGG-16 convolutions with the fourth max-pool at 3x3 stride 1 (padding 1) and no fifth pool, conv5 dilated by 2:
//   conv1 (64 x2) pool   conv2 (128 x2) pool   conv3 (256 x3) pool   conv4 (512 x3) pool3x3/s1   conv5 (512 x3, d 2)
// so the output stride is 8 and the output has 512 channels (after conv5_3's ReLU). Layer indices are torchvision's
// (`features.0` .. `features.28`), so its `vgg16` state dict (`vgg16-397923af.pth`, or the same keys in safetensors)
// loads by name; its classifier (`classifier.*`) is ignored. No BatchNorm.
import { type Tensor, tidy } from '../engine/index.js';
import { Conv2d, type Layer, type LoadReport, MaxPool2d, Module, ReLU, Sequential } from '../nn/index.js';
import { type Backbone, type BackboneOutput, IMAGENET_NORM, type InputNorm } from './backbone.js';
import { checkOutputStride, checkTaps } from './common.js';
import { buildWithWeights, inputNormFromMetadata } from './weights.js';

/** cfg['D1'] of the official vgg.py: channels, 'M' = 2x2 max-pool stride 2, 'N' = 3x3 max-pool stride 1. */
const D1: readonly (number | 'M' | 'N')[] = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'N', 512, 512, 512];

/** Taps: the output of each stage's last ReLU (conv1 .. conv4; conv5 is the output). */
const TAPS = [
  { name: 'conv1', index: 3, channels: 64, stride: 1 },
  { name: 'conv2', index: 8, channels: 128, stride: 2 },
  { name: 'conv3', index: 15, channels: 256, stride: 4 },
  { name: 'conv4', index: 22, channels: 512, stride: 8 },
];

export interface Vgg16Options {
  /** Only 8 (the D1 layout). */
  outputStride?: 8;
  inputNorm?: InputNorm;
}

export class Vgg16 extends Module implements Backbone {
  readonly name = 'vgg16';
  readonly outChannels = 512;
  readonly outputStride = 8;
  readonly taps = TAPS.map(({ name, channels, stride }) => ({ name, channels, stride }));
  inputNorm: InputNorm;
  readonly features: Sequential;
  loadReport: LoadReport | null = null;

  constructor(o: Vgg16Options = {}) {
    super();
    checkOutputStride(this.name, o.outputStride ?? 8, [8]);
    this.inputNorm = o.inputNorm ?? IMAGENET_NORM;
    const layers: Layer[] = [];
    let inC = 3;
    D1.forEach((v, i) => {
      if (v === 'M') layers.push(new MaxPool2d(2, { stride: 2 }));
      else if (v === 'N') layers.push(new MaxPool2d(3, { stride: 1, padding: 1 }));
      else {
        // The official make_layers dilates every conv after cfg index 13 (conv5).
        const dilation = i > 13 ? 2 : 1;
        layers.push(new Conv2d(inC, v, 3, { padding: dilation, dilation }), new ReLU());
        inC = v;
      }
    });
    this.features = this.registerModule('features', new Sequential(...layers));
  }

  forward(x: Tensor, taps?: string[]): BackboneOutput {
    const want = checkTaps(this, taps);
    return tidy(() => {
      const out = new Map<string, Tensor>();
      let cur = x;
      this.features.layers.forEach((layer, i) => {
        cur = layer.forward(cur);
        const tap = TAPS.find((t) => t.index === i);
        if (tap && want.has(tap.name)) out.set(tap.name, cur);
      });
      return { features: cur, taps: out };
    });
  }
}

export interface Vgg16LoadOptions extends Vgg16Options {
  /** torchvision's `vgg16` state dict (.pth or .safetensors); its `classifier.*` keys are ignored. Random without. */
  weights?: string;
  /** Default true: any missing or unexpected convolution key is an error. */
  strict?: boolean;
}

/** Builds VGG-16 D1, loading torchvision's vgg16 weights by name when given. */
export function vgg16(o: Vgg16LoadOptions = {}): Vgg16 {
  return buildWithWeights(o.weights, (file) => new Vgg16({
    ...o, inputNorm: o.inputNorm ?? (file && inputNormFromMetadata(file.metadata)) ?? IMAGENET_NORM,
  }), () => ({ strict: o.strict ?? true, ignore: (k: string) => k.startsWith('classifier.') }));
}
