// Module: named parameters, buffers and children, train/eval, freezing, and state dicts with
// torchvision-style dotted keys ("features.0.0.weight"), so published weights load by name.
import { type Device, type Tensor, keep, noGrad } from '../engine/index.js';

export type StateDict = Map<string, Tensor>;

export interface LoadReport {
  missing: string[];
  unexpected: string[];
  /** Keys present on both sides with different shapes: "key: checkpoint [a, b] vs model [c, d]". */
  mismatched: string[];
  /** Model keys the source lacked but was allowed to lack (`allowMissing`); they keep their values. */
  allowedMissing?: string[];
  loaded: number;
}

/** Keys of each kind a StateDictError names; the full lists are on its `report`. */
const SHOWN_KEYS = 5;

/** Keys (or patterns, '*' matching any run of characters) that may be missing from a state dict being loaded. */
export type KeyPatterns = readonly (string | RegExp)[];

/** A predicate for a list of keys and patterns ('layer*.*.amm.*'). */
export function matchesAnyKey(patterns: KeyPatterns): (key: string) => boolean {
  const res = patterns.map((p) => (typeof p === 'string'
    ? new RegExp(`^${p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`)
    : p));
  return (key) => res.some((r) => r.test(key));
}

export class StateDictError extends Error {
  constructor(readonly report: LoadReport, source: string) {
    // Counts and the first few of each kind: a wrong architecture differs in hundreds of keys (20 KB listed).
    const first = (keys: string[], sep: string) => keys.slice(0, SHOWN_KEYS).join(sep) + (keys.length > SHOWN_KEYS ? `${sep}... (${keys.length - SHOWN_KEYS} more)` : '');
    const parts: string[] = [];
    if (report.missing.length) parts.push(`missing keys (${report.missing.length}): ${first(report.missing, ', ')}`);
    if (report.unexpected.length) parts.push(`unexpected keys (${report.unexpected.length}): ${first(report.unexpected, ', ')}`);
    if (report.mismatched.length) parts.push(`wrongly shaped keys (${report.mismatched.length}): ${first(report.mismatched, '; ')}`);
    const hint = report.missing.length > SHOWN_KEYS && report.unexpected.length > SHOWN_KEYS
      ? ' (were these weights saved from another architecture?)' : '';
    super(`cannot load state dict${source ? ` from ${source}` : ''}: ${parts.join('; ')}${hint}`);
    this.name = 'StateDictError';
  }
}

export abstract class Module {
  training = true;
  #frozen = false;
  /** The mode the last train()/eval() asked for (what an unfrozen module returns to). */
  #requestedMode = true;
  readonly #params = new Map<string, Tensor>();
  readonly #buffers = new Map<string, Tensor>();
  readonly #children = new Map<string, Module>();

  /** Registers a trainable tensor (set to require grad, exempt from tidy scopes). */
  protected registerParameter(name: string, t: Tensor): Tensor {
    this.#checkName(name);
    keep(t);
    if (!t.requiresGrad) t.requiresGrad_(true);
    this.#params.set(name, t);
    return t;
  }

  /** Registers state that is saved but not trained (e.g. BatchNorm running statistics). */
  protected registerBuffer(name: string, t: Tensor): Tensor {
    this.#checkName(name);
    this.#buffers.set(name, keep(t));
    return t;
  }

  protected registerModule<M extends Module>(name: string, m: M): M {
    this.#checkName(name);
    this.#children.set(name, m);
    return m;
  }

