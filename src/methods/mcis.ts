// MCIS: Mining Cross-Image Semantics (Sun, Wang, Dai, Van Gool, ECCV 2020), as the official code
// (GuoleiSun/MCIS_wsss › Classifier/models/vgg.py, scripts/train.py, scripts/test.py) trains and localises it;
// methods-reference.md section 4.
//
// For an image pair (m, n) with image-level labels l_m, l_n:
//   F = extra_convs(backbone(x))                      3 x (3x3 conv 512 + ReLU), D x HW flattened
//   M = extra_last_conv(F)  (1x1, bias),  s = GAP(M)   the single-image CAM and logits
//   S = F_mᵀ W F_n                                    W = extra_linear_e (no bias): S is HW_m x HW_n
//   A = softmax of S over m,  B = softmax of Sᵀ over n  (columns of A and of B sum to 1)
//   F_n^att = F_m A,  F_m^att = F_n B                 each position gathers the other image's features
//   co_k = GAP(extra_gate(F_k^att))                   the co-attention classifier (1x1, no bias)
//   g_k = σ(extra_gate_merge(F_k^att)),  ex_k = GAP(extra_gate(F_k (1 - g_k)))   contrastive co-attention
// with MLSM the multilabel soft-margin loss, l_∩ = l_m ∧ l_n and l_m∖n = l_m - l_∩:
//   L_single = MLSM([s_m; s_n], [l_m; l_n])
//   L_co     = MLSM([co_m; co_n], [l_∩; l_∩])
//   L_cont   = MLSM(ex_m, l_m∖n) + MLSM(ex_n, l_n∖m)   each only from epoch 2 (0-based; the code's current_epoch>=2)
//                                                      and only where some pair of the batch has such a label
//   L_self   = Σ_v MLSM([s_m; s_v], [l_m; l_m]) + MLSM([co_m|v; co_v|m], [l_m; l_m])   (code only: v = the hflip,
//                                                      0.75x and 2x views of m paired with m; switch `selfPairs`)
//   L = L_single + L_co + L_cont + L_self
// The partner shares a class with m (the code's probability 1.0; `partnerShareClass`). At inference each class c of
// an image gets the co-attention CAM with 3 partners containing c (averaged) and with its self-pair views, fused by
// aggregateMaps (scripts/test.py).
import { z } from 'zod';
import { F, type Tensor, cat, tidy, zeros } from '../engine/index.js';
import { Conv2d, Linear, Module, type ParamGroupSpec, ReLU, Sequential, init } from '../nn/index.js';
import type { Backbone } from '../backbones/backbone.js';
import {
  type CamBranch, type LocalizeContext, type LossOutput, type Method, type StepContext, type TrainBatch, defineMethod,
} from './method.js';

export interface McisOptions {
  numClasses: number;
  /** Channels of the extra convolutions, F (code: 512). */
  extraChannels?: number;
  /** Learning-rate multiplier of the new ("extra") layers' weights (code: 10). */
  headLrMult?: number;
  /** Biases train at this multiple of their weights' rate (code: 2, giving 2x and 20x). */
  biasLrMult?: number;
  /** The co-attention loss L_co (off for the ablation "single-image only"). */
  coAttention?: boolean;
  /** The contrastive co-attention loss L_cont. */
  contrastive?: boolean;
  /** First epoch (0-based) with L_cont (code: 2). */
  contrastiveFromEpoch?: number;
  /** The code's self-pairs with transformed views (hflip, 0.75x, 2x). */
  selfPairs?: boolean;
  /** Probability that a training partner shares a class (code: 1; train.sh's comment: 0.5). */
  partnerShareClass?: number;
  /** Partners per class at inference (code: 3). */
  partners?: number;
  /** Square input side at inference (code: 256, its Resize forces a square); null keeps the image's size. */
  inferSize?: number | null;
  /** Localise with co-attention and partner images (code), or with the plain single-image CAM. */
  localization?: 'coattention' | 'single';
}

