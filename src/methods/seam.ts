// SEAM: Self-supervised Equivariant Attention Mechanism (Wang et al., CVPR 2020), as the official code
// (YudeWang/SEAM, network/resnet38_SEAM.py and train_SEAM.py) trains it; methods-reference.md section 3.
//
// Two views of a batch: the crop I and A(I), A = bilinear rescale by s = 0.3 (align corners). For each view
//   cam    = fc8(f)                                  C+1 channels (background first), no bias
//   cam_rv = PCM(sg(cam), sg(taps), I)               pixel correlation module, see pcm() below
// both upsampled to the view's size. With y = [1, labels] and maxnorm(M) = ReLU(ReLU(M) - min - e) / (max - min + e):
//   L_cls = 1/2 [MLSM(GAP(cam¹)[1:], y[1:]) + MLSM(GAP(cam²)[1:], y[1:])]
//   L_min = 1/2 [mean ReLU(smallest HW/4 of max_c (cam_rv^k y)[1:])]       (code only; switch `minPool`)
//   Ŷ¹ = A(maxnorm(cam¹)) y,  Ŷ² = maxnorm(cam²) y,  R¹ = A(maxnorm(cam_rv¹)) y,  R² = maxnorm(cam_rv²) y
//   L_ER  = mean |Ŷ¹[1:] - Ŷ²[1:]|                                           (L1; `erLoss: 'l2'` for the variant)
//   Ŷ^k[0] = 1 - max_c Ŷ^k[1:],  K(·) keeps only the top foreground class per pixel
//   L_ECR = TopMean20%|K(sg(Ŷ²)) - R¹| + TopMean20%|K(sg(Ŷ¹)) - R²|          (OHEM; the paper's version: plain mean)
//   L = L_cls + L_min + L_ER + L_ECR
// The PCM sees only detached inputs, so its layers learn from L_ECR and L_min alone, and the backbone and fc8
// from L_cls and L_ER.
import { z } from 'zod';
import { F, type Tensor, cat, ones, tidy } from '../engine/index.js';
import { Conv2d, Dropout2d, Module, type ParamGroupSpec, backboneAndHeadGroups, init } from '../nn/index.js';
import type { Backbone } from '../backbones/backbone.js';
import { type LossOutput, type Method, type StepContext, type TrainBatch, defineMethod } from './method.js';

export type SeamTransform = 'rescale' | 'flip' | 'rotate' | 'translate';

export interface SeamOptions {
  /** Foreground classes; the CAM head has one more channel, for the background. */
  numClasses: number;
  /** Two backbone taps feeding the PCM, shallow then deep (ResNet-38: b4_5 / b5_2 pre-activations). */
  pcmTaps: [string, string];
  /** Channels of the two tap projections (code: 64, 128) and of the PCM embedding (192). */
  pcmProjChannels?: [number, number];
  pcmEmbedChannels?: number;
  /** The equivariance transform A: the code uses rescale only; the paper also ablates flip, rotate, translate. */
  transform?: SeamTransform;
  /** Rescale factor of A (code: 0.3). */
  scaleFactor?: number;
  /** Shift in pixels for the translate transform. */
  translatePixels?: number;
  /** The min-pooling term on the PCM output (code: on). */
  minPool?: boolean;
  /** Fraction of the largest ECR errors averaged (code: 0.2); 1 gives the paper's plain mean. */
  ohemRatio?: number;
  erLoss?: 'l1' | 'l2';
  /** Dropout2d before fc8 (code: 0.5 on ResNet-38). */
  dropout?: number;
  /** Learning-rate multiplier of the new layers (fc8 and the PCM; code: 10). */
  headLrMult?: number;
  /** The map the CAM stage reads: the PCM output (code: infer_SEAM.py's cam_rv) or fc8's raw CAM. */
  camSource?: SeamCamSource;
}

export type SeamCamSource = 'pcm' | 'cam';

/** The official code's settings (train_SEAM.py, resnet38_SEAM.py): every default below and in the config comes from here. */
export const SEAM_DEFAULTS = {
  transform: 'rescale' as SeamTransform,
  scaleFactor: 0.3,
  translatePixels: 15,
  minPool: true,
  ohemRatio: 0.2,
  erLoss: 'l1' as 'l1' | 'l2',
  dropout: 0,
  pcmProjChannels: [64, 128] as [number, number],
  pcmEmbedChannels: 192,
  headLrMult: 10,
  camSource: 'pcm' as SeamCamSource,
};

