// The standard layers. Parameters are read through getters so that load/move (which may replace
// tensors) never leaves a layer holding a stale one.
import { F, type ProcessGroup, type Tensor, cat, empty, noGrad, ones, tensor, tidy, zeros } from '../engine/index.js';
import { kaimingUniform_, uniform_, fans } from './init.js';
import { Module } from './module.js';

type Pair = number | [number, number];

/** A module with a single-tensor forward. */
export abstract class Layer extends Module {
  abstract forward(x: Tensor): Tensor;
}

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
}

export class Conv2d extends Layer {
  readonly opts: Required<Omit<Conv2dOptions, 'bias'>>;
  readonly hasBias: boolean;

  constructor(readonly inChannels: number, readonly outChannels: number, readonly kernelSize: Pair, o: Conv2dOptions = {}) {
    super();
    this.opts = { stride: o.stride ?? 1, padding: o.padding ?? 0, dilation: o.dilation ?? 1, groups: o.groups ?? 1 };
    const [kh, kw] = typeof kernelSize === 'number' ? [kernelSize, kernelSize] : kernelSize;
    if (inChannels % this.opts.groups || outChannels % this.opts.groups) {
      throw new RangeError(`Conv2d: channels ${inChannels} -> ${outChannels} not divisible by groups ${this.opts.groups}`);
    }
    const w = this.registerParameter('weight', empty([outChannels, inChannels / this.opts.groups, kh, kw]));
    // torch's default: kaiming_uniform(a=sqrt(5)), bias uniform(+-1/sqrt(fan_in)).
    kaimingUniform_(w, { a: Math.sqrt(5) });
    this.hasBias = o.bias ?? true;
    if (this.hasBias) {
      const bound = 1 / Math.sqrt(fans(w)[0]);
      uniform_(this.registerParameter('bias', empty([outChannels])), -bound, bound);
    }
  }

  get weight(): Tensor { return this.param('weight'); }
  get bias(): Tensor | null { return this.hasBias ? this.param('bias') : null; }

  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias, this.opts);
  }
}

export class Linear extends Layer {
  readonly hasBias: boolean;

  constructor(readonly inFeatures: number, readonly outFeatures: number, o: { bias?: boolean } = {}) {
    super();
    const w = this.registerParameter('weight', empty([outFeatures, inFeatures]));
    kaimingUniform_(w, { a: Math.sqrt(5) });
    this.hasBias = o.bias ?? true;
    if (this.hasBias) {
      const bound = 1 / Math.sqrt(inFeatures);
      uniform_(this.registerParameter('bias', empty([outFeatures])), -bound, bound);
    }
  }

  get weight(): Tensor { return this.param('weight'); }
  get bias(): Tensor | null { return this.hasBias ? this.param('bias') : null; }

  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }
}

export interface BatchNormOptions {
  eps?: number;
  momentum?: number;
  affine?: boolean;
  /** Always normalise with the running statistics and never update them or train gamma/beta (FixedBatchNorm). */
  frozen?: boolean;
}

export class BatchNorm2d extends Layer {
  readonly eps: number;
  readonly momentum: number;
  readonly affine: boolean;

  constructor(readonly numFeatures: number, o: BatchNormOptions = {}) {
    super();
    this.eps = o.eps ?? 1e-5;
    this.momentum = o.momentum ?? 0.1;
    this.affine = o.affine ?? true;
    if (this.affine) {
      this.registerParameter('weight', ones([numFeatures]));
      this.registerParameter('bias', zeros([numFeatures]));
    }
    this.registerBuffer('running_mean', zeros([numFeatures]));
    this.registerBuffer('running_var', ones([numFeatures]));
    this.registerBuffer('num_batches_tracked', tensor(0, { dtype: 'int64' }));
    if (o.frozen) this.setFrozen(true);
  }

  /**
   * With a process group of several ranks, training normalises with the statistics of the whole global batch, over
   * all ranks (torch.nn.SyncBatchNorm; see syncBatchNorm below). null: this process's batch alone.
   */
  syncGroup: ProcessGroup | null = null;

  forward(x: Tensor): Tensor {
    const training = this.training && !this.frozen;
    if (training) this.buffer('num_batches_tracked').add_(1);
    if (training && this.syncGroup && this.syncGroup.worldSize > 1) return this.#synchronised(x, this.syncGroup);
    return F.batchNorm(x, this.buffer('running_mean'), this.buffer('running_var'), {
      weight: this.affine ? this.param('weight') : null,
      bias: this.affine ? this.param('bias') : null,
      training,
      momentum: this.momentum,
      eps: this.eps,
    });
  }

