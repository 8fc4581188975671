// AffinityNet (Ahn & Kwak, CVPR 2018), as PSA/SEAM's network/resnet38_aff.py and train_aff.py train it
// (methods-reference.md section 2.6):
//
//   f8_3 = ELU(conv1x1(conv4)), f8_4 = ELU(conv1x1(conv5)), f8_5 = ELU(conv1x1(conv6))     (64, 128, 256 wide)
//   f    = ELU(f9(concat))                                                                 (448 -> 448)
//   a_ij = exp(-mean_c |f_i - f_j|)          for the pairs within the radius (affinity-labels.ts `pairOffsets`)
//   L    = 1/4 bg_pos + 1/4 fg_pos + 1/2 neg, with -log(a + 1e-5) for positive and -log(1 + 1e-5 - a) for
//          negative pairs, each term summed over the batch and divided by its own pair count (+ 1e-5)
//
// The taps generalise the three ResNet-38 maps: `output` names the backbone's last feature map, other names are
// the backbone's taps; a tap at a finer stride than the output is resized to the output grid.
import { F, type Tensor, cat, noGrad, stack, tidy } from '../engine/index.js';
import { Conv2d, Module, type ParamGroupSpec, backboneAndHeadGroups, init } from '../nn/index.js';
import type { Backbone } from '../backbones/backbone.js';
import { ResNet38 } from '../backbones/resnet38.js';
import type { LossOutput, StepContext, TrainBatch, Trainable } from '../train/contract.js';
import {
  type PairLabels, affinityPairLabels, labelsOnFeatureGrid, pairGrid, pairOffsets, pairWindow,
} from './affinity-labels.js';
import type { AffinityField } from './random-walk.js';

/** The name of the backbone's last feature map in a tap list. */
export const OUTPUT_TAP = 'output';

export interface AffinityTap {
  name: string;
  /** Channels of its 1x1 reduction. */
  width: number;
}

/**
 * Default taps per backbone:
 * - resnet38: conv4 (512) -> 64, conv5 (1024) -> 128, conv6 = output (4096) -> 256, as PSA.
 * - resnet50/101: layer2 (512) -> 64, layer3 (1024) -> 128, output (2048) -> 256: the same widths.
 * - mobilenet_v2: features.6 (32) -> 32, features.13 (96) -> 64, output (1280) -> 128: the three stages that run
 *   at stride 8 at output stride 8 (the deepest of each resolution, like conv4/conv5/conv6), PSA's widths halved
 *   for a network with about a tenth of ResNet-38's channels.
 */
const DEFAULT_TAPS: Record<string, AffinityTap[]> = {
  resnet38: [{ name: 'conv4', width: 64 }, { name: 'conv5', width: 128 }, { name: OUTPUT_TAP, width: 256 }],
  resnet50: [{ name: 'layer2', width: 64 }, { name: 'layer3', width: 128 }, { name: OUTPUT_TAP, width: 256 }],
  resnet101: [{ name: 'layer2', width: 64 }, { name: 'layer3', width: 128 }, { name: OUTPUT_TAP, width: 256 }],
  mobilenet_v2: [{ name: 'features.6', width: 32 }, { name: 'features.13', width: 64 }, { name: OUTPUT_TAP, width: 128 }],
};

/**
 * The taps of an affinity net: `specs` ("name" or "name:width", e.g. ["features.6:32", "output:128"]) or the
 * backbone's defaults. A name without a width takes the default's width if it has one, else channels / 8.
 */