/** The paper's variant: no OHEM (plain mean of the ECR error) and no min-pooling term. */
export const SEAM_PAPER: Partial<SeamOptions> = { ohemRatio: 1, minPool: false };

/** SEAM's PCM taps: ResNet-38's conv4/conv5 as in the code; the reference run's features.6/.13 on MobileNetV2. */
export function defaultPcmTaps(backbone: Backbone): [string, string] {
  const byName: Record<string, [string, string]> = {
    resnet38: ['conv4', 'conv5'],
    mobilenet_v2: ['features.6', 'features.13'],
    resnet50: ['layer2', 'layer3'],
    resnet101: ['layer2', 'layer3'],
  };
  const taps = byName[backbone.name];
  if (!taps) throw new Error(`SEAM: no default PCM taps for backbone '${backbone.name}'; set method.pcmTaps`);
  return taps;
}

const EPS = 1e-5;

/** Bytes of one PCM affinity matrix (HW x HW float32) for a crop at an output stride. */
export function pcmAffinityBytes(crop: number, outputStride: number): number {
  const hw = Math.ceil(crop / outputStride) ** 2;
  return hw * hw * 4;
}

/** One view through SeamNet: raw CAM and PCM output (N x (C+1) x h x w) and the backbone's features (N x D x h' x w'). */
export interface SeamOutput {
  cam: Tensor;
  camRv: Tensor;
  features: Tensor;
}

/** SeamNet.forward's output: cam and camRv at the view's size, features and gridCam (the raw CAM) at the grid. */
export interface SeamView extends SeamOutput {
  gridCam: Tensor;
}

/** The network: backbone, fc8 (CAM head) and the PCM layers, under the official code's parameter names. */
export class SeamNet extends Module {
  readonly backbone: Backbone;
  readonly fc8: Conv2d;
  readonly f8_3: Conv2d;
  readonly f8_4: Conv2d;
  readonly f9: Conv2d;
  readonly dropout: Dropout2d | null;
  readonly tapNames: [string, string];

  constructor(backbone: Backbone, o: SeamOptions) {
    super();
    this.backbone = this.registerModule('backbone', backbone);
    this.tapNames = o.pcmTaps;
    const taps = o.pcmTaps.map((name) => {
      const t = backbone.taps.find((x) => x.name === name);
      if (!t) throw new Error(`SEAM: backbone ${backbone.name} has no tap '${name}' (it has ${backbone.taps.map((x) => x.name).join(', ')})`);
      return t;
    });
    const [p1, p2] = o.pcmProjChannels ?? SEAM_DEFAULTS.pcmProjChannels;
    const embed = o.pcmEmbedChannels ?? SEAM_DEFAULTS.pcmEmbedChannels;
    this.fc8 = this.registerModule('fc8', new Conv2d(backbone.outChannels, o.numClasses + 1, 1, { bias: false }));
    this.f8_3 = this.registerModule('f8_3', new Conv2d(taps[0]!.channels, p1, 1, { bias: false }));
    this.f8_4 = this.registerModule('f8_4', new Conv2d(taps[1]!.channels, p2, 1, { bias: false }));
    this.f9 = this.registerModule('f9', new Conv2d(3 + p1 + p2, embed, 1, { bias: false }));
    init.xavierUniform_(this.fc8.weight);
    init.kaimingNormal_(this.f8_3.weight);
    init.kaimingNormal_(this.f8_4.weight);
    init.xavierUniform_(this.f9.weight, 4);
    this.dropout = o.dropout ? this.registerModule('dropout7', new Dropout2d(o.dropout)) : null;
  }

  /** Raw CAM and PCM output at the feature grid (h x w), both N x (C+1) x h x w, and the features fc8 sees (after the dropout). */
  forwardGrid(x: Tensor): SeamOutput {
    const { features, taps } = this.backbone.forward(x, this.tapNames);
    const fea = this.dropout ? this.dropout.forward(features) : features;
    const cam = this.fc8.forward(fea);
    const [h, w] = [cam.size(2), cam.size(3)];
    const grid = (t: Tensor) => (t.size(2) === h && t.size(3) === w ? t : F.interpolate(t, { size: [h, w], mode: 'bilinear', alignCorners: true }));
    const g1 = this.f8_3.forward(grid(taps.get(this.tapNames[0])!.detach())).relu();
    const g2 = this.f8_4.forward(grid(taps.get(this.tapNames[1])!.detach())).relu();
    const xs = F.interpolate(x, { size: [h, w], mode: 'bilinear', alignCorners: true });
    const camRv = this.pcm(pcmSeed(cam.detach()), cat([xs, g1, g2], 1));
    return { cam, camRv, features: fea };
  }

