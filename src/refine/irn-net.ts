// IRNet, the inter-pixel relation network (Ahn, Cho & Kwak, CVPR 2019), as jiwoon-ahn/irn net/resnet50_irn.py and
// step/train_irn.py train it (methods-reference.md section 2.7):
//
//   backbone frozen (eval mode, no gradient); two branches on its taps, at the finest tap stride >= 4:
//   boundary      per tap: 1x1 conv -> 32, GroupNorm(4), upsampled, ReLU; concat; 1x1 conv -> 1     (sigmoid: B)
//   displacement  per tap: 1x1 conv -> 64 (finest) or 256, GroupNorm, upsampled, ReLU; concat;
//                 1x1 conv -> 256, GroupNorm(16), ReLU; 1x1 conv -> 2                              (D, in cells)
//   a_ij  = 1 - max of B on the path from i to j (irn.ts `pathPoints`), pairs within the radius (IRN: 10)
//   L     = (pos + neg) / 2 + (dp_fg + dp_bg) / 2,  pos = bg_pos / 2 + fg_pos / 2
//           pos: -log(a + 1e-5), neg: -log(1 + 1e-5 - a); each term over its own pair count (+ 1e-5)
//           dp_fg = |D_i - D_j - (j - i)| over fg_pos pairs, dp_bg = |D_i - D_j| over bg_pos pairs (each / 2 count)
//
// IRN's ResNet-50 branches read its five stages; here they read the backbone's taps at stride >= 4 and its output,
// so any backbone serves. IRN's displacement branch merges its three deep maps at stride 8 before a second merge
// at stride 4; here one merge at the boundary grid does both. The displacement field's mean shift (subtracted at
// inference for instance masks) is not kept: the semantic pseudo-labels use the boundary map alone.
import { F, type Tensor, cat, noGrad, stack, tensor, tidy } from '../engine/index.js';
import { Conv2d, GroupNorm, Module, type ParamGroupSpec } from '../nn/index.js';
import type { Backbone } from '../backbones/backbone.js';
import type { LossOutput, StepContext, TrainBatch, Trainable } from '../train/contract.js';
import { type PairLabels, affinityPairLabels, labelsOnFeatureGrid, pairGrid, pairOffsets, pairWindow } from './affinity-labels.js';
import { pathPoints } from './irn.js';

/** The finest grid IRNet predicts on: IRN's stride 4. */
export const IRN_MIN_STRIDE = 4;

interface Branch { conv: Conv2d; norm: GroupNorm }

/** The network: the frozen backbone, the boundary branch and the displacement branch. */
export class IRNetwork extends Module {
  readonly backbone: Backbone;
  /** The taps read (backbone tap names, and 'output' for its last map) and the grid's stride. */
  readonly taps: { name: string; channels: number; stride: number }[];
  readonly stride: number;
  readonly edge: Branch[];
  readonly edgeOut: Conv2d;
  readonly dp: Branch[];
  readonly dpMerge: Branch;
  readonly dpOut: Conv2d;

  constructor(backbone: Backbone) {
    super();
    this.backbone = this.registerModule('backbone', backbone);
    backbone.setFrozen(true); // IRN detaches the backbone's maps and keeps it in eval mode
    this.taps = [...backbone.taps.filter((t) => t.stride >= IRN_MIN_STRIDE),
      { name: 'output', channels: backbone.outChannels, stride: backbone.outputStride }];
    this.stride = Math.min(...this.taps.map((t) => t.stride));
    const branch = (name: string, inC: number, outC: number, groups: number): Branch => ({
      conv: this.registerModule(`${name}_conv`, new Conv2d(inC, outC, 1, { bias: false })),
      norm: this.registerModule(`${name}_gn`, new GroupNorm(groups, outC)),
    });
    this.edge = this.taps.map((t, k) => branch(`edge${k + 1}`, t.channels, 32, 4));
    this.edgeOut = this.registerModule('edge_out', new Conv2d(32 * this.taps.length, 1, 1));
    const dpWidth = (t: { stride: number }) => (t.stride === this.stride ? 64 : 256);
    this.dp = this.taps.map((t, k) => branch(`dp${k + 1}`, t.channels, dpWidth(t), dpWidth(t) === 64 ? 8 : 16));
    this.dpMerge = branch('dp_merge', this.taps.reduce((s, t) => s + dpWidth(t), 0), 256, 16);
    this.dpOut = this.registerModule('dp_out', new Conv2d(256, 2, 1, { bias: false }));
  }

