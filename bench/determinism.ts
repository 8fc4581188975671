// npm run bench:determinism [-- --method seam] [--steps 4] [--batch 8] [--tiny] [--variants rerun,off,threads,avx2]
// What a training run's bits depend on: the same few training steps (the bench:cam/bench:seam model and settings on
// voc-mini; the demo's TinyNet on synthetic data with --tiny or without ../shared) run from the same seed, each in
// a fresh process, changing one thing at a time: nothing (the rerun), libtorch's deterministic mode, the engine's
// thread count (1 against 2), and the CPU's instruction set as another machine would have it: AVX2 without
// AVX-512 for ATen's kernels, oneDNN's convolutions and OpenBLAS (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
// OPENBLAS_CORETYPE). Reports the largest absolute weight difference and the last loss of each against the first
// run, and the time per step with and without the deterministic mode. Ends with one JSON line.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { getNumThreads } from '../src/engine/index.js';
import { loadSafetensors } from '../src/engine/serialize/index.js';
import { makeSyntheticDataset } from '../src/data/index.js';
import { type WeaksegConfigInput, demoConfig, resolveConfig, runPaths, trainClassifier } from '../src/pipeline/index.js';
import { benchArgs, round } from './common.js';

const args = benchArgs(import.meta.url, {
  method: { type: 'string', default: 'seam' },
  steps: { type: 'string', default: '4' },
  batch: { type: 'string', default: '8' },
  tiny: { type: 'boolean', default: false },
  variants: { type: 'string', default: 'rerun,off,threads,avx2' },
  child: { type: 'string' },
});
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const voc = join(repo, '..', 'shared', 'data', 'voc-mini');
const mobilenet = join(repo, '..', 'shared', 'weights', 'mobilenet_v2_imagenet.safetensors');
const child = args.child ? (JSON.parse(args.child) as { tmp: string; name: string; threads: number; deterministic: boolean }) : null;
const tmp = child?.tmp ?? mkdtempSync(join(tmpdir(), 'weakseg-determinism-'));
const steps = Number(args.steps);
const batchSize = Number(args.batch);
const threadsMax = getNumThreads();

const real = !args.tiny && existsSync(voc) && existsSync(mobilenet);
if (!real && !child) await makeSyntheticDataset({ root: join(tmp, 'data'), seed: 0, train: 64, scored: 8, val: 8 });
const model = real
  ? `${args.method} on MobileNetV2 (ImageNet weights, output stride 8), voc-mini train_aug, batch ${batchSize}, 224 px`
  : `${args.method} on the demo's TinyNet, synthetic data, batch ${batchSize}, 96 px`;
if (!child) console.log(`bench:determinism: ${model}, ${steps} steps per run, up to ${threadsMax} engine threads`);

function configFor(name: string, threads: number, deterministic: boolean) {
  const over = {
    runtime: { threads, deterministic, checkpointEverySteps: 0, prefetch: 1 },
    method: args.method === 'seam' ? { name: 'seam', pcmTaps: real ? ['features.6', 'features.13'] : ['layer1', 'layer2'] } : { name: 'cam' },
    train: { batchSize, maxSteps: steps },
  };
  if (!real) return demoConfig({ out: join(tmp, name), overrides: { ...over, data: { root: join(tmp, 'data') } } });
  const input: WeaksegConfigInput = {
    runDir: join(tmp, name),
    data: { root: voc, trainSplit: 'train_aug' },
    model: { backbone: 'mobilenet_v2', weights: mobilenet, outputStride: 8 },
    train: { epochs: 8, cropSize: 224, scaleRange: [0.7, 1.3], lr: 0.01, headLrMult: 10, momentum: 0.9 },
  };
  return resolveConfig(JSON.parse(JSON.stringify({ ...input, ...over, train: { ...input.train, ...over.train } })));
}

interface Run { name: string; threads: number; deterministic: boolean; msPerStep: number; lastLoss: number; weights: Map<string, Float32Array> }

// A child process: one training run, its figures as the last line.
if (child) {
  const config = configFor(child.name, child.threads, child.deterministic);
  const fit = await trainClassifier(config, { progress: false, log: () => {} });
  console.log(JSON.stringify({ msPerStep: fit.msPerStep, lastLoss: fit.result.stepLosses.at(-1), model: runPaths(config).model }));
  process.exit(0);
}

