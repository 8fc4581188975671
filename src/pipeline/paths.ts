// Where a run keeps what each stage writes. Kept free of the engine so that the stage registry, the config and the
// CLI's help can use it without loading libtorch.
import { join, resolve } from 'node:path';
import type { WeaksegConfig } from './config.js';

export const runPaths = (config: WeaksegConfig) => {
  const root = resolve(config.runDir);
  return {
    root,
    config: join(root, 'config.json'),
    checkpoints: join(root, 'checkpoints'),
    model: join(root, 'model.safetensors'),
    trainLog: join(root, 'train.log'),
    trainJsonLog: join(root, 'train.log.jsonl'),
    metrics: join(root, 'metrics.json'),
    /** One JSON line per file skipped as bad (data.onBadFile 'skip'): its path, the reason, the split. */
    skipped: join(root, 'skipped.jsonl'),
    cams: (split: string) => join(root, 'cams', split),
    seeds: (split: string) => join(root, 'seeds', split),
    evalLog: join(root, 'eval.log'),
    /** Seeds at the chosen threshold after a dense CRF (palette PNGs). */
    crf: (split: string) => join(root, 'crf', split),
    /** AffinityNet: its training labels (la/ha combination, palette PNGs, 255 uncertain), model and logs. */
    affinity: {
      labels: join(root, 'affinity', 'labels'),
      model: join(root, 'affinity', 'model.safetensors'),
      checkpoints: join(root, 'affinity', 'checkpoints'),
      trainLog: join(root, 'affinity', 'train.log'),
      trainJsonLog: join(root, 'affinity', 'train.log.jsonl'),
    },
    /** IRN: its training labels (palette PNGs, 255 uncertain), model, logs and pseudo-masks. */
    irn: {
      labels: join(root, 'irn', 'labels'),
      model: join(root, 'irn', 'model.safetensors'),
      checkpoints: join(root, 'irn', 'checkpoints'),
      trainLog: join(root, 'irn', 'train.log'),
      trainJsonLog: join(root, 'irn', 'train.log.jsonl'),
      pseudo: (split: string) => join(root, 'irn', 'pseudo', split),
    },
    /** Pseudo-masks from the CAMs and the user's saliency maps (palette PNGs, 255 ignored). */
    saliency: (split: string) => join(root, 'saliency', split),
    /** Random-walk pseudo-masks (palette PNGs, 255 where uncertain). */
    pseudo: (split: string) => join(root, 'pseudo', split),
    /** The segmentation network, its logs and its predictions (palette PNGs). */
    seg: {
      model: join(root, 'seg', 'model.safetensors'),
      checkpoints: join(root, 'seg', 'checkpoints'),
      trainLog: join(root, 'seg', 'train.log'),
      trainJsonLog: join(root, 'seg', 'train.log.jsonl'),
      /** Its training targets with seg.ignoreBand's pixels set to 255 (palette PNGs). */
      targets: (split: string) => join(root, 'seg', 'targets', split),
      predictions: (split: string) => join(root, 'seg', 'pred', split),
    },
    report: join(root, 'report', 'index.html'),
  };
};

