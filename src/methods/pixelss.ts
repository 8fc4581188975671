// Pixel-level self-supervision: a MainNet taught by a SupportNet through a Regional Contrastive Module (RCM) and
// a Multi-scale Attentive Module (MAM). Yoon et al., "Exploring Pixel-level Self-supervision for Weakly
// Supervised Semantic Segmentation", arXiv 2112.05351; methods-reference.md section 5.
//
// Only the abstract is public and no code was released: this is a re-interpretation. What the abstract fixes is
// built as stated; every choice it leaves open is a setting (defaults in PIXELSS_DEFAULTS), following the
// code-available analogues: PPC (usr922/wseg, contrast_train.py) for the pixel-to-prototype contrast, SEAM's
// equivariant regularisation for the multi-scale consistency.
//
// Networks. MainNet = a SEAM network (`base: 'seam'`, the default; `'cam'`: the plain CAM network) plus a
// projection head proj (1x1 conv D -> 128, ReLU, as PPC's fc_proj). SupportNet (no gradient, eval mode):
//   support 'frozen'  a CAM or SEAM network trained by an earlier run (`supportFrom`, `supportMethod`), loaded at
//                     the first training step; its pixels are projected by the MainNet's head (detached), as PPC
//                     pools its prototypes from its own detached projections
//   support 'ema'     a copy of the MainNet (head included), updated after every step:
//                     theta_s <- m theta_s + (1 - m) theta_main  (momentum m = `emaMomentum`)
// Support CAMs P: the network's inference CAMs (SEAM: the PCM output, CAM: the classifier), ReLU, at the
// MainNet's feature grid, masked by the image labels y and normalised per class as the CAM stage does (SEAM:
// min-max, CAM: max).
//
// RCM (on the crop I, at the feature grid). Region labels from P at scale 1 (background by the seed threshold
// convention, an ignore band between `regionThresholds` [low, high]):
//   r(p) = 1 + argmax_c P_c(p)  if max_c P_c(p) > high;   0 (background) if max_c P_c(p) <= low;   ignored between
// (low = high gives PPC's hard rule: pseudo label = argmax over [t, P_1 y_1, ..., P_C y_C]).
// Prototypes: masked means of the support's projected features g, then L2-normalised,
//   rho_k = normalize( sum_{p: r(p) = k} g(p) / |{p: r(p) = k}| )
// over each image (`prototypes: 'image'`), over the batch ('batch', as PPC) or both (the two losses averaged).
// MainNet pixel embeddings z(p) = normalize(proj(f(p))); InfoNCE over the prototypes present (in the image or batch):
//   L_rcm = mean_{p not ignored} -log [ exp(z(p).rho_{r(p)} / tau) / sum_k exp(z(p).rho_k / tau) ]
// which is PPC's pixel-to-prototype loss (its loss_nce1) with these masks and prototypes.
//
// MAM. The SupportNet's CAMs at several scales (`mamScales`), each resized to the grid, summed (ReLU first) and
// normalised: S. The MainNet's raw CAM (SEAM: fc8's, whose gradient reaches the backbone) normalised as SEAM's
// max_norm, masked by y: M. A per-pixel weight that grows with the dissimilarity, detached:
//   w(p) = (max_c |S_c(p) - M_c(p)|)^gamma                                (gamma = `mamGamma`; 0: uniform)
//   L_mam = mean_{p,c} w(p) ReLU(S_c(p) - M_c(p))   ('up', the default: the MainNet is only pulled upward, into
//           the regions the support finds at other scales)   or   w(p) |S_c(p) - M_c(p)|   ('symmetric')
// (the mean runs over all N C h w entries, absent classes being zero on both sides, as SEAM's L_ER).
//
// Loss: L = L_base + lambda_rcm L_rcm + lambda_mam L_mam, L_base SEAM's full loss (src/methods/seam.ts, reused) or
// the CAM classification loss. A weight of 0 switches a module off (the ablations). Inference from the MainNet,
// as its base's.
import { z } from 'zod';
import { F, type Tensor, noGrad, oneHot, tidy } from '../engine/index.js';
import { Conv2d, Module, type ParamGroupSpec, init } from '../nn/index.js';
import type { Backbone } from '../backbones/backbone.js';
import { CamMethod, CamNet } from './cam.js';
import { SeamMethod, SeamNet, defaultPcmTaps, maxNorm, pcmTapsSetting } from './seam.js';
import {
  type CamNormalization, type LossOutput, type Method, type MethodContext, type StepContext, type TrainBatch, defineMethod,
} from './method.js';