/** The official code's settings (train.sh, train.py, test.py). */
export const MCIS_DEFAULTS = {
  extraChannels: 512,
  headLrMult: 10,
  biasLrMult: 2,
  coAttention: true,
  contrastive: true,
  contrastiveFromEpoch: 2,
  selfPairs: true,
  partnerShareClass: 1,
  partners: 3,
  inferSize: 256 as number | null,
  localization: 'coattention' as 'coattention' | 'single',
};

/** The paper's three losses alone: no self-pairs and the contrastive term from the start. */
export const MCIS_PAPER: Partial<McisOptions> = { selfPairs: false, contrastiveFromEpoch: 0 };

/** The self-pair views of the code (LoadData's more_transform): hflip, then resized to 0.75x and 2x. */
export const SELF_PAIR_SCALES = [0.75, 2] as const;

/**
 * Co-attention of two feature maps f1 (N x D x h1 x w1) and f2 (N x D x h2 x w2) under W (D x D, applied as
 * torch.nn.Linear: W f): S = (W F1)ᵀ F2, A = softmax(S, over the positions of 1), B = softmax(Sᵀ, over the
 * positions of 2); returns F1's attended map F2 B (shaped like f1) and F2's F1 A (shaped like f2).
 */
export function coAttention(f1: Tensor, f2: Tensor, weight: Tensor): { att1: Tensor; att2: Tensor } {
  return tidy(() => {
    const [n, d, h1, w1] = f1.shape as [number, number, number, number];
    const [h2, w2] = [f2.size(2), f2.size(3)];
    const flat1 = f1.reshape([n, d, h1 * w1]);
    const flat2 = f2.reshape([n, d, h2 * w2]);
    const s = F.linear(flat1.transpose(1, 2), weight).bmm(flat2); // N x HW1 x HW2
    const a = s.softmax(1);
    const b = s.transpose(1, 2).softmax(1);
    return {
      att1: flat2.bmm(b).reshape([n, d, h1, w1]),
      att2: flat1.bmm(a).reshape([n, d, h2, w2]),
    };
  });
}

/** The common labels l_m ∧ l_n and each image's exclusive labels (multi-hot N x C tensors). */
export function pairLabels(l1: Tensor, l2: Tensor): { common: Tensor; excl1: Tensor; excl2: Tensor } {
  return tidy(() => {
    const common = l1.mul(l2);
    return { common, excl1: l1.sub(common), excl2: l2.sub(common) };
  });
}

/** What the network gives for one pair: the single-image CAMs and logits, the co-attention and contrastive ones. */
export interface McisPairOutput {
  cam1: Tensor; cam2: Tensor; score1: Tensor; score2: Tensor;
  coMap1: Tensor; coMap2: Tensor; coScore1: Tensor; coScore2: Tensor;
  exScore1: Tensor; exScore2: Tensor;
}

/** The network under the official code's parameter names (`vgg.features` is our `backbone`). */
export class McisNet extends Module {
  readonly backbone: Backbone;
  readonly extra_convs: Sequential;
  readonly extra_last_conv: Conv2d;
  readonly extra_linear_e: Linear;
  readonly extra_gate: Conv2d;
  readonly extra_gate_merge: Conv2d;

