/**
 * The dataset description shared by all readers.
 */
import type { BadFileLog } from './errors.js';

/** The 20 PASCAL VOC object classes in devkit order; mask id = index + 1 (0 is background). */
export const VOC_CLASSES: readonly string[] = Object.freeze([
  'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
  'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor',
]);

export interface DatasetItem {
  id: string;
  imagePath: string;
  /** Ground-truth mask (palette PNG, id = class index + 1, 0 background, 255 ignore); for scoring only. */
  maskPath?: string;
  /** Image-level labels: indices into `Dataset.classes`, sorted, unique. */
  labels: number[];
}

export interface Dataset {
  /** Foreground class names; background is implicit (mask id 0), so class i has mask id i + 1. */
  classes: string[];
  items: DatasetItem[];
}

/** What the readers return: the dataset plus the log of items skipped while reading (`onBadFile: 'skip'`). */
export interface ReadResult extends Dataset {
  badFiles: BadFileLog;
}