/** Region label of an ignored pixel (as the masks' 255). */
export const IGNORE = 255;

export type PixelSsBase = 'seam' | 'cam';
export type PrototypeScope = 'image' | 'batch' | 'both';

export interface PixelSsOptions {
  numClasses: number;
  /** The MainNet's base network and loss. */
  base?: PixelSsBase;
  /** SupportNet: a frozen network of an earlier run, or an EMA copy of the MainNet. */
  support?: 'frozen' | 'ema';
  /** The frozen support's architecture (the method of the run it comes from). */
  supportMethod?: PixelSsBase;
  /** Loads the frozen support's weights into it (frozen); called once, at the first training step. */
  loadSupport?: (into: Module) => void;
  emaMomentum?: number;
  projDim?: number;
  temperature?: number;
  regionThresholds?: [number, number];
  prototypes?: PrototypeScope;
  lambdaRcm?: number;
  lambdaMam?: number;
  mamScales?: number[];
  mamMode?: 'up' | 'symmetric';
  mamGamma?: number;
  /** PCM taps of SEAM networks (MainNet and frozen support). */
  pcmTaps?: [string, string];
  headLrMult?: number;
}

/** Defaults of the choices the abstract leaves open (see the header; PPC's values where it has one). */
export const PIXELSS_DEFAULTS = {
  base: 'seam' as PixelSsBase,
  support: 'ema' as 'frozen' | 'ema',
  supportMethod: 'seam' as PixelSsBase,
  // voc-mini trains ~500 steps: a time constant of 1 / (1 - m) = 100 steps lets the teacher follow the MainNet.
  emaMomentum: 0.99,
  projDim: 128,                                   // PPC: fc_proj 4096 -> 128
  temperature: 0.1,                               // PPC: / 0.1
  regionThresholds: [0.2, 0.4] as [number, number],  // PPC: bg_threshold 0.2 (no band)
  prototypes: 'batch' as PrototypeScope,          // PPC: prototypes over the batch
  lambdaRcm: 0.1,                                 // PPC: 0.1 per contrastive term
  lambdaMam: 1,                                   // as SEAM's L_ER
  mamScales: [0.5, 1, 1.5],
  mamMode: 'up' as 'up' | 'symmetric',
  mamGamma: 1,
};

/** The MainNet: a SEAM or CAM network (`base`) and the projection head `proj`. The EMA SupportNet is one too. */
export class PixelSsNet extends Module {
  readonly base: SeamNet | CamNet;
  readonly proj: Conv2d;

  constructor(base: SeamNet | CamNet, projDim: number) {
    super();
    this.base = this.registerModule('base', base);
    this.proj = this.registerModule('proj', new Conv2d(base.backbone.outChannels, projDim, 1, { bias: false }));
    init.xavierUniform_(this.proj.weight);  // PPC: xavier_uniform_(fc_proj.weight)
  }

  /** ReLU(proj(f)), N x projDim x h x w (not normalised). */
  project(features: Tensor): Tensor {
    return this.proj.forward(features).relu();
  }
}

/** The model the trainer sees: the MainNet and the SupportNet (saved with it, so a run's model file is whole). */
export class PixelSsModel extends Module {
  readonly main: PixelSsNet;
  readonly support: PixelSsNet | SeamNet | CamNet;

  constructor(main: PixelSsNet, support: PixelSsNet | SeamNet | CamNet) {
    super();
    this.main = this.registerModule('main', main);
    this.support = this.registerModule('support', support);
  }
}

/** A CAM or SEAM network's inference CAMs (foreground, raw, N x C x h x w: SEAM's from the PCM) and its features. */
export function camsAndFeatures(net: SeamNet | CamNet, x: Tensor, numClasses: number): { cams: Tensor; features: Tensor } {
  if (net instanceof SeamNet) {
    const g = net.forwardGrid(x);
    return { cams: g.camRv.narrow(1, 1, numClasses), features: g.features };
  }
  const features = net.backbone.forward(x).features;
  return { cams: net.classifier.cams(features), features };
}

/**
 * N x C x h x w maps masked by the labels y (N x C) and normalised per image and class as the CAM stage does
 * (src/cams/infer.ts normalizeCams, batched here over a label tensor).
 */
