// node dist/bench/amr-crosscheck.js [--backbone resnet50|mobilenet_v2|both] [--batch 2] [--crop 96] [--variant code|paper]
//                                   [--gaussian-scale code|mean] [--dir DIR] [--keep]
//
// Checks src/methods/amr.ts against bench/amr_torch.py, a line-by-line PyTorch transcription of the official AMR
// code (jieqin-ai/AMR: net/amm.py, net/resnet50.py, net/resnet50_amr.py, step/train_amr.py's losses).
//   resnet50      torchvision layout with random weights generated here (He-normal convolutions, bn3 scaled by 0.2
//                 so that 16 residual blocks stay in range; no file is committed), IRN's strides (2, 2, 2, 1):
//                 `dilate: false`, output stride 16.
//   mobilenet_v2  the ImageNet weights of ../shared (output stride 8), the AMM in each inverted residual with a shortcut, after its
//                 projection (weakseg's placement, transcribed into the PyTorch MobileNetV2 of bench/cam_torch.py).
// Our AmrMethod's full state and a batch of random images (with labels, and a random input for one AMM) go to DIR;
// we compute the AMM output, both branches' flip-combined CAMs and logits, each loss term and the gradients of
// every trainable parameter, and amr_torch.py --crosscheck DIR does the same with the code. Relative differences:
// a scalar's |ours - torch| / |torch|; a tensor's max |ours - torch| / max |torch|. The code's FixedBatchNorm also
// trains its affine weight and bias, weakseg's frozen BatchNorm does not: those gradients are counted, not compared.
// `--gaussian-scale mean` checks weakseg's setting against the transcription's same option (not in the code).
// `--variant paper` is a control (the paper's CPS and a trained spotlight against the code): it must differ.
// Ends with one JSON line: { max_rel_diff, per backbone: { loss, outputs, grad_worst, ... } }.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { type Tensor, getNumThreads, manualSeed, noGrad, rand, randn, tidy } from '../src/engine/index.js';
import { loadSafetensors, saveSafetensors } from '../src/engine/serialize/index.js';
import { BatchNorm2d, Conv2d } from '../src/nn/index.js';
import { type Backbone, mobilenetV2, resnet50 } from '../src/backbones/index.js';
import { type Amm, AmrMethod, type GaussianScale, ammBlocks, flipCombine } from '../src/methods/amr.js';
import { benchArgs, benchPaths, findTorchPython } from './common.js';

const { repo, weights } = benchPaths();
const torchScript = join(repo, 'bench', 'amr_torch.py');

const args = benchArgs(import.meta.url, {
  backbone: { type: 'string', default: 'both' },
  batch: { type: 'string', default: '2' },
  crop: { type: 'string', default: '96' },
  variant: { type: 'string', default: 'code' },
  'gaussian-scale': { type: 'string', default: 'code' },
  seed: { type: 'string', default: '0' },
  dir: { type: 'string' },
  keep: { type: 'boolean', default: false },
});
const variant = args.variant as 'code' | 'paper';
if (variant !== 'code' && variant !== 'paper') throw new Error(`--variant must be code or paper, got ${args.variant}`);
const python = findTorchPython();
if (!python) {
  console.log('amr-crosscheck needs a Python with torch (set WEAKSEG_TORCH_PYTHON); skipped');
  console.log(JSON.stringify({ skipped: true }));
  process.exit(0);
}
const wanted = args.backbone === 'both' ? ['resnet50', 'mobilenet_v2'] : [args.backbone!];
for (const b of wanted) if (b !== 'resnet50' && b !== 'mobilenet_v2') throw new Error(`--backbone must be resnet50, mobilenet_v2 or both, got ${b}`);
const root = args.dir ? resolve(args.dir) : mkdtempSync(join(tmpdir(), 'amr-crosscheck-'));
const threads = getNumThreads();
console.log(`amr-crosscheck (${variant}): ${root}, ${threads} engine threads, PyTorch ${python}`);

/** A torchvision-layout ResNet-50 fixture: He-normal convolutions, bn3 weights 0.2, IRN strides. */
const gaussianScale = args['gaussian-scale'] as GaussianScale;
if (gaussianScale !== 'code' && gaussianScale !== 'mean') throw new Error(`--gaussian-scale must be code or mean, got '${gaussianScale}'`);