  get edgeLayers(): Module[] {
    return [...this.edge.flatMap((b) => [b.conv, b.norm]), this.edgeOut];
  }

  get displacementLayers(): Module[] {
    return [...this.dp.flatMap((b) => [b.conv, b.norm]), this.dpMerge.conv, this.dpMerge.norm, this.dpOut];
  }

  /** Boundary logits N x 1 x h x w and displacements N x 2 x h x w on the grid of `stride`. */
  forward(x: Tensor): { edge: Tensor; displacement: Tensor } {
    return tidy(() => {
      const names = this.taps.map((t) => t.name).filter((n) => n !== 'output');
      const { features, taps } = noGrad(() => this.backbone.forward(x, names));
      const maps = this.taps.map((t) => (t.name === 'output' ? features : taps.get(t.name)!));
      const finest = maps[this.taps.findIndex((t) => t.stride === this.stride)]!;
      const size: [number, number] = [finest.size(2), finest.size(3)];
      const apply = (b: Branch, m: Tensor) => {
        let y = b.norm.forward(b.conv.forward(m));
        if (y.size(2) !== size[0] || y.size(3) !== size[1]) y = F.interpolate(y, { size, mode: 'bilinear', alignCorners: false });
        return y.relu();
      };
      const edge = this.edgeOut.forward(cat(this.edge.map((b, k) => apply(b, maps[k]!)), 1));
      const merged = apply(this.dpMerge, cat(this.dp.map((b, k) => apply(b, maps[k]!)), 1));
      return { edge, displacement: this.dpOut.forward(merged) };
    });
  }
}

/**
 * a = 1 - (the largest boundary value on each pair's path) for boundary probabilities N x 1 x h x w: N x P x rows x
 * cols over `pairOffsets(radius)` and `pairGrid` (misc/indexing.py `edge_to_affinity`).
 */
export function boundaryAffinities(boundary: Tensor, radius: number): Tensor {
  return tidy(() => {
    const g = pairGrid(boundary.size(2), boundary.size(3), radius);
    const b = boundary.squeeze(1);
    return stack(pairOffsets(radius).map((o) => stack(pathPoints(o).map((p) => pairWindow(b, g, p)), 0).amax(0)), 1).rsub(1);
  });
}

/** D_i - D_j for every pair: N x 2 x P x rows x cols (to_pair_displacement). */
export function pairDisplacements(displacement: Tensor, radius: number): Tensor {
  return tidy(() => {
    const g = pairGrid(displacement.size(2), displacement.size(3), radius);
    const from = pairWindow(displacement, g, [0, 0]).unsqueeze(2);
    return from.sub(stack(pairOffsets(radius).map((o) => pairWindow(displacement, g, o)), 2));
  });
}

/** The displacement each pair should have, (dy, dx) of its offset: 1 x 2 x P x 1 x 1. */
export function displacementTargets(radius: number): Tensor {
  const offsets = pairOffsets(radius);
  return tensor(Float32Array.from([...offsets.map(([dy]) => dy), ...offsets.map(([, dx]) => dx)]), { shape: [1, 2, offsets.length, 1, 1] });
}

export interface IrnLossTerms {
  loss: Tensor;
  bgPos: Tensor;
  fgPos: Tensor;
  neg: Tensor;
  dpFg: Tensor;
  dpBg: Tensor;
}

