// Data-parallel training over a process group (torch's DistributedDataParallel, as trainer hooks): every rank holds
// the same model, trains on its shard of each global batch (the loader's `shard` option), and after backward the
// gradients are averaged across ranks in buckets, so every rank takes the same step as one process with the global
// batch would. Rank 0's parameters and buffers are broadcast at the start (a resumed run included); rank 0 alone
// writes files (the trainer and the stages ask `isMain`).
import { type ProcessGroup, type Tensor, noGrad, tensor, zerosLike } from '../engine/index.js';
import type { Module } from '../nn/index.js';
import type { StepContext, StepHooks, Trainable } from './contract.js';

export interface DataParallelOptions {
  /** Gradients are reduced in buffers of up to this many bytes (default 25 MiB, as DDP). */
  bucketBytes?: number;
}

export class DataParallel implements StepHooks {
  readonly #params: Tensor[];

  constructor(readonly group: ProcessGroup, method: Trainable, private readonly options: DataParallelOptions = {}) {
    this.#params = method.paramGroups().flatMap((g) => g.params);
  }

  get rank(): number { return this.group.rank; }
  get worldSize(): number { return this.group.worldSize; }
  /** Rank 0: the one that writes checkpoints, logs and metrics. */
  get isMain(): boolean { return this.group.rank === 0; }

  /**
   * Makes every rank start from rank 0's model (parameters and buffers) and checks that all resumed at the same
   * step: each rank reads the checkpoint itself, so the run directory must be on storage they all see.
   */
  start(model: Module, step: number): void {
    const steps = this.group.allGather(tensor(new Float64Array([step]))).map((t) => t.item());
    const differ = steps.findIndex((s) => s !== steps[0]);
    if (differ >= 0) {
      throw new Error(`rank ${differ} resumes at step ${steps[differ]}, rank 0 at step ${steps[0]}: every rank must see ` +
        "the same checkpoints (put the run directory on storage all machines share)");
    }
    const state = [...model.namedParameters(), ...model.namedBuffers()].map(([, t]) => t);
    noGrad(() => this.group.broadcast(state, 0, this.bucket()));
  }

  /**
   * Averages the gradients across ranks. A parameter without a gradient on this rank (unused by its loss) takes
   * zeros, so that every rank reduces the same tensors.
   */
  afterBackward(_context: StepContext): void {
    const grads = this.#params.map((p) => {
      let g = p.grad;
      if (!g) {
        g = zerosLike(p);
        p.grad = g;
      }
      return g;
    });
    this.group.allReduce(grads, 'avg', this.bucket());
  }

  /** The mean over ranks of a few numbers (the step's loss and its parts, for the logs). */
  mean(values: number[]): number[] {
    if (this.worldSize === 1 || values.length === 0) return values;
    const t = tensor(new Float64Array(values));
    this.group.allReduce([t], 'avg');
    return Array.from(t.dataSync() as Float64Array);
  }

  private bucket() {
    return this.options.bucketBytes ? { bucketBytes: this.options.bucketBytes } : {};
  }
}
