/**
 * Per-layer forward/backward times of MobileNetV2 at output stride 8 (batch 16, 224x224 by default), to show
 * that no layer runs on a pathological libtorch path. Debian's libtorch 1.13 runs the backward pass of a
 * *dilated depthwise* convolution on one (123 s for one 960-channel rate-4 layer at batch 16); the backbone
 * rewrites those as space-to-batch + undilated convolution + batch-to-space (src/backbones/conv.ts).
 *
 * Every layer (each conv + BN + ReLU6 unit, and each block's linear projection conv + BN) is timed once on a
 * random input of the shape it sees in the network (after one warm-up of the whole network at batch 2), with
 * the backward pass computing the input and weight gradients as in training. Then whole-backbone steps.
 *
 *   node dist/bench/backbone-layers.js [--batch 16] [--size 224] [--os 8] [--direct-batch N] [--threads N]
 *
 * --direct-batch N also times libtorch's direct kernel on the dilated depthwise layers at batch N (keep N
 * small: at batch 16 one such backward takes minutes). Ends with one JSON line of the headline figures.
 */
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';

import {
  type Tensor, engineInfo, getNumThreads, noGrad, randn, randnLike, setNumThreads, tidy,
} from '../src/engine/index.js';
import { BatchNorm2d, type Layer, Sequential } from '../src/nn/index.js';
import { BackboneConv2d, InvertedResidual, type MobileNetV2, mobilenetV2 } from '../src/backbones/index.js';

const WEIGHTS = new URL('../../../shared/weights/mobilenet_v2_imagenet.safetensors', import.meta.url).pathname;

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

interface Unit {
  name: string;
  layer: Layer;
  conv: BackboneConv2d;
  inShape: number[];
}

/** The conv units of the network in order, with the input shape each sees at the given batch and size. */
function units(m: MobileNetV2, batch: number, size: number): Unit[] {
  const out: Unit[] = [];
  noGrad(() => tidy(() => {
    let x: Tensor = randn([batch, 3, size, size]);
    m.features.layers.forEach((block, i) => {
      const blockIn = x;
      const list: [string, Layer][] = [];
      if (block instanceof InvertedResidual) {
        const seq = block.conv.layers;
        for (let j = 0; j < seq.length; j++) {
          const l = seq[j]!;
          if (l instanceof Sequential) {
            list.push([`features.${i}.conv.${j}`, l]);
          } else if (l instanceof BackboneConv2d && seq[j + 1] instanceof BatchNorm2d) {
            list.push([`features.${i}.conv.${j}-${j + 1}`, new Sequential(l, seq[j + 1]!)]);
            j++;
          }
        }
      } else {
        list.push([`features.${i}`, block]);
      }
      for (const [name, layer] of list) {
        const conv = layer instanceof Sequential ? (layer.at(0) as BackboneConv2d) : (layer as unknown as BackboneConv2d);
        out.push({ name, layer, conv, inShape: x.shape });
        x = layer.forward(x);
      }
      if (block instanceof InvertedResidual && block.useResConnect) x = x.add(blockIn);
    });
  }));
  return out;
}

function describe(c: BackboneConv2d): string {
  const k = c.weight.size(2);
  const [s] = Array.isArray(c.opts.stride) ? c.opts.stride : [c.opts.stride];
  const [d] = Array.isArray(c.opts.dilation) ? c.opts.dilation : [c.opts.dilation];
  const kind = c.isDepthwise ? 'dw' : k === 1 ? 'pw' : 'conv';
  return `${kind} ${k}x${k} s${s}${d! > 1 ? ` d${d}` : ''} ${c.inChannels}->${c.outChannels}`;
}

/** One timed forward and backward of a layer on a fresh random input (input and weight gradients). */
function timeLayer(layer: Layer, shape: number[]): { fwd: number; bwd: number } {
  return tidy(() => {
    const x = randn(shape).requiresGrad_();
    const t0 = performance.now();
    const y = layer.forward(x);
    const t1 = performance.now();
    y.backward(randnLike(y));
    const t2 = performance.now();
    return { fwd: t1 - t0, bwd: t2 - t1 };
  });
}

