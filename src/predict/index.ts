export * from './inputs.js';
export * from './models.js';
export * from './predict.js';
