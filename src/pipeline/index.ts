export * from './config.js';
export * from './common.js';
export * from './train.js';
export * from './cams.js';
export * from './evaluate.js';
export * from './report.js';
export * from './segment.js';
export * from './refine.js';
