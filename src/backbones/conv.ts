// Convolution helpers shared by the backbones: TensorFlow SAME padding computed from the input size at run
// time, and a dilated convolution rewritten as space-to-batch + undilated convolution + batch-to-space.
//
// Why the rewrite: Debian's libtorch 1.13 runs the backward pass of a *dilated depthwise* convolution on a
// pathological CPU path (measured: 123 s for one 960-channel rate-4 layer at batch 16, against well under a
// second for the same layer undilated). A dilated convolution with rate d is exactly an undilated one run
// on the d x d interleaved sub-images of its (padded) input (TensorFlow's space_to_batch trick), so the
// rewrite gives identical values and gradients through ordinary, fast kernels. (bench/backbone-layers.ts
// measures it: the direct kernel's backward degrades with the number of threads and with machine load, as
// its per-group work is dispatched in many tiny parallel regions; the rewrite stays a few tens of ms.)
import { F, type Tensor, isGradEnabled, tidy } from '../engine/index.js';
import { Conv2d } from '../nn/index.js';

type Pair = number | [number, number];

function pair(v: Pair): [number, number] {
  return typeof v === 'number' ? [v, v] : v;
}

/** Pads [left, right, top, bottom], the order of F.pad. */
export type Pads4 = [number, number, number, number];

/**
 * TensorFlow SAME padding along one dimension: the output has ceil(size / stride) positions and the padding
 * the kernel needs is split with the odd pixel at the end (bottom/right). For a 3x3 stride-2 convolution
 * on an even size that is [0, 1]; on an odd size [1, 1], the same as symmetric padding.
 */
export function samePadding(size: number, kernel: number, stride: number, dilation = 1): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

export interface DilatedConv2dOptions {
  /** Symmetric padding (one number or [h, w]) or explicit [left, right, top, bottom] pads. Default 0. */
  padding?: Pair | Pads4;
  dilation: Pair;
  groups?: number;
  /** Only stride 1 is rewritten; any other stride falls back to the direct F.conv2d. */
  stride?: Pair;
}

function toPads4(p: Pair | Pads4 | undefined): Pads4 {
  if (p === undefined) return [0, 0, 0, 0];
  if (typeof p === 'number') return [p, p, p, p];
  if (p.length === 2) return [p[1], p[1], p[0], p[0]];
  return p;
}

/**
 * A stride-1 dilated convolution computed as space-to-batch, an undilated convolution, and batch-to-space.
 * Same values and gradients as F.conv2d(x, weight, bias, { padding, dilation, groups }).
 *
 * With the input padded to Hp x Wp and then (bottom/right, with zeros that only feed cropped outputs) to
 * multiples of the rates dh, dw, sub-image (a, b) holds the pixels (a + dh*i, b + dw*j); an undilated
 * convolution of it gives the dilated output at exactly those positions, and interleaving the sub-image
 * outputs back rebuilds the dilated output, which is then cropped to Hp - dh*(kh-1) x Wp - dw*(kw-1).
 */
export function dilatedConv2d(x: Tensor, weight: Tensor, bias: Tensor | null | undefined, o: DilatedConv2dOptions): Tensor {
  const [dh, dw] = pair(o.dilation);
  const [sh, sw] = pair(o.stride ?? 1);
  const groups = o.groups ?? 1;
  const pads = toPads4(o.padding);
  if (sh !== 1 || sw !== 1 || (dh === 1 && dw === 1)) {
    // Not a case the rewrite handles (or needs): the direct convolution, padding asymmetric pads first.
    return directConv2d(x, weight, bias, pads, { stride: [sh, sw], dilation: [dh, dw], groups });
  }
  if (x.ndim !== 4) throw new TypeError(`dilatedConv2d: expected an N x C x H x W input, got shape [${x.shape}]`);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const [kh, kw] = [weight.size(2), weight.size(3)];
  const [pl, pr, pt, pb] = pads;
  const hp = h + pt + pb;
  const wp = w + pl + pr;
  const ho = hp - dh * (kh - 1);
  const wo = wp - dw * (kw - 1);
  if (ho < 1 || wo < 1) {
    throw new RangeError(`dilatedConv2d: input ${h}x${w} padded to ${hp}x${wp} is smaller than the ` +
      `${kh}x${kw} kernel at dilation ${dh}x${dw}`);
  }
  // Fast path, the usual one (a k x k kernel padded by rate * (k - 1) / 2 on every side, sizes multiples of
  // the rates): sub-image (a, b) of the padded input is sub-image (a, b) of the input padded by (k - 1) / 2,
  // so the convolution pads instead of a copy, and the sub-image outputs tile the output exactly.
  const [mh, mw] = [(kh - 1) / 2, (kw - 1) / 2];
  if (h % dh === 0 && w % dw === 0 && Number.isInteger(mh) && Number.isInteger(mw) &&
    pt === dh * mh && pb === pt && pl === dw * mw && pr === pl) {
    return tidy(() => {
      const batched = x.reshape(n, c, h / dh, dh, w / dw, dw).permute(3, 5, 0, 1, 2, 4).reshape(dh * dw * n, c, h / dh, w / dw);
      const y = F.conv2d(batched, weight, bias, { groups, padding: [mh, mw] });
      const oc = y.size(1);
      return y.reshape(dh, dw, n, oc, h / dh, w / dw).permute(2, 3, 4, 0, 5, 1).reshape(n, oc, h, w);
    });
  }
  const hq = Math.ceil(hp / dh) * dh;
  const wq = Math.ceil(wp / dw) * dw;
  return tidy(() => {
    const full: Pads4 = [pl, pr + (wq - wp), pt, pb + (hq - hp)];
    const padded = full.some((p) => p > 0) ? F.pad(x, full) : x;
    // N, C, Hq/dh, dh, Wq/dw, dw  ->  dh, dw, N, C, Hq/dh, Wq/dw  ->  (dh*dw*N), C, Hq/dh, Wq/dw
    const batched = padded
      .reshape(n, c, hq / dh, dh, wq / dw, dw)
      .permute(3, 5, 0, 1, 2, 4)
      .reshape(dh * dw * n, c, hq / dh, wq / dw);
    const y = F.conv2d(batched, weight, bias, { groups });
    const [oc, yh, yw] = [y.size(1), y.size(2), y.size(3)];
    // dh, dw, N, OC, yh, yw  ->  N, OC, yh, dh, yw, dw  ->  N, OC, yh*dh, yw*dw, then crop.
    let out = y.reshape(dh, dw, n, oc, yh, yw).permute(2, 3, 4, 0, 5, 1).reshape(n, oc, yh * dh, yw * dw);
    if (yh * dh !== ho || yw * dw !== wo) out = out.slice(2, 0, ho).slice(3, 0, wo).contiguous();
    return out;
  });
}

