// One pixel-ss training step (SEAM MainNet with its projection head, frozen SEAM SupportNet, RCM and MAM at the
// defaults) timed in weakseg and in PyTorch (bench/pixelss_torch.py: the same step transcribed, on the same weights
// and batch), interleaved round by round as bench/seam-crosscheck.ts times SEAM's step. Used by
// bench/pixelss-crosscheck.ts --time and by bench:pixelss (step_ratio).
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { emptyCache, getNumThreads, tensor, tidy } from '../src/engine/index.js';
import { BatchLoader, type Dataset, trainTransform } from '../src/data/index.js';
import { mobilenetV2 } from '../src/backbones/index.js';
import { PixelSsMethod } from '../src/methods/index.js';
import { saveSafetensors } from '../src/engine/serialize/index.js';
import { makeOptimizer } from '../src/train/index.js';
import { TUNED_GLIBC_ENV, TorchPeer, median, round, stepTimer } from './common.js';

export interface StepTiming {
  step_ms: number;
  torch_step_ms: number | null;
  step_ratio: number | null;
  torch_default_step_ms: number | null;
  step_ratio_vs_default_torch: number | null;
  samples: number;
  batch: number;
  crop: number;
  threads: number;
  /** max over the loss terms (SEAM's sum, rcm, mam, total) of |ours - torch| / |torch| on the timed batch and weights. */
  loss_rel_diff_vs_torch: number | null;
}

/**
 * Times the step on a batch of `dataset` (the training pipeline's crops). `support` gives the frozen SupportNet's
 * weights (a run directory or model file: bench:seam's model); without it the support keeps its built weights
 * (the ImageNet backbone, new heads), which costs the same. `python` null: ours only.
 */
export async function timePixelSsStep(o: {
  dataset: Dataset; weights: string; dir: string; python: string | null; torchScript: string;
  batch: number; crop: number; rounds: number; steps: number; warmup: number; log: (line: string) => void;
  loadSupport?: (into: import('../src/nn/index.js').Module) => void;
}): Promise<StepTiming> {
  const { batch: n, crop } = o;
  const method = new PixelSsMethod(() => mobilenetV2({ weights: o.weights, outputStride: 8 }), {
    numClasses: o.dataset.classes.length, pcmTaps: ['features.6', 'features.13'], support: 'frozen',
    loadSupport: o.loadSupport ?? ((into) => into.setFrozen(true)),
  });
  method.ensureSupportLoaded();
  method.model.train();
  const loader = new BatchLoader(o.dataset, trainTransform({ cropSize: crop, scaleRange: [0.7, 1.3], norm: method.backbone.inputNorm }),
    { batchSize: n, seed: 0, dropLast: true, prefetch: 0 });
  const b = (await loader.epoch(0).next()).value!;
  const batchFile = join(o.dir, 'pixelss-time-batch.f32');
  writeFileSync(batchFile, Buffer.concat([Buffer.from(b.images.buffer, b.images.byteOffset, b.images.byteLength),
    Buffer.from(b.labels.buffer, b.labels.byteOffset, b.labels.byteLength)]));
  const modelFile = join(o.dir, 'pixelss-time-model.safetensors');
  saveSafetensors(modelFile, method.model.stateDict());
  const opt = makeOptimizer(method, { lr: 0.01, momentum: 0.9, weightDecay: 1e-4, polyPower: 0.9 });
  const x = tensor(b.images, { shape: b.shape });
  const y = tensor(b.labels, { shape: [n, o.dataset.classes.length] });
  const ctx = { epoch: 0, step: 0, totalSteps: 1 };
  emptyCache();
  const ourSteps = stepTimer(method, opt, { images: x, labels: y, ids: b.ids });
  const threads = getNumThreads();
  const torchArgs = [String(threads), String(n), String(crop), '--batch-file', batchFile, '--weights', modelFile];
  // The transcription's loss on the same weights and batch, before any update: the step timed is the same step.
  const lossOurs = tidy(() => {
    const { loss, parts } = method.loss({ images: x, labels: y, ids: b.ids }, ctx);
    const seam = ['cls', 'min', 'er', 'ecr'].reduce((s, k) => s + parts![k]!.item(), 0);
    return { seam, rcm: parts!.rcm!.item(), mam: parts!.mam!.item(), total: loss.item() };
  });
  let lossTorch: Record<string, number> | null = null;
  if (o.python) {
    const r = spawnSync(o.python, [o.torchScript, ...torchArgs, '--loss-only'], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status !== 0) throw new Error(`${o.torchScript} --loss-only failed (${r.status}):\n${r.stderr}`);
    lossTorch = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
  }
  const lossRel = lossTorch ? Math.max(...Object.entries(lossOurs).map(([k, v]) => Math.abs(v - lossTorch![k]!) / Math.max(Math.abs(lossTorch![k]!), 1e-12))) : null;
  o.log(`the step's loss terms, weakseg ${JSON.stringify(lossOurs)}` + (lossTorch ? `, PyTorch ${JSON.stringify(lossTorch)}, max rel diff ${lossRel!.toExponential(3)}` : ''));
  const peers = o.python ? {
    tuned: new TorchPeer(o.python, o.torchScript, torchArgs, TUNED_GLIBC_ENV),
    plain: new TorchPeer(o.python, o.torchScript, torchArgs),
  } : null;
  ourSteps(o.warmup);
  await peers?.tuned.run(`step ${o.warmup}`);
  await peers?.plain.run('step 1');
  const ours: number[] = [];
  const tuned: number[] = [];
  const plain: number[] = [];
  for (let r = 0; r < o.rounds; r++) {
    ours.push(...ourSteps(o.steps));
    if (peers) {
      tuned.push(...(await peers.tuned.run(`step ${o.steps}`)));
      plain.push(...(await peers.plain.run('step 1')));
    }
    await new Promise((res) => setImmediate(res));
  }
  peers?.tuned.close();
  peers?.plain.close();
  opt.dispose();
  method.model.dispose();
  x.dispose();
  y.dispose();
  const oursMs = median(ours);
  const tunedMs = tuned.length ? median(tuned) : null;
  const plainMs = plain.length ? median(plain) : null;
  o.log(`pixel-ss training step (batch ${n}, ${crop} px, ${threads} threads), medians: weakseg ${oursMs.toFixed(0)} ms ` +
    `(${ours.map((t) => t.toFixed(0)).join(', ')})` + (tunedMs === null ? '; no PyTorch peer'
    : `, PyTorch ${tunedMs.toFixed(0)} ms with glibc keeping freed memory (${tuned.map((t) => t.toFixed(0)).join(', ')}; ` +
      `ratio ${(oursMs / tunedMs).toFixed(3)}), as installed ${plainMs!.toFixed(0)} ms (ratio ${(oursMs / plainMs!).toFixed(3)})`));
  return {
    step_ms: round(oursMs, 1),
    torch_step_ms: tunedMs === null ? null : round(tunedMs, 1),
    step_ratio: tunedMs === null ? null : round(oursMs / tunedMs, 3),
    torch_default_step_ms: plainMs === null ? null : round(plainMs, 1),
    step_ratio_vs_default_torch: plainMs === null ? null : round(oursMs / plainMs, 3),
    samples: ours.length, batch: n, crop, threads,
    loss_rel_diff_vs_torch: lossRel === null ? null : Number(lossRel.toPrecision(4)),
  };
}
