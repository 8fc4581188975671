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

/** A tag left out of an item's labels because it names no class (readers' `unknownTags: 'drop'`). */
export interface DroppedTag {
  /** The file holding the tag (labels file, labels JSON). */
  path: string;
  /** Where in it ("line 7 ("a.jpg")", "labels["2007_000032"]"). */
  where: string;
  tag: string;
}

/** What a reader does with a tag outside the class list: the item is a bad file ('bad'), or the tag is dropped ('drop'). */
export type UnknownTagPolicy = 'bad' | 'drop';

/** What the readers return: the dataset plus the log of items skipped while reading (`onBadFile: 'skip'`). */
export interface ReadResult extends Dataset {
  badFiles: BadFileLog;
  /**
   * With `unknownTags: 'drop'`: the tags left out. An item whose every tag was dropped is not in `items` (it would
   * otherwise read as background only); it is listed in `droppedItems`.
   */
  droppedTags?: DroppedTag[];
  droppedItems?: string[];
}
