// What every backbone offers the methods: features at a known stride, taps at intermediate stages
// (SEAM's PCM and the affinity net read them), how its inputs must be normalised, and which of its
// parameters are pretrained (the methods train those at 1x lr and new layers at 10x).
import type { Tensor } from '../engine/index.js';
import type { Module } from '../nn/index.js';

export interface InputNorm {
  /** Per-channel mean and std on [0, 1] pixels. */
  mean: [number, number, number];
  std: [number, number, number];
}

export interface BackboneOutput {
  /** The last feature map, N x outChannels x H/outputStride x W/outputStride. */
  features: Tensor;
  /** Intermediate feature maps by tap name (see Backbone.taps), for methods that need them. */
  taps: Map<string, Tensor>;
}

export interface Backbone extends Module {
  readonly name: string;
  readonly outChannels: number;
  readonly outputStride: number;
  /** Names and channel counts of the intermediate maps forward() can return, shallow to deep. */
  readonly taps: { name: string; channels: number; stride: number }[];
  readonly inputNorm: InputNorm;
  /** Runs the network; `taps` lists which intermediate maps to return (none by default). */
  forward(x: Tensor, taps?: string[]): BackboneOutput;
}

export const IMAGENET_NORM: InputNorm = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/** Where a block sits and what flows through it, for a BlockHook. */
export interface BlockInfo {
  /** The block's stage ('layer1'..'layer4' in ResNet, 'features' in MobileNetV2) and index within it. */
  stage: string;
  index: number;
  /** Its dotted key prefix ('layer3.2', 'features.6'). */
  path: string;
  /** Channels of the map the inserted module receives and must return. */
  channels: number;
  stride: number;
  dilation: number;
  /** Whether the block adds a shortcut to its branch (every ResNet block; MobileNetV2's stride-1 blocks whose channels match). */
  residual: boolean;
}

/**
 * A module inserted into blocks (in the spirit of torchvision's `block`/`norm_layer` arguments): `create` is called
 * for every block and returns a module or null (none there). The module is applied to the block's residual branch
 * just before the residual addition (ResNet: after bn3; MobileNetV2: after the projection's BN) and registered as
 * the block's member `name`, so its keys read `layer3.2.<name>.*`. Pretrained weights lack those keys: they may be
 * missing when the weights load, every other key is still checked.
 */
export interface BlockHook {
  name: string;
  create(info: BlockInfo): (Module & { forward(x: Tensor): Tensor }) | null;
}