export function affinityTaps(backbone: Backbone, specs?: readonly string[]): AffinityTap[] {
  const defaults = DEFAULT_TAPS[backbone.name];
  if (!specs) {
    if (!defaults) throw new Error(`affinity net: no default taps for backbone '${backbone.name}'; set refine.affinity.taps`);
    return defaults.map((t) => ({ ...t }));
  }
  if (specs.length === 0) throw new Error('refine.affinity.taps: give at least one tap');
  return specs.map((spec) => {
    const m = /^([^:]+)(?::(\d+))?$/.exec(spec);
    if (!m) throw new Error(`refine.affinity.taps: '${spec}' is not "name" or "name:width"`);
    const name = m[1]!;
    const channels = tapChannels(backbone, name);
    const width = m[2] !== undefined ? Number(m[2]) : defaults?.find((t) => t.name === name)?.width ?? Math.max(1, Math.round(channels / 8));
    if (!(width >= 1)) throw new Error(`refine.affinity.taps: width of '${name}' must be positive, got ${m[2]}`);
    return { name, width };
  });
}

function tapChannels(backbone: Backbone, name: string): number {
  if (name === OUTPUT_TAP) return backbone.outChannels;
  const tap = backbone.taps.find((t) => t.name === name);
  if (!tap) {
    throw new Error(`affinity net: backbone ${backbone.name} has no tap '${name}' ` +
      `(it has ${[OUTPUT_TAP, ...backbone.taps.map((t) => t.name)].join(', ')})`);
  }
  return tap.channels;
}

/** What PSA's affinity net keeps from training: ResNet-38's conv1a, b2, b2_1, b2_2 (its `not_training`). */
export function freezeAffinityStem(backbone: Backbone): void {
  if (backbone instanceof ResNet38) {
    for (const name of ['conv1a', 'b2', 'b2_1', 'b2_2']) {
      const m = backbone.children().find(([n]) => n === name)?.[1];
      m?.freeze(true);
    }
  }
}

/** The network: backbone, one 1x1 reduction per tap (f8_3, f8_4, f8_5, ... as PSA names them) and f9. */
export class AffinityNetwork extends Module {
  readonly backbone: Backbone;
  readonly taps: AffinityTap[];
  readonly reductions: Conv2d[];
  readonly f9: Conv2d;

  constructor(backbone: Backbone, taps: AffinityTap[]) {
    super();
    this.backbone = this.registerModule('backbone', backbone);
    this.taps = taps;
    this.reductions = taps.map((t, k) => {
      const conv = this.registerModule(`f8_${3 + k}`, new Conv2d(tapChannels(backbone, t.name), t.width, 1, { bias: false }));
      init.kaimingNormal_(conv.weight);
      return conv;
    });
    const width = taps.reduce((s, t) => s + t.width, 0);
    this.f9 = this.registerModule('f9', new Conv2d(width, width, 1, { bias: false }));
    init.xavierUniform_(this.f9.weight, 4);
  }

  /** The new layers (trained at the head learning rate). */
  get newLayers(): Module[] {
    return [...this.reductions, this.f9];
  }

  /** Affinity features f: N x width x h x w at the backbone's output stride. */
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const names = this.taps.map((t) => t.name).filter((n) => n !== OUTPUT_TAP);
      const { features, taps } = this.backbone.forward(x, names);
      const [h, w] = [features.size(2), features.size(3)];
      const reduced = this.taps.map((t, k) => {
        let m = t.name === OUTPUT_TAP ? features : taps.get(t.name)!;
        if (m.size(2) !== h || m.size(3) !== w) m = F.interpolate(m, { size: [h, w], mode: 'bilinear', alignCorners: true });
        return F.elu(this.reductions[k]!.forward(m));
      });
      return F.elu(this.f9.forward(cat(reduced, 1)));
    });
  }
}

/**
 * a_ij = exp(-mean_c |f_i - f_j|) for every "from" pixel i of the pair grid and every offset:
 * N x P x rows x cols (see affinity-labels.ts `pairGrid`).
 */
export function pairAffinities(features: Tensor, radius: number): Tensor {
  return tidy(() => {
    const g = pairGrid(features.size(2), features.size(3), radius);
    const from = pairWindow(features, g, [0, 0]);
    return stack(pairOffsets(radius).map((o) => pairWindow(features, g, o).sub(from).abs().mean(1).neg().exp()), 1);
  });
}

