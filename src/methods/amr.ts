// AMR: Activation Modulation and Recalibration (Qin et al., AAAI 2022), as the official code (jieqin-ai/AMR:
// net/amm.py, net/resnet50_amr.py, step/train_amr.py) trains it; methods-reference.md section 6.
//
// Two CAM networks on the same batch x (labels y):
//   spotlight     f_s = B_s(x),  z_s = W_s GAP(f_s),  cam_s = ReLU(W_s f_s)       initialised from a trained CAM run
//   compensation  f_c = B_c(x),  z_c = W_c GAP(f_c),  cam_c = ReLU(W_c f_c)       B_c: an AMM in every block with a shortcut
// The attention modulation module (AMM), on a block's residual branch before the addition:
//   G(a) = exp(-(a - mu)^2 / (2 sigma^2)) / (sqrt(2 pi) sigma),   mu, sigma = sg(mean(a)), sg(std(a)) over ALL of a
//   channel:  a = MLP(GAP(x)) (C -> C/16 -> C),          x <- x G(a)
//   spatial:  s = BN(conv7x7([max_c x, mean_c x])),      x <- x G(s)
// so responses near the mean get the most weight and the most discriminative ones are damped. Setting
// gaussianScale 'mean' (this project's, for MobileNetV2) uses G / sg(mean(G)) instead: the same relative weights.
//   L = 0.5 MLSM(z_s, y) + 0.5 MLSM(z_c, y) + 0.05 L_cps,   L_cps = mean |P(cam_s) - P(cam_c)|
// variant 'code' (default): P(cam) = cam[0] + flip_W(cam[1]) (IRN's inference flip-combine applied to batch items 0
//   and 1, two different images), f_s and z_s detached (the spotlight backbone never learns, W_s only through
//   L_cps), and the compensation stem (conv1..layer1) detached; the AMM's BatchNorm always normalises with batch
//   statistics (the code's Net.train() override never calls nn.Module.train, so nothing leaves training mode).
// variant 'paper': P = identity (plain per-image L1 over the batch), both branches learn (mutual supervision),
//   the AMM BatchNorm uses running statistics at inference.
// Learning rates (the code): compensation backbone 10x, the spotlight backbone and both classifiers 1x (the
//   classifiers' multipliers are separate settings: on a short schedule the compensation classifier needs more).
import { z } from 'zod';
import { F, type Tensor, cat, noGrad, tidy } from '../engine/index.js';
import { BatchNorm2d, Conv2d, Layer, Linear, Module, type ParamGroupSpec, ReLU, Sequential } from '../nn/index.js';
import type { Backbone, BlockHook } from '../backbones/backbone.js';
import { classificationLoss } from './blocks.js';
import { CamNet } from './cam.js';
import {
  type CamBranch, type CamSource, type LocalizeContext, type LossOutput, type Method, type StepContext, type TrainBatch,
  defineMethod,
} from './method.js';

export type AmrVariant = 'code' | 'paper';

/** G(x) = exp(-(x - mean)^2 / (2 std^2)) / (sqrt(2 pi) std): the code's GaussProjection (not scaled to peak 1). */
export function gaussProjection(x: Tensor, mean: Tensor | number, std: Tensor | number): Tensor {
  return tidy(() => {
    const twoVar = typeof std === 'number' ? 2 * std * std : std.square().mul(2);
    const sigma = typeof std === 'number' ? Math.sqrt(2 * Math.PI) * std : std.mul(Math.sqrt(2 * Math.PI));
    return x.sub(mean).square().neg().div(twoVar).exp().div(sigma);
  });
}

/**
 * How the AMM's Gaussian weights are scaled: 'code' as GaussProjection (peak 1/(sqrt(2 pi) sigma)); 'mean' divided by
 * their own (detached) mean over the tensor, so the module keeps the relative weighting but not the overall damping.
 * Why 'mean' exists: on MobileNetV2 the code's scale damps every residual branch 3-9x at initialisation, and the
 * ImageNet features lose most of what a linear probe reads from them (README, AMR); 'mean' keeps them.
 */
