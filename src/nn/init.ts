// Weight initialisers, as torch.nn.init: fans from the weight's shape, gains by nonlinearity.
import { type Tensor, noGrad } from '../engine/index.js';

export type Nonlinearity = 'linear' | 'conv2d' | 'sigmoid' | 'tanh' | 'relu' | 'leaky_relu';

export function calculateGain(nonlinearity: Nonlinearity, param = 0.01): number {
  switch (nonlinearity) {
    case 'linear': case 'conv2d': case 'sigmoid': return 1;
    case 'tanh': return 5 / 3;
    case 'relu': return Math.SQRT2;
    case 'leaky_relu': return Math.sqrt(2 / (1 + param * param));
  }
}

/** [fanIn, fanOut] of a weight of shape [out, in, ...kernel]. */
export function fans(t: Tensor): [number, number] {
  const s = t.shape;
  if (s.length < 2) throw new TypeError(`fan in/out need a tensor with at least 2 dimensions, got [${s}]`);
  const receptive = s.slice(2).reduce((a, b) => a * b, 1);
  return [s[1]! * receptive, s[0]! * receptive];
}

export interface KaimingOptions {
  a?: number;
  mode?: 'fan_in' | 'fan_out';
  nonlinearity?: Nonlinearity;
}

function kaimingStd(t: Tensor, o: KaimingOptions): number {
  const [fanIn, fanOut] = fans(t);
  const fan = (o.mode ?? 'fan_in') === 'fan_in' ? fanIn : fanOut;
  return calculateGain(o.nonlinearity ?? 'leaky_relu', o.a ?? 0) / Math.sqrt(fan);
}

export function kaimingNormal_(t: Tensor, o: KaimingOptions = {}): Tensor {
  const std = kaimingStd(t, o);
  return noGrad(() => t.normal_(0, std));
}

export function kaimingUniform_(t: Tensor, o: KaimingOptions = {}): Tensor {
  const bound = Math.sqrt(3) * kaimingStd(t, o);
  return noGrad(() => t.uniform_(-bound, bound));
}

export function xavierUniform_(t: Tensor, gain = 1): Tensor {
  const [fanIn, fanOut] = fans(t);
  const bound = gain * Math.sqrt(6 / (fanIn + fanOut));
  return noGrad(() => t.uniform_(-bound, bound));
}

export function xavierNormal_(t: Tensor, gain = 1): Tensor {
  const [fanIn, fanOut] = fans(t);
  const std = gain * Math.sqrt(2 / (fanIn + fanOut));
  return noGrad(() => t.normal_(0, std));
}

export function normal_(t: Tensor, mean = 0, std = 1): Tensor { return noGrad(() => t.normal_(mean, std)); }
export function uniform_(t: Tensor, low = 0, high = 1): Tensor { return noGrad(() => t.uniform_(low, high)); }
export function constant_(t: Tensor, v: number): Tensor { return noGrad(() => t.fill_(v)); }
export function zeros_(t: Tensor): Tensor { return constant_(t, 0); }
export function ones_(t: Tensor): Tensor { return constant_(t, 1); }
