// node dist/bench/pixelss-crosscheck.js [--seed 0] [--dir DIR] [--keep] [--time [--batch 16] [--crop 224]
//                                       [--rounds 3] [--steps 2] [--warmup 1]]
//
// Checks the RCM of src/methods/pixelss.ts against bench/pixelss_torch.py on the same tensors (seeded random:
// 2 images of 2 classes each out of 20, 128-d embeddings on a 7 x 7 grid):
//   1. PPC (usr922/wseg contrast_train.py, transcribed): its pseudo labels (background channel = t, softmax, argmax)
//      against our regionLabels with low = high = t (equal, pixel for pixel), and its cross-prototype InfoNCE
//      (loss_nce1, all 21 prototypes given) against our prototypeContrast with every prototype present: the loss
//      and its gradient with respect to the MainNet's projected features (before the L2 normalisation);
//   2. our rule written per class in PyTorch (loops and boolean indexing): region labels with the ignore band,
//      masked-mean prototypes over the batch and per image, the InfoNCE over the prototypes present.
// Relative differences: a scalar's |ours - torch| / |torch|; a tensor's max |ours - torch| / max |torch|.
// --time also times one training step against the PyTorch transcription (bench/pixelss-step.ts; needs ../shared).
// Ends with one JSON line: { max_rel_diff_loss, max_rel_diff_grad, labels_equal, ... , timing }.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { F, type Tensor, getNumThreads, manualSeed, rand, randn, tensor, tidy } from '../src/engine/index.js';
import { loadSafetensors, saveSafetensors } from '../src/engine/serialize/index.js';
import { readVoc } from '../src/data/index.js';
import { prototypeContrast, regionLabels, regionPrototypes } from '../src/methods/index.js';
import { benchArgs, benchPaths, findTorchPython } from './common.js';
import { type StepTiming, timePixelSsStep } from './pixelss-step.js';

const { repo, voc, weights } = benchPaths();
const torchScript = join(repo, 'bench', 'pixelss_torch.py');

const args = benchArgs(import.meta.url, {
  seed: { type: 'string', default: '0' },
  dir: { type: 'string' },
  keep: { type: 'boolean', default: false },
  time: { type: 'boolean', default: false },
  batch: { type: 'string', default: '16' },
  crop: { type: 'string', default: '224' },
  rounds: { type: 'string', default: '3' },
  steps: { type: 'string', default: '2' },
  warmup: { type: 'string', default: '1' },
});

const python = findTorchPython();
if (!python) {
  console.log('pixelss-crosscheck needs a Python with torch (set WEAKSEG_TORCH_PYTHON); skipped');
  console.log(JSON.stringify({ skipped: true }));
  process.exit(0);
}
const dir = args.dir ? resolve(args.dir) : mkdtempSync(join(tmpdir(), 'pixelss-crosscheck-'));
mkdirSync(dir, { recursive: true });
const sci = (x: number) => x.toExponential(3);
const relScalar = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
const relTensor = (a: Tensor, b: Tensor) => tidy(() => {
  if (a.shape.join(',') !== b.shape.join(',')) throw new Error(`shape [${a.shape}] vs [${b.shape}]`);
  return a.sub(b).abs().max().item() / Math.max(b.abs().max().item(), 1e-30);
});

const [N, C, D, H, W] = [2, 20, 128, 7, 7];
const [LOW, HIGH, TAU] = [0.2, 0.4, 0.1];
manualSeed(Number(args.seed));
const inputs = tidy(() => {
  // Two classes per image (image 0: 3 and 11, image 1: 3 and 17), CAMs in [0, 1] on them, zero elsewhere.
  const labelRows = [[3, 11], [3, 17]].map((cs) => Array.from({ length: C }, (_, c) => (cs.includes(c) ? 1 : 0)));
  const labels = tensor(labelRows, { dtype: 'float32' });
  const cams = rand([N, C, H, W]).pow(2).mul(labels.view(N, C, 1, 1));
  return {
    emb_raw: randn([N, D, H, W]),
    support_cams: cams,
    labels,
    support_proj: randn([N, D, H, W]).relu(),
    ppc_protos: F.normalize(randn([C + 1, D]), { dim: 1 }),
  };
});
saveSafetensors(join(dir, 'rcm.safetensors'), inputs, { low: String(LOW), high: String(HIGH), tau: String(TAU) });
const r = spawnSync(python, [torchScript, '--crosscheck', dir], { encoding: 'utf8', env: { ...process.env, OMP_NUM_THREADS: '1' } });
if (r.status !== 0) throw new Error(`pixelss_torch.py --crosscheck failed (${r.status}):\n${r.stderr}`);
const theirs = loadSafetensors(join(dir, 'rcm_torch.safetensors')).tensors;

