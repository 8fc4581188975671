export * from './contract.js';
export * from './trainer.js';
export * from './checkpoint.js';
export * from './reporter.js';
