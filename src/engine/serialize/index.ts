// Checkpoint serialization: safetensors read/write and torch.save (.pth) reading.
// Record-level modules (safetensors, pth, zip, pickle, records) do not load the engine; `tensors` does.

export * from './records.js';
export * from './safetensors.js';
export * from './pth.js';
export { ZipReader, type ZipEntry } from './zip.js';
export { unpickle, PyCallable, isTuple, type PickleOptions, type GlobalResolver } from './pickle.js';
export * from './tensors.js';
