// Test-time augmentation shared by CAM inference (src/cams/infer.ts) and segmentation inference
// (src/segmentation/infer.ts): the sum over scales and horizontal flips of one per-pass map.
import { F, type Tensor, cat, noGrad, tidy } from '../engine/index.js';

export interface ScaleFlipOptions {
  /** Scale factors of the input (each > 0). */
  scales: readonly number[];
  /** Add the horizontally flipped pass at every scale. */
  flip: boolean;
  /** How the input is resized: CAMs follow IRN (bicubic), segmenters their training (bilinear). */
  resize: 'bicubic' | 'bilinear';
  /** Feed the network channels-last inputs (match the model's memory format). */
  channelsLast?: boolean;
}

/**
 * sum_s [ pass(x_s)[0] + flip(pass(flip(x_s)))[0] ] for a 1 x C x H x W image x, where `pass` maps a batch of
 * resized images (the two flips run as one batch of 2) to N x K x H x W maps at the ORIGINAL size H x W.
 * @returns K x H x W, owned by the caller's scope
 */
export function sumOverScalesAndFlips(image: Tensor, o: ScaleFlipOptions, pass: (batch: Tensor, size: [number, number]) => Tensor, name: string): Tensor {
  if (image.ndim !== 4 || image.size(0) !== 1) throw new RangeError(`${name}: expected a 1 x C x H x W image, got [${image.shape}]`);
  if (o.scales.length === 0 || o.scales.some((s) => !(s > 0))) throw new RangeError(`${name}: scales must be positive, got [${o.scales}]`);
  const [H, W] = [image.size(2), image.size(3)];
  return noGrad(() => {
    let sum: Tensor | null = null;
    for (const s of o.scales) {
      const fused = tidy(() => {
        const h = Math.max(1, Math.round(H * s));
        const w = Math.max(1, Math.round(W * s));
        const xs = h === H && w === W ? image : F.interpolate(image, { size: [h, w], mode: o.resize, alignCorners: false });
        let batch = o.flip ? cat([xs, xs.flip(3)]) : xs;
        if (o.channelsLast) batch = batch.channelsLast();
        const m = pass(batch, [H, W]);
        return o.flip ? m.select(0, 0).add(m.select(0, 1).flip(2)) : m.select(0, 0);
      });
      if (sum === null) {
        sum = fused;
      } else {
        sum.add_(fused);
        fused.dispose();
      }
    }
    return sum!;
  });
}
