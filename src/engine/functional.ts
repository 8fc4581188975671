// torch.nn.functional for weakseg: convolution, normalization, pooling, resampling, padding, dropout,
// activations and losses. Composite functions (normalize, multilabel soft margin) are written with the same
// operations, in the same order, as torch/nn/functional.py, so autograd and numerics match PyTorch.
import type { DType } from './dtype.js';
import { N } from './native.js';
import { Tensor, wrap, wrapAll } from './tensor.js';

type Pair = number | [number, number];
export type Reduction = 'none' | 'mean' | 'sum';

function pair(v: Pair): [number, number] {
  return typeof v === 'number' ? [v, v] : v;
}

export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
}

export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, o: Conv2dOptions = {}): Tensor {
  return wrap(N.conv2d(x.handle, weight.handle, bias?.handle ?? null, pair(o.stride ?? 1), pair(o.padding ?? 0),
    pair(o.dilation ?? 1), o.groups ?? 1));
}

export function convTranspose2d(
  x: Tensor, weight: Tensor, bias?: Tensor | null,
  o: Conv2dOptions & { outputPadding?: Pair } = {},
): Tensor {
  return wrap(N.convTranspose2d(x.handle, weight.handle, bias?.handle ?? null, pair(o.stride ?? 1),
    pair(o.padding ?? 0), pair(o.outputPadding ?? 0), o.groups ?? 1, pair(o.dilation ?? 1)));
}

export interface BatchNormOptions {
  weight?: Tensor | null;
  bias?: Tensor | null;
  training?: boolean;
  momentum?: number;
  eps?: number;
}

/** Batch normalization; in training mode the running statistics (if given) are updated in place. */
export function batchNorm(
  x: Tensor, runningMean: Tensor | null, runningVar: Tensor | null, o: BatchNormOptions = {},
): Tensor {
  return wrap(N.batchNorm(x.handle, o.weight?.handle ?? null, o.bias?.handle ?? null, runningMean?.handle ?? null,
    runningVar?.handle ?? null, o.training ?? false, o.momentum ?? 0.1, o.eps ?? 1e-5));
}

export function groupNorm(x: Tensor, numGroups: number, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return wrap(N.groupNorm(x.handle, numGroups, weight?.handle ?? null, bias?.handle ?? null, eps));
}

export function layerNorm(x: Tensor, normalizedShape: number[], weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return wrap(N.layerNorm(x.handle, normalizedShape, weight?.handle ?? null, bias?.handle ?? null, eps));
}

export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return wrap(N.linear(x.handle, weight.handle, bias?.handle ?? null));
}

export interface PoolOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  ceilMode?: boolean;
}

export function maxPool2d(x: Tensor, kernelSize: Pair, o: PoolOptions = {}): Tensor {
  return wrap(N.maxPool2d(x.handle, pair(kernelSize), pair(o.stride ?? kernelSize), pair(o.padding ?? 0),
    pair(o.dilation ?? 1), o.ceilMode ?? false));
}

export function maxPool2dWithIndices(x: Tensor, kernelSize: Pair, o: PoolOptions = {}): [Tensor, Tensor] {
  return wrapAll(N.maxPool2dWithIndices(x.handle, pair(kernelSize), pair(o.stride ?? kernelSize),
    pair(o.padding ?? 0), pair(o.dilation ?? 1), o.ceilMode ?? false)) as [Tensor, Tensor];
}

export function avgPool2d(
  x: Tensor, kernelSize: Pair,
  o: Omit<PoolOptions, 'dilation'> & { countIncludePad?: boolean; divisorOverride?: number } = {},
): Tensor {
  return wrap(N.avgPool2d(x.handle, pair(kernelSize), pair(o.stride ?? kernelSize), pair(o.padding ?? 0),
    o.ceilMode ?? false, o.countIncludePad ?? true, o.divisorOverride ?? null));
}

export function adaptiveAvgPool2d(x: Tensor, outputSize: Pair): Tensor {
  return wrap(N.adaptiveAvgPool2d(x.handle, pair(outputSize)));
}

export function adaptiveMaxPool2d(x: Tensor, outputSize: Pair): [Tensor, Tensor] {
  return wrapAll(N.adaptiveMaxPool2d(x.handle, pair(outputSize))) as [Tensor, Tensor];
}

/** Global average pooling to N x C. */
export function globalAvgPool(x: Tensor): Tensor {
  return x.mean([2, 3]);
}

export type InterpolateMode = 'nearest' | 'bilinear' | 'bicubic' | 'area';

export interface InterpolateOptions {
  size?: Pair;
  scaleFactor?: number | [number, number];
  mode?: InterpolateMode;
  alignCorners?: boolean;
}

/**
 * Resizes N x C x H x W by output size or scale factor, as F.interpolate does: with a scale factor the
 * output size is floor(in * scale) and the scale itself is passed to the kernel (it changes the sampling
 * grid when alignCorners is false).
 */
