// Learning-rate groups shared by every trainable network here.
import type { Module } from './module.js';
import type { ParamGroupSpec } from './optim/optimizer.js';

/**
 * The two learning-rate groups of the methods, AffinityNet and DeepLab: the pretrained backbone at 1x, the new
 * layers at `headLrMult` x. Only parameters that require grad are listed (frozen BatchNorm and frozen stages are not).
 */
export function backboneAndHeadGroups(backbone: Module, head: Module[], headLrMult: number, headName = 'head'): ParamGroupSpec[] {
  return [
    { name: 'backbone', params: backbone.trainableParameters(), lrMult: 1 },
    { name: headName, params: head.flatMap((m) => m.trainableParameters()), lrMult: headLrMult },
  ];
}
