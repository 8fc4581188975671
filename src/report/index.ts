export * from './html.js';
export * from './charts.js';
export * from './gallery.js';
export * from './render.js';
