// Building blocks shared by the methods (methods-reference.md section 2).
import { F, type Tensor } from '../engine/index.js';
import { Conv2d, Module } from '../nn/index.js';

/**
 * The CAM classifier: a 1x1 convolution without bias, W in R^{C x D}, over D-channel features f.
 *   logits  z_c = W_c . GAP(f)          (N x C; GAP first, then the product: the same as GAP of the CAM)
 *   CAM     M_c = W_c . f(x, y)         (N x C x h x w)
 */
export class CamClassifier extends Module {
  readonly conv: Conv2d;

  constructor(readonly inChannels: number, readonly numClasses: number) {
    super();
    // torch's default Conv2d init (kaiming uniform, a = sqrt(5)), as IRN's nn.Conv2d(2048, 20, 1, bias=False).
    this.conv = this.registerModule('conv', new Conv2d(inChannels, numClasses, 1, { bias: false }));
  }

  get weight(): Tensor {
    return this.conv.weight;
  }

  /** z = W GAP(f): N x C. */
  logits(features: Tensor): Tensor {
    return F.linear(F.globalAvgPool(features), this.weight.view(this.numClasses, this.inChannels));
  }

  /** M = W * f: N x C x h x w. */
  cams(features: Tensor): Tensor {
    return F.conv2d(features, this.weight);
  }
}

/** Multilabel soft-margin loss (section 2.1): -(1/C) sum_c [y log s(z) + (1 - y) log s(-z)], batch mean. */
export function classificationLoss(logits: Tensor, labels: Tensor): Tensor {
  return F.multilabelSoftMarginLoss(logits, labels);
}
