// Process groups over c10d (native/dist.cc): Gloo on CPU, NCCL on CUDA where the engine was built with it.
// Rendezvous is c10d's TCPStore at MASTER_ADDR:MASTER_PORT, hosted by rank 0, as with torch.distributed's env://.
import { createServer } from 'node:net';
import { N } from './native.js';
import type { Tensor } from './tensor.js';
import { wrap, wrapAll } from './tensor.js';

export type DistBackend = 'gloo' | 'nccl';
export type ReduceOp = 'sum' | 'avg' | 'max' | 'min';

/** The backends this build of the engine has (Gloo needs libgloo-dev at build time; NCCL a CUDA libtorch). */
export function distBackends(): DistBackend[] {
  return N.distBackends();
}

export interface ProcessGroupOptions {
  rank: number;
  worldSize: number;
  /** Rank 0's address (it hosts the store) and port. */
  masterAddr: string;
  masterPort: number;
  /** Default 'gloo'. */
  backend?: DistBackend;
  /**
   * How long rendezvous and each collective may wait, in ms (default 300 000). A lost rank is usually reported at
   * once (its sockets close); the timeout bounds the rest (a hung peer, a rank that never started).
   */
  timeoutMs?: number;
}

/** torchrun's environment: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT. */
export interface DistEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
}

/**
 * Reads torchrun's variables; null when WORLD_SIZE is unset (a single process). Every malformed or missing
 * variable is an error naming it.
 */
export function distEnvFrom(env: NodeJS.ProcessEnv = process.env): DistEnv | null {
  if (env.WORLD_SIZE === undefined || env.WORLD_SIZE === '') return null;
  const int = (name: string, min: number, fallback?: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') {
      if (fallback !== undefined) return fallback;
      throw new Error(`${name} is not set (WORLD_SIZE=${env.WORLD_SIZE} asks for a distributed run; set RANK, WORLD_SIZE, ` +
        'MASTER_ADDR and MASTER_PORT, as torchrun does)');
    }
    const v = Number(raw);
    if (!Number.isInteger(v) || v < min) throw new Error(`${name}=${raw} is not an integer >= ${min}`);
    return v;
  };
  const worldSize = int('WORLD_SIZE', 1);
  const rank = int('RANK', 0);
  if (rank >= worldSize) throw new Error(`RANK=${rank} is outside 0..${worldSize - 1} (WORLD_SIZE=${worldSize})`);
  const masterPort = int('MASTER_PORT', 1, worldSize === 1 ? 29500 : undefined);
  if (masterPort > 65535) throw new Error(`MASTER_PORT=${masterPort} is not a port (1..65535)`);
  const masterAddr = env.MASTER_ADDR || (worldSize === 1 ? '127.0.0.1' : '');
  if (!masterAddr) throw new Error('MASTER_ADDR is not set (the address of rank 0)');
  return {
    rank, worldSize, masterAddr, masterPort,
    localRank: int('LOCAL_RANK', 0, rank),
    localWorldSize: int('LOCAL_WORLD_SIZE', 1, worldSize),
  };
}

/** A loopback port nothing listens on right now (the OS picks it): a rendezvous port for a run on one machine. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface CollectiveOptions {
  /** Tensors are flattened into buffers of up to this many bytes, reduced together (default 25 MiB, as DDP). */
  bucketBytes?: number;
  /** Overrides the group's timeout for this call. */
  timeoutMs?: number;
}

const DEFAULT_BUCKET = 25 * 2 ** 20;

/**
 * A group of processes that run the same collectives in the same order. Each call blocks until every rank has
 * joined it; a failure (a lost rank, a timeout) throws an Error naming the op, this rank and, where it can tell,
 * the rank that was lost.
 */
export class ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: DistBackend;
  #id: number | null;

  private constructor(id: number, o: ProcessGroupOptions) {
    this.#id = id;
    this.rank = o.rank;
    this.worldSize = o.worldSize;
    this.backend = o.backend ?? 'gloo';
  }

  /** Joins the group: blocks until all worldSize ranks have arrived, or throws after the timeout. */
  static init(o: ProcessGroupOptions): ProcessGroup {
    const id = N.distInit(o.backend ?? 'gloo', o.masterAddr, o.masterPort, o.rank, o.worldSize, o.timeoutMs ?? 300_000);
    return new ProcessGroup(id, o);
  }

  private get id(): number {
    if (this.#id === null) throw new Error(`process group (rank ${this.rank} of ${this.worldSize}) was destroyed`);
    return this.#id;
  }

  /** Reduces the tensors in place across ranks (every rank ends with the result). */
  allReduce(tensors: Tensor[], op: ReduceOp = 'sum', o: CollectiveOptions = {}): void {
    if (tensors.length === 0) return;
    N.distAllreduce(this.id, tensors.map((t) => t.handle), op, o.bucketBytes ?? DEFAULT_BUCKET, o.timeoutMs ?? null);
  }

  /**
   * The sum of `t` over the ranks as a new tensor that autograd records: its backward sums the incoming gradients
   * over the ranks (torch.distributed.nn.functional.all_reduce). For quantities every rank's loss depends on, such
   * as SyncBatchNorm's statistics; every rank must run the same such ops, forward and backward, in the same order.
   */
  allReduceWithGrad(t: Tensor, timeoutMs?: number): Tensor {
    return wrap(N.distAllreduceSumGrad(this.id, t.handle, timeoutMs ?? null));
  }

  /** Overwrites every rank's tensors with root's, in place (parameters included: no autograd history is made). */
  broadcast(tensors: Tensor[], root = 0, o: CollectiveOptions = {}): void {
    if (tensors.length === 0) return;
    N.distBroadcast(this.id, tensors.map((t) => t.handle), root, o.bucketBytes ?? DEFAULT_BUCKET, o.timeoutMs ?? null);
  }

  /** Every rank's tensor (same shape and dtype on each), in rank order. */
  allGather(t: Tensor, timeoutMs?: number): Tensor[] {
    return wrapAll(N.distAllgather(this.id, t.handle, timeoutMs ?? null));
  }

  barrier(timeoutMs?: number): void {
    N.distBarrier(this.id, timeoutMs ?? null);
  }

  /** Leaves the group (closes its connections); later calls throw. */
  destroy(): void {
    if (this.#id === null) return;
    N.distDestroy(this.#id);
    this.#id = null;
  }
}
