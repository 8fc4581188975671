export * from './module.js';
export * from './layers.js';
export * as init from './init.js';
export * from './optim/optimizer.js';
export * from './optim/schedules.js';
export * from './test-time.js';
export * from './param-groups.js';
