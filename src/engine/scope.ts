// Deterministic memory release in the style of tfjs-core's tidy(): tensors created inside a scope are
// freed when it ends, except those it returns (found anywhere in arrays, plain objects or Maps) and those
// passed to keep(). The JS garbage collector never runs in time for a synchronous training loop
// (engine-notes.md 5.3.6), so this, not finalizers, is what keeps memory flat.
import type { Tensor } from './tensor.js';

interface Disposable {
  dispose(): void;
}

const scopes: Set<Disposable>[] = [];
const kept = new WeakSet<Disposable>();

/** Called for every new tensor wrapper. */
export function track(t: Disposable): void {
  const top = scopes[scopes.length - 1];
  if (top) top.add(t);
}

/** Exempts tensors from every enclosing scope: they live until dispose(). */
export function keep<T extends Tensor>(t: T): T {
  kept.add(t);
  for (const s of scopes) s.delete(t);
  return t;
}

function collect(value: unknown, out: Set<unknown>, seen: Set<unknown>): void {
  if (value === null || typeof value !== 'object' || seen.has(value)) return;
  seen.add(value);
  if (typeof (value as Disposable).dispose === 'function' && 'shape' in (value as object)) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, out, seen);
  } else if (value instanceof Map) {
    for (const v of value.values()) collect(v, out, seen);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, out, seen);
  }
}

/**
 * Runs fn and frees every tensor it created that is not part of its result.
 * The result's tensors move to the enclosing scope, if any. fn must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Disposable>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw err;
  }
  scopes.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new TypeError('tidy(fn): fn returned a Promise; tidy scopes must be synchronous');
  }
  const returned = new Set<unknown>();
  collect(result, returned, new Set());
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (returned.has(t)) {
      if (parent && !kept.has(t)) parent.add(t);
    } else if (!kept.has(t)) {
      t.dispose();
    }
  }
  return result;
}

/** Disposes tensors, arrays of tensors and the tensors in plain objects or Maps. */
export function dispose(value: unknown): void {
  const found = new Set<unknown>();
  collect(value, found, new Set());
  for (const t of found) (t as Disposable).dispose();
}