  constructor(backbone: Backbone, numClasses: number, channels: number = MCIS_DEFAULTS.extraChannels) {
    super();
    this.backbone = this.registerModule('backbone', backbone);
    const convs = [0, 1, 2].map((i) => new Conv2d(i === 0 ? backbone.outChannels : channels, channels, 3, { padding: 1 }));
    this.extra_convs = this.registerModule('extra_convs', new Sequential(convs[0]!, new ReLU(), convs[1]!, new ReLU(), convs[2]!, new ReLU()));
    this.extra_last_conv = this.registerModule('extra_last_conv', new Conv2d(channels, numClasses, 1));
    // VGG_coattention._initialize_weights: N(0, sqrt(2 / (k k out))), zero bias. The co-attention layers keep
    // torch's default initialisation (their init loop is commented out in the code).
    for (const c of [...convs, this.extra_last_conv]) {
      const [out, , k] = c.weight.shape as [number, number, number];
      init.normal_(c.weight, 0, Math.sqrt(2 / (k * k * out)));
      init.zeros_(c.bias!);
    }
    this.extra_linear_e = this.registerModule('extra_linear_e', new Linear(channels, channels, { bias: false }));
    this.extra_gate = this.registerModule('extra_gate', new Conv2d(channels, numClasses, 1, { bias: false }));
    this.extra_gate_merge = this.registerModule('extra_gate_merge', new Conv2d(channels, 1, 1, { bias: false }));
  }

  /** F: the extra convolutions over the backbone's features. */
  features(x: Tensor): Tensor {
    return tidy(() => this.extra_convs.forward(this.backbone.forward(x).features));
  }

  /** The single-image CAM (with bias) of features F. */
  cam(f: Tensor): Tensor {
    return this.extra_last_conv.forward(f);
  }

  /** Everything the losses and the localisation need for the pair (F1, F2); `exclusive` adds the contrastive logits. */
  pair(f1: Tensor, f2: Tensor, exclusive = true): McisPairOutput {
    return tidy(() => {
      const cam1 = this.cam(f1);
      const cam2 = this.cam(f2);
      const { att1, att2 } = coAttention(f1, f2, this.extra_linear_e.weight);
      const coMap1 = this.extra_gate.forward(att1);
      const coMap2 = this.extra_gate.forward(att2);
      const out = {
        cam1, cam2, score1: F.globalAvgPool(cam1), score2: F.globalAvgPool(cam2),
        coMap1, coMap2, coScore1: F.globalAvgPool(coMap1), coScore2: F.globalAvgPool(coMap2),
      };
      if (!exclusive) return out as McisPairOutput;
      const gate1 = this.extra_gate_merge.forward(att1).sigmoid();
      const gate2 = this.extra_gate_merge.forward(att2).sigmoid();
      const exScore1 = F.globalAvgPool(this.extra_gate.forward(f1.mul(gate1.rsub(1))));
      const exScore2 = F.globalAvgPool(this.extra_gate.forward(f2.mul(gate2.rsub(1))));
      return { ...out, exScore1, exScore2 };
    });
  }
}

/** The self-pair views of a batch: its hflip, then bilinear rescales by 0.75 and 2 (sizes floored as int() does). */
export function selfPairViews(x: Tensor): Tensor[] {
  const [h, w] = [x.size(2), x.size(3)];
  return [x.flip(3), ...SELF_PAIR_SCALES.map((s) =>
    F.interpolate(x, { size: [Math.floor(h * s), Math.floor(w * s)], mode: 'bilinear', alignCorners: false }))];
}

/**
 * test.py's aggregate() for one class: each map (h x w, before ReLU) rectified and scaled to a peak of 255; the
 * first always kept, each other one only where sigmoid(mean of the raw map) > 0.1; the sum divided by the number of
 * maps given (kept or not).
 */
export function aggregateMaps(maps: readonly Tensor[]): Tensor {
  if (maps.length === 0) throw new RangeError('aggregateMaps: no maps');
  return tidy(() => {
    const scaled = (m: Tensor) => { const r = m.relu(); return r.div(r.max().add(1e-8)).mul(255); };
    let sum = scaled(maps[0]!);
    for (const m of maps.slice(1)) if (1 / (1 + Math.exp(-m.mean().item())) > 0.1) sum = sum.add(scaled(m));
    return sum.div(maps.length);
  });
}

