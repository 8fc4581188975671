// `weakseg export`: a run's networks as ONNX models, and optionally the web page that runs the segmenter.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../io/files.js';
import type { WeaksegConfig } from '../pipeline/config.js';
import { type StageHooks, logger } from '../pipeline/common.js';
import { runPaths } from '../pipeline/paths.js';
import { hasSegmenter, loadClassifier, loadSegmenter } from '../predict/models.js';
import { CamNet } from '../methods/cam.js';
import { writeWebPage } from './web-page.js';
import { classifierToOnnx, segmenterToOnnx } from './onnx.js';
import { parseModelMetadata } from './metadata.js';
import { readOnnxMetadata } from './graph.js';

export interface ExportOptions {
  /** Only 'onnx' exists. */
  format?: 'onnx';
  /** Also export the classifier with its CAM head (default: only when the run has no segmenter). */
  classifier?: boolean;
  /** Output folder of the .onnx files (default <run>/export). */
  out?: string;
  /** Write the web page (with the segmenter) to this folder. */
  web?: string;
  /** The page's longest image side (default 512). */
  webMaxSide?: number;
}

export interface ExportSummary {
  segmenter: string | null;
  classifier: string | null;
  web: string | null;
}


export async function exportRun(config: WeaksegConfig, options: ExportOptions = {}, hooks: StageHooks = {}): Promise<ExportSummary> {
  const log = logger(hooks);
  if ((options.format ?? 'onnx') !== 'onnx') throw new Error(`export: unknown format '${options.format}' (known: onnx)`);
  const out = resolve(options.out ?? join(runPaths(config).root, 'export'));
  const withSegmenter = hasSegmenter(config);
  if (!withSegmenter && options.web) {
    throw new Error(`${runPaths(config).root} has no segmentation model (seg/model.safetensors); the web page needs one: run 'weakseg seg-train' first`);
  }
  const summary: ExportSummary = { segmenter: null, classifier: null, web: null };
  mkdirSync(out, { recursive: true });
  if (withSegmenter) {
    const { net, classes, weights } = await loadSegmenter(config, hooks);
    try {
      const bytes = segmenterToOnnx(net.model, { classes, backbone: net.backbone, head: net.headName, source: weights });
      summary.segmenter = join(out, 'segmenter.onnx');
      writeFileAtomic(summary.segmenter, bytes);
      log(`segmenter ${weights} -> ${summary.segmenter} (${(bytes.length / 2 ** 20).toFixed(1)} MiB, ${classes.length + 1} labels)`);
      if (options.web) {
        summary.web = writeWebPage(options.web, bytes, parseModelMetadata(readOnnxMetadata(bytes), summary.segmenter),
          { maxSide: options.webMaxSide });
        log(`web page -> ${summary.web} (serve it with \`weakseg serve ${options.web}\`)`);
      }
    } finally {
      net.model.dispose();
    }
  }
  if (options.classifier || !withSegmenter) {
    const { net, classes, weights } = await loadClassifier(config, hooks);
    try {
      if (!(net.model instanceof CamNet)) {
        throw new Error(`export: the classifier of method '${net.name}' has no ONNX export (only 'cam' has)`);
      }
      const bytes = classifierToOnnx(net.model, { classes, backbone: net.backbone, source: weights });
      summary.classifier = join(out, 'classifier.onnx');
      writeFileAtomic(summary.classifier, bytes);
      log(`classifier ${weights} -> ${summary.classifier} (${(bytes.length / 2 ** 20).toFixed(1)} MiB, ${classes.length} classes)`);
    } finally {
      net.model.dispose();
    }
  }
  return summary;
}