export function normalizeBatchCams(m: Tensor, labels: Tensor, normalization: CamNormalization): Tensor {
  const masked = m.mul(labels.view(labels.size(0), -1, 1, 1));
  if (normalization === 'max') return masked.div(masked.amax([2, 3], true).clampMin(1e-5));
  const low = masked.amin([2, 3], true);
  return masked.sub(low).div(masked.amax([2, 3], true).sub(low).clampMin(1e-5));
}

/**
 * Region labels (N x h x w int64) from normalised support CAMs P (N x C x h x w, absent classes zero):
 * 1 + argmax_c P where max_c P > high, 0 where max_c P <= low, IGNORE between and where `valid` (N x h x w bool) is false.
 */
export function regionLabels(p: Tensor, low: number, high: number, valid?: Tensor | null): Tensor {
  if (!(low <= high)) throw new RangeError(`regionLabels: low ${low} must not exceed high ${high}`);
  const [mx, arg] = p.max(1);
  let r = arg.add(1).maskedFill(mx.le(low), 0).maskedFill(mx.gt(low).logicalAnd(mx.le(high)), IGNORE);
  if (valid) r = r.maskedFill(valid.logicalNot(), IGNORE);
  return r;
}

/**
 * Class prototypes as masked means of features g (N x D x h x w) inside the regions r (N x h x w, labels 0..K-1 or
 * IGNORE), L2-normalised: per image, or over the whole batch (then the same for every image).
 * @returns protos N x K x D and present N x K (bool: the region has pixels in the image / batch)
 */
export function regionPrototypes(g: Tensor, regions: Tensor, numRegions: number, scope: 'image' | 'batch'): { protos: Tensor; present: Tensor } {
  const [n, d] = [g.size(0), g.size(1)];
  const flat = regions.reshape(n, -1);
  // One-hot with an extra column for IGNORE, dropped: ignored pixels belong to no region.
  const member = oneHot(flat.maskedFill(flat.eq(IGNORE), numRegions), numRegions + 1).narrow(2, 0, numRegions).float(); // N x hw x K
  let sums = member.transpose(1, 2).bmm(g.reshape(n, d, -1).transpose(1, 2));  // N x K x D
  let counts = member.sum(1);  // N x K
  if (scope === 'batch') {
    sums = sums.sum(0, true).expand([n, numRegions, d]);
    counts = counts.sum(0, true).expand([n, numRegions]);
  }
  const protos = F.normalize(sums.div(counts.clampMin(1).unsqueeze(2)), { dim: 2 });
  return { protos, present: counts.gt(0) };
}

/**
 * InfoNCE of pixel embeddings z (N x D x h x w, L2-normalised) against prototypes (N x K x D, with `present`
 * N x K): mean over the labelled pixels of -log softmax_k(z . rho_k / tau)[r], absent prototypes left out.
 * Zero (with a graph) when every pixel is ignored.
 */
export function prototypeContrast(zEmb: Tensor, regions: Tensor, protos: Tensor, present: Tensor, temperature: number): Tensor {
  const n = zEmb.size(0);
  const logits = protos.bmm(zEmb.reshape(n, zEmb.size(1), -1)).div(temperature);  // N x K x hw
  // A large finite negative, not -inf: an image without prototypes (all its pixels ignored) gives no NaN.
  const masked = logits.maskedFill(present.logicalNot().unsqueeze(2).expandAs(logits), -1e4);
  const target = regions.reshape(n, -1);
  if (!target.ne(IGNORE).any().item()) return logits.sum().mul(0);
  return F.crossEntropy(masked, target, { ignoreIndex: IGNORE });
}

/** MAM's per-pixel weight, detached: (max_c |S_c - M_c|)^gamma, N x 1 x h x w (zero where the two agree, gamma > 0). */
export function mamWeight(main: Tensor, support: Tensor, gamma: number): Tensor {
  return noGrad(() => tidy(() => support.sub(main.detach()).abs().amax(1, true).pow(gamma)));
}

/** MAM's loss: mean of w ReLU(S - M) ('up') or w |S - M| ('symmetric'), `valid` (N x h x w bool) masking padding. */
export function mamLoss(main: Tensor, support: Tensor, o: { mode: 'up' | 'symmetric'; gamma: number; valid?: Tensor | null }): Tensor {
  const diff = support.sub(main);
  let w = mamWeight(main, support, o.gamma);
  if (o.valid) w = w.mul(o.valid.unsqueeze(1).float());
  return (o.mode === 'up' ? diff.relu() : diff.abs()).mul(w).mean();
}

/** How the CAM stage normalises a method's maps. */
const normalizationOf = (m: Method): CamNormalization => m.camNormalization ?? 'max';