export class McisMethod implements Method {
  readonly name = 'mcis';
  readonly model: McisNet;
  readonly numClasses: number;
  readonly options: Required<Omit<McisOptions, 'extraChannels'>>;
  readonly pairs: { shareClass: number };
  readonly localize?: (image: Tensor, labels: readonly number[], context: LocalizeContext) => Promise<CamBranch[]>;

  constructor(backbone: Backbone, o: McisOptions) {
    this.numClasses = o.numClasses;
    const given = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<McisOptions>;
    const { extraChannels: _channels, ...defaults } = MCIS_DEFAULTS;
    this.options = { ...defaults, ...given, numClasses: o.numClasses };
    this.pairs = { shareClass: this.options.partnerShareClass };
    this.model = new McisNet(backbone, o.numClasses, o.extraChannels);
    if (this.options.localization === 'coattention') this.localize = (image, labels, context) => this.coLocalize(image, labels, context);
  }

  get backbone(): Backbone {
    return this.model.backbone;
  }

  /** get_parameter_groups: pretrained weights 1x, biases 2x; new ("extra") weights 10x, biases 20x. */
  paramGroups(): ParamGroupSpec[] {
    const { headLrMult: head, biasLrMult: bias } = this.options;
    const groups = { backbone: [] as Tensor[], backbone_bias: [] as Tensor[], extra: [] as Tensor[], extra_bias: [] as Tensor[] };
    for (const [name, p] of this.model.namedParameters()) {
      if (!p.requiresGrad) continue;
      const key = `${name.startsWith('backbone.') ? 'backbone' : 'extra'}${name.endsWith('bias') ? '_bias' : ''}` as keyof typeof groups;
      groups[key].push(p);
    }
    return [
      { name: 'backbone', params: groups.backbone, lrMult: 1 },
      { name: 'backbone_bias', params: groups.backbone_bias, lrMult: bias },
      { name: 'extra', params: groups.extra, lrMult: head },
      { name: 'extra_bias', params: groups.extra_bias, lrMult: head * bias },
    ].filter((g) => g.params.length > 0);
  }

  /**
   * Every loss term of a batch of pairs, unweighted, by the code's names: loss1 (single), loss2 (co-attention),
   * loss1_comple / loss2_comple (contrastive, when they apply), loss{2,3,4}_{1,2} (self-pairs: single, co).
   * `views` replaces the self-pair views (the cross-check feeds the official loader's).
   */
  lossTerms(batch: TrainBatch, context: Pick<StepContext, 'epoch'>, views?: Tensor[]): Record<string, Tensor> {
    const o = this.options;
    if (!batch.partner) throw new Error('mcis: the batch has no partner images (train with the loader\'s pairs option)');
    const l1 = batch.labels;
    const l2 = batch.partner.labels;
    const mlsm = F.multilabelSoftMarginLoss;
    const f1 = this.model.features(batch.images);
    const f2 = this.model.features(batch.partner.images);
    const withContrastive = o.contrastive && context.epoch >= o.contrastiveFromEpoch;
    const p = this.model.pair(f1, f2, withContrastive);
    const { common, excl1, excl2 } = pairLabels(l1, l2);
    const terms: Record<string, Tensor> = { loss1: mlsm(cat([p.score1, p.score2]), cat([l1, l2])) };
    if (o.coAttention) terms.loss2 = mlsm(cat([p.coScore1, p.coScore2]), cat([common, common]));
    if (withContrastive) {
      if (excl1.sum().item() > 0) terms.loss1_comple = mlsm(p.exScore1, excl1);
      if (excl2.sum().item() > 0) terms.loss2_comple = mlsm(p.exScore2, excl2);
    }
    if (o.selfPairs) {
      const vs = views ?? selfPairViews(batch.images);
      const twice = cat([l1, l1]);
      vs.forEach((v, i) => {
        const q = this.model.pair(f1, this.model.features(v), false);
        terms[`loss${i + 2}_1`] = mlsm(cat([q.score1, q.score2]), twice);
        if (o.coAttention) terms[`loss${i + 2}_2`] = mlsm(cat([q.coScore1, q.coScore2]), twice);
      });
    }
    return terms;
  }

