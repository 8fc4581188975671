// Multi-scale + flip inference of a segmentation network (the test protocol of SEAM's segmenter,
// methods-reference.md section 3(f); deeplab-pytorch's is the same with its own scales):
//
//   for each scale s: x_s = bilinear resize of x by s
//       P_s = softmax(up(z(x_s))) + flip(softmax(up(z(flip(x_s)))))      (the two passes run as one batch of 2)
//   P = sum_s P_s / (number of passes)                                    K x H x W, at the image's resolution
//   labels = argmax_k P, or argmax of the dense CRF's posterior started from P (crf preset, with the RGB image)
//
// up() is the bilinear upsampling of the logits to H x W with corners aligned, as in training.
import { F, type Tensor, noGrad, tensor, tidy } from '../engine/index.js';
import { sumOverScalesAndFlips } from '../nn/test-time.js';
import type { LabelMap, RgbImage } from '../data/image.js';
import { type CrfParams, type CrfPresetName, CRF_PRESETS } from '../refine/crf-presets.js';
import { denseCrf, labelMap } from '../refine/crf.js';

/** What inference needs of a network: N x K x h x w logits for N x 3 x H' x W' normalised images. */
export interface SegmentationNet {
  forward(images: Tensor): Tensor;
}

/** SEAM's test scales without its 1.75 (methods-reference 3(f)); the config's default. */
export const DEFAULT_SEG_SCALES: readonly number[] = Object.freeze([0.5, 0.75, 1, 1.25, 1.5]);

export interface SegInferenceOptions {
  /** Scale factors (default DEFAULT_SEG_SCALES). */
  scales?: readonly number[];
  /** Add the horizontally flipped pass at every scale (default true). */
  flip?: boolean;
  /** Feed the network channels-last inputs (match the model's memory format). */
  channelsLast?: boolean;
}

/**
 * The class probabilities of one image, averaged over scales and flips.
 * @param image 1 x 3 x H x W, normalised as the backbone wants, on the network's device
 * @returns K x H x W float32 probabilities (each pixel sums to 1)
 */
export function multiScaleProbabilities(net: SegmentationNet, image: Tensor, options: SegInferenceOptions = {}): Tensor {
  const scales = options.scales ?? DEFAULT_SEG_SCALES;
  const flip = options.flip ?? true;
  return noGrad(() => tidy(() => {
    const sum = sumOverScalesAndFlips(image, { scales, flip, resize: 'bilinear', channelsLast: options.channelsLast }, (batch, size) => {
      const logits = net.forward(batch).contiguous();
      const up = logits.size(2) === size[0] && logits.size(3) === size[1]
        ? logits
        : F.interpolate(logits, { size, mode: 'bilinear', alignCorners: true });
      return up.softmax(1);
    }, 'multiScaleProbabilities');
    return sum.div(scales.length * (flip ? 2 : 1));
  }));
}

export interface LabelOptions {
  /** Dense CRF on the probabilities (a preset name or full settings); null or absent: plain argmax. */
  crf?: CrfPresetName | CrfParams | null;
  /** The image at the probabilities' resolution (HWC uint8 RGB): the CRF's bilateral kernel reads it. */
  rgb?: RgbImage;
  /**
   * The only labels that may be predicted (e.g. background and an image's tags, as CAM seeds are told them):
   * the others' probabilities are zeroed before the CRF, and they are never the argmax. Absent: every label.
   */
  allowed?: readonly number[];
}

/** Label map from K x H x W probabilities: argmax, or argmax of the dense CRF's posterior. */
export function labelsFromProbabilities(probs: Tensor, options: LabelOptions = {}): LabelMap {
  if (probs.ndim !== 3) throw new RangeError(`labelsFromProbabilities: expected K x H x W probabilities, got [${probs.shape}]`);
  const [K, H, W] = probs.shape as [number, number, number];
  if (K > 256) throw new RangeError(`labelsFromProbabilities: ${K} labels do not fit a uint8 label map`);
  const crf = options.crf ?? null;
  const allowed = options.allowed ? allowedLabels(options.allowed, K) : null;
  if (crf === null) {
    const ids = tidy(() => {
      // Probabilities lie in [0, 1]: minus 2 puts every disallowed label below every allowed one.
      const scores = allowed
        ? probs.sub(tensor(allowed.map((a) => (a ? 0 : 2)), { dtype: probs.dtype, device: probs.device }).view([K, 1, 1]))
        : probs;
      return scores.argmax(0).to('uint8').dataSync() as Uint8Array;
    });
    return { width: W, height: H, data: Uint8Array.from(ids) };
  }
  const rgb = options.rgb;
  if (!rgb) throw new Error('labelsFromProbabilities: the dense CRF needs the RGB image (options.rgb)');
  if (rgb.width !== W || rgb.height !== H || rgb.channels !== 3) {
    throw new RangeError(`labelsFromProbabilities: the RGB image is ${rgb.width}x${rgb.height}x${rgb.channels} but the probabilities are ${W}x${H}`);
  }
  const params = typeof crf === 'string' ? CRF_PRESETS[crf] : crf;
  const p = probs.toFloat32Array();
  const plane = H * W;
  if (allowed) {
    // Disallowed labels start at probability 0 (the CRF clips it to its floor) and are ruled out of the argmax.
    allowed.forEach((a, k) => { if (!a) p.fill(0, k * plane, (k + 1) * plane); });
  }
  const q = denseCrf({ rgb: rgb.data, width: W, height: H }, p, K, params);
  if (allowed) allowed.forEach((a, k) => { if (!a) q.fill(-1, k * plane, (k + 1) * plane); });
  return { width: W, height: H, data: labelMap(q, K) };
}

/** A K-long allowed flag per label; an id outside 0..K-1 or no label at all is an error naming them. */
function allowedLabels(ids: readonly number[], K: number): boolean[] {
  const bad = ids.filter((i) => !Number.isInteger(i) || i < 0 || i >= K);
  if (bad.length || ids.length === 0) {
    throw new RangeError(`labelsFromProbabilities: allowed labels must be a non-empty list of ids in 0..${K - 1}, got [${ids.join(', ')}]`);
  }
  const flags = new Array<boolean>(K).fill(false);
  for (const i of ids) flags[i] = true;
  return flags;
}

export interface PredictOptions extends SegInferenceOptions, LabelOptions {}

/** Multi-scale + flip prediction of one image as a label map (0 = background, class index + 1). */
export function predictMask(net: SegmentationNet, image: Tensor, options: PredictOptions = {}): LabelMap {
  return tidy(() => labelsFromProbabilities(multiScaleProbabilities(net, image, options), options));
}