/** A bool N x H x W mask at the grid (h x w): a grid pixel is valid where most of its area is. */
function validAtGrid(valid: Tensor, h: number, w: number): Tensor {
  return F.interpolate(valid.float().unsqueeze(1), { size: [h, w], mode: 'area' }).squeeze(1).gt(0.5);
}

export class PixelSsMethod implements Method {
  readonly name = 'pixel-ss';
  readonly numClasses: number;
  readonly model: PixelSsModel;
  /** The MainNet's base as a method: its loss terms, parameter groups and inference are reused. */
  readonly baseMethod: SeamMethod | CamMethod;
  readonly options: Required<Omit<PixelSsOptions, 'loadSupport' | 'pcmTaps'>>;
  readonly camNormalization: CamNormalization;
  readonly #supportNormalization: CamNormalization;
  #loadSupport: ((into: Module) => void) | null;

  /**
   * @param backbone builds a new backbone (called for the MainNet, and for the SupportNet)
   */
  constructor(backbone: () => Backbone, o: PixelSsOptions) {
    this.numClasses = o.numClasses;
    const { loadSupport: _l, pcmTaps: _p, ...given } = o;
    const set = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
    this.options = { ...PIXELSS_DEFAULTS, headLrMult: 10, ...set } as PixelSsMethod['options'];
    const opt = this.options;
    const [low, high] = opt.regionThresholds;
    if (!(low >= 0 && low <= high && high <= 1)) throw new RangeError(`pixel-ss: regionThresholds must be 0 <= low <= high <= 1, got [${low}, ${high}]`);
    if (!(opt.emaMomentum >= 0 && opt.emaMomentum < 1)) throw new RangeError(`pixel-ss: emaMomentum must be in [0, 1), got ${opt.emaMomentum}`);
    if (opt.mamScales.length === 0 || opt.mamScales.some((s) => !(s > 0))) throw new RangeError(`pixel-ss: mamScales must be positive, got [${opt.mamScales}]`);
    if (opt.support === 'frozen' && !o.loadSupport) throw new Error("pixel-ss: support 'frozen' needs the run (or model file) to load it from (method.supportFrom)");

    const built: Backbone[] = [];
    const baseMethod = (kind: PixelSsBase): SeamMethod | CamMethod => {
      const b = backbone();
      built.push(b);
      return kind === 'seam'
        ? new SeamMethod(b, { numClasses: o.numClasses, pcmTaps: o.pcmTaps ?? defaultPcmTaps(b), headLrMult: opt.headLrMult })
        : new CamMethod(b, { numClasses: o.numClasses, headLrMult: opt.headLrMult });
    };
    try {
      this.baseMethod = baseMethod(opt.base);
      const main = new PixelSsNet(this.baseMethod.model, opt.projDim);
      let support: PixelSsNet | SeamNet | CamNet;
      const supportMethod = baseMethod(opt.support === 'ema' ? opt.base : opt.supportMethod);
      this.#supportNormalization = normalizationOf(supportMethod);
      if (opt.support === 'ema') {
        support = new PixelSsNet(supportMethod.model, opt.projDim);
        support.loadStateDict(main.stateDict());
      } else {
        support = supportMethod.model;
      }
      support.setFrozen(true);
      this.model = new PixelSsModel(main, support);
    } catch (e) {
      for (const b of built) b.dispose();
      throw e;
    }
    this.camNormalization = normalizationOf(this.baseMethod);
    this.#loadSupport = opt.support === 'frozen' ? o.loadSupport! : null;
  }

  get backbone(): Backbone {
    return this.baseMethod.backbone;
  }

  /** The base's groups, the projection head with the new layers. */
  paramGroups(): ParamGroupSpec[] {
    const groups = this.baseMethod.paramGroups();
    groups[groups.length - 1]!.params.push(...this.model.main.proj.trainableParameters());
    return groups;
  }