export type GaussianScale = 'code' | 'mean';

/** G(a) with the scalar mean and (unbiased) standard deviation of every entry of a, detached, as the code. */
export function gaussModulation(a: Tensor, scale: GaussianScale = 'code'): Tensor {
  return tidy(() => {
    const d = a.detach();
    const g = gaussProjection(a, d.mean(), d.std());
    return scale === 'mean' ? g.div(g.detach().mean()) : g;
  });
}

class Flatten extends Layer {
  forward(x: Tensor): Tensor {
    return x.flatten(1);
  }
}

/**
 * The spatial gate's BatchNorm. Under the code it always normalises with the batch's statistics: AMR's Net.train()
 * never calls nn.Module.train, so this nn.BatchNorm2d stays in training mode at inference too.
 */
class AmmBatchNorm extends BatchNorm2d {
  constructor(readonly alwaysBatchStatistics: boolean) {
    super(1, { eps: 1e-5, momentum: 0.01 });
  }

  override forward(x: Tensor): Tensor {
    if (!this.alwaysBatchStatistics || this.training) return super.forward(x);
    this.training = true;
    try {
      return super.forward(x);
    } finally {
      this.training = false;
    }
  }
}

/** Channel modulation (code: ChannelGate): x G(MLP(GAP(x))), keys mlp.1.* and mlp.3.* as nn.Sequential's. */
export class ChannelAmm extends Layer {
  readonly mlp: Sequential;
  constructor(channels: number, reduction = 16, readonly scale: GaussianScale = 'code') {
    super();
    const hidden = Math.max(1, Math.floor(channels / reduction));
    this.mlp = this.registerModule('mlp', new Sequential(new Flatten(), new Linear(channels, hidden), new ReLU(), new Linear(hidden, channels)));
  }

  /** The raw channel response a (N x C). */
  response(x: Tensor): Tensor {
    return this.mlp.forward(F.globalAvgPool(x));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const w = gaussModulation(this.response(x), this.scale);
      return x.mul(w.view(w.size(0), w.size(1), 1, 1));
    });
  }
}

/** Spatial modulation (code: SpatialGate): x G(BN(conv7x7([max_c x, mean_c x]))), keys spatial.conv.*, spatial.bn.*. */
export class SpatialAmm extends Layer {
  readonly spatial: Module & { conv: Conv2d; bn: AmmBatchNorm };
  constructor(alwaysBatchStatistics: boolean, readonly scale: GaussianScale = 'code') {
    super();
    const basic = new (class BasicConv extends Module {
      readonly conv = this.registerModule('conv', new Conv2d(2, 1, 7, { padding: 3, bias: false }));
      readonly bn = this.registerModule('bn', new AmmBatchNorm(alwaysBatchStatistics));
    })();
    this.spatial = this.registerModule('spatial', basic);
  }

  /** The raw spatial response s (N x 1 x H x W). */
  response(x: Tensor): Tensor {
    return tidy(() => {
      const pooled = cat([x.amax(1, true), x.mean(1, true)], 1);
      return this.spatial.bn.forward(this.spatial.conv.forward(pooled));
    });
  }

  forward(x: Tensor): Tensor {
    return tidy(() => x.mul(gaussModulation(this.response(x), this.scale)));
  }
}

export interface AmmOptions {
  reduction?: number;
  alwaysBatchStatistics?: boolean;
  gaussianScale?: GaussianScale;
}

/** The attention modulation module: channel, then spatial modulation (keys ChannelAMM.*, SpatialAMM.* as net/amm.py). */
export class Amm extends Layer {
  readonly channel: ChannelAmm;
  readonly spatialGate: SpatialAmm;
  constructor(channels: number, o: AmmOptions = {}) {
    super();
    this.channel = this.registerModule('ChannelAMM', new ChannelAmm(channels, o.reduction ?? 16, o.gaussianScale));
    this.spatialGate = this.registerModule('SpatialAMM', new SpatialAmm(o.alwaysBatchStatistics ?? true, o.gaussianScale));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => this.spatialGate.forward(this.channel.forward(x)));
  }
}