  /**
   * CAM and PCM output upsampled to the input size (align corners), as the code's forward returns them; the
   * features, and the CAM as `gridCam`, stay at the grid.
   */
  forward(x: Tensor): SeamView {
    const [H, W] = [x.size(2), x.size(3)];
    const { cam, camRv, features } = this.forwardGrid(x);
    const up = (t: Tensor) => F.interpolate(t, { size: [H, W], mode: 'bilinear', alignCorners: true });
    return { cam: up(cam), camRv: up(camRv), features, gridCam: cam };
  }

  /**
   * Pixel correlation module: e = f9(concat) / ||.||, affinity S = ReLU(eᵀe) (HW x HW per image),
   * column-normalised A_ij = S_ij / (sum_i S_ij + e), and cam_rv = cam A.
   */
  pcm(cam: Tensor, feats: Tensor): Tensor {
    const [n, c, h, w] = cam.shape as [number, number, number, number];
    const e = this.f9.forward(feats).view(n, -1, h * w);
    const norm = e.norm(2, 1, true).add(EPS);
    const en = e.div(norm);
    const s = en.transpose(1, 2).bmm(en).relu();
    const a = s.div(s.sum(1, true).add(EPS));
    return cam.view(n, c, h * w).bmm(a).view(n, c, h, w);
  }
}

/**
 * The CAM the PCM propagates (no gradient): per channel ReLU(cam - e) / (max + e), background = 1 - max
 * foreground, and in the foreground channels only the top class per pixel kept.
 */
export function pcmSeed(cam: Tensor): Tensor {
  const r = cam.relu();
  const peak = r.amax([2, 3], true).add(EPS);
  const norm = r.sub(EPS).relu().div(peak);
  const fg = norm.narrow(1, 1, norm.size(1) - 1);
  const fgMax = fg.amax(1, true);
  return cat([fgMax.rsub(1), fg.maskedFill(fg.lt(fgMax), 0)], 1);
}

/** The code's max_norm: per image and channel, ReLU(ReLU(p) - min - e) / (max - min + e). */
export function maxNorm(p: Tensor): Tensor {
  const r = p.relu();
  const mx = r.amax([2, 3], true);
  const mn = r.amin([2, 3], true);
  return r.sub(mn).sub(EPS).relu().div(mx.sub(mn).add(EPS));
}

/** K(x): zero the foreground channels that are not the per-pixel foreground maximum (background kept). */
export function keepTopForeground(x: Tensor): Tensor {
  const fg = x.narrow(1, 1, x.size(1) - 1);
  return cat([x.narrow(1, 0, 1), fg.maskedFill(fg.ne(fg.amax(1, true)), 0)], 1);
}

/** Sets channel 0 to 1 - max over the foreground channels. */
export function withBackground(x: Tensor): Tensor {
  const fg = x.narrow(1, 1, x.size(1) - 1);
  return cat([fg.amax(1, true).rsub(1), fg], 1);
}

/** Mean of the largest `ratio` share of each image's entries, then over the batch (OHEM). */
export function topMean(err: Tensor, ratio: number): Tensor {
  const flat = err.reshape(err.size(0), -1);
  if (ratio >= 1) return flat.mean();
  const k = Math.max(1, Math.floor(flat.size(1) * ratio));
  return flat.topk(k, 1)[0].mean();
}

/** Mean of ReLU of the smallest quarter of max_c x[:, c] per image (x: N x C x H x W). */
export function minPoolLoss(x: Tensor): Tensor {
  const [n, , h, w] = x.shape as [number, number, number, number];
  const k = Math.floor((h * w) / 4);
  const m = x.amax(1).view(n, -1);
  return m.topk(k, 1, false)[0].relu().sum().div(k * n);
}

