// DeepLab retrained on pseudo-masks: the last step of every pipeline here (methods-reference.md sections 2.8, 3(f)).
//
//   f = backbone(x)                                   features at the output stride (8 by default)
//   z = head(f)                                       K = numClasses + 1 logits (background is label 0)
//   L = CE(bilinear_upsample(z, crop size), mask)     pixels labelled 255 (uncertain, crop padding) are ignored
//
// Two heads:
//   largefov  DeepLab-v1 as SEAM's segmenter (YudeWang/semantic-segmentation-codebase, lib/net/deeplabv1.py):
//             3x3 conv rate 12 -> 512, BN, ReLU; 1x1 512 -> 512, BN, ReLU; dropout 0.5; 1x1 -> K.
//   aspp      DeepLab-v2 as the IRN family's (kazuto1011/deeplab-pytorch, libs/models/deeplabv2.py): four 3x3
//             convs with rates 6/12/18/24 straight to K classes, their outputs summed.
//
// Trained with SGD and a poly schedule, the backbone at 1x and the head at headLrMult x (10 in both codebases).
// Both codebases also give biases 2x the rate of their weights (the head's biases 20x); that refinement is left
// out here: every parameter of a group shares the group's rate.
import { F, type Tensor, isGradEnabled } from '../engine/index.js';
import { BatchNorm2d, Conv2d, Dropout, Layer, Module, type ParamGroupSpec, backboneAndHeadGroups, init } from '../nn/index.js';
import type { Backbone } from '../backbones/backbone.js';
import { dilatedConv2d } from '../backbones/conv.js';
import { setBatchNormFrozen } from '../backbones/common.js';
import { IGNORE_INDEX } from '../data/mask.js';
import type { LossOutput, StepContext, TrainBatch, Trainable } from '../train/contract.js';

export type DeepLabHeadName = 'largefov' | 'aspp';

/**
 * How a dense dilated convolution of the head runs while autograd records it: libtorch's kernel ('direct',
 * the default) or src/backbones/conv.ts's space-to-batch rewrite. The rewrite exists for the pathological
 * backward of *depthwise* dilated convolutions in libtorch 1.13; for the head's dense convolutions the direct
 * kernel is the faster one (measured on this 2-core CPU at batch 8, 1280 x 41 x 41 features: the LargeFOV
 * conv 1280 -> 512 at rate 12 takes 0.9-1.6 s forward+backward direct against 2.8-4.0 s rewritten; the four
 * ASPP branches 1.9-2.4 s against 3.3 s). Both give the same values and gradients.
 */
export type AtrousImpl = 'direct' | 'space-to-batch';

/** A 3x3 convolution at dilation `rate`, padded by `rate` so that the output keeps the input's size. */
export class AtrousConv2d extends Conv2d {
  impl: AtrousImpl;

  constructor(inChannels: number, outChannels: number, readonly rate: number,
    o: { bias?: boolean; impl?: AtrousImpl } = {}) {
    super(inChannels, outChannels, 3, { padding: rate, dilation: rate, bias: o.bias ?? true });
    this.impl = o.impl ?? 'direct';
  }

  override forward(x: Tensor): Tensor {
    if (this.impl === 'space-to-batch' && isGradEnabled()) {
      return dilatedConv2d(x, this.weight, this.bias, { padding: this.rate, dilation: this.rate });
    }
    return super.forward(x);
  }
}

/**
 * How LargeFOV's classifier (cls_conv) starts. 'normal': N(0, 0.01) weights and zero bias, DeepLab-v1's fc8 (the
 * LargeFOV prototxt) and deeplab-pytorch's classifiers: the first logits are near 0 (std 0.23 on voc-mini images)
 * and the loss starts at ln K. 'kaiming': the SEAM codebase's __initial__ (Kaiming fan_out over K = 21 outputs,
 * std 0.31): its first logits have a standard deviation of about 7 and the first loss was 13.7. On voc-mini
 * (437 images, MobileNetV2, lr 0.001) the gradients of that start wrecked the pretrained backbone within the first
 * epoch: its features became the same for every image (two val images' features differed by std 0.003, against
 * 2.0 before training) and the network predicted background everywhere. The codebase's long schedule on 10582
 * images may absorb it; short schedules do not, hence the default.
 */
export type ClassifierInit = 'normal' | 'kaiming';

