// A tiny backbone implementing the Backbone interface, for tests that must not depend on real networks, and a
// synthetic dataset whose image-level labels are visible in the pixels (coloured squares).
import { F, type Tensor, noGrad, tidy } from '../../src/engine/index.js';
import { Conv2d, Module } from '../../src/nn/index.js';
import { type Backbone, type BackboneOutput, IMAGENET_NORM, type InputNorm } from '../../src/backbones/backbone.js';
import type { Dataset } from '../../src/data/index.js';
import type { ItemTransform, Sample } from '../../src/data/index.js';
import { Rng } from '../../src/data/index.js';

export interface TinyOptions {
  channels?: number;
  /** Stride-2 3x3 convolutions (default 2: output stride 4). */
  strided?: number;
  /** Make every 3x3 kernel left-right symmetric, and use stride 1: the network is then flip-equivariant. */
  flipEquivariant?: boolean;
}

/** conv3x3 (3 -> C) ReLU, conv3x3 (C -> C) ReLU, with stride 2 in the first `strided` layers. */
export class TinyBackbone extends Module implements Backbone {
  readonly name = 'tiny';
  readonly outChannels: number;
  readonly outputStride: number;
  readonly taps = [{ name: 'conv1', channels: 0, stride: 1 }];
  readonly inputNorm: InputNorm = IMAGENET_NORM;
  readonly conv1: Conv2d;
  readonly conv2: Conv2d;
  readonly symmetric: boolean;

  constructor(o: TinyOptions = {}) {
    super();
    const C = o.channels ?? 8;
    this.symmetric = o.flipEquivariant ?? false;
    const strided = this.symmetric ? 0 : (o.strided ?? 2);
    this.outChannels = C;
    this.outputStride = 2 ** strided;
    this.taps[0]!.channels = C;
    this.taps[0]!.stride = strided >= 1 ? 2 : 1;
    this.conv1 = this.registerModule('conv1', new Conv2d(3, C, 3, { padding: 1, stride: strided >= 1 ? 2 : 1 }));
    this.conv2 = this.registerModule('conv2', new Conv2d(C, C, 3, { padding: 1, stride: strided >= 2 ? 2 : 1 }));
    if (this.symmetric) {
      noGrad(() => {
        for (const c of [this.conv1, this.conv2]) tidy(() => c.weight.copy_(c.weight.add(c.weight.flip(3)).div(2)));
      });
    }
  }

  forward(x: Tensor, taps?: string[]): BackboneOutput {
    return tidy(() => {
      const h1 = this.conv1.forward(x).relu();
      const h2 = this.conv2.forward(h1).relu();
      const out = new Map<string, Tensor>();
      if (taps?.includes('conv1')) out.set('conv1', h1);
      return { features: h2, taps: out };
    });
  }
}

export const SYNTH_CLASSES = ['red', 'green', 'blue'];

/** n items; item i shows a square of colour c for each label c (labels drawn from the seed). */
export function synthDataset(n: number, seed = 1): Dataset {
  const rng = new Rng(seed);
  const items = Array.from({ length: n }, (_, i) => {
    const labels = [0, 1, 2].filter(() => rng.bool(0.5));
    if (labels.length === 0) labels.push(rng.int(3));
    return { id: `img${i}`, imagePath: `/nonexistent/img${i}.jpg`, labels };
  });
  return { classes: [...SYNTH_CLASSES], items };
}

/** Renders an item: grey noise background and, for each label, a square of its colour at a random place. */
export function synthTransform(size = 32): ItemTransform {
  return async (item, { rng }): Promise<Sample> => {
    const plane = size * size;
    const image = new Float32Array(3 * plane);
    for (let i = 0; i < image.length; i++) image[i] = (rng.float() - 0.5) * 0.2;
    const side = Math.floor(size / 3);
    for (const label of item.labels) {
      const x0 = rng.int(size - side);
      const y0 = rng.int(size - side);
      for (let y = y0; y < y0 + side; y++) {
        for (let x = x0; x < x0 + side; x++) image[label * plane + y * size + x] = 2;
      }
    }
    return { image, channels: 3, height: size, width: size };
  };
}

/** Global-average-pooled features, to check a backbone quickly. */
export function pooled(b: Backbone, x: Tensor): Tensor {
  return tidy(() => F.globalAvgPool(b.forward(x).features));
}
