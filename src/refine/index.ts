// Refinement of CAMs into pseudo-masks: dense CRF, AffinityNet labels and training, the random walk, IRN, saliency rules.
export * from './crf.js';
export * from './crf-presets.js';
export * from './affinity-labels.js';
export * from './affinity-net.js';
export * from './random-walk.js';
export * from './irn.js';
export * from './irn-net.js';
export * from './saliency.js';
