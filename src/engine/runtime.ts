// Threads, seeds, devices and memory statistics.
import { N, buildInfo } from './native.js';

export function setNumThreads(n: number): void { N.setNumThreads(n); }
export function getNumThreads(): number { return N.getNumThreads(); }
/** Seeds libtorch's CPU (and CUDA) generators. */
export function manualSeed(seed: number): void { N.manualSeed(seed); }
/**
 * libtorch's deterministic mode (torch.use_deterministic_algorithms): ops with a nondeterministic kernel use a
 * deterministic one, and ops that have none throw ("... does not have a deterministic implementation"), or only
 * warn with `warnOnly`. Returns the previous setting. On CUDA, cuBLAS also needs CUBLAS_WORKSPACE_CONFIG set
 * before its first use; it is set here (':4096:8') unless already given.
 */
export function setDeterministic(on: boolean, warnOnly = false): boolean {
  const previous = N.deterministicAlgorithms() as boolean;
  if (on && !process.env.CUBLAS_WORKSPACE_CONFIG) process.env.CUBLAS_WORKSPACE_CONFIG = ':4096:8';
  N.setDeterministicAlgorithms(on, warnOnly);
  return previous;
}
export function isDeterministic(): boolean { return N.deterministicAlgorithms(); }

export function cudaAvailable(): boolean { return N.cudaAvailable(); }
export function cudaDeviceCount(): number { return N.cudaDeviceCount(); }
/** Waits for queued CUDA work (no-op without CUDA); time GPU code only after this. */
export function synchronize(): void { N.cudaSynchronize(); }

export interface MemoryInfo {
  /** Native tensor handles not yet released. */
  liveTensors: number;
  /** The caching CPU allocator: bytes handed out, bytes held for reuse, cache hits and misses. */
  allocator: { inUseBytes: number; cachedBytes: number; cacheLimitBytes: number; hits: number; misses: number; active: boolean };
}

export function memory(): MemoryInfo {
  return { liveTensors: N.liveHandles(), allocator: N.allocatorStats() };
}

/** Switches the caching CPU allocator on (the default) or back to libtorch's malloc. */
export function useCachingAllocator(on: boolean): void { N.useCachingAllocator(on); }
export function setAllocatorCacheLimit(bytes: number): void { N.setAllocatorCacheLimit(bytes); }
/** Returns cached free blocks to the system. */
export function emptyCache(): void { N.emptyCache(); }

export function engineInfo(): {
  torchVersion: string; cxx11Abi: boolean; cudaAvailable: boolean; cudaDeviceCount: number; mkldnn: boolean;
  threads: number; libtorch: string | null;
} {
  const c = N.config();
  return {
    torchVersion: c.torchVersion, cxx11Abi: c.cxx11Abi, cudaAvailable: c.cudaAvailable,
    cudaDeviceCount: c.cudaDeviceCount, mkldnn: c.mkldnn, threads: N.getNumThreads(),
    libtorch: buildInfo()?.source ?? null,
  };
}
