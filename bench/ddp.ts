// npm run bench:ddp [-- --quick] [--steps 20] [--warmup 3]
//
// Data-parallel training on this machine: the same global batch trained by 1 process x 2 threads and by
// 2 processes x 1 thread (Gloo over loopback), each from the same seed. Step time (median after the warm-up steps,
// from the trainer's log: forward, backward, gradient all-reduce and update) and images/s of each; their ratio
// (throughput_ratio = 2x1 over 1x2; the target is >= 0.9 on 2 cores); max_param_rel_diff, the largest
// ||w_2x1 - w_1x2|| / ||w_1x2|| over the parameters after the last step (the equivalence check: float32 reduction
// order only; the worst parameter is named), beside the same figure between 1 process x 1 thread and 1 x 2, which
// differ in nothing but the threads' reduction order (max_param_rel_diff_threads: the floor the first is judged
// against), and 2 x 1 against 1 x 1 (max_param_rel_diff_same_threads); max_loss_diff, the largest difference of the
// logged per-step losses between 2 x 1 and 1 x 2 (max_loss_diff_threads: 1 x 1 against 1 x 2); and
// allreduce_gbps, the algorithm bandwidth of one all-reduce of a 64 MiB float32 buffer between 2 processes
// (bytes / seconds, median of 5).
// Full: SEAM on MobileNetV2 (ImageNet weights) on voc-mini, batch 16, crop 224 (needs ../shared; the lead's run).
// --quick: SEAM on a randomly initialised MobileNetV2 on a few synthetic images, batch 4, crop 96, 4 steps, 16 MiB.
// Ends with one JSON line.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeLoopbackPort, tidy } from '../src/engine/index.js';
import { loadSafetensors } from '../src/engine/serialize/index.js';
import { makeSyntheticDataset } from '../src/data/index.js';
import { benchArgs, median, round } from './common.js';

const here = dirname(fileURLToPath(import.meta.url));
const shared = resolve(here, '..', '..', '..', 'shared');
const voc = join(shared, 'data', 'voc-mini');
const weights = join(shared, 'weights', 'mobilenet_v2_imagenet.safetensors');

const args = benchArgs(import.meta.url, { quick: { type: 'boolean', default: false }, steps: { type: 'string' }, warmup: { type: 'string' } });
const quick = args.quick;
const steps = Number(args.steps ?? (quick ? 4 : 20));
const warmup = Number(args.warmup ?? (quick ? 1 : 3));
if (!quick && (!existsSync(voc) || !existsSync(weights))) {
  console.log(`bench:ddp needs ${voc} and ${weights} (../shared is absent; --quick runs on synthetic data); skipped`);
  console.log(JSON.stringify({ skipped: true }));
  process.exit(0);
}

