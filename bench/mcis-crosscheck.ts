// node dist/bench/mcis-crosscheck.js [--backbone mobilenet_v2|vgg16|both] [--size 256] [--batch 2] [--epoch 2]
//                                    [--seed 0] [--dir DIR] [--keep]
//
// Checks src/methods/mcis.ts against bench/mcis_torch.py, a transcription of the official MCIS code
// (GuoleiSun/MCIS_wsss, Classifier/models/vgg.py and the loss of scripts/train.py), on the same weights and batch.
//
// MobileNetV2: the ImageNet weights of ../shared, output stride 8, then our McisNet's seeded extra layers; PyTorch
// takes all of it from our saved state. VGG-16 D1: torchvision writes a vgg16 state dict with random weights
// (seed 0, torch.save) that our backbone loads by name; PyTorch loads the same file as the official code does
// (self.vgg.load_state_dict(..., strict=False)) and only the extra layers from our state, so the by-name loading is
// checked too. The batch: `--batch` voc-mini train images (several classes first) with partners sharing a class
// (the training loader's pairs), `--size` square crops, and our self-pair views (hflip, 0.75x, 2x) given to both.
// At `--epoch` 2 (the default) the contrastive terms apply where the pair has exclusive labels.
// Printed per backbone: every loss term (the code's names), the four model calls' outputs (logits and the code's
// co_logits: co-attention then contrastive) and the gradients (a few named, and the worst of all parameters).
// Relative differences: scalars |ours - torch| / |torch|; tensors max |ours - torch| / max |torch|.
// Ends with one JSON line: per backbone { max_rel_diff_loss, max_rel_diff_out, max_rel_diff_grad_all, terms }.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { type Tensor, cat, emptyCache, getNumThreads, manualSeed, noGrad, tensor, tidy } from '../src/engine/index.js';
import { loadSafetensors, saveSafetensors } from '../src/engine/serialize/index.js';
import { BatchLoader, type Dataset, readVoc, trainTransform } from '../src/data/index.js';
import { type Backbone, mobilenetV2, vgg16 } from '../src/backbones/index.js';
import { McisMethod, selfPairViews } from '../src/methods/mcis.js';
import { benchArgs, benchPaths, findTorchPython, relScalar, relTensor } from './common.js';

const { repo, voc, weights } = benchPaths();
const torchScript = join(repo, 'bench', 'mcis_torch.py');

const args = benchArgs(import.meta.url, {
  backbone: { type: 'string', default: 'both' },
  size: { type: 'string', default: '256' },
  batch: { type: 'string', default: '2' },
  epoch: { type: 'string', default: '2' },
  seed: { type: 'string', default: '0' },
  dir: { type: 'string' },
  keep: { type: 'boolean', default: false },
});

if (!existsSync(voc) || !existsSync(weights)) {
  console.log(`mcis-crosscheck needs ${voc} and ${weights} (../shared is absent); skipped`);
  console.log(JSON.stringify({ skipped: true }));
  process.exit(0);
}
const python = findTorchPython();
if (!python) {
  console.log('mcis-crosscheck needs a Python with torch (set WEAKSEG_TORCH_PYTHON); skipped');
  console.log(JSON.stringify({ skipped: true }));
  process.exit(0);
}
const backbones = args.backbone === 'both' ? ['mobilenet_v2', 'vgg16'] : [args.backbone!];
for (const b of backbones) if (b !== 'mobilenet_v2' && b !== 'vgg16') throw new Error(`--backbone must be mobilenet_v2, vgg16 or both, got ${b}`);
const dir = args.dir ? resolve(args.dir) : mkdtempSync(join(tmpdir(), 'mcis-crosscheck-'));
mkdirSync(dir, { recursive: true });
const threads = getNumThreads();
const [n, size, epoch] = [Number(args.batch), Number(args.size), Number(args.epoch)];
const sci = (x: number) => x.toExponential(3);
console.log(`mcis-crosscheck: ${dir}, ${threads} engine threads, PyTorch ${python}, batch ${n} pairs, ${size} px, epoch ${epoch}`);

