// Loads the native engine and applies the runtime defaults libtorch lacks here:
// all cores (libtorch defaults to 1 thread on these machines) and the caching CPU allocator.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The opaque handle of one libtorch tensor. */
export interface NativeTensor {
  dispose(): void;
  readonly isDisposed: boolean;
}

// The binding is untyped by nature; src/engine/*.ts are its only callers and give every op a typed signature.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type NativeFn = (...args: any[]) => any;

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function load(): Record<string, NativeFn> {
  const candidates = [join(packageRoot, 'build', 'Release', 'weakseg_native.node')];
  const path = candidates.find((p) => existsSync(p));
  if (!path) {
    throw new Error(
      `weakseg: the native engine is not built (looked for ${candidates.join(', ')}). ` +
        'Run `npm run build:native` (it needs libtorch: apt-get install libtorch-dev libopenblas0-pthread).',
    );
  }
  return createRequire(import.meta.url)(path) as Record<string, NativeFn>;
}

/**
 * Loads the binding and applies the runtime defaults libtorch lacks here: all cores (libtorch defaults to 1 thread
 * on these machines) and the caching CPU allocator.
 */
function start(): Record<string, NativeFn> {
  const n = load();
  const envThreads = Number(process.env.WEAKSEG_NUM_THREADS);
  n.setNumThreads!(Number.isInteger(envThreads) && envThreads > 0 ? envThreads : availableParallelism());
  n.useCachingAllocator!(process.env.WEAKSEG_CPU_ALLOCATOR !== 'malloc');
  // The cache must hold a whole training step's activations, or every step faults fresh pages in again
  // (MobileNetV2 at batch 16 and output stride 8 frees ~4 GiB per step). Half the machine's memory by default.
  const cacheMb = Number(process.env.WEAKSEG_CPU_CACHE_MB);
  n.setAllocatorCacheLimit!(Number.isFinite(cacheMb) && cacheMb >= 0 ? cacheMb * 2 ** 20 : Math.floor(totalmem() / 2));
  return n;
}

let binding: Record<string, NativeFn> | null = null;

/**
 * The binding, loaded at its first use rather than at import: loading libtorch takes seconds, and code that only
 * reads settings (the CLI's --help, config validation, `weakseg methods`) imports modules that import the engine.
 */
export const N: Record<string, NativeFn> = new Proxy({} as Record<string, NativeFn>, {
  get: (_target, key: string) => (binding ??= start())[key],
});

/** Which libtorch the engine was built against (written by scripts/build-native.mjs). */
export function buildInfo(): { source: string; inc: string; lib: string; abi: number; cuda: boolean } | null {
  const p = join(packageRoot, 'build', 'weakseg-libtorch.json');
  return existsSync(p) ? JSON.parse(readFileSync(p, 'utf8')) : null;
}

