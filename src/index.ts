// weakseg's public API. One namespace per layer, as the folders are laid out, so that names never collide
// (e.g. data.IMAGENET_NORM and backbones.IMAGENET_NORM) and an import says where a thing lives:
//
//   import { pipeline } from 'weakseg';
//   const config = pipeline.resolveConfig({ runDir: 'runs/cam', data: { root: 'VOC2012' } });
//   await pipeline.runPipeline(config);
//
// The engine's everyday names (Tensor, tensor, F, tidy, ...) are also exported at the top level.
export * as engine from './engine/index.js';
export * as nn from './nn/index.js';
export * as backbones from './backbones/index.js';
export * as methods from './methods/index.js';
export * as data from './data/index.js';
export * as cams from './cams/index.js';
export * as refine from './refine/index.js';
export * as segmentation from './segmentation/index.js';
export * as evaluation from './eval/index.js';
export * as train from './train/index.js';
export * as report from './report/index.js';
export * as pipeline from './pipeline/index.js';
export * as predict from './predict/index.js';
export * as onnx from './export/index.js';
export * as web from './web/index.js';
export { F, Tensor, dispose, keep, noGrad, tensor, tidy, zeros, ones } from './engine/index.js';