/** One run in a fresh process (`env` added to its environment). */
function run(name: string, threads: number, deterministic: boolean, env: Record<string, string> = {}): Run {
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, ['--single-threaded-gc', self, ...process.argv.slice(2),
    '--child', JSON.stringify({ tmp, name, threads, deterministic })], { encoding: 'utf8', env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`run ${name} failed (${r.status}): ${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { msPerStep: number; lastLoss: number; model: string };
  const { tensors } = loadSafetensors(out.model);
  const weights = new Map([...tensors].map(([k, t]) => [k, t.toFloat32Array()]));
  for (const t of tensors.values()) t.dispose();
  const described = Object.entries(env).map(([k, v]) => `${k}=${v}`).join(' ');
  console.log(`  ${name}: ${threads} threads, deterministic ${deterministic ? 'on' : 'off'}${described ? `, ${described}` : ''}: ` +
    `${out.msPerStep.toFixed(0)} ms per step, last loss ${out.lastLoss}`);
  return { name, threads, deterministic, msPerStep: out.msPerStep, lastLoss: out.lastLoss, weights };
}

/** Largest |a - b| over every float tensor, and the tensor where it is. */
function maxDiff(a: Run, b: Run): { max: number; tensor: string | null } {
  let max = 0;
  let where: string | null = null;
  for (const [k, v] of a.weights) {
    if (k.endsWith('num_batches_tracked')) continue;
    const w = b.weights.get(k)!;
    for (let i = 0; i < v.length; i++) {
      const d = Math.abs(v[i]! - w[i]!);
      if (d > max) { max = d; where = k; }
    }
  }
  return { max, tensor: where };
}

const threads = Math.min(2, threadsMax);
const AVX2_MACHINE = { ATEN_CPU_CAPABILITY: 'avx2', ONEDNN_MAX_CPU_ISA: 'AVX2', OPENBLAS_CORETYPE: 'Haswell' };
const variants = new Set(args.variants!.split(','));
const base = run('base', threads, true);
const rerun = variants.has('rerun') ? run('rerun', threads, true) : null;
const off = variants.has('off') ? run('deterministic-off', threads, false) : null;
// Timed after the off run too, so that the order of the runs does not decide the comparison.
const base2 = off ? run('base-again', threads, true) : null;
const one = variants.has('threads') && threads > 1 ? run('one-thread', 1, true) : null;
const avx2 = variants.has('avx2') ? run('avx2-machine', threads, true, AVX2_MACHINE) : null;
rmSync(tmp, { recursive: true, force: true });

const cmp = (r: Run | null) => {
  if (!r) return null;
  const d = maxDiff(base, r);
  return { max_abs_weight_diff: d.max, tensor: d.tensor, loss_diff: Math.abs(r.lastLoss - base.lastLoss) };
};
const summary = {
  model: real ? `${args.method}/mobilenet_v2/voc-mini` : `${args.method}/tinynet/synthetic`,
  steps, batch: batchSize, threads,
  rerun: cmp(rerun),
  deterministic_off: cmp(off),
  one_thread: cmp(one),
  avx2_machine: cmp(avx2),
  step_ms_deterministic: round(base2 ? (base.msPerStep + base2.msPerStep) / 2 : base.msPerStep, 1),
  step_ms_nondeterministic: off ? round(off.msPerStep, 1) : null,
  step_ms_one_thread: one ? round(one.msPerStep, 1) : null,
};
const said = (what: string, c: ReturnType<typeof cmp>) => {
  if (c) console.log(`${what}: max |weight difference| ${c.max_abs_weight_diff}${c.tensor ? ` (in ${c.tensor})` : ''}, last loss differs by ${c.loss_diff}`);
};
said('same settings twice', summary.rerun);
said('deterministic mode off', summary.deterministic_off);
if (off) console.log(`step ${summary.step_ms_nondeterministic} ms without the deterministic mode, ${summary.step_ms_deterministic} ms with it`);
said(`1 thread instead of ${threads}`, summary.one_thread);
said(`as on a machine with AVX2 and no AVX-512 (${Object.entries(AVX2_MACHINE).map(([k, v]) => `${k}=${v}`).join(' ')})`, summary.avx2_machine);
console.log(JSON.stringify(summary));
