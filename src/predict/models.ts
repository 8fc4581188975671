// The trained networks of a run, ready for inference on new images: the segmenter (seg/model.safetensors or its
// newest checkpoint) or, where the run has none, the classifier (model.safetensors) with its CAMs.
import { existsSync } from 'node:fs';
import { readSafetensorsHeader } from '../engine/serialize/index.js';
import { loadModelWeights } from '../train/checkpoint.js';
import type { DeepLab } from '../segmentation/deeplab.js';
import type { Method } from '../methods/method.js';
import type { Module } from '../nn/index.js';
import type { WeaksegConfig } from '../pipeline/config.js';
import { type StageHooks, buildMethod, readSplit } from '../pipeline/common.js';
import { buildSegmenter, segmenterWeightsPath } from '../pipeline/segment.js';
import { camWeightsPath } from '../pipeline/cams.js';

export interface RunModel<N> {
  net: N;
  /** Foreground class names (label i > 0 of a mask is classes[i - 1]). */
  classes: string[];
  weights: string;
}

/** The foreground classes a model file was trained on: its metadata, else the run's training split. */
async function classesOf(config: WeaksegConfig, weights: string): Promise<string[]> {
  const meta = readSafetensorsHeader(weights).metadata;
  if (meta.classes) {
    try {
      const classes = JSON.parse(meta.classes) as unknown;
      if (Array.isArray(classes) && classes.every((c) => typeof c === 'string')) return classes;
    } catch {
      // fall through to the dataset
    }
  }
  return (await readSplit(config, config.data.trainSplit)).classes;
}

/** True when the run has a segmentation model (final or a checkpoint). */
export function hasSegmenter(config: WeaksegConfig): boolean {
  try {
    segmenterWeightsPath(config);
    return true;
  } catch {
    return false;
  }
}

function place(config: WeaksegConfig, model: Module): void {
  if (config.runtime.device !== 'cpu' || config.runtime.channelsLast) {
    model.to({ device: config.runtime.device, memoryFormat: config.runtime.channelsLast ? 'channels_last' : undefined });
  }
  model.eval();
}

/** Loads `weights` into a freshly built network (disposed on failure), then places it for inference. */
function withWeights<N extends { model: Module }>(config: WeaksegConfig, net: N, weights: string): N {
  try {
    loadModelWeights(weights, net.model);
  } catch (e) {
    net.model.dispose();
    throw e;
  }
  place(config, net.model);
  return net;
}

/** The run's segmenter with its weights, in eval mode on config.runtime.device. */
export async function loadSegmenter(config: WeaksegConfig, hooks: StageHooks = {}): Promise<RunModel<DeepLab>> {
  const weights = segmenterWeightsPath(config);
  const classes = await classesOf(config, weights);
  return { net: withWeights(config, buildSegmenter(config, classes.length, hooks), weights), classes, weights };
}

/** The run's classifier (the method's network) with its weights, in eval mode on config.runtime.device. */
export async function loadClassifier(config: WeaksegConfig, hooks: StageHooks = {}): Promise<RunModel<Method>> {
  const weights = camWeightsPath(config);
  if (!existsSync(weights)) throw new Error(`${weights}: no such model file`);
  const classes = await classesOf(config, weights);
  return { net: withWeights(config, buildMethod(config, classes.length, hooks), weights), classes, weights };
}