/** Our loss and its gradient with respect to the raw embeddings. */
function ours(regions: Tensor, protos: Tensor, present: Tensor): { loss: number; grad: Tensor } {
  const e = inputs.emb_raw.clone().requiresGrad_(true);
  const loss = tidy(() => {
    const l = prototypeContrast(F.normalize(e, { dim: 1 }), regions, protos, present, TAU);
    l.backward();
    return l.item();
  });
  return { loss, grad: e.grad! };
}

const rows: Record<string, { loss_ours: number; loss_torch: number; rel_diff_loss: number; rel_diff_grad: number }> = {};
const labelChecks: Record<string, boolean> = {};
tidy(() => {
  const hard = regionLabels(inputs.support_cams, LOW, LOW);
  labelChecks.ppc_pseudo_labels = hard.equal(theirs.get('ppc.pseudo_label')!);
  const all = inputs.ppc_protos.unsqueeze(0).expand([N, C + 1, D]);
  const ppc = ours(hard, all, tensor(Array.from({ length: N }, () => Array(C + 1).fill(true))));
  const tl = theirs.get('ppc.loss')!.item();
  rows.ppc_loss_nce1 = { loss_ours: ppc.loss, loss_torch: tl, rel_diff_loss: relScalar(ppc.loss, tl), rel_diff_grad: relTensor(ppc.grad, theirs.get('ppc.grad')!) };

  const band = regionLabels(inputs.support_cams, LOW, HIGH);
  labelChecks.band_regions = band.equal(theirs.get('ours.regions')!);
  for (const scope of ['batch', 'image'] as const) {
    const { protos, present } = regionPrototypes(inputs.support_proj, band, C + 1, scope);
    const o = ours(band, protos, present);
    const t = theirs.get(`ours.${scope}.loss`)!.item();
    rows[`rcm_${scope}`] = { loss_ours: o.loss, loss_torch: t, rel_diff_loss: relScalar(o.loss, t), rel_diff_grad: relTensor(o.grad, theirs.get(`ours.${scope}.grad`)!) };
  }
  const counts = tidy(() => {
    const b = band.reshape(-1);
    return { ignored: b.eq(255).sum().item(), background: b.eq(0).sum().item() };
  });
  console.log(`pixelss-crosscheck: ${N} x ${D} x ${H} x ${W} embeddings, ${C} classes, thresholds ${LOW}/${HIGH}, tau ${TAU}; ` +
    `band labels: ${counts.background} background, ${counts.ignored} ignored of ${N * H * W} pixels`);
});
console.log(`labels equal: PPC's pseudo labels ${labelChecks.ppc_pseudo_labels}, band regions ${labelChecks.band_regions}`);
console.log('  term              ours           torch          rel loss    rel grad');
for (const [k, v] of Object.entries(rows)) {
  console.log(`  ${k.padEnd(16)}  ${v.loss_ours.toPrecision(9).padEnd(13)}  ${v.loss_torch.toPrecision(9).padEnd(13)}  ${sci(v.rel_diff_loss)}   ${sci(v.rel_diff_grad)}`);
}

let timing: StepTiming | null = null;
if (args.time) {
  if (!existsSync(voc) || !existsSync(weights)) {
    console.log(`--time needs ${voc} and ${weights} (../shared is absent); timing skipped`);
  } else {
    timing = await timePixelSsStep({
      dataset: await readVoc({ root: voc, split: 'train_aug' }), weights, dir, python, torchScript,
      batch: Number(args.batch), crop: Number(args.crop), rounds: Number(args.rounds), steps: Number(args.steps),
      warmup: Number(args.warmup), log: (l) => console.log(l),
    });
  }
}

if (!args.keep && !args.dir) rmSync(dir, { recursive: true, force: true });
const r6 = (v: number) => Number(v.toPrecision(6));
console.log(JSON.stringify({
  max_rel_diff_loss: r6(Math.max(...Object.values(rows).map((v) => v.rel_diff_loss))),
  max_rel_diff_grad: r6(Math.max(...Object.values(rows).map((v) => v.rel_diff_grad))),
  labels_equal: Object.values(labelChecks).every(Boolean),
  terms: Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, { ours: r6(v.loss_ours), torch: r6(v.loss_torch),
    rel_diff_loss: r6(v.rel_diff_loss), rel_diff_grad: r6(v.rel_diff_grad) }])),
  threads: getNumThreads(),
  timing,
}));
