// Seeds from CAMs (methods-reference.md section 1.3): a constant background plane t is put before the label
// planes and the argmax taken, so a pixel is foreground iff its best label score exceeds t. Saved as VOC palette
// PNGs (0 background, class index + 1 for objects) that render in any viewer.
import { camsToSeeds } from '../eval/index.js';
import { type LabelMap, writeMask } from '../data/index.js';
import type { CamRecord } from './format.js';

/** The seed mask of one image at background threshold t. */
export function seedsFromCam(record: CamRecord, threshold: number): LabelMap {
  if (!(threshold >= 0 && threshold <= 1)) throw new RangeError(`background threshold must be in [0, 1], got ${threshold}`);
  return {
    width: record.width,
    height: record.height,
    data: camsToSeeds(record.cams, record.labels, record.width, record.height, threshold),
  };
}

/** Writes `<dir>/<id>.png`. */
export async function writeSeeds(dir: string, record: CamRecord, threshold: number): Promise<string> {
  const path = `${dir}/${record.id}.png`;
  await writeMask(path, seedsFromCam(record, threshold));
  return path;
}
