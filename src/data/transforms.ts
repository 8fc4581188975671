/**
 * Ready-made item transforms for `BatchLoader`: decode an item's image (and mask) and turn it into a sample.
 */
import { trainAugment, normalizeToChw, IMAGENET_NORM, type Normalization, type TrainAugmentOptions } from './augment.js';
import type { DatasetItem } from './dataset.js';
import { DataError } from './errors.js';
import { decodeImage, type DecodeOptions, type LabelMap, type RgbImage } from './image.js';
import type { ItemTransform, Sample } from './loader.js';
import { readMask } from './mask.js';

export interface LoadedItem {
  image: RgbImage;
  mask?: LabelMap;
}

/**
 * Decode an item's image and, with `withMask` and a `maskPath`, its mask. A mask whose size differs from the
 * (EXIF-oriented) image is a DataError: it would silently misalign every pixel.
 */
export async function loadItem(
  item: DatasetItem,
  options: { withMask?: boolean; decode?: DecodeOptions } = {},
): Promise<LoadedItem> {
  const maskPath = options.withMask ? item.maskPath : undefined;
  const [image, mask] = await Promise.all([
    decodeImage(item.imagePath, options.decode),
    maskPath ? readMask(maskPath) : undefined,
  ]);
  if (!mask || !maskPath) return { image };
  if (mask.width !== image.width || mask.height !== image.height) {
    throw new DataError(
      maskPath,
      `mask is ${mask.width}x${mask.height} but image ${item.imagePath} is ${image.width}x${image.height}`,
    );
  }
  return { image, mask };
}

/**
 * Decode + `trainAugment`. Masks are loaded only with `withMask` (e.g. training a segmenter on pseudo-masks);
 * classification training needs only the image-level labels, which the loader takes from the item.
 */
export function trainTransform(options: TrainAugmentOptions & { withMask?: boolean; decode?: DecodeOptions }): ItemTransform {
  return async (item, { rng }) => {
    const { image, mask } = await loadItem(item, options);
    return trainAugment(image, mask, rng, options);
  };
}

/** Decode + normalise at full resolution, mask included when the item has one (default), for scoring. */
export function evalTransform(
  options: { norm?: Normalization; withMask?: boolean; decode?: DecodeOptions } = {},
): ItemTransform {
  return async (item) => {
    const { image, mask } = await loadItem(item, { withMask: options.withMask ?? true, decode: options.decode });
    const sample: Sample = {
      image: normalizeToChw(image, options.norm ?? IMAGENET_NORM),
      channels: 3,
      height: image.height,
      width: image.width,
    };
    if (mask) sample.mask = mask.data;
    return sample;
  };
}