export function interpolate(x: Tensor, o: InterpolateOptions): Tensor {
  const mode = o.mode ?? 'nearest';
  if ((o.size === undefined) === (o.scaleFactor === undefined)) {
    throw new TypeError('interpolate: give exactly one of size and scaleFactor');
  }
  if (x.ndim !== 4) throw new TypeError(`interpolate: expected a 4-D N x C x H x W tensor, got shape [${x.shape}]`);
  if (o.alignCorners !== undefined && (mode === 'nearest' || mode === 'area')) {
    throw new TypeError(`interpolate: alignCorners only applies to bilinear and bicubic, not ${mode}`);
  }
  const [h, w] = [x.size(2), x.size(3)];
  let size: [number, number];
  let scales: [number | null, number | null] = [null, null];
  if (o.size !== undefined) {
    size = pair(o.size);
  } else {
    const [sh, sw] = typeof o.scaleFactor === 'number' ? [o.scaleFactor, o.scaleFactor] : o.scaleFactor!;
    size = [Math.floor(h * sh), Math.floor(w * sw)];
    scales = [sh, sw];
  }
  const align = o.alignCorners ?? false;
  switch (mode) {
    case 'nearest': return wrap(N.upsampleNearest2d(x.handle, size, scales[0], scales[1]));
    case 'bilinear': return wrap(N.upsampleBilinear2d(x.handle, size, align, scales[0], scales[1]));
    case 'bicubic': return wrap(N.upsampleBicubic2d(x.handle, size, align, scales[0], scales[1]));
    case 'area': return adaptiveAvgPool2d(x, size);
    default: throw new TypeError(`interpolate: unknown mode '${String(mode)}'`);
  }
}

export type PadMode = 'constant' | 'reflect' | 'replicate';

/** Pads the last dimensions; pads = [left, right, top, bottom, ...] as in F.pad. */
export function pad(x: Tensor, pads: number[], mode: PadMode = 'constant', value = 0): Tensor {
  switch (mode) {
    case 'constant': return wrap(N.constantPad(x.handle, pads, value));
    case 'reflect':
    case 'replicate':
      if (pads.length !== 4 || x.ndim !== 4) {
        throw new TypeError(`pad: ${mode} padding takes 4 pads on a 4-D tensor (got ${pads.length} pads, shape [${x.shape}])`);
      }
      return wrap(mode === 'reflect' ? N.reflectionPad2d(x.handle, pads) : N.replicationPad2d(x.handle, pads));
    default: throw new TypeError(`pad: unknown mode '${String(mode)}'`);
  }
}

export function dropout(x: Tensor, p = 0.5, training = true): Tensor {
  return wrap(N.dropout(x.handle, p, training));
}

/** Zeroes whole channels (F.dropout2d). */
export function dropout2d(x: Tensor, p = 0.5, training = true): Tensor {
  return wrap(N.featureDropout(x.handle, p, training));
}

/** Sliding local blocks, N x (C*kh*kw) x L (F.unfold). */
export function unfold(x: Tensor, kernelSize: Pair, o: { dilation?: Pair; padding?: Pair; stride?: Pair } = {}): Tensor {
  return wrap(N.im2col(x.handle, pair(kernelSize), pair(o.dilation ?? 1), pair(o.padding ?? 0), pair(o.stride ?? 1)));
}

export function pixelShuffle(x: Tensor, upscale: number): Tensor { return wrap(N.pixelShuffle(x.handle, upscale)); }

/** x / max(||x||_p, eps) along dim (F.normalize). */
export function normalize(x: Tensor, o: { p?: number; dim?: number; eps?: number } = {}): Tensor {
  const norm = x.norm(o.p ?? 2, o.dim ?? 1, true);
  const denom = norm.clampMin(o.eps ?? 1e-12);
  const expanded = denom.expandAs(x);
  const out = x.div(expanded);
  norm.dispose(); denom.dispose(); expanded.dispose();
  return out;
}

export function cosineSimilarity(a: Tensor, b: Tensor, dim = 1, eps = 1e-8): Tensor {
  return wrap(N.cosineSimilarity(a.handle, b.handle, dim, eps));
}

// ---- activations ----
export function relu(x: Tensor): Tensor { return x.relu(); }
export function relu6(x: Tensor): Tensor { return wrap(N.hardtanh(x.handle, 0, 6)); }
export function hardtanh(x: Tensor, min = -1, max = 1): Tensor { return wrap(N.hardtanh(x.handle, min, max)); }
export function elu(x: Tensor, alpha = 1): Tensor { return wrap(N.elu(x.handle, alpha)); }
export function leakyRelu(x: Tensor, slope = 0.01): Tensor { return wrap(N.leakyRelu(x.handle, slope)); }
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor { return wrap(N.gelu(x.handle, approximate)); }
export function silu(x: Tensor): Tensor { return wrap(N.silu(x.handle)); }
export function softplus(x: Tensor, beta = 1, threshold = 20): Tensor { return wrap(N.softplus(x.handle, beta, threshold)); }
export function hardswish(x: Tensor): Tensor { return wrap(N.hardswish(x.handle)); }
export function hardsigmoid(x: Tensor): Tensor { return wrap(N.hardsigmoid(x.handle)); }
export function sigmoid(x: Tensor): Tensor { return x.sigmoid(); }
export function tanh(x: Tensor): Tensor { return x.tanh(); }
export function softmax(x: Tensor, dim: number, dtype?: DType): Tensor { return x.softmax(dim, dtype); }
export function logSoftmax(x: Tensor, dim: number, dtype?: DType): Tensor { return x.logSoftmax(dim, dtype); }
export function logSigmoid(x: Tensor): Tensor { return x.logSigmoid(); }

