/** Smoothness kernel exp(-|p_i - p_j|² / 2 sxy²), weighted by a Potts compatibility `compat`. */
export interface GaussianKernelParams {
  readonly sxy: number;
  readonly compat: number;
}

/** Appearance kernel exp(-|p_i - p_j|² / 2 sxy² - |I_i - I_j|² / 2 srgb²), Potts weight `compat`. */
export interface BilateralKernelParams {
  readonly sxy: number;
  readonly srgb: number;
  readonly compat: number;
}

export interface CrfParams {
  readonly gaussian: GaussianKernelParams;
  readonly bilateral: BilateralKernelParams;
  /** Mean-field iterations. */
  readonly iterations: number;
  /** Probabilities are clipped to [clip, 1] before -log, as pydensecrf's `unary_from_softmax` (default 1e-5). */
  readonly clip: number;
  /**
   * The image size (longer side, pixels) the spatial widths `sxy` are meant for; `denseCrf` scales them by
   * longer side / referenceSize, as SEAM's `crf_inference(scale_factor)` does. Both presets were set on VOC's
   * images (longer side 500), so 500 keeps a kernel's reach in proportion to the object on smaller or larger
   * images. Absent or null: widths in pixels as given (pydensecrf's own behaviour).
   */
  readonly referenceSize?: number | null;
  /**
   * Working size (longer side, pixels): a larger image is downscaled to it for the CRF, which builds a lattice
   * over every pixel, and the posterior is upscaled back. Absent or null: always full size.
   */
  readonly workingSize?: number | null;
}

/**
 * Published settings (methods reference §2.5):
 * - `psa`: PSA/SEAM `tool/imutils.py crf_inference` (label generation uses 10 iterations; SEAM's
 *   training-time visualisation uses 1, i.e. `crfParams('psa', { iterations: 1 })`).
 * - `deeplab`: kazuto1011/deeplab-pytorch `libs/utils/crf.py` / `configs/voc12.yaml`, the DeepLab-v2
 *   retrain used by AdvCAM, ReCAM, CLIMS, CLIP-ES, AMR.
 */
export const CRF_PRESETS = {
  psa: {
    gaussian: { sxy: 3, compat: 3 },
    bilateral: { sxy: 80, srgb: 13, compat: 10 },
    iterations: 10,
    clip: 1e-5,
  },
  deeplab: {
    gaussian: { sxy: 1, compat: 3 },
    bilateral: { sxy: 67, srgb: 3, compat: 4 },
    iterations: 10,
    clip: 1e-5,
  },
  /** jiwoon-ahn/irn misc/imutils.py `crf_inference_label`: IRN's inter-pixel relation labels. */
  irn: {
    gaussian: { sxy: 3, compat: 3 },
    bilateral: { sxy: 50, srgb: 5, compat: 10 },
    iterations: 10,
    clip: 1e-5,
  },
} as const satisfies Record<string, CrfParams>;

export type CrfPresetName = keyof typeof CRF_PRESETS;

export interface CrfOverrides {
  readonly gaussian?: Partial<GaussianKernelParams>;
  readonly bilateral?: Partial<BilateralKernelParams>;
  readonly iterations?: number;
  readonly clip?: number;
  readonly referenceSize?: number | null;
  readonly workingSize?: number | null;
}

/**
 * The kernel widths for a width x height image: sxy scaled by the longer side / referenceSize (unchanged
 * without a referenceSize).
 */
export function scaledToImage(p: CrfParams, width: number, height: number): CrfParams {
  if (p.referenceSize == null) return p;
  if (!(p.referenceSize > 0)) throw new RangeError(`CRF referenceSize must be a positive number, got ${p.referenceSize}`);
  const f = Math.max(width, height) / p.referenceSize;
  return { ...p, gaussian: { ...p.gaussian, sxy: p.gaussian.sxy * f }, bilateral: { ...p.bilateral, sxy: p.bilateral.sxy * f } };
}

/** A preset, optionally with some fields overridden; a full custom setting is just a `CrfParams` literal. */
export function crfParams(preset: CrfPresetName, overrides: CrfOverrides = {}): CrfParams {
  const base: CrfParams = CRF_PRESETS[preset];
  return {
    gaussian: { ...base.gaussian, ...overrides.gaussian },
    bilateral: { ...base.bilateral, ...overrides.bilateral },
    iterations: overrides.iterations ?? base.iterations,
    clip: overrides.clip ?? base.clip,
    ...(overrides.referenceSize != null ? { referenceSize: overrides.referenceSize } : {}),
    ...(overrides.workingSize != null ? { workingSize: overrides.workingSize } : {}),
  };
}
