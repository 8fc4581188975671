export * from '../export/web-page.js';
export * from './serve.js';