export interface AffinityLossTerms {
  loss: Tensor;
  bg: Tensor;
  fg: Tensor;
  neg: Tensor;
}

/** train_aff.py's loss: each term over its own pair count in the batch (1e-5 guards empty sets, as there). */
export function affinityLoss(aff: Tensor, pairs: PairLabels): AffinityLossTerms {
  const eps = 1e-5;
  const term = (mask: Tensor, logp: Tensor) => mask.mul(logp).sum().neg().div(mask.sum().add(eps));
  const logPos = aff.add(eps).log();
  const bg = term(pairs.bgPos, logPos);
  const fg = term(pairs.fgPos, logPos);
  const neg = term(pairs.neg, aff.rsub(1 + eps).log());
  return { loss: bg.div(4).add(fg.div(4)).add(neg.div(2)), bg, fg, neg };
}

export interface AffinityNetOptions {
  /** Foreground classes (mask ids 0..numClasses in the labels). */
  numClasses: number;
  /** Taps and widths (default per backbone, `affinityTaps`). */
  taps?: AffinityTap[];
  /** Pair radius on the feature grid (PSA: 5). */
  radius?: number;
  /** Learning-rate multiplier of the new layers (PSA: 10). */
  headLrMult?: number;
}

/** The affinity net as the shared trainer sees it: batches carry the affinity labels as `masks`. */
export class AffinityNet implements Trainable {
  readonly name = 'affinity';
  readonly model: AffinityNetwork;
  readonly numClasses: number;
  readonly radius: number;
  readonly headLrMult: number;

  constructor(backbone: Backbone, o: AffinityNetOptions) {
    this.numClasses = o.numClasses;
    this.radius = o.radius ?? 5;
    pairOffsets(this.radius); // validates the radius
    this.headLrMult = o.headLrMult ?? 10;
    this.model = new AffinityNetwork(backbone, o.taps ?? affinityTaps(backbone));
  }

  get backbone(): Backbone {
    return this.model.backbone;
  }

  /** Feature stride: the grid the labels are pooled to and the random walk runs on. */
  get stride(): number {
    return this.backbone.outputStride;
  }

  paramGroups(): ParamGroupSpec[] {
    return backboneAndHeadGroups(this.backbone, this.model.newLayers, this.headLrMult, 'new');
  }

  loss(batch: TrainBatch, _context: StepContext): LossOutput {
    if (!batch.masks) throw new Error('affinity net: the batch has no masks (build the loader with withMask: true over the affinity labels)');
    const features = this.model.forward(batch.images);
    const [h, w] = [features.size(2), features.size(3)];
    const labels = labelsOnFeatureGrid(batch.masks, batch.valid, { stride: this.stride, height: h, width: w, numClasses: this.numClasses });
    const pairs = affinityPairLabels(labels, this.radius);
    const { loss, bg, fg, neg } = affinityLoss(pairAffinities(features, this.radius), pairs);
    return { loss, parts: { bg, fg, neg } };
  }

  /**
   * The affinities of one image (1 x 3 x H x W, H and W multiples of the stride) for the random walk, on the
   * CPU as plain numbers.
   */
  affinityField(image: Tensor): AffinityField {
    return noGrad(() => tidy(() => {
      const [H, W] = [image.size(2), image.size(3)];
      if (image.size(0) !== 1 || H % this.stride || W % this.stride) {
        throw new RangeError(`affinity field: expected one image with sides multiple of ${this.stride}, got shape [${image.shape}]`);
      }
      const features = this.model.forward(image);
      const [h, w] = [features.size(2), features.size(3)];
      if (h * this.stride !== H || w * this.stride !== W) {
        throw new RangeError(`affinity field: ${this.backbone.name} gave a ${h}x${w} grid for a ${H}x${W} input at stride ${this.stride}`);
      }
      const aff = pairAffinities(features, this.radius);
      return { height: h, width: w, radius: this.radius, weights: aff.cpu().contiguous().toFloat32Array().slice() };
    }));
  }
}