const work = mkdtempSync(join(tmpdir(), 'weakseg-bench-ddp-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
let dataRoot = voc;
if (quick) {
  dataRoot = join(work, 'data');
  await makeSyntheticDataset({ root: dataRoot, seed: 0, train: 16, scored: 2, val: 2, size: 96 });
}
const batch = quick ? 4 : 16;

/** Runs ddp-worker.js in `world` processes of `threads` threads; resolves with each one's last JSON line. */
async function workers(world: number, threads: number, workerArgs: string[]): Promise<Record<string, unknown>[]> {
  const port = await freeLoopbackPort();
  return Promise.all(Array.from({ length: world }, (_, rank) => new Promise<Record<string, unknown>>((res, rej) => {
    const dist = world > 1 ? { RANK: String(rank), WORLD_SIZE: String(world), LOCAL_RANK: String(rank), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) } : {};
    const child = spawn(process.execPath, ['--single-threaded-gc', join(here, 'ddp-worker.js'), ...workerArgs], {
      env: { ...process.env, WEAKSEG_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads), ...dist },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('close', (code) => {
      if (code !== 0) return rej(new Error(`ddp-worker ${workerArgs[0]} rank ${rank} exited with ${code}`));
      res(JSON.parse(out.trim().split('\n').pop()!));
    });
  })));
}

function configFor(name: string, threads: number): string {
  const config = {
    runDir: join(work, name),
    data: { root: dataRoot, trainSplit: 'train_aug', ...(quick ? { classes: ['redcap', 'greencap', 'bluecap', 'goldcap'] } : {}) },
    method: { name: 'seam', pcmTaps: ['features.6', 'features.13'] },
    model: { backbone: 'mobilenet_v2', ...(quick ? {} : { weights }), outputStride: 8 },
    train: {
      epochs: 1, maxSteps: steps, batchSize: batch, cropSize: quick ? 96 : 224, scaleRange: [0.7, 1.3], flip: true, jitter: null,
      lr: 0.01, headLrMult: 10, momentum: 0.9, weightDecay: 1e-4, polyPower: 0.9, seed: 0,
    },
    runtime: { threads, logEvery: 1 },
  };
  const path = join(work, `${name}.json`);
  writeFileSync(path, JSON.stringify(config));
  return path;
}

/** The step events of a run's JSON-lines log. */
function stepEvents(name: string): { stepMs: number; loss: number }[] {
  const events = readFileSync(join(work, name, 'train.log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  return events.filter((e) => e.type === 'step');
}

/** Median step time (ms) after the warm-up. */
const stepMs = (name: string): number => median(stepEvents(name).slice(warmup).map((e) => e.stepMs));

/** The largest difference of two runs' per-step losses. */
function lossDiffOf(a: string, b: string): number {
  const [la, lb] = [stepEvents(a), stepEvents(b)];
  return Math.max(...la.map((e, i) => Math.abs(e.loss - lb[i]!.loss)));
}

/** The largest ||a - b|| / ||b|| over the float32 tensors of two model files, and the tensor it is found in. */
function maxRelDiff(a: string, b: string): { diff: number; name: string } {
  return tidy(() => {
    const ta = loadSafetensors(a).tensors;
    const tb = loadSafetensors(b).tensors;
    let worst = { diff: 0, name: '' };
    for (const [k, x] of ta) {
      const y = tb.get(k);
      if (!y || x.dtype !== 'float32') continue;
      const d = x.sub(y).norm().item() / Math.max(y.norm().item(), 1e-12);
      if (d > worst.diff) worst = { diff: d, name: k };
    }
    return worst;
  });
}

console.log(`bench:ddp${quick ? ' --quick' : ''}: SEAM on MobileNetV2, global batch ${batch}, ${steps} steps (${warmup} warm-up)`);
const [one] = await workers(1, 2, ['train', configFor('1x2', 2)]);
const ms1 = stepMs('1x2');
console.log(`1 process x 2 threads: ${ms1.toFixed(0)} ms/step, ${(batch / (ms1 / 1000)).toFixed(2)} images/s`);
const [two] = await workers(2, 1, ['train', configFor('2x1', 1)]);
const ms2 = stepMs('2x1');
console.log(`2 processes x 1 thread: ${ms2.toFixed(0)} ms/step, ${(batch / (ms2 / 1000)).toFixed(2)} images/s`);
const [single] = await workers(1, 1, ['train', configFor('1x1', 1)]);
const diff = maxRelDiff(String(two!.model), String(one!.model));
const floor = maxRelDiff(String(single!.model), String(one!.model));
const sameThreads = maxRelDiff(String(two!.model), String(single!.model));
const lossDiff = lossDiffOf('2x1', '1x2');
const lossFloor = lossDiffOf('1x1', '1x2');
console.log(`max parameter relative difference after ${steps} steps, 2 x 1 against 1 x 2: ${diff.diff.toExponential(2)} (${diff.name}); ` +
  `1 x 1 against 1 x 2 (thread count only): ${floor.diff.toExponential(2)} (${floor.name}); 2 x 1 against 1 x 1: ` +
  `${sameThreads.diff.toExponential(2)} (${sameThreads.name}); largest per-step loss difference 2 x 1 against 1 x 2: ${lossDiff.toExponential(2)} (1 x 1 against 1 x 2: ${lossFloor.toExponential(2)})`);
const mib = quick ? 16 : 64;
const ar = await workers(2, 1, ['allreduce', String(mib), '5']);
const seconds = Math.max(...ar.map((r) => Number(r.seconds)));
const gbps = (mib * 2 ** 20) / seconds / 1e9;
console.log(`all-reduce of ${mib} MiB over 2 processes (Gloo, loopback): ${(seconds * 1000).toFixed(1)} ms, ${gbps.toFixed(2)} GB/s`);

console.log(JSON.stringify({
  quick, steps, global_batch: batch,
  step_ms_1x2: round(ms1, 1), step_ms_2x1: round(ms2, 1),
  images_per_s_1x2: round(batch / (ms1 / 1000), 2), images_per_s_2x1: round(batch / (ms2 / 1000), 2),
  throughput_ratio: round(ms1 / ms2, 3), max_param_rel_diff: Number(diff.diff.toExponential(3)), max_param_rel_diff_tensor: diff.name,
  max_param_rel_diff_threads: Number(floor.diff.toExponential(3)), max_param_rel_diff_same_threads: Number(sameThreads.diff.toExponential(3)),
  max_loss_diff: Number(lossDiff.toExponential(3)), max_loss_diff_threads: Number(lossFloor.toExponential(3)), allreduce_gbps: round(gbps, 3),
}));
