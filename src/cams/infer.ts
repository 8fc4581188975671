// Multi-scale + flip CAM inference (methods-reference.md sections 2.3 and 2.4).
//
//   for each scale s: x_s = bicubic resize of x by s
//       M_s = ReLU(CAM(x_s)) + flip(ReLU(CAM(flip(x_s))))          (the two passes run as one batch of 2)
//   M = sum_s bilinear_upsample(M_s, H x W)                          at the image's original resolution
//   M_c = 0 for classes c not in the image's tags                   (label masking)
//   M_c = M_c / max_xy M_c                                          (per-class max normalisation, max 1)
//   or, with normalization 'minmax' (SEAM's infer_SEAM.py):
//   M_c = (M_c - min_xy M_c) / (max_xy M_c - min_xy M_c)
//
// ReLU is applied to each pass before summing, as IRN's make_cam does. The min-max form matters for maps with a
// floor: SEAM's PCM output is a weighted average over similar pixels, so every pixel keeps part of the peak.
import { F, type Tensor, noGrad, tensor, tidy } from '../engine/index.js';
import { sumOverScalesAndFlips } from '../nn/test-time.js';
import { type AdvCamOptions, advCamMap } from './advcam.js';
import type { CamNormalization, CamSource, Method } from '../methods/method.js';

export const DEFAULT_CAM_SCALES: readonly number[] = Object.freeze([0.5, 1, 1.5, 2]);

export interface CamInferenceOptions {
  /** Scale factors (default 0.5, 1, 1.5, 2). */
  scales?: readonly number[];
  /** Add the horizontally flipped pass at every scale (default true). */
  flip?: boolean;
  /** Feed the network channels-last inputs (match the model's memory format). */
  channelsLast?: boolean;
  /** Per-class normalisation of the fused map (default: the method's own, else 'max'). */
  normalization?: CamNormalization;
  /** Climb each class adversarially (AdvCAM, src/cams/advcam.ts) instead of one pass per scale and flip. */
  advcam?: AdvCamOptions | null;
}

/**
 * The fused, rectified, label-masked and normalised CAMs of one image.
 * @param image 1 x 3 x H x W, normalised as the backbone wants, on the model's device
 * @param labels the image's foreground class indices; other classes come out as zero planes
 * @returns numClasses x H x W float32 scores in [0, 1] (each present class peaks at exactly 1 unless it never fired)
 */
export function multiScaleCam(method: Method, image: Tensor, labels: readonly number[], options: CamInferenceOptions = {}): Tensor {
  const scales = options.scales ?? DEFAULT_CAM_SCALES;
  const flip = options.flip ?? true;
  const C = method.numClasses;
  for (const l of labels) {
    if (!Number.isInteger(l) || l < 0 || l >= C) throw new RangeError(`multiScaleCam: label ${l} outside 0..${C - 1}`);
  }
  const source = { cams: (batch: Tensor) => method.cams(batch) };
  const o = { scales, flip, channelsLast: options.channelsLast, numClasses: C };
  return noGrad(() => tidy(() => normalizeCams(
    options.advcam ? advCamMap(image, labels, source, { ...options.advcam, ...o }) : sourceMap(image, source, o),
    labels, options.normalization ?? method.camNormalization ?? 'max')));
}

/**
 * sum over scales and flips of a CAM source's non-negative maps (ReLU(cams), or its own `maps`), each upsampled
 * bilinearly to the image's H x W: C x H x W, not masked or normalised.
 */
export function sourceMap(image: Tensor, source: CamSource, o: { scales: readonly number[]; flip: boolean; channelsLast?: boolean }): Tensor {
  return noGrad(() => sumOverScalesAndFlips(image, { scales: o.scales, flip: o.flip, resize: 'bicubic', channelsLast: o.channelsLast }, (batch, size) =>
    F.interpolate((source.maps ? source.maps(batch).maps : source.cams(batch).relu()).contiguous(), { size, mode: 'bilinear', alignCorners: false }),
  'multiScaleCam'));
}

/** Label masking and per-class normalisation of a C x H x W map (see the header). */
export function normalizeCams(map: Tensor, labels: readonly number[], normalization: CamNormalization): Tensor {
  return tidy(() => {
    const C = map.size(0);
    const mask = new Float32Array(C);
    for (const l of labels) mask[l] = 1;
    const masked = map.mul(tensor(mask, { shape: [C, 1, 1] }).to({ device: map.device }));
    if (normalization === 'max') return masked.div(masked.amax([1, 2], true).clampMin(1e-5));
    const low = masked.amin([1, 2], true);
    return masked.sub(low).div(masked.amax([1, 2], true).sub(low).clampMin(1e-5));
  });
}