function directConv2d(x: Tensor, weight: Tensor, bias: Tensor | null | undefined, pads: Pads4,
  o: { stride: [number, number]; dilation: [number, number]; groups: number }): Tensor {
  const [pl, pr, pt, pb] = pads;
  if (pl === pr && pt === pb) return F.conv2d(x, weight, bias, { ...o, padding: [pt, pl] });
  const padded = F.pad(x, pads);
  try {
    return F.conv2d(padded, weight, bias, o);
  } finally {
    padded.dispose();
  }
}

export type PaddingMode = 'same' | 'symmetric';

/**
 * How a dilated depthwise convolution runs: 'auto' (default) uses the space-to-batch rewrite when autograd
 * records the call (the backward pass is what is pathological) and libtorch's direct kernel otherwise (its
 * forward is fine, and 2-4x faster than the rewrite's copies); 'space-to-batch' and 'direct' force one.
 */
export type DilatedConvImpl = 'auto' | 'space-to-batch' | 'direct';

export interface BackboneConv2dOptions {
  stride?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
  /** 'symmetric' (torchvision: dilation*(k-1)/2 on every side) or TensorFlow 'same' (computed per input). */
  padding?: PaddingMode;
  dilatedImpl?: DilatedConvImpl;
}

/**
 * nn.Conv2d (same parameters and state-dict keys) whose padding is chosen at run time: symmetric as
 * torchvision, or TensorFlow SAME from the input size. Dilated depthwise convolutions go through
 * dilatedConv2d when autograd records them (see DilatedConvImpl).
 */
export class BackboneConv2d extends Conv2d {
  padding: PaddingMode;
  dilatedImpl: DilatedConvImpl;

  constructor(inChannels: number, outChannels: number, kernelSize: number, o: BackboneConv2dOptions = {}) {
    const [dh, dw] = pair(o.dilation ?? 1);
    super(inChannels, outChannels, kernelSize, {
      stride: o.stride ?? 1,
      padding: [(dh * (kernelSize - 1)) >> 1, (dw * (kernelSize - 1)) >> 1],
      dilation: [dh, dw],
      groups: o.groups ?? 1,
      bias: o.bias ?? true,
    });
    this.padding = o.padding ?? 'symmetric';
    this.dilatedImpl = o.dilatedImpl ?? 'auto';
  }

  /** Depthwise: one input channel per group (and more than one group). */
  get isDepthwise(): boolean {
    return this.opts.groups > 1 && this.opts.groups === this.inChannels;
  }

  #useRewrite(x: Tensor): boolean {
    switch (this.dilatedImpl) {
      case 'space-to-batch': return true;
      case 'direct': return false;
      default:
        return isGradEnabled() && (x.requiresGrad || this.weight.requiresGrad || (this.bias?.requiresGrad ?? false));
    }
  }

  /** The [left, right, top, bottom] pads for an input of h x w. */
  padsFor(h: number, w: number): Pads4 {
    const [kh, kw] = [this.weight.size(2), this.weight.size(3)];
    const [sh, sw] = pair(this.opts.stride);
    const [dh, dw] = pair(this.opts.dilation);
    if (this.padding === 'same') {
      const [pt, pb] = samePadding(h, kh, sh, dh);
      const [pl, pr] = samePadding(w, kw, sw, dw);
      return [pl, pr, pt, pb];
    }
    const [ph, pw] = pair(this.opts.padding);
    return [pw, pw, ph, ph];
  }

  override forward(x: Tensor): Tensor {
    const pads = this.padsFor(x.size(2), x.size(3));
    const stride = pair(this.opts.stride);
    const dilation = pair(this.opts.dilation);
    const groups = this.opts.groups;
    if (this.isDepthwise && (dilation[0] > 1 || dilation[1] > 1) && stride[0] === 1 && stride[1] === 1 &&
      this.#useRewrite(x)) {
      return dilatedConv2d(x, this.weight, this.bias, { padding: pads, dilation, groups });
    }
    return directConv2d(x, this.weight, this.bias, pads, { stride, dilation, groups });
  }
}
