// Optimizers over parameter groups. Each group has its own lr and weight decay (the methods train new
// layers at 10x / 20x the backbone's rate); the update itself runs natively, in place, one call per group.
import { N } from '../../engine/native.js';
import { type Tensor, keep, noGrad, tensor, zerosLike } from '../../engine/index.js';

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

  /**
   * The optimizer's state as named tensors, for checkpoints: "<group index>.<param index>.<slot>" (e.g.
   * "1.0.momentum_buffer"), plus "step_count" (int64 scalar). The tensors are copies the caller owns.
   */
  stateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    out.set('step_count', keep(tensor(this.stepCount, { dtype: 'int64' })));
    return out;
  }

  /**
   * Restores what stateDict() returned, for the same parameter groups (same order and shapes). Slots are
   * copied, so the given tensors stay the caller's. Unknown or wrongly shaped entries are errors.
   */
  loadStateDict(state: Map<string, Tensor>): void {
    const count = state.get('step_count');
    this.stepCount = count ? Number(count.item()) : 0;
    for (const key of state.keys()) {
      if (key !== 'step_count' && !this.acceptsStateKey(key)) {
        throw new Error(`${this.constructor.name}.loadStateDict: unexpected state entry '${key}'`);
      }
    }
  }

  /** Whether a state key belongs to this optimizer (subclasses with state override this). */
  protected acceptsStateKey(_key: string): boolean {
    return false;
  }

  /** Frees optimizer state. */
  dispose(): void {}
}

/** Whether a parameter currently has a gradient (torch.optim skips those without, and keeps their state as is). */
function hasGrad(p: Tensor): boolean {
  const g = N.grad(p.handle);
  if (!g) return false;
  g.dispose();
  return true;
}

export class SGD extends Optimizer {
  readonly momentum: number;
  readonly dampening: number;
  readonly nesterov: boolean;
  readonly #buffers = new Map<number, Tensor[]>();
  /** Per group, per parameter: whether its momentum buffer holds a value yet. */
  readonly #started = new Map<number, boolean[]>();

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
    const step = (ks: number[], bufs: Tensor[] | null, first: boolean): void => {
      N.sgdStep(ks.map((k) => g.params[k]!.handle), bufs ? ks.map((k) => bufs[k]!.handle) : null, first, g.lr,
        this.momentum, this.dampening, g.weightDecay, this.nesterov, false);
    };
    if (this.momentum === 0) {
      step(g.params.map((_, k) => k), null, false);
      return;
    }
    const bufs = this.stateFor(this.#buffers, i, g);
    let started = this.#started.get(i);
    if (!started) this.#started.set(i, (started = g.params.map(() => false)));
    // torch initialises a parameter's buffer to its gradient at the first step that parameter has one.
    const fresh: number[] = [];
    const running: number[] = [];
    g.params.forEach((p, k) => {
      if (started![k]) {
        running.push(k);
      } else if (hasGrad(p)) {
        fresh.push(k);
        started![k] = true;
      }
    });
    if (fresh.length) step(fresh, bufs, true);
    if (running.length) step(running, bufs, false);
  }

  /** Adds each started momentum buffer as "<group>.<param>.momentum_buffer". */
  override stateDict(): Map<string, Tensor> {
    const out = super.stateDict();
    for (const [i, bufs] of this.#buffers) {
      const started = this.#started.get(i);
      bufs.forEach((b, k) => {
        if (started?.[k]) out.set(`${i}.${k}.momentum_buffer`, keep(b.clone()));
      });
    }
    return out;
  }