/**
 * The block hook that puts an AMM into every block with a shortcut (keys <block>.amm.*): every ResNet bottleneck, as
 * the code; MobileNetV2's stride-1 inverted residuals whose channels match (10 of 17). In the code the AMM damps a
 * residual branch while the shortcut carries the signal. G is not scaled to peak 1 (its peak is 1/(sqrt(2 pi) sigma)),
 * so in a block without a shortcut it would scale the whole signal: MobileNetV2's 7 such blocks, each with one,
 * leave the compensation branch's features exactly 0 (ImageNet weights, 224 px) and its classifier nothing to learn.
 */
export function ammBlocks(o: AmmOptions = {}): BlockHook {
  return { name: 'amm', create: (info) => (info.residual ? new Amm(info.channels, o) : null) };
}

/**
 * The stem each branch keeps frozen: the code detaches the compensation branch after stage2_1 (conv1 .. layer1,
 * stride 4); on MobileNetV2 the same stride-4 point is features.0 .. features.3 (this project's choice).
 */
export function defaultFrozenStem(backbone: Backbone): string[] {
  const byName: Record<string, string[]> = {
    resnet50: ['conv1', 'bn1', 'layer1'],
    resnet101: ['conv1', 'bn1', 'layer1'],
    mobilenet_v2: ['features.0', 'features.1', 'features.2', 'features.3'],
  };
  const stem = byName[backbone.name];
  if (!stem) throw new Error(`AMR: no default frozen stem for backbone '${backbone.name}'; set method.frozenStem`);
  return stem;
}

/** Stops gradients to the named submodules of a module (their BatchNorms keep their mode). */
function freezePaths(m: Module, paths: readonly string[], what: string): void {
  const byName = new Map(m.namedModules());
  for (const p of paths) {
    const sub = byName.get(p);
    if (!sub) throw new Error(`AMR: ${what} has no module '${p}' to freeze (method.frozenStem)`);
    sub.freeze(true);
  }
}

export interface AmrOptions {
  numClasses: number;
  variant?: AmrVariant;
  /** Loss weights (code: 0.5, 0.5, 0.05). */
  spotlightClsWeight?: number;
  compensationClsWeight?: number;
  cpsWeight?: number;
  /** Learning-rate multipliers of the compensation backbone (code: 10), its classifier and the spotlight's (code: 1). */
  compensationLrMult?: number;
  classifierLrMult?: number;
  spotlightClassifierLrMult?: number;
  /** Stem modules kept frozen (default per backbone, see defaultFrozenStem). */
  frozenStem?: readonly string[];
  /** Inference: branch weights of the fused CAM (code: 0.5 / 0.5) and the map each branch gives (CAM or Grad-CAM). */
  spotlightWeight?: number;
  compensationWeight?: number;
  branchMap?: 'cam' | 'gradcam';
}

export const AMR_DEFAULTS = {
  variant: 'code' as AmrVariant,
  spotlightClsWeight: 0.5,
  compensationClsWeight: 0.5,
  cpsWeight: 0.05,
  compensationLrMult: 10,
  classifierLrMult: 1,
  spotlightClassifierLrMult: 1,
  spotlightWeight: 0.5,
  compensationWeight: 0.5,
  branchMap: 'cam' as 'cam' | 'gradcam',
};

/** The two branches under the code's roles: spotlight.* and compensation.* (each backbone.* and classifier.conv.weight). */
export class AmrNet extends Module {
  readonly spotlight: CamNet;
  readonly compensation: CamNet;
  constructor(spotlight: Backbone, compensation: Backbone, numClasses: number) {
    super();
    this.spotlight = this.registerModule('spotlight', new CamNet(spotlight, numClasses));
    this.compensation = this.registerModule('compensation', new CamNet(compensation, numClasses));
  }
}