  #checkName(name: string): void {
    if (!name || name.includes('.')) throw new TypeError(`invalid member name '${name}'`);
    if (this.#params.has(name) || this.#buffers.has(name) || this.#children.has(name)) {
      throw new TypeError(`'${name}' is already registered on ${this.constructor.name}`);
    }
  }

  /** The tensor registered under a local name (used by subclasses after load/move replaced it). */
  protected param(name: string): Tensor {
    const t = this.#params.get(name);
    if (!t) throw new Error(`${this.constructor.name} has no parameter '${name}'`);
    return t;
  }
  protected buffer(name: string): Tensor {
    const t = this.#buffers.get(name);
    if (!t) throw new Error(`${this.constructor.name} has no buffer '${name}'`);
    return t;
  }

  children(): [string, Module][] {
    return [...this.#children];
  }

  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [n, c] of this.#children) yield* c.namedModules(prefix ? `${prefix}.${n}` : n);
  }

  *namedParameters(prefix = ''): Generator<[string, Tensor]> {
    for (const [n, t] of this.#params) yield [prefix ? `${prefix}.${n}` : n, t];
    for (const [n, c] of this.#children) yield* c.namedParameters(prefix ? `${prefix}.${n}` : n);
  }

  *namedBuffers(prefix = ''): Generator<[string, Tensor]> {
    for (const [n, t] of this.#buffers) yield [prefix ? `${prefix}.${n}` : n, t];
    for (const [n, c] of this.#children) yield* c.namedBuffers(prefix ? `${prefix}.${n}` : n);
  }

  parameters(): Tensor[] {
    return [...this.namedParameters()].map(([, t]) => t);
  }

  /** Parameters that currently require grad (what an optimizer should see). */
  trainableParameters(): Tensor[] {
    return this.parameters().filter((t) => t.requiresGrad);
  }

  /** Training mode for this module and its submodules, except frozen ones, which stay in eval mode. */
  train(mode = true): this {
    this.#applyMode(mode, false);
    return this;
  }

  #applyMode(mode: boolean, underFrozen: boolean): void {
    const frozen = underFrozen || this.#frozen;
    this.#requestedMode = mode;
    this.training = mode && !frozen;
    for (const c of this.#children.values()) c.#applyMode(mode, frozen);
  }

  eval(): this {
    return this.train(false);
  }

  /**
   * Stops gradients to every parameter of this module (or turns them back on, except under submodules that are
   * frozen for good, see setFrozen).
   */
  freeze(frozen = true): this {
    this.#applyGrad(frozen);
    return this;
  }

  #applyGrad(off: boolean): void {
    const o = off || this.#frozen;
    for (const t of this.#params.values()) t.requiresGrad_(!o);
    for (const c of this.#children.values()) c.#applyGrad(o);
  }

  /** Whether this module is frozen for good (see setFrozen). */
  get frozen(): boolean {
    return this.#frozen;
  }

  /**
   * Freezes this module for good: no gradient to its parameters, and eval mode however an enclosing module is
   * switched (a frozen BatchNorm, a teacher network loaded from another run). `setFrozen(false)` undoes it and
   * returns the module to the mode last asked of it.
   */
  setFrozen(frozen = true): this {
    this.#frozen = frozen;
    this.#applyGrad(frozen);
    this.#applyMode(this.#requestedMode, false);
    return this;
  }

  /** Parameters and buffers by dotted name. The tensors are the module's own: do not dispose them. */
  stateDict(): StateDict {
    const out: StateDict = new Map();
    for (const [k, t] of this.#entries()) out.set(k, t);
    return out;
  }

  *#entries(prefix = ''): Generator<[string, Tensor]> {
    for (const [n, t] of this.#params) yield [prefix ? `${prefix}.${n}` : n, t];
    for (const [n, t] of this.#buffers) yield [prefix ? `${prefix}.${n}` : n, t];
    for (const [n, c] of this.#children) yield* c.#entries(prefix ? `${prefix}.${n}` : n);
  }

  /**
   * Copies values from a state dict into this module's tensors (converting dtype, keeping identity so
   * optimizers stay valid). Strict mode checks everything first and changes nothing on a mismatch.
   * Non-strict mode loads what matches and reports the rest. Keys matching `allowMissing` may be absent from the
   * source even in strict mode (new layers inserted into a pretrained network); everything else is still checked.
   */
  loadStateDict(
    sd: StateDict | Record<string, Tensor>, opts: { strict?: boolean; source?: string; allowMissing?: KeyPatterns } = {},
  ): LoadReport {
    const src = sd instanceof Map ? sd : new Map(Object.entries(sd));
    const own = new Map(this.#entries());
    const report: LoadReport = { missing: [], unexpected: [], mismatched: [], loaded: 0 };
    const mayMiss = opts.allowMissing?.length ? matchesAnyKey(opts.allowMissing) : null;
    for (const [k, t] of own) {
      const s = src.get(k);
      if (!s && mayMiss?.(k)) {
        (report.allowedMissing ??= []).push(k);
      } else if (!s) {
        report.missing.push(k);
      } else if (s.shape.join(',') !== t.shape.join(',')) {
        report.mismatched.push(`${k}: checkpoint [${s.shape.join(', ')}] vs model [${t.shape.join(', ')}]`);
      }
    }
    for (const k of src.keys()) if (!own.has(k)) report.unexpected.push(k);
    const strict = opts.strict ?? true;
    if (strict && (report.missing.length || report.unexpected.length || report.mismatched.length)) {
      throw new StateDictError(report, opts.source ?? '');
    }
    noGrad(() => {
      for (const [k, t] of own) {
        const s = src.get(k);
        if (s && s.shape.join(',') === t.shape.join(',')) {
          t.copy_(s);
          report.loaded++;
        }
      }
    });
    return report;
  }

  /**
   * Moves every parameter and buffer to a device and/or converts 4-D ones to a memory format
   * (channels-last convolutions run faster on CPU). Create optimizers after this.
   */
  to(target: Device | { device?: Device; memoryFormat?: 'contiguous' | 'channels_last' }): this {
    const { device, memoryFormat } = typeof target === 'string' ? { device: target, memoryFormat: undefined } : target;
    noGrad(() => {
      for (const [, m] of this.namedModules()) {
        for (const map of [m.#params, m.#buffers]) {
          for (const [n, t] of map) {
            let moved = device && t.device !== device ? t.to({ device }) : t;
            if (memoryFormat && moved.ndim === 4 && !moved.isContiguous(memoryFormat)) {
              const converted = moved.contiguous(memoryFormat);
              if (moved !== t) moved.dispose();
              moved = converted;
            }
            if (moved === t) continue;
            keep(moved);
            if (t.requiresGrad) moved.requiresGrad_(true);
            map.set(n, moved);
            t.dispose();
          }
        }
      }
    });
    return this;
  }

  /** Frees every parameter and buffer. */
  dispose(): void {
    for (const [, t] of this.#entries()) t.dispose();
  }

  /** Number of parameter elements. */
  numParameters(): number {
    return this.parameters().reduce((n, t) => n + t.numel, 0);
  }
}
