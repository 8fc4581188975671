// Optimizers over parameter groups. Each group has its own lr and weight decay (the methods train new
// layers at 10x / 20x the backbone's rate); the update itself runs natively, in place, one call per group.
import { N } from '../../engine/native.js';
import { type Tensor, keep, zerosLike } from '../../engine/index.js';

export interface ParamGroupSpec {
  params: Tensor[];
  /** Defaults to the optimizer's lr; scaled by `lrMult` when given. */
  lr?: number;
  lrMult?: number;
  weightDecay?: number;
  name?: string;
}

export interface ParamGroup {
  params: Tensor[];
  /** The rate used by the next step (schedules rewrite it). */
  lr: number;
  /** The rate before any schedule: schedules multiply this. */
  initialLr: number;
  weightDecay: number;
  name: string;
}

export abstract class Optimizer {
  readonly groups: ParamGroup[];
  stepCount = 0;

  constructor(params: Tensor[] | ParamGroupSpec[], defaults: { lr: number; weightDecay?: number }) {
    if (!(defaults.lr >= 0)) throw new RangeError(`learning rate must be >= 0, got ${defaults.lr}`);
    const specs: ParamGroupSpec[] = params.length > 0 && 'params' in (params[0] as object)
      ? (params as ParamGroupSpec[])
      : [{ params: params as Tensor[] }];
    const seen = new Set<Tensor>();
    this.groups = specs.map((g, i) => {
      for (const p of g.params) {
        if (seen.has(p)) throw new Error(`a parameter appears in more than one group (group ${g.name ?? i})`);
        seen.add(p);
      }
      const lr = (g.lr ?? defaults.lr) * (g.lrMult ?? 1);
      return { params: g.params, lr, initialLr: lr, weightDecay: g.weightDecay ?? defaults.weightDecay ?? 0, name: g.name ?? String(i) };
    });
  }

  /** Applies one update to every parameter with a gradient. */
  step(): void {
    this.stepCount++;
    this.groups.forEach((g, i) => this.updateGroup(g, i));
  }

  protected abstract updateGroup(group: ParamGroup, index: number): void;

  /** Clears gradients (set to none, as torch does by default since 2.0). */
  zeroGrad(setToNone = true): void {
    for (const g of this.groups) N.zeroGrad(g.params.map((p) => p.handle), setToNone);
  }

  /** Lazily creates one zero state tensor per parameter. */
  protected stateFor(store: Map<number, Tensor[]>, index: number, group: ParamGroup): Tensor[] {
    let s = store.get(index);
    if (!s) {
      s = group.params.map((p) => keep(zerosLike(p)));
      store.set(index, s);
    }
    return s;
  }

  /** Frees optimizer state. */
  dispose(): void {}
}

export class SGD extends Optimizer {
  readonly momentum: number;
  readonly dampening: number;
  readonly nesterov: boolean;
  readonly #buffers = new Map<number, Tensor[]>();

  constructor(
    params: Tensor[] | ParamGroupSpec[],
    o: { lr: number; momentum?: number; dampening?: number; weightDecay?: number; nesterov?: boolean },
  ) {
    super(params, o);
    this.momentum = o.momentum ?? 0;
    this.dampening = o.dampening ?? 0;
    this.nesterov = o.nesterov ?? false;
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new RangeError('nesterov momentum needs momentum > 0 and dampening 0');
    }
  }

  protected updateGroup(g: ParamGroup, i: number): void {
    const first = !this.#buffers.has(i);
    const bufs = this.momentum !== 0 ? this.stateFor(this.#buffers, i, g).map((t) => t.handle) : null;
    N.sgdStep(g.params.map((p) => p.handle), bufs, first, g.lr, this.momentum, this.dampening, g.weightDecay,
      this.nesterov, false);
  }

  override dispose(): void {
    for (const s of this.#buffers.values()) for (const t of s) t.dispose();
    this.#buffers.clear();
  }
}

export class Adam extends Optimizer {
  readonly betas: [number, number];
  readonly eps: number;
  /** AdamW: weight decay applied to the weights directly instead of through the gradient. */
  readonly decoupled: boolean;
  readonly #m = new Map<number, Tensor[]>();
  readonly #v = new Map<number, Tensor[]>();

  constructor(
    params: Tensor[] | ParamGroupSpec[],
    o: { lr?: number; betas?: [number, number]; eps?: number; weightDecay?: number; decoupled?: boolean } = {},
  ) {
    super(params, { lr: o.lr ?? 1e-3, weightDecay: o.weightDecay ?? 0 });
    this.betas = o.betas ?? [0.9, 0.999];
    this.eps = o.eps ?? 1e-8;
    this.decoupled = o.decoupled ?? false;
  }

  protected updateGroup(g: ParamGroup, i: number): void {
    const m = this.stateFor(this.#m, i, g).map((t) => t.handle);
    const v = this.stateFor(this.#v, i, g).map((t) => t.handle);
    N.adamStep(g.params.map((p) => p.handle), m, v, this.stepCount, g.lr, this.betas[0], this.betas[1], this.eps,
      g.weightDecay, this.decoupled);
  }

  override dispose(): void {
    for (const s of [...this.#m.values(), ...this.#v.values()]) for (const t of s) t.dispose();
    this.#m.clear();
    this.#v.clear();
  }
}

export class AdamW extends Adam {
  constructor(
    params: Tensor[] | ParamGroupSpec[],
    o: { lr?: number; betas?: [number, number]; eps?: number; weightDecay?: number } = {},
  ) {
    super(params, { ...o, weightDecay: o.weightDecay ?? 1e-2, decoupled: true });
  }
}

/** Scales gradients so their total p-norm is at most maxNorm; returns the norm before clipping. */
export function clipGradNorm(params: Tensor[], maxNorm: number, normType = 2): number {
  return N.clipGradNorm(params.map((p) => p.handle), maxNorm, normType);
}