export class SeamMethod implements Method {
  readonly name = 'seam';
  /**
   * infer_SEAM.py min-max normalises the fused PCM output: each PCM pixel is a weighted mean over similar
   * pixels, so the maps carry a floor that max normalisation keeps (measured on voc-mini val: 24.8 % at
   * t 0.28 with min-max, 22.0 % at t 0.54 with max).
   */
  readonly camNormalization = 'minmax' as const;
  readonly model: SeamNet;
  readonly numClasses: number;
  readonly options: Required<Omit<SeamOptions, 'pcmProjChannels' | 'pcmEmbedChannels'>>;

  constructor(backbone: Backbone, o: SeamOptions) {
    this.numClasses = o.numClasses;
    this.options = {
      numClasses: o.numClasses,
      pcmTaps: o.pcmTaps,
      transform: o.transform ?? SEAM_DEFAULTS.transform,
      scaleFactor: o.scaleFactor ?? SEAM_DEFAULTS.scaleFactor,
      translatePixels: o.translatePixels ?? SEAM_DEFAULTS.translatePixels,
      minPool: o.minPool ?? SEAM_DEFAULTS.minPool,
      ohemRatio: o.ohemRatio ?? SEAM_DEFAULTS.ohemRatio,
      erLoss: o.erLoss ?? SEAM_DEFAULTS.erLoss,
      dropout: o.dropout ?? SEAM_DEFAULTS.dropout,
      headLrMult: o.headLrMult ?? SEAM_DEFAULTS.headLrMult,
      camSource: o.camSource ?? SEAM_DEFAULTS.camSource,
    };
    this.model = new SeamNet(backbone, o);
  }

  get backbone(): Backbone {
    return this.model.backbone;
  }

  paramGroups(): ParamGroupSpec[] {
    const m = this.model;
    return backboneAndHeadGroups(m.backbone, [m.fc8, m.f8_3, m.f8_4, m.f9], this.options.headLrMult, 'new');
  }

  /** The equivariance transform A on an N x C x H x W tensor (images and maps alike). */
  transform(x: Tensor): Tensor {
    switch (this.options.transform) {
      case 'rescale': return F.interpolate(x, { scaleFactor: this.options.scaleFactor, mode: 'bilinear', alignCorners: true });
      case 'flip': return x.flip(3);
      case 'rotate': return x.transpose(2, 3).flip(3);  // 90 degrees clockwise
      case 'translate': {
        const d = this.options.translatePixels;
        const [h, w] = [x.size(2), x.size(3)];
        return F.pad(x, [d, 0, d, 0]).narrow(2, 0, h).narrow(3, 0, w);  // shift right and down, zero fill
      }
    }
  }

  loss(batch: TrainBatch, _context: StepContext): LossOutput {
    const [v1, v2] = this.views(batch.images);
    return this.viewsLoss(v1, v2, batch.labels);
  }

  /** The network on both views, the crop I and A(I) (outputs at the view sizes, as `forward`). */
  views(images: Tensor): [SeamView, SeamView] {
    return [this.model.forward(images), this.model.forward(this.transform(images))];
  }

  /** SEAM's loss from both views' outputs and the N x C labels (methods built on SEAM add their terms to it). */
  viewsLoss(v1: SeamOutput, v2: SeamOutput, labels: Tensor): LossOutput & { parts: Record<string, Tensor> } {
    const o = this.options;
    const n = labels.size(0);
    const y = cat([ones([n, 1], { device: labels.device }), labels], 1).view(n, -1, 1, 1);

    const fgLogits = (cam: Tensor) => foregroundLogits(cam, this.numClasses);
    const cls = F.multilabelSoftMarginLoss(fgLogits(v1.cam), labels)
      .add(F.multilabelSoftMarginLoss(fgLogits(v2.cam), labels)).div(2);

    const fg = (t: Tensor) => t.narrow(1, 1, this.numClasses);
    const min = o.minPool
      ? minPoolLoss(fg(v1.camRv.mul(y))).add(minPoolLoss(fg(v2.camRv.mul(y)))).div(2)
      : null;

    const y1 = this.transform(maxNorm(v1.cam)).mul(y);
    const y2 = maxNorm(v2.cam).mul(y);
    const r1 = this.transform(maxNorm(v1.camRv)).mul(y);
    const r2 = maxNorm(v2.camRv).mul(y);

    const diff = fg(y1).sub(fg(y2));
    const er = o.erLoss === 'l1' ? diff.abs().mean() : diff.square().mean();

    const k1 = keepTopForeground(withBackground(y1).detach());
    const k2 = keepTopForeground(withBackground(y2).detach());
    const ecr = topMean(k2.sub(r1).abs(), o.ohemRatio).add(topMean(k1.sub(r2).abs(), o.ohemRatio));

    let loss = cls.add(er).add(ecr);
    if (min) loss = loss.add(min);
    return { loss, parts: min ? { cls, min, er, ecr } : { cls, er, ecr } };
  }

