// The CAM file format ("weakseg-cams/1"): one safetensors file per image, `<dir>/<image id>.safetensors`
// (ids with slashes make subfolders), readable from Python with `safetensors.numpy.load_file`.
//
//   tensors   cams    float16 [L, H, W]   one plane per image-level label, in the order of `labels`; scores in
//                                         [0, 1], each plane max- or min-max-normalised (peak exactly 1 unless
//                                         the class never fired: then all 0). H x W is the image's original size.
//             labels  int64   [L]         foreground class indices, 0-based (mask id = index + 1; background is
//                                         not stored: seeds add it as a constant threshold plane)
//   metadata  format "weakseg-cams/1", id, width, height, classes (JSON list of the L label names),
//             num_classes (foreground classes of the dataset), scales (JSON list), flip ("true"/"false"),
//             method, backbone, normalization ("max" or "minmax")
//
// The folder also holds index.json: { format, split, classes (all foreground names), scales, flip, count, ids,
// checkpoint }.
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { F, type Tensor, dispose, tensor, tidy } from '../engine/index.js';
import { loadSafetensors, readSafetensorsRecords, saveSafetensors } from '../engine/serialize/index.js';
import type { CamNormalization } from '../methods/method.js';
import { writeFileAtomic } from '../io/files.js';

export const CAM_FORMAT = 'weakseg-cams/1';

export interface CamRecord {
  id: string;
  /** Foreground class indices (0-based), one per plane. */
  labels: number[];
  width: number;
  height: number;
  /** labels.length planes of width x height, planar (plane k at k * width * height), float32 in [0, 1]. */
  cams: Float32Array;
  metadata: Record<string, string>;
}

export interface CamIndex {
  format: string;
  split: string;
  classes: string[];
  scales: number[];
  flip: boolean;
  count: number;
  ids: string[];
  checkpoint: string | null;
  method: string;
  backbone: string;
}

export function camPath(dir: string, id: string): string {
  if (id.split('/').some((p) => p === '..' || p === '')) throw new Error(`unsafe image id for a file name: ${JSON.stringify(id)}`);
  return join(dir, `${id}.safetensors`);
}

export interface WriteCamOptions {
  id: string;
  /** Foreground class names of the dataset (to name the labels). */
  classes: readonly string[];
  scales: readonly number[];
  flip: boolean;
  method: string;
  backbone: string;
  /** How the planes were normalised (default 'max'). */
  normalization?: CamNormalization;
  /** [H, W] to upscale the planes to, when they were computed at a working size (default: as they are). */
  size?: [number, number];
}

/**
 * Writes the planes of the image's labels from a numClasses x H x W CAM tensor (as multiScaleCam returns).
 */
export function writeCam(dir: string, cams: Tensor, labels: readonly number[], o: WriteCamOptions): string {
  const [H, W] = o.size ?? (cams.shape.slice(1) as [number, number]);
  const path = camPath(dir, o.id);
  mkdirSync(dirname(path), { recursive: true });
  const sorted = [...labels].sort((a, b) => a - b);
  tidy(() => {
    const idx = tensor(sorted, { dtype: 'int64' });
    let selected = sorted.length ? cams.indexSelect(0, idx.to({ device: cams.device })) : tensor(new Float32Array(0), { shape: [0, H, W] });
    // Only the image's own planes are upscaled: all classes at full size could be gigabytes.
    if (sorted.length && (selected.size(1) !== H || selected.size(2) !== W)) {
      selected = F.interpolate(selected.unsqueeze(0), { size: [H, W], mode: 'bilinear', alignCorners: false }).squeeze(0);
    }
    const planes = selected.half();
    saveSafetensors(path, new Map([['cams', planes], ['labels', idx]]), {
      format: CAM_FORMAT,
      id: o.id,
      width: String(W),
      height: String(H),
      classes: JSON.stringify(sorted.map((l) => o.classes[l] ?? `class ${l}`)),
      num_classes: String(o.classes.length),
      scales: JSON.stringify(o.scales),
      flip: String(o.flip),
      method: o.method,
      backbone: o.backbone,
      normalization: o.normalization ?? 'max',
    });
  });
  return path;
}

/** Reads one CAM file (validated against the format). */
export function readCam(path: string): CamRecord {
  const { tensors, metadata } = loadSafetensors(path);
  try {
    if (metadata.format !== CAM_FORMAT) throw new Error(`${path}: not a weakseg CAM file (format ${JSON.stringify(metadata.format)}, expected ${CAM_FORMAT})`);
    const cams = tensors.get('cams');
    const labels = tensors.get('labels');
    if (!cams || !labels) throw new Error(`${path}: CAM file lacks the 'cams' or 'labels' tensor`);
    const [L, H, W] = cams.shape;
    if (cams.ndim !== 3 || labels.ndim !== 1 || labels.size(0) !== L) {
      throw new Error(`${path}: cams [${cams.shape}] and labels [${labels.shape}] do not match (expected [L, H, W] and [L])`);
    }
    const width = Number(metadata.width);
    const height = Number(metadata.height);
    if (width !== W || height !== H) throw new Error(`${path}: metadata says ${metadata.width}x${metadata.height}, cams are ${W}x${H}`);
    const values = cams.toFloat32Array().slice();
    // A NaN would spread through the CRF and the random walk to every pixel; refuse the file instead.
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new Error(`${path}: CAM plane ${Math.floor(bad / (W * H))} holds ${values[bad]} at pixel ${bad % (W * H)}; the file is corrupt (remake it with \`weakseg cams\`)`);
    return {
      id: metadata.id ?? '',
      labels: Array.from(labels.dataSync() as BigInt64Array, Number),
      width,
      height,
      cams: values,
      metadata,
    };
  } finally {
    dispose([...tensors.values()]);
  }
}

/** Reads only the metadata (cheap). */
export function readCamMetadata(path: string): Record<string, string> {
  return readSafetensorsRecords(path).metadata;
}

export function writeCamIndex(dir: string, index: CamIndex): void {
  writeFileAtomic(join(dir, 'index.json'), `${JSON.stringify(index, null, 2)}
`);
}

export function readCamIndex(dir: string): CamIndex {
  const path = join(dir, 'index.json');
  let parsed: CamIndex;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8')) as CamIndex;
  } catch (e) {
    throw new Error(`${path}: cannot read the CAM index (${(e as Error).message}); run \`weakseg cams\` first`);
  }
  if (parsed.format !== CAM_FORMAT) throw new Error(`${path}: format ${JSON.stringify(parsed.format)}, expected ${CAM_FORMAT}`);
  return parsed;
}