// ---- losses ----
export interface CrossEntropyOptions {
  weight?: Tensor | null;
  ignoreIndex?: number;
  reduction?: Reduction;
  labelSmoothing?: number;
}

/** Cross entropy over class dim 1 with int64 targets (ignoreIndex default -100, as torch). */
export function crossEntropy(logits: Tensor, target: Tensor, o: CrossEntropyOptions = {}): Tensor {
  return wrap(N.crossEntropy(logits.handle, target.handle, o.weight?.handle ?? null, o.reduction ?? 'mean',
    o.ignoreIndex ?? -100, o.labelSmoothing ?? 0));
}

export function nllLoss(logProbs: Tensor, target: Tensor, o: Omit<CrossEntropyOptions, 'labelSmoothing'> = {}): Tensor {
  return wrap(N.nllLoss(logProbs.handle, target.handle, o.weight?.handle ?? null, o.reduction ?? 'mean',
    o.ignoreIndex ?? -100));
}

export function binaryCrossEntropyWithLogits(
  logits: Tensor, target: Tensor,
  o: { weight?: Tensor | null; posWeight?: Tensor | null; reduction?: Reduction } = {},
): Tensor {
  return wrap(N.bceWithLogits(logits.handle, target.handle, o.weight?.handle ?? null, o.posWeight?.handle ?? null,
    o.reduction ?? 'mean'));
}

export function binaryCrossEntropy(probs: Tensor, target: Tensor, o: { weight?: Tensor | null; reduction?: Reduction } = {}): Tensor {
  return wrap(N.bce(probs.handle, target.handle, o.weight?.handle ?? null, o.reduction ?? 'mean'));
}

/**
 * Multi-label one-versus-all loss (F.multilabel_soft_margin_loss), the classification loss of every
 * method here: -mean_c[y log s(x) + (1-y) log s(-x)], then reduced over the batch.
 */
export function multilabelSoftMarginLoss(
  logits: Tensor, target: Tensor, o: { weight?: Tensor | null; reduction?: Reduction } = {},
): Tensor {
  const lsPos = logits.logSigmoid();
  const negLogits = logits.neg();
  const lsNeg = negLogits.logSigmoid();
  const a = target.mul(lsPos);
  const oneMinus = target.rsub(1);
  const b = oneMinus.mul(lsNeg);
  const sum = a.add(b);
  let loss = sum.neg();
  for (const t of [lsPos, negLogits, lsNeg, a, oneMinus, b, sum]) t.dispose();
  if (o.weight) {
    const w = loss.mul(o.weight);
    loss.dispose();
    loss = w;
  }
  const perSample = loss.sum(logits.ndim - 1);
  const classMean = perSample.div(logits.size(-1));
  loss.dispose(); perSample.dispose();
  return reduce(classMean, o.reduction ?? 'mean');
}

function reduce(t: Tensor, reduction: Reduction): Tensor {
  if (reduction === 'none') return t;
  const out = reduction === 'mean' ? t.mean() : t.sum();
  t.dispose();
  return out;
}

export function l1Loss(a: Tensor, b: Tensor, reduction: Reduction = 'mean'): Tensor {
  return wrap(N.l1Loss(a.handle, b.handle, reduction));
}
export function mseLoss(a: Tensor, b: Tensor, reduction: Reduction = 'mean'): Tensor {
  return wrap(N.mseLoss(a.handle, b.handle, reduction));
}
export function smoothL1Loss(a: Tensor, b: Tensor, reduction: Reduction = 'mean', beta = 1): Tensor {
  return wrap(N.smoothL1Loss(a.handle, b.handle, reduction, beta));
}

/** KL divergence with log-probability input; 'batchmean' divides the sum by the batch size, as torch. */
export function klDiv(
  input: Tensor, target: Tensor, reduction: Reduction | 'batchmean' = 'mean', logTarget = false,
): Tensor {
  if (reduction !== 'batchmean') return wrap(N.klDiv(input.handle, target.handle, reduction, logTarget));
  const sum = wrap(N.klDiv(input.handle, target.handle, 'sum', logTarget));
  const out = input.ndim > 0 ? sum.div(input.size(0)) : sum.clone();
  sum.dispose();
  return out;
}
