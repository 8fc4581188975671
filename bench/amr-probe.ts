// node dist/bench/amr-probe.js [--train 300] [--val 150] [--iterations 500]
//
// What the AMMs do to ImageNet MobileNetV2 features before any training, under each gaussianScale: the compensation
// backbone (ImageNet weights, AMMs at their random initialisation, seed 0) against the plain backbone. Per AMM, how
// much it shrinks its residual branch (mean |AMM(x)| / mean |x| on the first val image); then a linear probe: a
// logistic regression (multilabel soft margin, L2 1e-3, Adam, full batch) on the pooled features of the first
// --train images of voc-mini `train`, scored on the first --val images of `val` (top-1: the highest logit is a class
// present; mAP over the classes present in them). It says whether a classifier can start from what the AMM network
// passes on; the README's AMR section cites it. Needs ../shared. Ends with one JSON line.
import { existsSync } from 'node:fs';

import { Adam } from '../src/nn/index.js';
import { F, type Tensor, cat, manualSeed, noGrad, tensor, tidy, zeros } from '../src/engine/index.js';
import { type Backbone, mobilenetV2 } from '../src/backbones/index.js';
import { Amm, type GaussianScale, ammBlocks } from '../src/methods/amr.js';
import { BatchLoader, type Dataset, evalTransform, readVoc } from '../src/data/index.js';
import { benchArgs, benchPaths, round } from './common.js';

const { voc, weights } = benchPaths();
const args = benchArgs(import.meta.url, {
  train: { type: 'string', default: '300' },
  val: { type: 'string', default: '150' },
  iterations: { type: 'string', default: '500' },
});
if (!existsSync(voc) || !existsSync(weights)) {
  console.log(`amr-probe needs ${voc} and ${weights} (../shared is absent); skipped`);
  console.log(JSON.stringify({ skipped: true }));
  process.exit(0);
}

type Variant = 'plain' | GaussianScale;
const variants: Variant[] = ['plain', 'code', 'mean'];

function build(v: Variant): Backbone {
  manualSeed(0);
  const net = mobilenetV2({ weights, outputStride: 8, ...(v === 'plain' ? {} : { blocks: ammBlocks({ gaussianScale: v }) }) });
  return net.eval();
}

async function split(name: string, n: number): Promise<Dataset> {
  const d = await readVoc({ root: voc, split: name });
  return { ...d, items: d.items.slice(0, n) };
}

/** Pooled features (N x C) and the label matrix (N x classes) of a dataset under one backbone. */
async function features(net: Backbone, data: Dataset): Promise<{ x: Tensor; y: Tensor }> {
  const loader = new BatchLoader(data, evalTransform({ norm: net.inputNorm, withMask: false }), { batchSize: 1, shuffle: false, prefetch: 2 });
  const rows: Tensor[] = [];
  const labels = new Float32Array(data.items.length * data.classes.length);
  for await (const b of loader.epoch(0)) {
    const [, c, h, w] = b.shape as [number, number, number, number];
    rows.push(noGrad(() => tidy(() => F.globalAvgPool(net.forward(tensor(b.images, { shape: [1, c, h, w] })).features).flatten(1))));
    for (const l of data.items[b.indices[0]!]!.labels) labels[b.indices[0]! * data.classes.length + l] = 1;
  }
  const x = cat(rows, 0);
  for (const r of rows) r.dispose();
  return { x, y: tensor(labels, { shape: [data.items.length, data.classes.length] }) };
}

/** Per AMM, mean |AMM(x)| / mean |x| on one image (each AMM's forward wrapped for that pass only). */
async function damping(net: Backbone, data: Dataset): Promise<number[]> {
  const ratios: number[] = [];
  const amms = [...net.namedModules()].map(([, m]) => m).filter((m): m is Amm => m instanceof Amm);
  for (const m of amms) {
    const forward = m.forward.bind(m);
    m.forward = (x: Tensor) => {
      const y = forward(x);
      ratios.push(round(y.abs().mean().item() / x.abs().mean().item(), 3));
      return y;
    };
  }
  try {
    const { x, y } = await features(net, { ...data, items: data.items.slice(0, 1) });
    x.dispose();
    y.dispose();
  } finally {
    for (const m of amms) delete (m as { forward?: unknown }).forward; // back to the prototype's
  }
  return ratios;
}

function probe(train: { x: Tensor; y: Tensor }, val: { x: Tensor; y: Tensor }): { top1: number; map: number } {
  return tidy(() => {
    const mu = train.x.mean(0, true);
    const sd = train.x.std(0, { keepdim: true }).add(1e-6);
    const xt = train.x.sub(mu).div(sd);
    const xv = val.x.sub(mu).div(sd);
    const k = train.y.size(1);
    const w = zeros([xt.size(1), k]).requiresGrad_(true);
    const b = zeros([k]).requiresGrad_(true);
    const opt = new Adam([w, b], { lr: 0.01 });
    for (let i = 0; i < Number(args.iterations); i++) {
      opt.zeroGrad();
      tidy(() => F.multilabelSoftMarginLoss(xt.matmul(w).add(b), train.y).add(w.square().sum().mul(1e-3)).backward());
      opt.step();
    }
    const z = noGrad(() => xv.matmul(w).add(b));
    const n = z.size(0);
    const logits = z.toFloat32Array();
    const y = val.y.toFloat32Array();
    let top1 = 0;
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let c = 1; c < k; c++) if (logits[i * k + c]! > logits[i * k + best]!) best = c;
      top1 += y[i * k + best]!;
    }
    const aps: number[] = [];
    for (let c = 0; c < k; c++) {
      const order = [...Array(n).keys()].sort((p, q) => logits[q * k + c]! - logits[p * k + c]!);
      const positives = order.reduce((s, i) => s + y[i * k + c]!, 0);
      if (positives === 0) continue;
      let hits = 0;
      let ap = 0;
      order.forEach((i, rank) => { if (y[i * k + c]) ap += ++hits / (rank + 1); });
      aps.push(ap / positives);
    }
    opt.dispose();
    return { top1: round(top1 / n, 3), map: round(100 * aps.reduce((s, a) => s + a, 0) / aps.length, 1) };
  });
}

const train = await split('train', Number(args.train));
const val = await split('val', Number(args.val));
console.log(`amr-probe: ${train.items.length} train and ${val.items.length} val images of ${voc}`);
const out: Record<string, unknown> = {};
for (const v of variants) {
  const net = build(v);
  const damped = v === 'plain' ? null : await damping(net, val);
  const [ft, fv] = [await features(net, train), await features(net, val)];
  const r = probe(ft, fv);
  const meanAbs = round(ft.x.abs().mean().item(), 3);
  console.log(`${v.padEnd(5)} probe top-1 ${r.top1}, mAP ${r.map}; mean |feature| ${meanAbs}` + (damped ? `; |AMM(x)|/|x| per AMM ${damped.join(' ')}` : ''));
  out[v] = { ...r, mean_abs_feature: meanAbs, ...(damped ? { damping: damped } : {}) };
  for (const t of [ft.x, ft.y, fv.x, fv.y]) t.dispose();
  net.dispose();
}
console.log(JSON.stringify({ train_images: train.items.length, val_images: val.items.length, ...out }));
