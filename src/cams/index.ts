export * from './infer.js';
export * from './format.js';
export * from './seeds.js';
export * from './localize.js';