  override loadStateDict(state: Map<string, Tensor>): void {
    super.loadStateDict(state);
    for (const s of this.#buffers.values()) for (const t of s) t.dispose();
    this.#buffers.clear();
    this.#started.clear();
    for (const [key, t] of state) {
      const m = /^(\d+)\.(\d+)\.momentum_buffer$/.exec(key);
      if (!m) continue;
      const i = Number(m[1]);
      const k = Number(m[2]);
      const g = this.groups[i];
      const p = g?.params[k];
      if (!g || !p) throw new Error(`SGD.loadStateDict: '${key}' names no parameter (${this.groups.length} groups)`);
      if (t.shape.join(',') !== p.shape.join(',')) {
        throw new Error(`SGD.loadStateDict: '${key}' has shape [${t.shape.join(', ')}], parameter [${p.shape.join(', ')}]`);
      }
      const bufs = this.stateFor(this.#buffers, i, g);
      let started = this.#started.get(i);
      if (!started) this.#started.set(i, (started = g.params.map(() => false)));
      noGrad(() => bufs[k]!.copy_(t));
      started[k] = true;
    }
  }

  protected override acceptsStateKey(key: string): boolean {
    return /^\d+\.\d+\.momentum_buffer$/.test(key);
  }

  override dispose(): void {
    for (const s of this.#buffers.values()) for (const t of s) t.dispose();
    this.#buffers.clear();
    this.#started.clear();
  }
}

export class Adam extends Optimizer {
  readonly betas: [number, number];
  readonly eps: number;
  /** AdamW: weight decay applied to the weights directly instead of through the gradient. */
  readonly decoupled: boolean;
  readonly #m = new Map<number, Tensor[]>();
  readonly #v = new Map<number, Tensor[]>();
  /** Per group, per parameter: the number of updates it has had (torch's state['step'], for bias correction). */
  readonly #steps = new Map<number, number[]>();

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
    const m = this.stateFor(this.#m, i, g);
    const v = this.stateFor(this.#v, i, g);
    let steps = this.#steps.get(i);
    if (!steps) this.#steps.set(i, (steps = g.params.map(() => 0)));
    // Parameters without a gradient are skipped and keep their step count; the rest are updated in one
    // native call per distinct step count (normally a single call).
    const byStep = new Map<number, number[]>();
    g.params.forEach((p, k) => {
      if (!hasGrad(p)) return;
      const n = ++steps![k]!;
      const ks = byStep.get(n);
      if (ks) ks.push(k); else byStep.set(n, [k]);
    });
    for (const [n, ks] of byStep) {
      N.adamStep(ks.map((k) => g.params[k]!.handle), ks.map((k) => m[k]!.handle), ks.map((k) => v[k]!.handle), n,
        g.lr, this.betas[0], this.betas[1], this.eps, g.weightDecay, this.decoupled);
    }
  }

  /** Adds each updated parameter's "<group>.<param>.exp_avg", ".exp_avg_sq" and ".step" (torch's names). */
  override stateDict(): Map<string, Tensor> {
    const out = super.stateDict();
    for (const [i, steps] of this.#steps) {
      steps.forEach((n, k) => {
        if (n === 0) return;
        out.set(`${i}.${k}.exp_avg`, keep(this.#m.get(i)![k]!.clone()));
        out.set(`${i}.${k}.exp_avg_sq`, keep(this.#v.get(i)![k]!.clone()));
        out.set(`${i}.${k}.step`, keep(tensor(n, { dtype: 'int64' })));
      });
    }
    return out;
  }

  override loadStateDict(state: Map<string, Tensor>): void {
    super.loadStateDict(state);
    this.dispose();
    for (const [key, t] of state) {
      const m = /^(\d+)\.(\d+)\.(exp_avg|exp_avg_sq|step)$/.exec(key);
      if (!m) continue;
      const i = Number(m[1]);
      const k = Number(m[2]);
      const g = this.groups[i];
      const p = g?.params[k];
      if (!g || !p) throw new Error(`${this.constructor.name}.loadStateDict: '${key}' names no parameter (${this.groups.length} groups)`);
      let steps = this.#steps.get(i);
      if (!steps) this.#steps.set(i, (steps = g.params.map(() => 0)));
      if (m[3] === 'step') {
        steps[k] = Number(t.item());
        continue;
      }
      if (t.shape.join(',') !== p.shape.join(',')) {
        throw new Error(`${this.constructor.name}.loadStateDict: '${key}' has shape [${t.shape.join(', ')}], parameter [${p.shape.join(', ')}]`);
      }
      const slot = this.stateFor(m[3] === 'exp_avg' ? this.#m : this.#v, i, g);
      noGrad(() => slot[k]!.copy_(t));
    }
  }

  protected override acceptsStateKey(key: string): boolean {
    return /^\d+\.\d+\.(exp_avg|exp_avg_sq|step)$/.test(key);
  }

  override dispose(): void {
    for (const s of [...this.#m.values(), ...this.#v.values()]) for (const t of s) t.dispose();
    this.#m.clear();
    this.#v.clear();
    this.#steps.clear();
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