function main(): void {
  const batch = arg('batch', 16);
  const size = arg('size', 224);
  const os = arg('os', 8) as 8 | 16 | 32;
  const directBatch = arg('direct-batch', 0);
  const threads = arg('threads', 0);
  if (threads > 0) setNumThreads(threads);

  const weights = existsSync(WEIGHTS) ? WEIGHTS : undefined;
  const m = mobilenetV2({ weights, outputStride: os }).train();
  const info = engineInfo();
  console.log(`MobileNetV2 OS ${os}, batch ${batch}, ${size}x${size}, ${weights ? 'ImageNet weights (SAME padding)' : 'random weights'}; ` +
    `libtorch ${info.torchVersion}, ${getNumThreads()} threads, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);

  // Warm-up: one whole forward/backward at batch 2 (first-call kernel setup is not what we measure).
  tidy(() => m.forward(randn([2, 3, size, size])).features.mean().backward());

  const list = units(m, batch, size);
  console.log(`${'layer'.padEnd(24)} ${'conv'.padEnd(28)} ${'input'.padEnd(18)} ${'fwd ms'.padStart(9)} ${'bwd ms'.padStart(9)}`);
  let worst = { name: '', bwd: 0 };
  let sumF = 0;
  let sumB = 0;
  const rows: { name: string; conv: string; fwd: number; bwd: number }[] = [];
  for (const u of list) {
    const t = timeLayer(u.layer, u.inShape);
    sumF += t.fwd;
    sumB += t.bwd;
    if (t.bwd > worst.bwd) worst = { name: u.name, bwd: t.bwd };
    const desc = describe(u.conv);
    rows.push({ name: u.name, conv: desc, fwd: t.fwd, bwd: t.bwd });
    console.log(`${u.name.padEnd(24)} ${desc.padEnd(28)} ${u.inShape.slice(1).join('x').padEnd(18)} ` +
      `${t.fwd.toFixed(1).padStart(9)} ${t.bwd.toFixed(1).padStart(9)}`);
  }
  console.log(`${'sum of layers'.padEnd(72)} ${sumF.toFixed(1).padStart(9)} ${sumB.toFixed(1).padStart(9)}`);

  // The whole backbone, one training step's forward and backward (median of 3: the machine may be shared).
  const steps = [0, 1, 2].map(() => tidy(() => {
    const t0 = performance.now();
    const f = m.forward(randn([batch, 3, size, size])).features;
    const t1 = performance.now();
    f.backward(randnLike(f));
    return { fwd: t1 - t0, bwd: performance.now() - t1 };
  }));
  const mid = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const step = { fwd: mid(steps.map((s) => s.fwd)), bwd: mid(steps.map((s) => s.bwd)) };
  console.log(`whole backbone step (median of 3): forward ${step.fwd.toFixed(1)} ms, backward ${step.bwd.toFixed(1)} ms`);

  const direct: { name: string; batch: number; rewriteBwd: number; directBwd: number }[] = [];
  if (directBatch > 0) {
    console.log(`\ndilated depthwise layers at batch ${directBatch}: space-to-batch rewrite vs libtorch's direct kernel`);
    for (const u of list.filter((v) => v.conv.isDepthwise && describe(v.conv).includes(' d'))) {
      const shape = [directBatch, ...u.inShape.slice(1)];
      u.conv.dilatedImpl = 'space-to-batch';
      const a = timeLayer(u.layer, shape);
      u.conv.dilatedImpl = 'direct';
      const b = timeLayer(u.layer, shape);
      u.conv.dilatedImpl = 'auto';
      direct.push({ name: u.name, batch: directBatch, rewriteBwd: a.bwd, directBwd: b.bwd });
      console.log(`${u.name.padEnd(24)} ${describe(u.conv).padEnd(28)} rewrite fwd ${a.fwd.toFixed(1)} bwd ${a.bwd.toFixed(1)} ms | ` +
        `direct fwd ${b.fwd.toFixed(1)} bwd ${b.bwd.toFixed(1)} ms`);
    }
  }
  m.dispose();
  console.log(JSON.stringify({
    bench: 'backbone-layers', backbone: 'mobilenet_v2', outputStride: os, batch, size, threads: getNumThreads(),
    layers: rows.length, sumForwardMs: Math.round(sumF), sumBackwardMs: Math.round(sumB),
    slowestBackward: { layer: worst.name, ms: Math.round(worst.bwd) },
    step: { forwardMs: Math.round(step.fwd), backwardMs: Math.round(step.bwd) },
    ...(direct.length ? { direct } : {}),
  }));
}

main();
