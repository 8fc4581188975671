export * from './page.js';
export * from './serve.js';
