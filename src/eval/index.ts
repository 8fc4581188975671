export * from './miou.js';
export * from './threshold.js';
