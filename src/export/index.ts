export * from './graph.js';
export * from './metadata.js';
export * from './modules.js';
export * from './onnx.js';
export * from './run.js';