  loss(batch: TrainBatch, context: StepContext): LossOutput {
    const t = this.lossTerms(batch, context);
    const sum = (keys: string[]) => keys.filter((k) => t[k]).map((k) => t[k]!).reduce((a, b) => a.add(b));
    const parts: Record<string, Tensor> = { single: t.loss1! };
    if (t.loss2) parts.co = t.loss2;
    if (t.loss1_comple || t.loss2_comple) parts.contrastive = sum(['loss1_comple', 'loss2_comple']);
    if (t.loss2_1) parts.self = sum(['loss2_1', 'loss2_2', 'loss3_1', 'loss3_2', 'loss4_1', 'loss4_2']);
    return { loss: Object.values(parts).reduce((a, b) => a.add(b)), parts };
  }

  /** The single-image CAM (extra_last_conv, with its bias) at the feature grid. */
  cams(images: Tensor): Tensor {
    return tidy(() => this.model.cam(this.model.features(images)));
  }

  /** The single-image score the loss trains (loss1's score1): the CAM's mean over the grid. */
  classify(images: Tensor): Tensor {
    return tidy(() => F.globalAvgPool(this.model.cam(this.model.features(images))));
  }

  /**
   * test.py's localisation maps at the image's size: per class, aggregateMaps over the co-attention CAMs of the
   * image paired with its hflip (the image's own, then the view's flipped back), with its 0.75x and 2x views (the
   * views' maps resized to the image's grid, bicubic) and with `partners` images containing the class (averaged).
   */
  private async coLocalize(image: Tensor, labels: readonly number[], context: LocalizeContext): Promise<CamBranch[]> {
    // The CAM stage calls localize with gradient recording off (imageCams); no tidy scope spans an await.
    const m = this.model;
    const size = this.options.inferSize;
    const [H, W] = [image.size(2), image.size(3)];
    const input = (x: Tensor) => (size ? F.interpolate(x, { size: [size, size], mode: 'bilinear', alignCorners: false }) : x);
    const owned: Tensor[] = [];
    const keep = (t: Tensor) => { owned.push(t); return t; };
    try {
      const f1 = keep(tidy(() => m.features(input(image))));
      const [h, w] = [f1.size(2), f1.size(3)];
      const toGrid = (t: Tensor) => F.interpolate(t, { size: [h, w], mode: 'bicubic', alignCorners: false });
      const selfMaps = tidy(() => {
        const [flip, ...scaled] = selfPairViews(input(image));
        const pf = m.pair(f1, m.features(flip!), false);
        return [pf.coMap1, pf.coMap2.flip(3), ...scaled.map((v) => toGrid(m.pair(f1, m.features(v), false).coMap2))];
      }).map(keep);
      // Partner features, loaded once per image (a partner can be drawn for several classes).
      const partnerFeatures = new Map<string, Tensor>();
      const partnerMaps = new Map<number, Tensor>();
      for (const c of labels) {
        const items = context.partners(c, this.options.partners);
        const maps: Tensor[] = [];
        for (const item of items) {
          if (!partnerFeatures.has(item.id)) {
            const loaded = await context.loadImage(item);
            try {
              partnerFeatures.set(item.id, keep(tidy(() => m.features(input(loaded)))));
            } finally {
              loaded.dispose();
            }
          }
          maps.push(keep(tidy(() => m.pair(f1, partnerFeatures.get(item.id)!, false).coMap1.select(0, 0).select(0, c))));
        }
        if (maps.length) partnerMaps.set(c, keep(tidy(() => maps.reduce((a, b) => a.add(b)).div(maps.length))));
      }
      const cams = tidy(() => {
        const planes = Array.from({ length: this.numClasses }, (_, c) => {
          if (!labels.includes(c)) return zeros([h, w], { device: f1.device });
          const maps = selfMaps.map((t) => t.select(0, 0).select(0, c));
          const partner = partnerMaps.get(c);
          return aggregateMaps(partner ? [...maps, partner] : maps);
        });
        const grid = cat(planes.map((p) => p.unsqueeze(0))).unsqueeze(0);
        return F.interpolate(grid, { size: [H, W], mode: 'bicubic', alignCorners: false }).select(0, 0);
      });
      return [{ name: 'mcis', cams, weight: 1 }];
    } finally {
      for (const t of owned) t.dispose();
    }
  }
}

