// What the shared trainer needs from anything it trains (a method's classifier, the affinity net, a segmenter):
// its model, which parameters train at which rate, the loss of one batch, and optional hooks around the update.
// It lives below the methods so that train/, refine/ and segmentation/ need not import them.
import type { Tensor } from '../engine/index.js';
import type { Backbone } from '../backbones/backbone.js';
import type { Module, ParamGroupSpec } from '../nn/index.js';
import type { Rng } from '../data/rng.js';

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
  /**
   * Each image's partner (the loader's `pairs` option): images N x 3 x H x W and labels N x C, row i the partner
   * of image i (sharing at least one class with probability `pairs.shareClass`).
   */
  partner?: { images: Tensor; labels: Tensor; ids: string[] };
  ids: string[];
}

/** Where training stands, for methods whose loss changes over time (warm-ups, ramps) and for the hooks. */
export interface StepContext {
  epoch: number;
  /** Global step, 0-based. */
  step: number;
  totalSteps: number;
  /**
   * A generator private to this step, from the run's seed: a method draws its own random choices (pixel pairs,
   * samples) from it, so training repeats for a seed. libtorch's generator is seeded per step as well.
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

/** Called by the trainer inside each step: after backward, before the update (gradient all-reduce), and after it (an EMA teacher). */
export interface StepHooks {
  afterBackward?(context: StepContext): void;
  afterStep?(context: StepContext): void;
}

/** What the shared trainer needs: a model on a backbone, its learning-rate groups and the loss of a batch. */
export interface Trainable extends StepHooks {
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