  /** Loads the frozen SupportNet (once): at the first step, so that inference never needs the support's run. */
  ensureSupportLoaded(): void {
    if (!this.#loadSupport) return;
    this.#loadSupport(this.model.support);
    this.model.support.setFrozen(true);
    this.#loadSupport = null;
  }

  /** The SupportNet's CAMs and projected features on the crop, and (with MAM on) its fused multi-scale CAMs. */
  supportPass(images: Tensor, labels: Tensor, grid: [number, number]): { regionCams: Tensor; projected: Tensor; fused: Tensor | null } {
    const o = this.options;
    const sup = this.model.support;
    const net = sup instanceof PixelSsNet ? sup.base : sup;
    const head = sup instanceof PixelSsNet ? sup : this.model.main;
    const toGrid = (t: Tensor) => (t.size(2) === grid[0] && t.size(3) === grid[1] ? t
      : F.interpolate(t, { size: grid, mode: 'bilinear', alignCorners: false }));
    return noGrad(() => tidy(() => {
      const one = camsAndFeatures(net, images, this.numClasses);
      const cams1 = toGrid(one.cams).relu();
      const regionCams = normalizeBatchCams(cams1, labels, this.#supportNormalization);
      const projected = head.project(toGrid(one.features));
      if (!(o.lambdaMam > 0)) return { regionCams, projected, fused: null };
      const [H, W] = [images.size(2), images.size(3)];
      let sum: Tensor | null = null;
      for (const s of o.mamScales) {
        const size: [number, number] = [Math.max(1, Math.round(H * s)), Math.max(1, Math.round(W * s))];
        const m = size[0] === H && size[1] === W ? cams1
          : toGrid(camsAndFeatures(net, F.interpolate(images, { size, mode: 'bilinear', alignCorners: false }), this.numClasses).cams).relu();
        sum = sum ? sum.add(m) : m;
      }
      return { regionCams, projected, fused: normalizeBatchCams(sum!, labels, this.#supportNormalization) };
    }));
  }

  loss(batch: TrainBatch, context: StepContext): LossOutput {
    this.ensureSupportLoaded();
    const o = this.options;
    const { images, labels } = batch;
    // The MainNet: its base's loss, and its features and raw CAM on the crop at the grid.
    let base: LossOutput & { parts: Record<string, Tensor> };
    let features: Tensor;
    let gridCam: Tensor;
    if (this.baseMethod instanceof SeamMethod) {
      const [v1, v2] = this.baseMethod.views(images);
      base = this.baseMethod.viewsLoss(v1, v2, labels);
      features = v1.features;
      gridCam = v1.gridCam.narrow(1, 1, this.numClasses);
    } else {
      features = this.baseMethod.backbone.forward(images).features;
      gridCam = this.baseMethod.model.classifier.cams(features);
      base = this.baseMethod.loss(batch, context) as LossOutput & { parts: Record<string, Tensor> };
    }
    const grid: [number, number] = [features.size(2), features.size(3)];
    const valid = batch.valid ? validAtGrid(batch.valid, grid[0], grid[1]) : null;
    const sup = this.supportPass(images, labels, grid);
    let loss = base.loss;
    const parts: Record<string, Tensor> = { ...base.parts };

    if (o.lambdaRcm > 0) {
      const regions = regionLabels(sup.regionCams, o.regionThresholds[0], o.regionThresholds[1], valid);
      const emb = F.normalize(this.model.main.project(features), { dim: 1 });
      const contrast = (scope: 'image' | 'batch') => {
        const { protos, present } = regionPrototypes(sup.projected, regions, this.numClasses + 1, scope);
        return prototypeContrast(emb, regions, protos, present, o.temperature);
      };
      const rcm = o.prototypes === 'both' ? contrast('image').add(contrast('batch')).div(2) : contrast(o.prototypes);
      loss = loss.add(rcm.mul(o.lambdaRcm));
      parts.rcm = rcm;
    }
    if (o.lambdaMam > 0) {
      const main = maxNorm(gridCam).mul(labels.view(labels.size(0), -1, 1, 1));
      const mam = mamLoss(main, sup.fused!, { mode: o.mamMode, gamma: o.mamGamma, valid });
      loss = loss.add(mam.mul(o.lambdaMam));
      parts.mam = mam;
    }
    return { loss, parts };
  }

  /** The SupportNet follows the MainNet (EMA mode): theta_s <- m theta_s + (1 - m) theta_main, buffers included. */
  afterStep(_context: StepContext): void {
    if (this.options.support !== 'ema') return;
    emaUpdate(this.model.support, this.model.main, this.options.emaMomentum);
  }

  /** Inference from the MainNet, as its base's. */
  cams(images: Tensor): Tensor {
    return this.baseMethod.cams(images);
  }

  classify(images: Tensor): Tensor {
    return this.baseMethod.classify(images);
  }
}

/** target <- m target + (1 - m) source on every floating-point parameter and buffer (same keys); others copied. */
export function emaUpdate(target: Module, source: Module, momentum: number): void {
  const src = source.stateDict();
  noGrad(() => {
    for (const [k, t] of target.stateDict()) {
      const s = src.get(k);
      if (!s) throw new Error(`EMA update: the source has no '${k}'`);
      if (t.dtype.startsWith('float')) t.lerp_(s, 1 - momentum);
      else t.copy_(s);
    }
  });
}

const PixelSsSettings = z.object({
  base: z.enum(['seam', 'cam']).default(PIXELSS_DEFAULTS.base)
    .describe("the MainNet: a SEAM network and loss (default), or the plain CAM network"),
  support: z.enum(['ema', 'frozen']).default(PIXELSS_DEFAULTS.support)
    .describe("the SupportNet: an EMA copy of the MainNet, or a network trained by an earlier run (supportFrom), frozen"),
  supportFrom: z.string().min(1).optional()
    .describe("support 'frozen': the run directory (its model.safetensors) or model file of a CAM or SEAM run"),
  supportMethod: z.enum(['seam', 'cam']).default(PIXELSS_DEFAULTS.supportMethod)
    .describe("support 'frozen': the method of the run it comes from"),
  emaMomentum: z.number().min(0).lt(1).default(PIXELSS_DEFAULTS.emaMomentum).describe("support 'ema': the momentum m"),
  projDim: z.number().int().positive().default(PIXELSS_DEFAULTS.projDim).describe('channels of the projection head (PPC: 128)'),
  temperature: z.number().positive().default(PIXELSS_DEFAULTS.temperature).describe('InfoNCE temperature tau (PPC: 0.1)'),
  regionThresholds: z.tuple([z.number().min(0).max(1), z.number().min(0).max(1)]).default(PIXELSS_DEFAULTS.regionThresholds)
    .describe('RCM regions: background at or below low, a class above high, ignored between (low = high: no band)'),
  prototypes: z.enum(['batch', 'image', 'both']).default(PIXELSS_DEFAULTS.prototypes)
    .describe('RCM prototypes pooled over the batch (PPC), per image, or both (losses averaged)'),
  lambdaRcm: z.number().min(0).default(PIXELSS_DEFAULTS.lambdaRcm).describe('weight of the RCM contrast (0: off)'),
  lambdaMam: z.number().min(0).default(PIXELSS_DEFAULTS.lambdaMam).describe('weight of the MAM term (0: off)'),
  mamScales: z.array(z.number().positive()).min(1).default(PIXELSS_DEFAULTS.mamScales)
    .describe("the SupportNet's scales fused as MAM's supervision"),
  mamMode: z.enum(['up', 'symmetric']).default(PIXELSS_DEFAULTS.mamMode)
    .describe("MAM pulls the MainNet's CAMs only upward to the support's (up), or both ways (symmetric)"),
  mamGamma: z.number().min(0).default(PIXELSS_DEFAULTS.mamGamma)
    .describe('MAM weight = dissimilarity^gamma (0: uniform weight)'),
  pcmTaps: pcmTapsSetting,
}).strict();

export const pixelSs = defineMethod({
  name: 'pixel-ss',
  title: 'Pixel-level self-supervision (RCM + MAM)',
  paper: 'Yoon et al., Exploring Pixel-level Self-supervision for Weakly Supervised Semantic Segmentation, arXiv 2112.05351 ' +
    '(re-interpreted from the abstract; the contrast follows PPC, Du et al., CVPR 2022)',
  settings: PixelSsSettings,
  build: (s, context: MethodContext) => {
    if (s.support === 'frozen' && !s.supportFrom) {
      throw new Error("method.supportFrom: support 'frozen' needs the run directory or model file of a CAM or SEAM run");
    }
    const from = s.supportFrom;
    return new PixelSsMethod(() => context.backbone(), {
      numClasses: context.numClasses,
      headLrMult: context.headLrMult,
      base: s.base,
      support: s.support,
      supportMethod: s.supportMethod,
      ...(s.support === 'frozen' && from ? { loadSupport: (into: Module) => context.loadModel(into, from, { frozen: true }) } : {}),
      emaMomentum: s.emaMomentum,
      projDim: s.projDim,
      temperature: s.temperature,
      regionThresholds: s.regionThresholds,
      prototypes: s.prototypes,
      lambdaRcm: s.lambdaRcm,
      lambdaMam: s.lambdaMam,
      mamScales: s.mamScales,
      mamMode: s.mamMode,
      mamGamma: s.mamGamma,
      ...(s.pcmTaps ? { pcmTaps: s.pcmTaps } : {}),
    });
  },
});