/** MCIS's config settings (`method: { name: 'mcis', ... }`); the defaults are the official code's (MCIS_DEFAULTS). */
const McisSettings = z.object({
  variant: z.enum(['code', 'paper']).default('code')
    .describe("'code' (self-pairs with hflip/0.75x/2x views, contrastive loss from epoch 2, as released) or 'paper' (the paper's three losses from the start)"),
  coAttention: z.boolean().default(MCIS_DEFAULTS.coAttention).describe('the co-attention loss (off: the single-image ablation)'),
  contrastive: z.boolean().default(MCIS_DEFAULTS.contrastive).describe('the contrastive co-attention loss'),
  contrastiveFromEpoch: z.number().int().min(0).optional()
    .describe('first epoch (0-based) of the contrastive loss (code: 2; paper variant: 0)'),
  selfPairs: z.boolean().optional().describe('pair each image with its hflip, 0.75x and 2x views (code: on; paper variant: off)'),
  partnerShareClass: z.number().min(0).max(1).default(MCIS_DEFAULTS.partnerShareClass)
    .describe("probability that a training partner shares a class (code: 1; train.sh's comment: 0.5)"),
  partners: z.number().int().positive().default(MCIS_DEFAULTS.partners).describe('partner images per class at inference (code: 3)'),
  inferSize: z.number().int().positive().nullable().default(MCIS_DEFAULTS.inferSize)
    .describe('square input side at inference (code: 256); null keeps the image size'),
  localization: z.enum(['coattention', 'single']).default(MCIS_DEFAULTS.localization)
    .describe("'coattention' (test.py: partner and self-pair co-attention maps) or 'single' (the plain single-image CAM)"),
  extraChannels: z.number().int().positive().default(MCIS_DEFAULTS.extraChannels).describe('channels of the extra convolutions (code: 512)'),
  biasLrMult: z.number().positive().default(MCIS_DEFAULTS.biasLrMult).describe('bias learning rate over its weights\' (code: 2)'),
}).strict();

export const mcis = defineMethod({
  name: 'mcis',
  title: 'MCIS',
  paper: 'Sun, Wang, Dai, Van Gool, Mining Cross-Image Semantics for Weakly Supervised Semantic Segmentation, ECCV 2020',
  settings: McisSettings,
  inferenceSettings: ['partners', 'inferSize', 'localization'],
  build: (s, context) => {
    const paper = s.variant === 'paper' ? MCIS_PAPER : {};
    const backbone = context.backbone();
    try {
      return new McisMethod(backbone, {
        numClasses: context.numClasses,
        headLrMult: context.headLrMult,
        extraChannels: s.extraChannels,
        biasLrMult: s.biasLrMult,
        coAttention: s.coAttention,
        contrastive: s.contrastive,
        contrastiveFromEpoch: s.contrastiveFromEpoch ?? paper.contrastiveFromEpoch ?? MCIS_DEFAULTS.contrastiveFromEpoch,
        selfPairs: s.selfPairs ?? paper.selfPairs ?? MCIS_DEFAULTS.selfPairs,
        partnerShareClass: s.partnerShareClass,
        partners: s.partners,
        inferSize: s.inferSize,
        localization: s.localization,
      });
    } catch (e) {
      backbone.dispose();
      throw e;
    }
  },
});
