// The SyncBatchNorm case shared by its worker and its test: LargeFOV's head (two BatchNorm layers between
// convolutions; dropout off) on inputs whose mean is far from 0, and a loss that weights every output differently.
// `steps` forward/backward passes on the rows [from, from + count) of the global batch, without optimizer steps, so
// that the running statistics are updated twice.
import { type ProcessGroup, type Tensor, manualSeed, randn } from '../../src/engine/index.js';
import { syncBatchNorm } from '../../src/nn/index.js';
import { LargeFovHead } from '../../src/segmentation/deeplab.js';

export const GLOBAL_BATCH = 6;

export interface SyncBnResult {
  /** Outputs of every pass on the rows, flattened. */
  outputs: number[][];
  /** d loss / d input of the rows, summed over the passes. */
  inputGrad: number[];
  /** Parameter gradients of this process's loss (sum over the rows' outputs), by name. */
  grads: Record<string, number[]>;
  /** Running statistics of both BatchNorm layers after the passes. */
  buffers: Record<string, number[]>;
}

export function syncBnCase(from: number, count: number, group: ProcessGroup | null, steps = 2): SyncBnResult {
  manualSeed(11);
  const head = new LargeFovHead(3, 3, { channels: 5, rate: 1, dropout: 0 });
  const x = randn([GLOBAL_BATCH, 3, 7, 6]).mul(2).add(5);
  const weights = randn([GLOBAL_BATCH, 3, 7, 6]);
  syncBatchNorm(head, group);
  head.train();
  const rows = (t: Tensor) => t.narrow(0, from, count);
  const input = rows(x).detach().requiresGrad_();
  const outputs: number[][] = [];
  for (let s = 0; s < steps; s++) {
    const y = head.forward(input);
    outputs.push([...y.toFloat32Array()]);
    y.mul(rows(weights)).sum().backward();
  }
  const grads: Record<string, number[]> = {};
  for (const [name, p] of head.namedParameters()) grads[name] = [...p.grad!.toFloat32Array()];
  const buffers: Record<string, number[]> = {};
  for (const [name, b] of head.namedBuffers()) if (/running/.test(name)) buffers[name] = [...b.toFloat32Array()];
  return { outputs, inputGrad: [...input.grad!.toFloat32Array()], grads, buffers };
}