/** train_irn.py's loss from the boundary probabilities and displacements of a batch and its pair labels. */
export function irnLoss(boundary: Tensor, displacement: Tensor, pairs: PairLabels, radius: number): IrnLossTerms {
  const eps = 1e-5;
  const aff = boundaryAffinities(boundary, radius);
  const mean = (mask: Tensor, v: Tensor, scale = 1) => mask.mul(v).sum().div(mask.sum().mul(scale).add(eps));
  const bgPos = mean(pairs.bgPos, aff.add(eps).log().neg());
  const fgPos = mean(pairs.fgPos, aff.add(eps).log().neg());
  const neg = mean(pairs.neg, aff.rsub(1 + eps).log().neg());
  const pair = pairDisplacements(displacement, radius);
  const dpFg = mean(pairs.fgPos.unsqueeze(1), pair.sub(displacementTargets(radius).to(pair.device)).abs(), 2);
  const dpBg = mean(pairs.bgPos.unsqueeze(1), pair.abs(), 2);
  const pos = bgPos.div(2).add(fgPos.div(2));
  return { loss: pos.add(neg).div(2).add(dpFg.add(dpBg).div(2)), bgPos, fgPos, neg, dpFg, dpBg };
}

export interface IrNetOptions {
  numClasses: number;
  /** Pair radius of training on the boundary grid (IRN: 10). */
  radius?: number;
  /** Learning-rate multiplier of the displacement branch (IRN: 10; the boundary branch trains at 1x). */
  displacementLrMult?: number;
}

/** IRNet as the shared trainer sees it: batches carry the IR labels as `masks`. */
export class IrNet implements Trainable {
  readonly name = 'irn';
  readonly model: IRNetwork;
  readonly numClasses: number;
  readonly radius: number;
  readonly displacementLrMult: number;

  constructor(backbone: Backbone, o: IrNetOptions) {
    this.numClasses = o.numClasses;
    this.radius = o.radius ?? 10;
    pairOffsets(this.radius);
    this.displacementLrMult = o.displacementLrMult ?? 10;
    this.model = new IRNetwork(backbone);
  }

  get backbone(): Backbone {
    return this.model.backbone;
  }

  get stride(): number {
    return this.model.stride;
  }

  paramGroups(): ParamGroupSpec[] {
    return [
      { name: 'boundary', params: this.model.edgeLayers.flatMap((m) => m.trainableParameters()), lrMult: 1 },
      { name: 'displacement', params: this.model.displacementLayers.flatMap((m) => m.trainableParameters()), lrMult: this.displacementLrMult },
    ];
  }

  loss(batch: TrainBatch, _context: StepContext): LossOutput {
    if (!batch.masks) throw new Error('IRNet: the batch has no masks (build the loader with withMask: true over the IR labels)');
    const { edge, displacement } = this.model.forward(batch.images);
    const [h, w] = [edge.size(2), edge.size(3)];
    const labels = labelsOnFeatureGrid(batch.masks, batch.valid, { stride: this.stride, height: h, width: w, numClasses: this.numClasses });
    const t = irnLoss(edge.sigmoid(), displacement, affinityPairLabels(labels, this.radius), this.radius);
    return { loss: t.loss, parts: { bgPos: t.bgPos, fgPos: t.fgPos, neg: t.neg, dpFg: t.dpFg, dpBg: t.dpBg } };
  }

  /**
   * The class boundary map of one image (1 x 3 x H x W, sides multiples of the stride): sigmoid of the mean of the
   * logits of the image and of its mirror image (EdgeDisplacement), h x w on the CPU.
   */
  boundaryMap(image: Tensor): { boundary: Float32Array; height: number; width: number } {
    return noGrad(() => tidy(() => {
      const [H, W] = [image.size(2), image.size(3)];
      if (image.size(0) !== 1 || H % this.stride || W % this.stride) {
        throw new RangeError(`boundary map: expected one image with sides multiple of ${this.stride}, got shape [${image.shape}]`);
      }
      const { edge } = this.model.forward(cat([image, image.flip(3)], 0));
      const b = edge.narrow(0, 0, 1).add(edge.narrow(0, 1, 1).flip(3)).div(2).sigmoid();
      return { boundary: b.cpu().contiguous().toFloat32Array().slice(), height: b.size(2), width: b.size(3) };
    }));
  }
}
