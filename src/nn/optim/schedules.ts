// Learning-rate schedules: each sets every group's lr = initialLr * factor(step), with optional linear warmup.
import type { Optimizer } from './optimizer.js';

export type LrFactor = (step: number) => number;

/** (1 - step / maxSteps) ^ power, the PSA/SEAM/DeepLab "poly" schedule. */
export function poly(maxSteps: number, power = 0.9): LrFactor {
  return (step) => Math.pow(Math.max(0, 1 - step / maxSteps), power);
}

/** gamma ^ floor(step / stepSize). */
export function stepDecay(stepSize: number, gamma = 0.1): LrFactor {
  return (step) => Math.pow(gamma, Math.floor(step / stepSize));
}

/** gamma ^ (the number of listed epochs reached): the rate drops by gamma at the start of each of those epochs. */
export function stepAtEpochs(epochs: readonly number[], stepsPerEpoch: number, gamma = 0.1): LrFactor {
  if (!(stepsPerEpoch > 0)) throw new RangeError(`stepsPerEpoch must be positive, got ${stepsPerEpoch}`);
  return (step) => Math.pow(gamma, epochs.filter((e) => Math.floor(step / stepsPerEpoch) >= e).length);
}

/** Cosine from 1 down to minFactor over maxSteps. */
export function cosine(maxSteps: number, minFactor = 0): LrFactor {
  return (step) => minFactor + (1 - minFactor) * 0.5 * (1 + Math.cos(Math.PI * Math.min(step, maxSteps) / maxSteps));
}

/** Linear warmup from startFactor to the wrapped schedule over warmupSteps. */
export function withWarmup(schedule: LrFactor, warmupSteps: number, startFactor = 0.1): LrFactor {
  return (step) => {
    if (step >= warmupSteps) return schedule(step);
    const alpha = step / warmupSteps;
    return (startFactor + (1 - startFactor) * alpha) * schedule(step);
  };
}

export class LrScheduler {
  step = 0;

  constructor(readonly optimizer: Optimizer, readonly factor: LrFactor) {
    this.apply();
  }

  /** Advances one step and rewrites the groups' rates. */
  next(): void {
    this.step++;
    this.apply();
  }

  /** Jumps to a step (for resuming). */
  setStep(step: number): void {
    this.step = step;
    this.apply();
  }

  private apply(): void {
    const f = this.factor(this.step);
    for (const g of this.optimizer.groups) g.lr = g.initialLr * f;
  }
}