/** SEAM's DeepLab-v1 head; the layer names are the codebase's, so its state-dict keys read the same. */
export class LargeFovHead extends Layer {
  readonly conv_fov: AtrousConv2d;
  readonly bn_fov: BatchNorm2d;
  readonly conv_fov2: Conv2d;
  readonly bn_fov2: BatchNorm2d;
  readonly dropout1: Dropout;
  readonly cls_conv: Conv2d;

  constructor(inChannels: number, numLabels: number,
    o: { dropout?: number; rate?: number; channels?: number; impl?: AtrousImpl; classifierInit?: ClassifierInit } = {}) {
    super();
    const mid = o.channels ?? 512;
    this.conv_fov = this.registerModule('conv_fov', new AtrousConv2d(inChannels, mid, o.rate ?? 12, { bias: false, impl: o.impl }));
    // Regular BatchNorm, normalising with the batch's statistics in training (the codebase uses synchronised BN
    // over its 10-image batch; a CPU batch of 8 crops at 41 x 41 still gives 13k samples per channel).
    this.bn_fov = this.registerModule('bn_fov', new BatchNorm2d(mid));
    this.conv_fov2 = this.registerModule('conv_fov2', new Conv2d(mid, mid, 1, { bias: false }));
    this.bn_fov2 = this.registerModule('bn_fov2', new BatchNorm2d(mid));
    this.dropout1 = this.registerModule('dropout1', new Dropout(o.dropout ?? 0.5));
    this.cls_conv = this.registerModule('cls_conv', new Conv2d(mid, numLabels, 1));
    // The codebase's __initial__: Kaiming normal (fan_out, ReLU) for every conv weight; BN at 1 and 0 (as built).
    for (const c of [this.conv_fov, this.conv_fov2]) init.kaimingNormal_(c.weight, { mode: 'fan_out', nonlinearity: 'relu' });
    if ((o.classifierInit ?? 'normal') === 'kaiming') {
      init.kaimingNormal_(this.cls_conv.weight, { mode: 'fan_out', nonlinearity: 'relu' }); // bias: torch's default
    } else {
      init.normal_(this.cls_conv.weight, 0, 0.01);
      init.zeros_(this.cls_conv.bias!);
    }
  }

  forward(f: Tensor): Tensor {
    const a = this.bn_fov.forward(this.conv_fov.forward(f)).relu();
    const b = this.bn_fov2.forward(this.conv_fov2.forward(a)).relu();
    return this.cls_conv.forward(this.dropout1.forward(b));
  }
}

/** deeplab-pytorch's _ASPP: parallel 3x3 convs at `rates`, each straight to the labels, summed. Branches c0..c3. */
export class AsppHead extends Layer {
  readonly branches: AtrousConv2d[];

  constructor(inChannels: number, numLabels: number, readonly rates: readonly number[] = [6, 12, 18, 24],
    o: { impl?: AtrousImpl } = {}) {
    super();
    if (rates.length === 0) throw new RangeError('ASPP needs at least one rate');
    this.branches = rates.map((r, i) => {
      const c = this.registerModule(`c${i}`, new AtrousConv2d(inChannels, numLabels, r, { impl: o.impl }));
      // deeplab-pytorch: weights N(0, 0.01), biases 0.
      init.normal_(c.weight, 0, 0.01);
      init.zeros_(c.bias!);
      return c;
    });
  }

  forward(f: Tensor): Tensor {
    let sum = this.branches[0]!.forward(f);
    for (const c of this.branches.slice(1)) sum = sum.add(c.forward(f));
    return sum;
  }
}

/**
 * Cross entropy over the logits upsampled (bilinear, corners aligned as the codebase's interpolation) to the
 * masks' size, averaged over the pixels not labelled 255. A batch with no labelled pixel gives 0 (and zero
 * gradients), not the 0/0 of a plain mean.
 * @param logits N x K x h x w
 * @param masks N x H x W int64, values in [0, K) or 255
 */
export function segmentationLoss(logits: Tensor, masks: Tensor): Tensor {
  if (logits.ndim !== 4 || masks.ndim !== 3 || logits.size(0) !== masks.size(0)) {
    throw new RangeError(`segmentationLoss: expected N x K x h x w logits and N x H x W masks, got [${logits.shape}] and [${masks.shape}]`);
  }
  if (masks.dtype !== 'int64') throw new TypeError(`segmentationLoss: masks must be int64, got ${masks.dtype}`);
  const [H, W] = [masks.size(1), masks.size(2)];
  const up = logits.size(2) === H && logits.size(3) === W
    ? logits
    : F.interpolate(logits, { size: [H, W], mode: 'bilinear', alignCorners: true });
  const total = F.crossEntropy(up, masks, { ignoreIndex: IGNORE_INDEX, reduction: 'sum' });
  const labelled = masks.ne(IGNORE_INDEX).sum().float().clampMin(1);
  return total.div(labelled);
}

