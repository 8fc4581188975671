// The backbones, and a registry so configs can name one: createBackbone('resnet50', { outputStride: 16 }).
import type { Backbone } from './backbone.js';
import { type MobileNetV2LoadOptions, mobilenetV2 } from './mobilenet_v2.js';
import { type ResNetLoadOptions, resnet101, resnet50 } from './resnet.js';
import { type ResNet38LoadOptions, resnet38 } from './resnet38.js';
import { type TinyNetLoadOptions, tinynet } from './tinynet.js';
import { type Vgg16LoadOptions, vgg16 } from './vgg16.js';

export * from './backbone.js';
export { type OutputStride, normalizeInput, setBatchNormFrozen } from './common.js';
export {
  BackboneConv2d, type BackboneConv2dOptions, type DilatedConv2dOptions, type DilatedConvImpl, type Pads4,
  type PaddingMode, dilatedConv2d, samePadding,
} from './conv.js';
export { InvertedResidual, MobileNetV2, type MobileNetV2LoadOptions, type MobileNetV2Options, mobilenetV2 } from './mobilenet_v2.js';
export {
  Bottleneck, RESNET_DEPTHS, ResNet, type ResNetLoadOptions, type ResNetName, type ResNetOptions, type ResNetStage,
  resnet101, resnet50,
} from './resnet.js';
export {
  RESNET38_STAGES, ResBlock, ResBlockBot, ResNet38, type ResNet38LoadOptions, type ResNet38Options, type ResNet38Stage,
  resnet38,
} from './resnet38.js';
export { ConvBNReLU, TinyNet, type TinyNetLoadOptions, type TinyNetOptions, tinynet } from './tinynet.js';
export { Vgg16, type Vgg16LoadOptions, type Vgg16Options, vgg16 } from './vgg16.js';
export {
  type LoadWeightsOptions, type WeightsFile, inputNormFromMetadata, loadWeights, loadWeightsInto, readWeights,
} from './weights.js';

export interface BackboneOptionsByName {
  mobilenet_v2: MobileNetV2LoadOptions;
  resnet50: ResNetLoadOptions;
  resnet101: ResNetLoadOptions;
  resnet38: ResNet38LoadOptions;
  tinynet: TinyNetLoadOptions;
  vgg16: Vgg16LoadOptions;
}
export type BackboneName = keyof BackboneOptionsByName;

const RESNET_OPTIONS = ['weights', 'strict', 'outputStride', 'dilate', 'frozenBatchNorm', 'freezeUpTo', 'withClassifier',
  'numClasses', 'inputNorm', 'blocks'] as const;

/** Each backbone's builder and the option keys it accepts (configs are checked against these). */
const REGISTRY: { [N in BackboneName]: { build: (o: BackboneOptionsByName[N]) => Backbone; options: readonly string[] } } = {
  mobilenet_v2: {
    build: mobilenetV2,
    options: ['weights', 'strict', 'outputStride', 'padding', 'frozenBatchNorm', 'withClassifier', 'numClasses',
      'inputNorm', 'freezeUpTo', 'features', 'dilatedImpl', 'blocks'],
  },
  resnet50: { build: resnet50, options: RESNET_OPTIONS },
  resnet101: { build: resnet101, options: RESNET_OPTIONS },
  resnet38: { build: resnet38, options: ['weights', 'strict', 'outputStride', 'frozenBatchNorm', 'freezeUpTo', 'inputNorm'] },
  tinynet: { build: tinynet, options: ['weights', 'strict', 'outputStride', 'dilate', 'frozenBatchNorm', 'inputNorm'] },
  vgg16: { build: vgg16, options: ['weights', 'strict', 'outputStride', 'inputNorm'] },
};

export const BACKBONE_NAMES = Object.keys(REGISTRY) as BackboneName[];

export function isBackboneName(name: string): name is BackboneName {
  return Object.prototype.hasOwnProperty.call(REGISTRY, name);
}

/** The option keys a registered backbone takes (configs check theirs against them). */
export function backboneOptionKeys(name: BackboneName): readonly string[] {
  return REGISTRY[name].options;
}

/**
 * Builds a backbone by name (loading `weights` when given). An unknown name, or an option the backbone
 * does not take, is an error that lists what is known.
 */
export function createBackbone<N extends BackboneName>(name: N, options?: BackboneOptionsByName[N]): Backbone;
export function createBackbone(name: string, options?: Record<string, unknown>): Backbone;
export function createBackbone(name: string, options: Record<string, unknown> = {}): Backbone {
  if (!isBackboneName(name)) {
    throw new RangeError(`unknown backbone '${name}' (known: ${BACKBONE_NAMES.join(', ')})`);
  }
  const entry = REGISTRY[name] as { build: (o: Record<string, unknown>) => Backbone; options: readonly string[] };
  const unknown = Object.keys(options).filter((k) => !entry.options.includes(k));
  if (unknown.length) {
    throw new RangeError(`backbone '${name}': unknown option${unknown.length > 1 ? 's' : ''} ` +
      `${unknown.map((k) => `'${k}'`).join(', ')} (options: ${entry.options.join(', ')})`);
  }
  return entry.build(options);
}
