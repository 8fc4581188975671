// Small pieces every backbone file uses: input normalisation, option checks, tap bookkeeping, freezing.
import type { Tensor } from '../engine/index.js';
import { tensor, tidy } from '../engine/index.js';
import { BatchNorm2d, type Module } from '../nn/index.js';
import type { Backbone, InputNorm } from './backbone.js';

export type OutputStride = 8 | 16 | 32;

export function checkOutputStride(name: string, os: number, allowed: readonly number[]): void {
  if (!allowed.includes(os)) {
    throw new RangeError(`${name}: outputStride must be one of ${allowed.join(', ')}, got ${os}`);
  }
}

/**
 * Normalises N x 3 x H x W pixels in [0, 1] for a backbone: (x - mean) / std per channel.
 * (For the MobileNetV2 weights here, mean = std = 0.5, so this maps [0, 1] to [-1, 1].)
 */
export function normalizeInput(x: Tensor, norm: InputNorm): Tensor {
  if (x.ndim !== 4 || x.size(1) !== 3) {
    throw new TypeError(`normalizeInput: expected N x 3 x H x W pixels, got shape [${x.shape}]`);
  }
  return tidy(() => {
    const opts = { dtype: x.dtype, device: x.device } as const;
    const mean = tensor(norm.mean, opts).view(1, 3, 1, 1);
    const std = tensor(norm.std, opts).view(1, 3, 1, 1);
    return x.sub(mean).div(std);
  });
}

/** Checks requested tap names against the backbone's declared taps. */
export function checkTaps(backbone: Pick<Backbone, 'name' | 'taps'>, requested: readonly string[] | undefined): Set<string> {
  const want = new Set(requested ?? []);
  const known = new Set(backbone.taps.map((t) => t.name));
  for (const n of want) {
    if (!known.has(n)) {
      throw new RangeError(`${backbone.name}: unknown tap '${n}' (taps: ${[...known].join(', ')})`);
    }
  }
  return want;
}

/** Sets every BatchNorm2d under a module to frozen (running statistics, no gradient) or back to trainable. */
export function setBatchNormFrozen(m: Module, frozen: boolean): void {
  for (const [, sub] of m.namedModules()) if (sub instanceof BatchNorm2d) sub.setFrozen(frozen);
}

/**
 * Stops gradients to the given submodules' parameters. BatchNorm layers stay as they were otherwise
 * (a frozen BN is already gradient-free; an unfrozen one keeps updating its running statistics in
 * training mode, as in torch when only requires_grad is turned off).
 */
export function freezeModules(mods: Module[]): void {
  for (const m of mods) m.freeze(true);
}
