import { N } from './native.js';

/** Runs fn with gradient recording off (torch.no_grad). */
export function noGrad<T>(fn: () => T): T {
  const prev = N.setGradEnabled(false);
  try {
    return fn();
  } finally {
    N.setGradEnabled(prev);
  }
}

/** Runs fn with gradient recording on, also inside noGrad. */
export function enableGrad<T>(fn: () => T): T {
  const prev = N.setGradEnabled(true);
  try {
    return fn();
  } finally {
    N.setGradEnabled(prev);
  }
}

/**
 * Turns gradient recording on or off until changed again and returns the previous state (torch.set_grad_enabled),
 * for code that awaits between passes, which noGrad's synchronous scope cannot span.
 */
export function setGradEnabled(on: boolean): boolean {
  return N.setGradEnabled(on);
}

export function isGradEnabled(): boolean {
  return N.isGradEnabled();
}