function resnetFixture(withAmm: boolean): Backbone {
  const net = resnet50({ outputStride: 16, dilate: false, ...(withAmm ? { blocks: ammBlocks({ gaussianScale }) } : {}) });
  noGrad(() => {
    for (const [name, m] of net.namedModules()) {
      if (m instanceof Conv2d && !name.includes('amm')) {
        const fanIn = m.weight.numel / m.weight.size(0);
        tidy(() => m.weight.copy_(randn(m.weight.shape).mul(Math.sqrt(2 / fanIn))));
      }
      if (m instanceof BatchNorm2d && name.endsWith('bn3')) m.stateDict().get('weight')!.fill_(0.2);
    }
  });
  return net;
}

function build(backbone: string): AmrMethod {
  const make = (amm: boolean): Backbone => (backbone === 'resnet50'
    ? resnetFixture(amm)
    : mobilenetV2({ weights, outputStride: 8, ...(amm ? { blocks: ammBlocks({ alwaysBatchStatistics: variant === 'code', gaussianScale }) } : {}) }));
  return new AmrMethod(make(false), make(true), { numClasses: 20, variant });
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
function relTensor(a: Tensor, b: Tensor): number {
  return tidy(() => {
    if (a.shape.join(',') !== b.shape.join(',')) throw new Error(`shape [${a.shape}] vs [${b.shape}]`);
    return a.sub(b).abs().max().item() / Math.max(b.abs().max().item(), 1e-30);
  });
}
const sci = (x: number) => x.toExponential(3);

type Result = { loss: Record<string, { ours: number; torch: number; rel: number }>; outputs: Record<string, number>;
  grad_worst: { name: string; rel: number }; grads_compared: number; bn_affine_grads_skipped: number; max_rel_diff: number };
const results: Record<string, Result> = {};

for (const backbone of wanted) {
  if (backbone === 'mobilenet_v2' && !existsSync(weights)) {
    console.log(`mobilenet_v2: ${weights} is absent (../shared); skipped`);
    continue;
  }
  const dir = join(root, backbone);
  mkdirSync(dir, { recursive: true });
  manualSeed(Number(args.seed));
  const m = build(backbone);
  m.model.train();
  const n = Number(args.batch);
  const crop = Number(args.crop);
  const ammPath = backbone === 'resnet50' ? 'compensation.backbone.layer3.1' : 'compensation.backbone.features.10';
  const amm = [...m.model.namedModules()].find(([k]) => k === `${ammPath}.amm`)![1] as Amm;
  const ammChannels = backbone === 'resnet50' ? 1024 : 64;
  const x = randn([n, 3, crop, crop]);
  const y = rand([n, 20]).gt(0.8).float();
  noGrad(() => y.select(1, 14).fill_(1)); // every image has a class
  const ammIn = randn([2, ammChannels, 7, 9]);
  saveSafetensors(join(dir, 'model.safetensors'), m.model.stateDict());
  saveSafetensors(join(dir, 'batch.safetensors'), { images: x, labels: y, amm_in: ammIn });
  writeFileSync(join(dir, 'meta.json'), JSON.stringify({ backbone, amm: ammPath, gaussian_scale: gaussianScale }));

  const ammOut = noGrad(() => amm.forward(ammIn));
  const named = [...m.model.namedParameters()].filter(([, p]) => p.requiresGrad);
  for (const [, p] of named) p.grad = null;
  const ours = tidy(() => {
    const b = m.forwardBranches(x);
    const outputs = noGrad(() => ({ logits_s: b.logitsS.clone(), cam_s: flipCombine(b.camS), logits_c: b.logitsC.detach().clone(), cam_c: flipCombine(b.camC.detach()) }));
    const { loss, parts } = m.loss({ images: x, labels: y, ids: [] });
    loss.backward();
    return { outputs, parts: { cls_s: parts!.clsS!.item(), cls_c: parts!.clsC!.item(), cps: parts!.cps!.item(), total: loss.item() } };
  });

  const r = spawnSync(python, [torchScript, String(threads), '--crosscheck', dir], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`amr_torch.py --crosscheck failed (${r.status}):\n${r.stderr}`);
  const theirs = loadSafetensors(join(dir, 'torch.safetensors')).tensors;

  const loss: Result['loss'] = {};
  for (const [k, v] of Object.entries(ours.parts)) {
    const t = theirs.get(`loss.${k}`)!.item();
    loss[k] = { ours: v, torch: t, rel: rel(v, t) };
  }
  const outputs: Record<string, number> = { amm: relTensor(ammOut, theirs.get('out.amm')!) };
  for (const [k, t] of Object.entries(ours.outputs)) outputs[k] = relTensor(t, theirs.get(`out.${k}`)!);
  let worst = { name: '', rel: 0 };
  let compared = 0;
  for (const [name, p] of named) {
    const g = p.grad;
    const tg = theirs.get(`grad.${name}`);
    if (!g && !tg) continue;
    if (!g || !tg) {
      // the paper control trains the spotlight backbone, which the code detaches: a difference, not a failure
      if (variant === 'paper') { worst = { name, rel: Infinity }; g?.dispose(); continue; }
      throw new Error(`${backbone}: gradient of ${name}: ours ${g ? 'present' : 'missing'}, torch ${tg ? 'present' : 'missing'}`);
    }
    const d = relTensor(g, tg);
    compared++;
    if (d > worst.rel || Number.isNaN(d)) worst = { name, rel: d };
    g.dispose();
  }
  const ourNames = new Set(named.map(([k]) => k));
  const extra = [...theirs.keys()].filter((k) => k.startsWith('grad.') && !ourNames.has(k.slice(5)));
  if (extra.length) throw new Error(`${backbone}: the code trains parameters we do not: ${extra.slice(0, 5).join(', ')}`);
  const bnSkipped = [...theirs.keys()].filter((k) => k.startsWith('bn_grad.')).length;
  const maxRel = Math.max(...Object.values(loss).map((l) => l.rel), ...Object.values(outputs), worst.rel);
  results[backbone] = { loss, outputs, grad_worst: worst, grads_compared: compared, bn_affine_grads_skipped: bnSkipped, max_rel_diff: maxRel };

  console.log(`\n${backbone} (batch ${n}, ${crop} px):`);
  console.log('  loss term   ours              torch             rel');
  for (const [k, l] of Object.entries(loss)) console.log(`  ${k.padEnd(10)}  ${l.ours.toPrecision(10).padEnd(16)}  ${l.torch.toPrecision(10).padEnd(16)}  ${sci(l.rel)}`);
  console.log(`  outputs, max|diff| / max|torch|: ${Object.entries(outputs).map(([k, v]) => `${k} ${sci(v)}`).join(', ')}`);
  console.log(`  gradients: ${compared} parameters compared, worst ${worst.name} ${sci(worst.rel)}; ` +
    `${bnSkipped} FixedBatchNorm affine gradients of the code not compared (weakseg's frozen BN does not train them)`);
  for (const t of theirs.values()) t.dispose();
  for (const t of Object.values(ours.outputs)) t.dispose();
  ammOut.dispose();
  m.model.dispose();
}

if (!args.keep && !args.dir) rmSync(root, { recursive: true, force: true });
const r6 = (v: number) => Number(v.toPrecision(6));
console.log(JSON.stringify({
  variant,
  max_rel_diff: r6(Math.max(...Object.values(results).map((r) => r.max_rel_diff))),
  ...Object.fromEntries(Object.entries(results).map(([k, r]) => [k, {
    max_rel_diff: r6(r.max_rel_diff),
    loss: Object.fromEntries(Object.entries(r.loss).map(([n, l]) => [n, r6(l.rel)])),
    outputs: Object.fromEntries(Object.entries(r.outputs).map(([n, v]) => [n, r6(v)])),
    grad_worst: { name: r.grad_worst.name, rel: r6(r.grad_worst.rel) },
    grads_compared: r.grads_compared,
    bn_affine_grads_skipped: r.bn_affine_grads_skipped,
  }])),
}));