/** The code's flip-combine of a ReLU'd CAM batch: cam[0] + flip_W(cam[1]) (C x h x w). */
export function flipCombine(cams: Tensor): Tensor {
  if (cams.size(0) < 2) throw new RangeError(`AMR (variant 'code'): the CPS term combines batch items 0 and 1, got a batch of ${cams.size(0)}`);
  return tidy(() => cams.select(0, 0).add(cams.select(0, 1).flip(2)));
}

/**
 * Grad-CAM of a CAM network (the code's step/gradCAM.py) in closed form. The explained score of class c is the
 * sum-pooled ReLU(cam_c) over the batch, so d score / d f_k = W_ck [cam_c > 0]; the code's channel weight is that
 * gradient summed over the pixels and divided by the number of positive entries of the whole gradient tensor:
 *   alpha_nck = W_ck #{cam_nc > 0} / (#{k: W_ck > 0} sum_n #{cam_nc > 0}),   map_nc = ReLU(sum_k alpha_nck f_nk)
 * The weights carry no gradient (as the hooked gradient in the code); the map does, through f.
 */
export function gradCamMaps(features: Tensor, weight: Tensor): { cams: Tensor; maps: Tensor } {
  return tidy(() => {
    const [n, k] = [features.size(0), features.size(1)];
    const C = weight.size(0);
    const w = weight.view(C, k);
    const cams = F.conv2d(features, weight);
    const alpha = noGrad(() => {
      const active = cams.detach().gt(0).float().sum([2, 3]);                 // N x C
      const positive = w.detach().gt(0).float().sum(1);                      // C
      const total = active.sum(0).mul(positive).add(1e-12);                  // C
      return active.div(total).unsqueeze(2).mul(w.detach().unsqueeze(0));   // N x C x K
    });
    const maps = alpha.bmm(features.reshape(n, k, -1)).view(n, C, features.size(2), features.size(3)).relu();
    return { cams, maps };
  });
}

export class AmrMethod implements Method {
  readonly name = 'amr';
  readonly model: AmrNet;
  readonly numClasses: number;
  readonly options: Required<Omit<AmrOptions, 'frozenStem'>> & { frozenStem: readonly string[] };

  /**
   * @param spotlight a plain backbone (load the CAM run into `model.spotlight` afterwards, or use the builder)
   * @param compensation a backbone built with `ammBlocks()` in its blocks
   */
  constructor(spotlight: Backbone, compensation: Backbone, o: AmrOptions) {
    this.numClasses = o.numClasses;
    const given = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<AmrOptions>;
    this.options = { ...AMR_DEFAULTS, frozenStem: o.frozenStem ?? defaultFrozenStem(compensation), ...given, numClasses: o.numClasses };
    if (this.options.spotlightWeight + this.options.compensationWeight <= 0) {
      throw new RangeError('AMR: method.spotlightWeight and method.compensationWeight are both 0: the fused CAM would be empty');
    }
    this.model = new AmrNet(spotlight, compensation, o.numClasses);
    freezePaths(compensation, this.options.frozenStem, 'the compensation backbone');
    // The code detaches the whole spotlight backbone; the paper trains it (its stem frozen like the compensation's).
    if (this.options.variant === 'code') spotlight.freeze(true);
    else freezePaths(spotlight, this.options.frozenStem, 'the spotlight backbone');
  }

  /** The compensation backbone (the trainer reads its input normalisation and name). */
  get backbone(): Backbone {
    return this.model.compensation.backbone;
  }

  paramGroups(): ParamGroupSpec[] {
    const { spotlight, compensation } = this.model;
    const o = this.options;
    return [
      { name: 'spotlight', params: spotlight.backbone.trainableParameters(), lrMult: 1 },
      { name: 'compensation', params: compensation.backbone.trainableParameters(), lrMult: o.compensationLrMult },
      { name: 'spotlight classifier', params: spotlight.classifier.trainableParameters(), lrMult: o.spotlightClassifierLrMult },
      { name: 'compensation classifier', params: compensation.classifier.trainableParameters(), lrMult: o.classifierLrMult },
    ];
  }

