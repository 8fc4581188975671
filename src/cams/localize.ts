// CAMs of one image for any method: a method with its own `localize` (other images, gradients, several branches)
// gives named branches, each label-masked and normalised on its own and then fused with its weight,
//   M = sum_b w_b normalise_b(M_b)
// (AMR: 0.5 / 0.5 over its two branches); every other method goes through multiScaleCam as before.
import { type Device, type Tensor, enableGrad, noGrad, setGradEnabled, tensor, tidy } from '../engine/index.js';
import { type Dataset, type DatasetItem, type ItemTransform, Rng } from '../data/index.js';
import type { CamBranch, CamNormalization, LocalizeContext, Method } from '../methods/method.js';
import { type AdvCamOptions, advCamMap, withoutParameterGrads } from './advcam.js';
import { type CamInferenceOptions, DEFAULT_CAM_SCALES, multiScaleCam, normalizeCams, sourceMap } from './infer.js';

/** Weighted sum of branches, each masked to the image's labels and normalised on its own. */
export function fuseBranches(branches: readonly CamBranch[], labels: readonly number[], normalization: CamNormalization): Tensor {
  if (branches.length === 0) throw new RangeError('fuseBranches: a method localised an image into no branch');
  const shape = branches[0]!.cams.shape.join('x');
  for (const b of branches) {
    if (b.cams.ndim !== 3 || b.cams.shape.join('x') !== shape) {
      throw new RangeError(`fuseBranches: branch '${b.name}' is [${b.cams.shape}], expected C x H x W like [${branches[0]!.cams.shape}]`);
    }
    if (!Number.isFinite(b.weight)) throw new RangeError(`fuseBranches: branch '${b.name}' has weight ${b.weight}`);
  }
  return noGrad(() => tidy(() => {
    let sum: Tensor | null = null;
    for (const b of branches) {
      const part = normalizeCams(b.cams.relu(), labels, b.normalization ?? normalization).mul(b.weight);
      sum = sum ? sum.add(part) : part;
    }
    return sum!;
  }));
}

/** A 32-bit FNV-1a hash of an image id, to seed its partners. */
function hashId(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * The contexts `localize` receives for the images of one split: partners by class (seeded by the image id), images
 * loaded with the stage's transform onto its device, the test-time settings and a gradient scope.
 */
export function localizeContexts(
  dataset: Dataset, transform: ItemTransform,
  o: { device?: Device; scales?: readonly number[]; flip?: boolean; channelsLast?: boolean; advcam?: AdvCamOptions | null } = {},
): (item: DatasetItem) => LocalizeContext {
  const byClass = dataset.classes.map((): DatasetItem[] => []);
  for (const item of dataset.items) for (const c of item.labels) byClass[c]?.push(item);
  const index = new Map(dataset.items.map((item, i) => [item.id, i]));
  return (item) => ({
    item,
    dataset,
    partners: (classIndex, count) => {
      const pool = (byClass[classIndex] ?? []).filter((p) => p.id !== item.id);
      return new Rng(hashId(item.id), classIndex).shuffle(pool).slice(0, Math.max(0, count));
    },
    loadImage: async (other) => {
      const s = await transform(other, { rng: new Rng(0), epoch: 0, index: index.get(other.id) ?? -1 });
      return tidy(() => {
        const t = tensor(s.image, { shape: [1, s.channels, s.height, s.width] });
        return o.device && o.device !== 'cpu' ? t.to({ device: o.device }) : t;
      });
    },
    scales: o.scales ?? DEFAULT_CAM_SCALES,
    flip: o.flip ?? true,
    channelsLast: o.channelsLast ?? false,
    camMap: (image, source) => {
      const m = { scales: o.scales ?? DEFAULT_CAM_SCALES, flip: o.flip ?? true, channelsLast: o.channelsLast ?? false, numClasses: dataset.classes.length };
      return o.advcam ? advCamMap(image, item.labels, source, { ...o.advcam, ...m }) : sourceMap(image, source, m);
    },
    enableGrad,
  });
}

/**
 * The fused, label-masked, normalised CAMs of one image (numClasses x H x W), the caller's to dispose: the method's
 * `localize` with `context` when it has one (called with gradient recording off; context.enableGrad turns it on),
 * else multiScaleCam.
 */
export async function imageCams(
  method: Method, image: Tensor, labels: readonly number[],
  options: CamInferenceOptions & { context?: LocalizeContext },
): Promise<Tensor> {
  if (options.advcam) {
    // AdvCAM needs the input's gradient only: the parameters' would be computed and accumulated for nothing.
    const { advcam, ...rest } = options;
    return withoutParameterGrads(method.model.parameters(), () => localizedCams(method, image, labels, rest, advcam));
  }
  return localizedCams(method, image, labels, options, null);
}

/** imageCams with AdvCAM's settings for methods without `localize` (their context carries them otherwise). */
async function localizedCams(
  method: Method, image: Tensor, labels: readonly number[], options: CamInferenceOptions & { context?: LocalizeContext },
  advcam: AdvCamOptions | null,
): Promise<Tensor> {
  if (!method.localize) return multiScaleCam(method, image, labels, { ...options, advcam });
  if (!options.context) throw new Error(`method '${method.name}' localises with a context: pass one (localizeContexts)`);
  const previous = setGradEnabled(false);
  let branches: CamBranch[] = [];
  try {
    branches = await method.localize(image, labels, options.context);
    return fuseBranches(branches, labels, options.normalization ?? method.camNormalization ?? 'max');
  } finally {
    setGradEnabled(previous);
    for (const b of branches) b.cams.dispose();
  }
}