/** Backbone + head, with checkpoint keys "backbone.*" and "head.*". */
export class DeepLabNet extends Module {
  readonly backbone: Backbone;
  readonly head: LargeFovHead | AsppHead;

  constructor(backbone: Backbone, head: LargeFovHead | AsppHead) {
    super();
    this.backbone = this.registerModule('backbone', backbone);
    this.head = this.registerModule('head', head);
  }

  /** N x K x h x w logits at the backbone's output stride. */
  forward(images: Tensor): Tensor {
    return this.head.forward(this.backbone.forward(images).features);
  }
}

export interface DeepLabOptions {
  /** Foreground classes (20 for VOC); the network predicts one more label, background (0). */
  numClasses: number;
  /** 'largefov' (SEAM's DeepLab-v1, default) or 'aspp' (DeepLab-v2). */
  head?: DeepLabHeadName;
  /** LargeFOV's dropout before the classifier (default 0.5). */
  dropout?: number;
  /** Learning-rate multiplier of the head (default 10). */
  headLrMult?: number;
  /** LargeFOV's classifier initialisation (default 'normal', see ClassifierInit). */
  classifierInit?: ClassifierInit;
  /** How the head's dilated convolutions run in training (default 'direct', see AtrousImpl). */
  atrousImpl?: AtrousImpl;
  /**
   * LargeFOV's BatchNorms in training: 'batch' statistics (default) or 'frozen' at their initial state (the
   * identity: running mean 0, variance 1, scale 1, shift 0, none of them trained). ASPP has no BatchNorm.
   */
  headBatchNorm?: HeadBatchNorm;
}

export type HeadBatchNorm = 'batch' | 'frozen';

/** DeepLab as a Trainable for the shared trainer; `forward` gives the logits for inference. */
export class DeepLab implements Trainable {
  readonly name = 'deeplab';
  readonly model: DeepLabNet;
  readonly numClasses: number;
  /** K = numClasses + 1: the logits' channels, background first. */
  readonly numLabels: number;
  readonly headName: DeepLabHeadName;
  readonly headLrMult: number;

  constructor(backbone: Backbone, options: DeepLabOptions) {
    if (!Number.isInteger(options.numClasses) || options.numClasses < 1) {
      throw new RangeError(`DeepLab: numClasses must be a positive integer (foreground classes), got ${options.numClasses}`);
    }
    this.numClasses = options.numClasses;
    this.numLabels = options.numClasses + 1;
    this.headName = options.head ?? 'largefov';
    this.headLrMult = options.headLrMult ?? 10;
    const impl = options.atrousImpl ?? 'direct';
    let head: LargeFovHead | AsppHead;
    switch (this.headName) {
      case 'largefov':
        head = new LargeFovHead(backbone.outChannels, this.numLabels, {
          dropout: options.dropout ?? 0.5, impl, classifierInit: options.classifierInit,
        });
        break;
      case 'aspp':
        head = new AsppHead(backbone.outChannels, this.numLabels, [6, 12, 18, 24], { impl });
        break;
      default:
        throw new RangeError(`DeepLab: unknown head '${String(this.headName)}' (known: largefov, aspp)`);
    }
    if (options.headBatchNorm === 'frozen') setBatchNormFrozen(head, true);
    this.model = new DeepLabNet(backbone, head);
  }

  get backbone(): Backbone {
    return this.model.backbone;
  }

  paramGroups(): ParamGroupSpec[] {
    return backboneAndHeadGroups(this.backbone, [this.model.head], this.headLrMult);
  }

  /** N x K x h x w logits at the backbone's output stride. */
  forward(images: Tensor): Tensor {
    return this.model.forward(images);
  }

  loss(batch: TrainBatch, _context?: StepContext): LossOutput {
    if (!batch.masks) {
      throw new Error('deeplab: the batch has no masks; build the loader with trainTransform({ withMask: true, ... }) over items with pseudo-masks');
    }
    const ce = segmentationLoss(this.forward(batch.images), batch.masks);
    return { loss: ce, parts: { ce } };
  }
}