  /** Both branches' logits and ReLU'd CAMs, with the code's detaches under variant 'code'. */
  forwardBranches(images: Tensor): { logitsS: Tensor; camS: Tensor; logitsC: Tensor; camC: Tensor } {
    return tidy(() => {
      const { spotlight, compensation } = this.model;
      const code = this.options.variant === 'code';
      const fS = code ? noGrad(() => spotlight.backbone.forward(images).features) : spotlight.backbone.forward(images).features;
      const camS = spotlight.classifier.cams(fS).relu();
      const logitsS = code ? noGrad(() => spotlight.classifier.logits(fS)) : spotlight.classifier.logits(fS);
      const fC = compensation.backbone.forward(images).features;
      return { logitsS, camS, logitsC: compensation.classifier.logits(fC), camC: compensation.classifier.cams(fC).relu() };
    });
  }

  /** L_cps: the code's flip-combine of items 0 and 1, or the paper's per-image mean absolute difference. */
  cpsLoss(camS: Tensor, camC: Tensor): Tensor {
    return tidy(() => (this.options.variant === 'code'
      ? flipCombine(camS).sub(flipCombine(camC)).abs().mean()
      : camS.sub(camC).abs().mean()));
  }

  loss(batch: TrainBatch, _context?: StepContext): LossOutput {
    const o = this.options;
    const { logitsS, camS, logitsC, camC } = this.forwardBranches(batch.images);
    const clsS = classificationLoss(logitsS, batch.labels);
    const clsC = classificationLoss(logitsC, batch.labels);
    const cps = this.cpsLoss(camS, camC);
    const loss = clsS.mul(o.spotlightClsWeight).add(clsC.mul(o.compensationClsWeight)).add(cps.mul(o.cpsWeight));
    return { loss, parts: { clsS, clsC, cps } };
  }

  /** The compensation branch's CAMs (the CAM stage fuses both branches through `localize`). */
  cams(images: Tensor): Tensor {
    const { compensation } = this.model;
    return tidy(() => compensation.classifier.cams(compensation.backbone.forward(images).features));
  }

  /** The mean of the two branches' logits, each trained by its classification term (the CAM stage fuses both too). */
  classify(images: Tensor): Tensor {
    const { spotlight, compensation } = this.model;
    return tidy(() => spotlight.classifier.logits(spotlight.backbone.forward(images).features)
      .add(compensation.classifier.logits(compensation.backbone.forward(images).features)).div(2));
  }

  /** One branch as the CAM stage sees it: its raw CAMs, and its Grad-CAM maps under branchMap 'gradcam'. */
  branchSource(branch: CamNet): CamSource {
    const source: CamSource = { cams: (x) => tidy(() => branch.classifier.cams(branch.backbone.forward(x).features)) };
    if (this.options.branchMap === 'gradcam') {
      source.maps = (x) => gradCamMaps(branch.backbone.forward(x).features, branch.classifier.weight);
    }
    return source;
  }

  /** Each branch's map over the stage's scales and flips (or AdvCAM), normalised on its own and fused with its weight. */
  async localize(image: Tensor, _labels: readonly number[], context: LocalizeContext): Promise<CamBranch[]> {
    const o = this.options;
    const { spotlight, compensation } = this.model;
    const branches: CamBranch[] = [];
    try {
      // a branch weighted 0 is not computed (the benchmark scores each branch alone this way)
      for (const [name, net, weight] of [['spotlight', spotlight, o.spotlightWeight], ['compensation', compensation, o.compensationWeight]] as const) {
        if (weight !== 0) branches.push({ name, cams: context.camMap(image, this.branchSource(net)), weight, normalization: 'max' });
      }
      return branches;
    } catch (e) {
      for (const b of branches) b.cams.dispose();
      throw e;
    }
  }
}

