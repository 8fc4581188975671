export * from './method.js';
export * from './blocks.js';
export * from './cam.js';
export * from './seam.js';
