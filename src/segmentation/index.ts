export * from './deeplab.js';
export * from './infer.js';
