// The process group of a distributed run, joined once per process from torchrun's environment (RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT; `weakseg ... --nproc-per-node` sets them), and which rank writes the run's files.
import { type DistBackend, ProcessGroup, distEnvFrom, tensor, tidy } from '../engine/index.js';
import type { WeaksegConfig } from './config.js';

let group: ProcessGroup | null | undefined;
let solo = 0;

/** Runs a stage on this rank alone (the others wait): inside it, worldGroup() is null. */
export async function alone<T>(fn: () => Promise<T>): Promise<T> {
  solo++;
  try {
    return await fn();
  } finally {
    solo--;
  }
}

/** Rank 0's numbers, on every rank (what the pipeline decided to do next). */
export function fromMain(group: ProcessGroup, values: number[]): number[] {
  return tidy(() => {
    const t = tensor(new Float64Array(values));
    group.broadcast([t], 0);
    return Array.from(t.dataSync() as Float64Array);
  });
}

/** Rank 0, or a single process: the one that writes logs, metrics, stage records and the report. */
export function isMainProcess(): boolean {
  return (distEnvFrom()?.rank ?? 0) === 0;
}

/**
 * The world's process group, joined at the first call (blocking until every rank has); null for a single process
 * (WORLD_SIZE unset or 1). NCCL when training on CUDA, Gloo otherwise. WEAKSEG_DIST_TIMEOUT (seconds, default 300)
 * bounds rendezvous and every collective.
 */
export function worldGroup(config: WeaksegConfig): ProcessGroup | null {
  if (solo) return null;
  if (group !== undefined) return group;
  const env = distEnvFrom();
  if (!env || env.worldSize === 1) return (group = null);
  const timeout = Number(process.env.WEAKSEG_DIST_TIMEOUT ?? 300);
  if (!(timeout > 0)) throw new Error(`WEAKSEG_DIST_TIMEOUT=${process.env.WEAKSEG_DIST_TIMEOUT} is not a positive number of seconds`);
  const backend: DistBackend = config.runtime.device.startsWith('cuda') ? 'nccl' : 'gloo';
  group = ProcessGroup.init({ ...env, backend, timeoutMs: Math.round(timeout * 1000) });
  return group;
}

/** Each rank's CUDA device is its local rank's (cuda:LOCAL_RANK) when the config says plain 'cuda'. */
export function rankDevice(config: WeaksegConfig): string {
  const env = distEnvFrom();
  return env && env.worldSize > 1 && config.runtime.device === 'cuda' ? `cuda:${env.localRank}` : config.runtime.device;
}

/** The global batch split over the ranks; an error naming the field when it does not divide. */
export function perRankBatch(batchSize: number, worldSize: number, field: string): number {
  if (batchSize % worldSize !== 0) {
    throw new Error(`${field} = ${batchSize} is the global batch and must be divisible by the world size ${worldSize} ` +
      '(every rank trains on an equal share)');
  }
  return batchSize / worldSize;
}