const AmrSettings = z.object({
  variant: z.enum(['code', 'paper']).default('code')
    .describe("'code' (the released training: spotlight detached, CPS on the flip-combine of batch items 0 and 1) or 'paper' (mutual CPS, per-image L1)"),
  spotlight: z.string().min(1).nullable().default(null)
    .describe('the spotlight initialisation: a trained CAM run directory or model file (method cam); required (the CAM stage then loads the trained AMR model over it)'),
  spotlightClsWeight: z.number().min(0).default(AMR_DEFAULTS.spotlightClsWeight),
  compensationClsWeight: z.number().min(0).default(AMR_DEFAULTS.compensationClsWeight),
  cpsWeight: z.number().min(0).default(AMR_DEFAULTS.cpsWeight).describe('weight of the cross pseudo supervision L1'),
  compensationLrMult: z.number().positive().default(AMR_DEFAULTS.compensationLrMult)
    .describe('learning-rate multiplier of the compensation backbone (the spotlight backbone uses 1; train.headLrMult is not used)'),
  classifierLrMult: z.number().positive().default(AMR_DEFAULTS.classifierLrMult)
    .describe("learning-rate multiplier of the compensation branch's classifier"),
  spotlightClassifierLrMult: z.number().positive().default(AMR_DEFAULTS.spotlightClassifierLrMult)
    .describe("learning-rate multiplier of the spotlight's classifier (under variant 'code' it learns through L_cps only)"),
  frozenStem: z.array(z.string().min(1)).optional()
    .describe('modules of each backbone kept frozen (default: conv1, bn1, layer1 on ResNet; features.0-3 on MobileNetV2)'),
  ammReduction: z.number().int().positive().default(16).describe('the AMM channel MLP reduction C -> C/r -> C'),
  gaussianScale: z.enum(['code', 'mean']).default('code')
    .describe("the AMM's Gaussian weights: 'code' (peak 1/(sqrt(2 pi) sigma), damps each residual branch) or 'mean' (divided by their mean: the same relative weighting at the branch's own scale; the MobileNetV2 preset's)"),
  spotlightWeight: z.number().min(0).default(AMR_DEFAULTS.spotlightWeight).describe('weight of the spotlight map in the fused CAM'),
  compensationWeight: z.number().min(0).default(AMR_DEFAULTS.compensationWeight).describe('weight of the compensation map in the fused CAM'),
  branchMap: z.enum(['cam', 'gradcam']).default('cam').describe("each branch's map at inference: its CAM, or the code's Grad-CAM"),
}).strict();

export const amr = defineMethod({
  name: 'amr',
  title: 'AMR',
  paper: 'Qin et al., Activation Modulation and Recalibration Scheme for Weakly Supervised Semantic Segmentation, AAAI 2022',
  settings: AmrSettings,
  inferenceSettings: ['spotlightWeight', 'compensationWeight', 'branchMap'],
  build: (s, context) => {
    const spotlight = context.backbone();
    let compensation: Backbone | null = null;
    try {
      compensation = context.backbone({
        blocks: ammBlocks({ reduction: s.ammReduction, alwaysBatchStatistics: s.variant === 'code', gaussianScale: s.gaussianScale }),
      });
      const method = new AmrMethod(spotlight, compensation, {
        numClasses: context.numClasses,
        variant: s.variant,
        spotlightClsWeight: s.spotlightClsWeight,
        compensationClsWeight: s.compensationClsWeight,
        cpsWeight: s.cpsWeight,
        compensationLrMult: s.compensationLrMult,
        classifierLrMult: s.classifierLrMult,
        spotlightClassifierLrMult: s.spotlightClassifierLrMult,
        ...(s.frozenStem ? { frozenStem: s.frozenStem } : {}),
        spotlightWeight: s.spotlightWeight,
        compensationWeight: s.compensationWeight,
        branchMap: s.branchMap,
      });
      if (s.spotlight === null) {
        throw new Error("AMR: method.spotlight must name a trained CAM run directory or model file (train one with method 'cam' on the same backbone)");
      }
      context.loadModel(method.model.spotlight, s.spotlight);
      return method;
    } catch (e) {
      spotlight.dispose();
      compensation?.dispose();
      throw e;
    }
  },
});