  /**
   * Batch statistics over every rank's batch. Two sums over the ranks, each recorded by autograd (its backward sums
   * the gradients over the ranks, which is what makes each rank's gradient include the other ranks' losses through
   * the shared statistics): the channel sums with the pixel count, then the squared deviations from the global
   * mean. Two passes rather than sum and sum of squares in one: E[x^2] - E[x]^2 cancels badly in float32 when the
   * mean is large next to the spread. The ranks' batches may differ in size (a last partial batch).
   */
  #synchronised(x: Tensor, group: ProcessGroup): Tensor {
    if (x.ndim !== 4) throw new RangeError(`BatchNorm2d: expected N x C x H x W input, got [${x.shape}]`);
    const C = this.numFeatures;
    return tidy(() => {
      const dims = [0, 2, 3];
      const count = x.size(0) * x.size(2) * x.size(3);
      const sums = group.allReduceWithGrad(cat([x.sum(dims), tensor(new Float32Array([count])).to({ dtype: x.dtype, device: x.device })]));
      const n = sums.narrow(0, C, 1).detach();
      const mean = sums.narrow(0, 0, C).div(n);
      const centred = x.sub(mean.view([1, C, 1, 1]));
      const variance = group.allReduceWithGrad(centred.square().sum(dims)).div(n);
      noGrad(() => {
        // torch's update: the running variance takes the unbiased estimate.
        const m = this.momentum;
        this.buffer('running_mean').mul_(1 - m).add_(mean.mul(m));
        this.buffer('running_var').mul_(1 - m).add_(variance.mul(n.div(n.sub(1).clampMin(1))).mul(m));
      });
      let y = centred.mul(variance.add(this.eps).rsqrt().view([1, C, 1, 1]));
      if (this.affine) y = y.mul(this.param('weight').view([1, C, 1, 1])).add(this.param('bias').view([1, C, 1, 1]));
      return y;
    });
  }
}

/**
 * Makes every BatchNorm2d under `module` normalise over the group's global batch in training
 * (torch.nn.SyncBatchNorm.convert_sync_batchnorm); null undoes it. Frozen layers use their running statistics
 * either way.
 */
export function syncBatchNorm(module: Module, group: ProcessGroup | null): void {
  for (const [, sub] of module.namedModules()) if (sub instanceof BatchNorm2d) sub.syncGroup = group;
}

/** GroupNorm (torch.nn.GroupNorm): per-sample statistics over groups of channels, affine per channel. */
export class GroupNorm extends Layer {
  constructor(readonly numGroups: number, readonly numChannels: number, readonly eps = 1e-5) {
    super();
    if (!Number.isInteger(numGroups) || numGroups < 1 || numChannels % numGroups) {
      throw new RangeError(`GroupNorm: ${numChannels} channels do not split into ${numGroups} groups`);
    }
    this.registerParameter('weight', ones([numChannels]));
    this.registerParameter('bias', zeros([numChannels]));
  }

  forward(x: Tensor): Tensor {
    return F.groupNorm(x, this.numGroups, this.param('weight'), this.param('bias'), this.eps);
  }
}

export class Dropout extends Layer {
  constructor(readonly p = 0.5) { super(); }
  forward(x: Tensor): Tensor { return F.dropout(x, this.p, this.training); }
}

export class Dropout2d extends Layer {
  constructor(readonly p = 0.5) { super(); }
  forward(x: Tensor): Tensor { return F.dropout2d(x, this.p, this.training); }
}

export class ReLU extends Layer {
  forward(x: Tensor): Tensor { return x.relu(); }
}

export class ReLU6 extends Layer {
  forward(x: Tensor): Tensor { return F.relu6(x); }
}

export class LeakyReLU extends Layer {
  constructor(readonly slope = 0.01) { super(); }
  forward(x: Tensor): Tensor { return F.leakyRelu(x, this.slope); }
}

export class Sigmoid extends Layer {
  forward(x: Tensor): Tensor { return x.sigmoid(); }
}

export class Identity extends Layer {
  forward(x: Tensor): Tensor { return x; }
}

export class MaxPool2d extends Layer {
  constructor(readonly kernelSize: Pair, readonly opts: F.PoolOptions = {}) { super(); }
  forward(x: Tensor): Tensor { return F.maxPool2d(x, this.kernelSize, this.opts); }
}

export class AdaptiveAvgPool2d extends Layer {
  constructor(readonly outputSize: Pair) { super(); }
  forward(x: Tensor): Tensor { return F.adaptiveAvgPool2d(x, this.outputSize); }
}

/** Children named "0", "1", ... as in torch.nn.Sequential, so checkpoint keys match. */
export class Sequential extends Layer {
  readonly layers: Layer[];

  constructor(...layers: Layer[]) {
    super();
    this.layers = layers;
    layers.forEach((l, i) => this.registerModule(String(i), l));
  }

  at(i: number): Layer {
    const l = this.layers[i];
    if (!l) throw new RangeError(`Sequential has ${this.layers.length} layers, no index ${i}`);
    return l;
  }

  /** Runs the layers in order, freeing intermediate outputs as it goes. */
  forward(x: Tensor): Tensor {
    let cur = x;
    for (const l of this.layers) {
      const next = l.forward(cur);
      if (cur !== x && next !== cur) cur.dispose();
      cur = next;
    }
    return cur;
  }
}
