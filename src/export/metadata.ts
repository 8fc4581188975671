// What an exported model says about itself (ONNX metadata_props, all strings): what it is, its classes, and the
// preprocessing its input needs, so that any runtime (the web page, a user's Python) can feed it correctly.
import type { Backbone } from '../backbones/backbone.js';

export const ONNX_FORMAT = 'weakseg-onnx/1';

export interface ModelDescription {
  /** Foreground class names; the segmenter's label i > 0 is classes[i - 1]. */
  classes: readonly string[];
  backbone: Backbone;
  head?: string;
  /** Where the weights came from. */
  source?: string;
}

/** Parsed form of the metadata (see modelMetadata). */
export interface OnnxModelInfo {
  format: string;
  kind: 'segmenter' | 'classifier';
  classes: string[];
  labels: string[];
  mean: [number, number, number];
  std: [number, number, number];
  outputStride: number;
}

export function modelMetadata(d: ModelDescription & { kind: 'segmenter' | 'classifier' }): Record<string, string> {
  const norm = d.backbone.inputNorm;
  return {
    format: ONNX_FORMAT,
    kind: d.kind,
    classes: JSON.stringify(d.classes),
    labels: JSON.stringify(d.kind === 'segmenter' ? ['background', ...d.classes] : d.classes),
    input: 'image: float32 N x 3 x H x W, RGB, (pixel / 255 - mean) / std per channel',
    input_range: '[0, 1]',
    input_mean: JSON.stringify(norm.mean),
    input_std: JSON.stringify(norm.std),
    backbone: d.backbone.name,
    output_stride: String(d.backbone.outputStride),
    ...(d.head ? { head: d.head } : {}),
    ...(d.source ? { source: d.source } : {}),
  };
}

/** Reads and checks the metadata written by modelMetadata; a missing or malformed field is named. */
export function parseModelMetadata(meta: Record<string, string>, source: string): OnnxModelInfo {
  if (meta.format !== ONNX_FORMAT) throw new Error(`${source}: not a weakseg ONNX model (format '${meta.format ?? ''}', expected ${ONNX_FORMAT})`);
  const json = <T>(key: string): T => {
    try {
      return JSON.parse(meta[key] ?? '') as T;
    } catch {
      throw new Error(`${source}: metadata field '${key}' is missing or not JSON`);
    }
  };
  const kind = meta.kind;
  if (kind !== 'segmenter' && kind !== 'classifier') throw new Error(`${source}: metadata field 'kind' is '${kind ?? ''}'`);
  return {
    format: meta.format, kind, classes: json('classes'), labels: json('labels'),
    mean: json('input_mean'), std: json('input_std'), outputStride: Number(meta.output_stride),
  };
}