  /** The classification term's logits: fc8's CAM averaged over the grid, background channel dropped. */
  classify(images: Tensor): Tensor {
    return tidy(() => foregroundLogits(this.model.forwardGrid(images).cam, this.numClasses));
  }

  /** Foreground CAMs at the feature grid: the PCM output (the code infers from cam_rv), or fc8's with `camSource: 'cam'`. */
  cams(images: Tensor): Tensor {
    return tidy(() => {
      const { cam, camRv } = this.model.forwardGrid(images);
      return (this.options.camSource === 'cam' ? cam : camRv).narrow(1, 1, this.numClasses).contiguous();
    });
  }
}

/** Image-level logits N x C of a raw CAM N x (C+1) x h x w: its mean over the grid, without the background channel. */
function foregroundLogits(cam: Tensor, numClasses: number): Tensor {
  return F.globalAvgPool(cam).narrow(1, 1, numClasses);
}

/** The PCM taps setting, shared by the methods built on SEAM. */
export const pcmTapsSetting = z.tuple([z.string().min(1), z.string().min(1)]).optional()
  .describe('the two backbone taps feeding the PCM (default per backbone: conv4/conv5, features.6/.13, layer2/layer3)');

/** SEAM's config settings (`method: { name: 'seam', ... }`); the defaults are the official code's (SEAM_DEFAULTS). */
const SeamSettings = z.object({
  variant: z.enum(['code', 'paper']).default('code')
    .describe("'code' (OHEM in ECR and the min-pool term, as released) or 'paper' (plain ECR mean, no min-pool)"),
  transform: z.enum(['rescale', 'flip', 'rotate', 'translate']).default(SEAM_DEFAULTS.transform)
    .describe('the equivariance transform A: the code uses rescale only; the paper also ablates the others'),
  scaleFactor: z.number().positive().max(1).default(SEAM_DEFAULTS.scaleFactor).describe('rescale factor of A'),
  erLoss: z.enum(['l1', 'l2']).default(SEAM_DEFAULTS.erLoss).describe('the equivariance regularisation distance'),
  dropout: z.number().min(0).max(1).default(SEAM_DEFAULTS.dropout).describe('Dropout2d before the CAM head (the code: 0.5 on ResNet-38)'),
  ohemRatio: z.number().gt(0).max(1).optional()
    .describe(`share of the largest ECR errors averaged (OHEM; default ${SEAM_DEFAULTS.ohemRatio} under 'code', 1 under 'paper'; set, it overrides the variant)`),
  // Optional rather than defaulted, so that SEAM runs from before it keep their CAM stage's fingerprint.
  camSource: z.enum(['pcm', 'cam']).optional()
    .describe(`the map the CAM stage reads: 'pcm' the PCM output (the code's infer_SEAM.py; default) or 'cam' fc8's raw CAM`),
  pcmTaps: pcmTapsSetting,
}).strict();

export const seam = defineMethod({
  name: 'seam',
  title: 'SEAM',
  paper: 'Wang et al., Self-supervised Equivariant Attention Mechanism for Weakly Supervised Semantic Segmentation, CVPR 2020',
  settings: SeamSettings,
  inferenceSettings: ['camSource'],
  build: (s, context) => {
    const backbone = context.backbone();
    try {
      return new SeamMethod(backbone, {
        numClasses: context.numClasses,
        pcmTaps: s.pcmTaps ?? defaultPcmTaps(backbone),
        transform: s.transform,
        scaleFactor: s.scaleFactor,
        erLoss: s.erLoss,
        dropout: s.dropout,
        headLrMult: context.headLrMult,
        camSource: s.camSource,
        ...(s.variant === 'paper' ? SEAM_PAPER : {}),
        ...(s.ohemRatio !== undefined ? { ohemRatio: s.ohemRatio } : {}),  // after the variant's, and only when set
      });
    } catch (e) {
      backbone.dispose();
      throw e;
    }
  },
});
