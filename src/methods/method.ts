// What a weakly supervised method is to the rest of the tree: a trainable classifier (src/train/contract.ts) that
// also gives class activation maps, described by a definition (name, paper, settings schema with defaults, builder)
// that the registry (index.ts) lists. Each method is one file (cam.ts, seam.ts, ...) that reads like its paper.
import type { z } from 'zod';
import type { Tensor } from '../engine/index.js';
import type { Backbone, BlockHook } from '../backbones/backbone.js';
import type { Dataset, DatasetItem, PairOptions } from '../data/index.js';
import type { Module } from '../nn/index.js';
import type { Trainable } from '../train/contract.js';

export type { LossOutput, StepContext, StepHooks, TrainBatch, Trainable } from '../train/contract.js';

/** Per-class normalisation of a fused CAM: divide by the peak, or subtract the minimum first. */
export type CamNormalization = 'max' | 'minmax';

/** One localisation map of an image, e.g. one branch of a two-branch model; the CAM stage normalises each, then fuses. */
export interface CamBranch {
  name: string;
  /** numClasses x H x W non-negative scores at the image's original size (the caller disposes of it). */
  cams: Tensor;
  /** Weight in the fused map (weights are used as given: 0.5 and 0.5 average two branches). */
  weight: number;
  /** How this branch is normalised before fusion (default: the method's camNormalization, else 'max'). */
  normalization?: CamNormalization;
}

/**
 * Something that maps a batch of images to class activation maps: a method's `cams`, or one branch of a two-branch
 * model. The CAM stage sums its maps over scales and flips, or climbs them adversarially (AdvCAM, src/cams).
 */
export interface CamSource {
  /** Raw CAMs, N x numClasses x h x w, before any ReLU (with an autograd graph when recording is on). */
  cams(images: Tensor): Tensor;
  /** Optional: non-negative class maps to use instead of ReLU(cams) (e.g. Grad-CAM), from one forward with the CAMs. */
  maps?(images: Tensor): { cams: Tensor; maps: Tensor };
}

/** What `localize` may use besides the image: the split, the test-time settings and a gradient scope. */
export interface LocalizeContext {
  /** The image's dataset item (its id seeds `partners`). */
  item: DatasetItem;
  /** The split being localised. */
  dataset: Dataset;
  /**
   * Up to `count` other items of the split that contain class `classIndex`, drawn without replacement from a
   * generator seeded by the image id (the same partners on every run).
   */
  partners(classIndex: number, count: number): DatasetItem[];
  /** An item as a network input: 1 x 3 x H x W, normalised for the backbone, on the model's device (caller disposes). */
  loadImage(item: DatasetItem): Promise<Tensor>;
  /** The CAM stage's test-time scales and flip, and whether the model runs channels-last. */
  scales: readonly number[];
  flip: boolean;
  channelsLast: boolean;
  /**
   * The stage's map of one CAM source for an image (1 x 3 x H x W): numClasses x H x W, the sum over the stage's scales and flips of
   * its non-negative maps at the image's size, or AdvCAM's accumulated maps when the stage climbs (cams.advcam).
   * Not normalised; the caller disposes of it.
   */
  camMap(image: Tensor, source: CamSource): Tensor;
  /** Runs fn with autograd on (the CAM stage runs without it), for gradient-based maps (Grad-CAM, AdvCAM). */
  enableGrad<T>(fn: () => T): T;
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
  /**
   * Image-level class logits of a batch at inference, N x numClasses: those the classification loss trains, so
   * sigmoid > 0.5 reads "present". Not always the CAMs' spatial mean: SEAM's CAMs are the PCM's rectified output.
   */
  classify(images: Tensor): Tensor;
  /** How the CAM stage normalises each fused class map: per-class max (default) or min-max (SEAM's PCM output). */
  readonly camNormalization?: CamNormalization;
  /** Set by methods that train on pairs of images: every batch then carries each image's partner (TrainBatch.partner). */
  readonly pairs?: PairOptions;
  /**
   * Optional: the method's own inference for one image (1 x 3 x H x W), for methods that need other images,
   * gradients or several branches. Without it the CAM stage runs `cams` over the scales and flips.
   */
  localize?(image: Tensor, labels: readonly number[], context: LocalizeContext): Promise<CamBranch[]>;
}

/** How a method builds its networks: backbones as configured (any number, with per-block modules) and trained models. */
export interface MethodContext {
  /** Foreground classes of the dataset. */
  numClasses: number;
  /** Learning-rate multiplier of the new layers (train.headLrMult). */
  headLrMult: number;
  /** A new backbone as the config's `model` section describes it; `blocks` inserts a module into every block. */
  backbone(options?: { blocks?: BlockHook }): Backbone;
  /**
   * Loads another run's model (a run directory: its model.safetensors) or any checkpoint file (.safetensors,
   * a trainer checkpoint, .pth) into `into`, strictly; `prefix` takes only the file's keys under it (e.g. 'backbone.').
   * `frozen` keeps the module in eval mode and out of training (no gradient).
   */
  loadModel(into: Module, source: string, options?: { prefix?: string; frozen?: boolean }): void;
}

/** A method as the registry lists it: its name, its paper, its settings (every one with a default) and its builder. */
export interface MethodDefinition<S extends z.ZodObject = z.ZodObject> {
  /** The config's `method.name` (lower case). */
  readonly name: string;
  /** How reports and listings call it ('CAM', 'SEAM'). */
  readonly title: string;
  /** The paper it follows. */
  readonly paper: string;
  /** Its settings: a zod object whose every field has a default; they sit next to `name` in the config's `method`. */
  readonly settings: S;
  /**
   * The settings only the trained model's inference reads (the CAM stage): a change to one remakes the CAMs and
   * keeps the trained classifier, whose fingerprint leaves them out.
   */
  readonly inferenceSettings?: readonly (keyof z.output<S> & string)[];
  build(settings: z.output<S>, context: MethodContext): Method;
}

/** Types a definition's builder against its own schema. */
export function defineMethod<S extends z.ZodObject>(definition: MethodDefinition<S>): MethodDefinition<S> {
  return definition;
}