function runTorch(extra: string[]): void {
  const r = spawnSync(python!, [torchScript, '--threads', String(threads), ...extra], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`mcis_torch.py ${extra.join(' ')} failed (${r.status}):\n${r.stderr}`);
}

const ds = await readVoc({ root: voc, split: 'train' });
const multi = ds.items.filter((it) => it.labels.length >= 2);
const dataset: Dataset = { classes: ds.classes, items: [...multi, ...ds.items.filter((it) => it.labels.length < 2)].slice(0, Math.max(4 * n, 16)) };

async function check(name: string) {
  let backbone: Backbone;
  const torchArgs = ['--crosscheck', dir, '--backbone', name, '--epoch', String(epoch)];
  if (name === 'vgg16') {
    const pth = join(dir, 'vgg16.pth');
    runTorch(['--make-vgg16', pth]);
    backbone = vgg16({ weights: pth });
    torchArgs.push('--torchvision', pth);
  } else {
    backbone = mobilenetV2({ weights, outputStride: 8 });
  }
  manualSeed(Number(args.seed));
  const m = new McisMethod(backbone, { numClasses: 20 });
  m.model.train();
  const loader = new BatchLoader(dataset, trainTransform({ cropSize: size, norm: backbone.inputNorm }),
    { batchSize: n, seed: Number(args.seed), dropLast: true, pairs: m.pairs, shuffle: false });
  const b = (await loader.epoch(0).next()).value!;
  const names = (labels: Float32Array, i: number) => ds.classes.filter((_, c) => labels[i * 20 + c]).join('+');
  console.log(`\n== ${name}: pairs ${b.ids.map((id, i) => `${id} (${names(b.labels, i)}) ~ ${b.partner!.ids[i]} (${names(b.partner!.labels, i)})`).join(', ')}`);
  const input1 = tensor(b.images, { shape: b.shape });
  const input2 = tensor(b.partner!.images, { shape: b.shape });
  const label1 = tensor(b.labels, { shape: [n, 20] });
  const label2 = tensor(b.partner!.labels, { shape: [n, 20] });
  const views = noGrad(() => selfPairViews(input1));
  saveSafetensors(join(dir, 'model.safetensors'), m.model.stateDict());
  saveSafetensors(join(dir, 'batch.safetensors'), { input1, input2, t0: views[0]!, t1: views[1]!, t2: views[2]!, label1, label2 });

  // Ours: the four model calls' outputs as the code concatenates them, then the terms and the gradients.
  const outputs = noGrad(() => tidy(() => {
    const f1 = m.model.features(input1);
    const out: Record<string, Tensor> = {};
    const pairs: [string, Tensor][] = [['pair', input2], ['flip', views[0]!], ['small', views[1]!], ['large', views[2]!]];
    for (const [key, other] of pairs) {
      const p = m.model.pair(f1, m.model.features(other));
      out[`${key}.logits`] = cat([p.score1, p.score2]);
      out[`${key}.co_logits`] = cat([p.coScore1, p.coScore2, p.exScore1, p.exScore2]);
    }
    return out;
  }));
  const named = [...m.model.namedParameters()].filter(([, p]) => p.requiresGrad);
  for (const [, p] of named) p.grad = null;
  const ours = tidy(() => {
    const terms = m.lossTerms({ images: input1, labels: label1, ids: b.ids, partner: { images: input2, labels: label2, ids: b.partner!.ids } }, { epoch }, views);
    const total = Object.values(terms).reduce((x, y) => x.add(y));
    total.backward();
    return { ...Object.fromEntries(Object.entries(terms).map(([k, t]) => [k, t.item()])), total: total.item() } as Record<string, number>;
  });

  runTorch(torchArgs);
  const theirs = loadSafetensors(join(dir, 'torch.safetensors')).tensors;
  const termRows: Record<string, { ours: number; torch: number; rel: number }> = {};
  const torchTerms = [...theirs.keys()].filter((k) => k.startsWith('loss.')).map((k) => k.slice(5));
  const missing = [...new Set([...torchTerms, ...Object.keys(ours)])].filter((k) => !(k in ours) || !torchTerms.includes(k));
  if (missing.length) throw new Error(`terms present on one side only: ${missing.join(', ')}`);
  console.log('loss terms (the code\'s names):          ours              torch             rel');
  for (const k of torchTerms) {
    const t = theirs.get(`loss.${k}`)!.item();
    termRows[k] = { ours: ours[k]!, torch: t, rel: relScalar(ours[k]!, t) };
    console.log(`  ${k.padEnd(36)}  ${ours[k]!.toPrecision(10).padEnd(16)}  ${t.toPrecision(10).padEnd(16)}  ${sci(termRows[k]!.rel)}`);
  }
  let worstOut = 0;
  console.log('model outputs, max|diff| / max|torch|:');
  for (const [k, t] of Object.entries(outputs)) {
    const d = relTensor(t, theirs.get(`out.${k}`)!);
    worstOut = Math.max(worstOut, d.relMax);
    console.log(`  ${k.padEnd(18)} [${t.shape.join('x')}]  ${sci(d.relMax)}`);
  }
  const FEW = ['extra_linear_e.weight', 'extra_gate.weight', 'extra_gate_merge.weight', 'extra_last_conv.bias',
    'extra_convs.0.weight', name === 'vgg16' ? 'backbone.features.0.weight' : 'backbone.features.0.0.weight'];
  let worst = { name: '', rel: 0 };
  console.log('gradients, max|diff| / max|torch|, ||diff|| / ||torch||:');
  for (const [pname, p] of named) {
    const g = p.grad;
    const tg = theirs.get(`grad.${pname}`);
    if (!g || !tg) throw new Error(`gradient of ${pname}: ours ${g ? 'present' : 'missing'}, torch ${tg ? 'present' : 'missing'}`);
    const d = relTensor(g, tg);
    g.dispose();
    if (d.relMax > worst.rel) worst = { name: pname, rel: d.relMax };
    if (FEW.includes(pname)) console.log(`  ${pname.padEnd(36)} ${sci(d.relMax)}  ${sci(d.relL2)}  (max |torch| ${sci(tidy(() => tg.abs().max().item()))})`);
  }
  console.log(`  worst of all ${named.length} parameters: ${worst.name} ${sci(worst.rel)}`);
  for (const t of [...theirs.values(), ...Object.values(outputs), ...views, input1, input2, label1, label2]) t.dispose();
  m.model.dispose();
  emptyCache();
  return {
    max_rel_diff_loss: Math.max(...Object.values(termRows).map((r) => r.rel)),
    max_rel_diff_out: worstOut,
    max_rel_diff_grad_all: worst.rel,
    worst_grad: worst.name,
    terms: Object.fromEntries(Object.entries(termRows).map(([k, r]) => [k, Number(r.rel.toPrecision(3))])),
  };
}

const results: Record<string, Awaited<ReturnType<typeof check>>> = {};
for (const name of backbones) results[name] = await check(name);
if (!args.keep && !args.dir) rmSync(dir, { recursive: true, force: true });
else console.log(`files kept in ${dir}`);
const r3 = (v: number) => Number(v.toPrecision(3));
console.log(JSON.stringify(Object.fromEntries(Object.entries(results).map(([k, r]) => [k, {
  ...r, max_rel_diff_loss: r3(r.max_rel_diff_loss), max_rel_diff_out: r3(r.max_rel_diff_out), max_rel_diff_grad_all: r3(r.max_rel_diff_grad_all),
}]))));
