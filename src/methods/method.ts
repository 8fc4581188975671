// What the shared trainer and the CAM stage need from a weakly supervised method: its model (with the
// backbone inside), which parameters train at which rate, the loss of one batch and the class activation maps
// of a batch at inference. Each method is one file (cam.ts, and later seam.ts, ...) that reads like its paper.
import type { Tensor } from '../engine/index.js';
import type { Rng } from '../data/rng.js';
import type { Backbone } from '../backbones/backbone.js';
import type { Module, ParamGroupSpec } from '../nn/index.js';

/** One training batch, already on the model's device. */
export interface TrainBatch {
  /** N x 3 x H x W, normalised as the backbone wants. */
  images: Tensor;
  /** N x C multi-hot float32 image-level labels (foreground classes only). */
  labels: Tensor;
  /** N x H x W bool, true on real pixels and false on crop padding: pixel losses must ignore the padding. */
  valid?: Tensor;
  /** N x H x W int64 pixel labels (255 = ignore), when the loader gave masks (pseudo-masks, affinity labels). */
  masks?: Tensor;
  ids: string[];
}

/** Where training stands, for methods whose loss changes over time (warm-ups, ramps). */
export interface StepContext {
  epoch: number;
  /** Global step, 0-based. */
  step: number;
  totalSteps: number;
  /**
   * A generator private to this step, from the run's seed: a method draws its own random choices (partner images,
   * pixel pairs) from it, so training repeats for a seed. libtorch's generator is seeded per step as well.
   * The trainer always passes one; a method that samples throws without it (direct calls in tests).
   */
  rng?: Rng;
}

export interface LossOutput {
  /** The scalar to minimise. */
  loss: Tensor;
  /** Named scalar terms for the log (e.g. { cls, er, ecr }); each a 0-d tensor. */
  parts?: Record<string, Tensor>;
}

/** What the shared trainer needs: a model on a backbone, its learning-rate groups and the loss of a batch. */
export interface Trainable {
  /** Short name used in run directories and checkpoints ('cam', 'affinity', 'deeplab', ...). */
  readonly name: string;
  /** Everything with parameters (backbone and new layers); checkpoints save its state dict. */
  readonly model: Module;
  readonly backbone: Backbone;
  /**
   * The trainable parameters by learning-rate group: the pretrained backbone at 1x and new layers at
   * `lrMult` x (10 in CAM/IRN/SEAM). Frozen parameters (e.g. frozen BatchNorm) are left out.
   */
  paramGroups(): ParamGroupSpec[];
  /** The loss of one batch, with its autograd graph (the trainer calls backward). */
  loss(batch: TrainBatch, context: StepContext): LossOutput;
}

/** A weakly supervised method: a trainable classifier that also gives class activation maps. */
export interface Method extends Trainable {
  /** Foreground classes: the width of the label vectors and the number of CAM planes. */
  readonly numClasses: number;
  /**
   * Class activation maps of a batch at inference: N x numClasses x h x w scores before any ReLU or
   * normalisation, at the backbone's output stride. The CAM stage rectifies, fuses scales and flips, and
   * normalises them.
   */
  cams(images: Tensor): Tensor;
  /** How the CAM stage normalises each fused class map: per-class max (default) or min-max (SEAM's PCM output). */
  readonly camNormalization?: CamNormalization;
}

/** Per-class normalisation of a fused CAM: divide by the peak, or subtract the minimum first. */
export type CamNormalization = 'max' | 'minmax';
