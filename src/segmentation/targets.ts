// The segmenter's training targets with PSA's uncertain band ignored (seg.ignoreBand).
//
// The pseudo-mask stages (crf, random-walk, irn-walk) write label PNGs only, not their per-pixel scores, so the
// band comes from the CAMs they started from, as PSA's affinity labels do (la/ha, methods-reference.md 2.6):
//
//   m = max over the image's classes of the CAM at the pixel      (0 for an image without classes)
//   target = 255 where low <= m < high, else the pseudo-mask's label
//
// Below `low` the CAM is confidently background and above `high` confidently foreground (PSA's affinity exponents
// 24 and 4 put its band at m in [0.092, 0.276) without the CRF); in between the refinement's label rests on the
// weakest evidence, and the segmenter learns nothing from it. Pixels the pseudo-mask already ignores stay 255.
import type { CamRecord } from '../cams/format.js';
import { IGNORE_INDEX } from '../data/mask.js';
import type { LabelMap } from '../data/image.js';

export type IgnoreBand = readonly [low: number, high: number];

/** The pseudo-mask with every pixel whose top CAM score lies in [low, high) set to 255. */
export function ignoreUncertainBand(mask: LabelMap, cam: CamRecord, band: IgnoreBand): LabelMap {
  const [low, high] = band;
  if (!(low >= 0 && low <= high && high <= 1)) throw new RangeError(`ignore band [${low}, ${high}] must satisfy 0 <= low <= high <= 1`);
  if (mask.width !== cam.width || mask.height !== cam.height) {
    throw new RangeError(`${cam.id}: the pseudo-mask is ${mask.width}x${mask.height} but its CAM ${cam.width}x${cam.height}`);
  }
  const plane = cam.width * cam.height;
  if (cam.cams.length !== cam.labels.length * plane) {
    throw new RangeError(`${cam.id}: ${cam.cams.length} CAM values for ${cam.labels.length} classes of ${cam.width}x${cam.height}`);
  }
  const data = Uint8Array.from(mask.data);
  for (let i = 0; i < plane; i++) {
    let m = 0;
    for (let c = 0; c < cam.labels.length; c++) m = Math.max(m, cam.cams[c * plane + i]!);
    if (m >= low && m < high) data[i] = IGNORE_INDEX;
  }
  return { width: mask.width, height: mask.height, data };
}
