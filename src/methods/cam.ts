// The CAM baseline (Zhou et al. 2016 as trained by IRN; methods-reference.md section 2.3).
//
//   f = backbone(x)                          features at the output stride
//   z = W . GAP(f)                           1x1 classifier without bias
//   L = MultiLabelSoftMargin(z, y)           image-level tags only
//   CAM_c = W_c . f                          at inference (rectified, fused and normalised by src/cams)
//
// Trained with SGD and a poly schedule, the classifier at 10x the backbone's rate.
import { z } from 'zod';
import type { Tensor } from '../engine/index.js';
import { Module, type ParamGroupSpec, backboneAndHeadGroups } from '../nn/index.js';
import type { Backbone } from '../backbones/backbone.js';
import { CamClassifier, classificationLoss } from './blocks.js';
import { type LossOutput, type Method, type StepContext, type TrainBatch, defineMethod } from './method.js';

export interface CamMethodOptions {
  /** Foreground classes (20 for VOC). */
  numClasses: number;
  /** Learning-rate multiplier of the classifier (default 10). */
  headLrMult?: number;
}

/** The network: backbone + classifier, with checkpoint keys "backbone.*" and "classifier.*". */
export class CamNet extends Module {
  readonly backbone: Backbone;
  readonly classifier: CamClassifier;

  constructor(backbone: Backbone, numClasses: number) {
    super();
    this.backbone = this.registerModule('backbone', backbone);
    this.classifier = this.registerModule('classifier', new CamClassifier(backbone.outChannels, numClasses));
  }
}

export class CamMethod implements Method {
  readonly name = 'cam';
  readonly model: CamNet;
  readonly numClasses: number;
  readonly headLrMult: number;

  constructor(backbone: Backbone, options: CamMethodOptions) {
    this.numClasses = options.numClasses;
    this.headLrMult = options.headLrMult ?? 10;
    this.model = new CamNet(backbone, options.numClasses);
  }

  get backbone(): Backbone {
    return this.model.backbone;
  }

  paramGroups(): ParamGroupSpec[] {
    return backboneAndHeadGroups(this.backbone, [this.model.classifier], this.headLrMult);
  }

  loss(batch: TrainBatch, _context?: StepContext): LossOutput {
    const f = this.backbone.forward(batch.images).features;
    const z = this.model.classifier.logits(f);
    const cls = classificationLoss(z, batch.labels);
    return { loss: cls, parts: { cls } };
  }

  cams(images: Tensor): Tensor {
    const f = this.backbone.forward(images).features;
    return this.model.classifier.cams(f);
  }

  classify(images: Tensor): Tensor {
    return this.model.classifier.logits(this.backbone.forward(images).features);
  }
}

export function camMethod(backbone: Backbone, options: CamMethodOptions): CamMethod {
  return new CamMethod(backbone, options);
}

export const cam = defineMethod({
  name: 'cam',
  title: 'CAM',
  paper: 'Zhou et al., Learning Deep Features for Discriminative Localization, CVPR 2016 (trained as IRN, Ahn et al. 2019)',
  settings: z.object({}).strict(),
  build: (_settings, context) => new CamMethod(context.backbone(), { numClasses: context.numClasses, headLrMult: context.headLrMult }),
});
