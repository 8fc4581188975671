// Pseudo-masks from localisation maps and a saliency map, by the rules of MCIS's (and OAA's) gen_gt.py
// (GuoleiSun/MCIS_wsss › Classifier/gen_gt.py; methods-reference.md 4(e)). Per pixel, with s the saliency in 0..255:
//   cue_0 = 1 - s / 255                              background
//   cue_c = minmax(map_c)                            each image-level class, min-max normalised over the image
//   s'    = max(s, 255 [cue_c > attThreshold])       the saliency merged with the maps' peaks
//   every cue < fgThreshold -> 0
//   label = argmax_c cue_c (0 background, c + 1 class c); first index on ties, as numpy's argmax
//   more than one cue > conflict -> 255               ambiguous
//   label 0 with s' >= bgThreshold -> 255              "background" that is salient
//   fewer than minForeground of the pixels in a class -> the whole image 255
// Pure arrays: no saliency model exists here, so this refinement runs only where a user has saliency maps.

export interface SaliencyRules {
  /** Cues below it are zeroed (gen_gt.py: 0.3). */
  fgThreshold: number;
  /** A pixel with more than one cue above it is ignored (0.99). */
  conflict: number;
  /** Background pixels whose (merged) saliency reaches it are ignored (32, on 0..255). */
  bgThreshold: number;
  /** A class map above it counts as salient (0.95). */
  attThreshold: number;
  /** Below this share of foreground pixels the whole image is ignored (0.01). */
  minForeground: number;
}

export const GEN_GT_RULES: SaliencyRules = { fgThreshold: 0.3, conflict: 0.99, bgThreshold: 32, attThreshold: 0.95, minForeground: 0.01 };

export const IGNORE = 255;

/**
 * The pseudo-mask (H x W: 0 background, labels[k] + 1 for the k-th map, 255 ignored) of one image from its maps
 * (one H x W plane per image-level class, in `labels` order, any scale) and its saliency (H x W, 0..255).
 */
export function saliencyPseudoMask(
  maps: Float32Array, labels: readonly number[], saliency: ArrayLike<number>, height: number, width: number,
  rules: SaliencyRules = GEN_GT_RULES,
): Uint8Array {
  const plane = height * width;
  if (saliency.length !== plane) throw new RangeError(`saliency has ${saliency.length} values, expected ${height}x${width}`);
  if (maps.length !== labels.length * plane) {
    throw new RangeError(`maps have ${maps.length} values, expected ${labels.length} x ${height}x${width}`);
  }
  const L = labels.length;
  const cues = new Float32Array((L + 1) * plane);
  const salAtt = new Float32Array(plane);
  for (let i = 0; i < plane; i++) {
    cues[i] = 1 - saliency[i]! / 255;
    salAtt[i] = saliency[i]!;
  }
  for (let k = 0; k < L; k++) {
    const m = maps.subarray(k * plane, (k + 1) * plane);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of m) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const out = cues.subarray((k + 1) * plane, (k + 2) * plane);
    for (let i = 0; i < plane; i++) {
      out[i] = (m[i]! - lo) / (hi - lo + 1e-8);
      if (out[i]! > rules.attThreshold) salAtt[i] = 255;
    }
  }
  const mask = new Uint8Array(plane);
  let foreground = 0;
  for (let i = 0; i < plane; i++) {
    let best = 0;
    let bestValue = -Infinity;
    let confident = 0;
    for (let c = 0; c <= L; c++) {
      let v = cues[c * plane + i]!;
      if (v < rules.fgThreshold) v = 0;
      if (v > rules.conflict) confident++;
      if (v > bestValue) { bestValue = v; best = c; }
    }
    let label = best === 0 ? 0 : labels[best - 1]! + 1;
    if (confident > 1) label = IGNORE;
    else if (label === 0 && salAtt[i]! >= rules.bgThreshold) label = IGNORE;
    mask[i] = label;
    if (label > 0 && label < IGNORE) foreground++;
  }
  if (foreground / plane < rules.minForeground) mask.fill(IGNORE);
  return mask;
}
