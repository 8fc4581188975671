// Shared helpers for the benchmarks: medians, the PyTorch peer process, and the closing JSON line.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { createInterface, type Interface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type ParseArgsConfig, parseArgs } from 'node:util';

import { type Tensor, tidy } from '../src/engine/index.js';
import type { MiouResult } from '../src/eval/index.js';
import type { Optimizer } from '../src/nn/index.js';
import type { TrainBatch, Trainable } from '../src/train/index.js';

/** The repository (above dist/), and ../shared's voc-mini and MobileNetV2 ImageNet weights the benchmarks use. */
export function benchPaths(): { repo: string; shared: string; voc: string; weights: string } {
  const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const shared = resolve(repo, '..', 'shared');
  return { repo, shared, voc: join(shared, 'data', 'voc-mini'), weights: join(shared, 'weights', 'mobilenet_v2_imagenet.safetensors') };
}

type BenchOptions = NonNullable<ParseArgsConfig['options']>;

/**
 * A benchmark's command-line options (node's parseArgs, strict). `--help` prints the file's header comment, its
 * usage and what it measures; an unknown option or a missing value ends the run with one line naming it and exit
 * code 2, where parseArgs alone throws a TypeError with a stack.
 */
export function benchArgs<const O extends BenchOptions>(moduleUrl: string, options: O): ReturnType<typeof parseArgs<{ options: O }>>['values'] {
  const file = fileURLToPath(moduleUrl);
  const name = basename(file).replace(/\.js$/, '');
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(headerComment(file) || `node dist/bench/${name}.js: options ${Object.keys(options).map((o) => `--${o}`).join(' ')}`);
    process.exit(0);
  }
  try {
    return parseArgs({ args: argv, options }).values;
  } catch (e) {
    console.error(`bench ${name}: ${(e as Error).message.split('\n')[0]} (--help lists the options)`);
    process.exit(2);
  }
}

/** The leading // comment block of a compiled benchmark (tsc keeps it), without the slashes. */
function headerComment(file: string): string {
  const lines: string[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.startsWith('//')) break;
    lines.push(line.replace(/^\/\/ ?/, ''));
  }
  return lines.join('\n').trim();
}

/**
 * Times training steps on one batch as the trainer runs them (loss, backward, the hooks, the update), in ms each;
 * `epoch` for losses that change with it (MCIS's contrastive term from epoch 2).
 */
export function stepTimer(method: Trainable, opt: Optimizer, batch: TrainBatch, epoch = 0): (steps: number) => number[] {
  const ctx = { epoch, step: 0, totalSteps: 1 };
  return (steps) => Array.from({ length: steps }, () => {
    const t0 = performance.now();
    tidy(() => {
      const { loss } = method.loss(batch, ctx);
      opt.zeroGrad();
      loss.backward();
      method.afterBackward?.(ctx);
      opt.step();
      method.afterStep?.(ctx);
    });
    return performance.now() - t0;
  });
}


export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A Python with torch: $WEAKSEG_TORCH_PYTHON, else the first of python3 and /usr/bin/python3 that imports torch. */
export function findTorchPython(): string | null {
  const candidates = [process.env.WEAKSEG_TORCH_PYTHON, 'python3', '/usr/bin/python3', '/opt/torch/.venv/bin/python']
    .filter((p): p is string => Boolean(p));
  for (const py of candidates) {
    if (py.startsWith('/') && !existsSync(py)) continue;
    const r = spawnSync(py, ['-c', 'import torch'], { encoding: 'utf8', timeout: 120000 });
    if (r.status === 0) return py;
  }
  return null;
}

/** A long-lived Python process answering "<workload> <steps>" with a JSON list of step times in ms. */
export class TorchPeer {
  readonly #proc: ChildProcessWithoutNullStreams;
  readonly #lines: Interface;
  readonly #pending: ((line: string) => void)[] = [];

  /** `env` adds variables for the child only (glibc reads its malloc settings at start-up). */
  constructor(python: string, script: string, args: string[], env: Record<string, string> = {}) {
    this.#proc = spawn(python, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    this.#proc.stderr.on('data', (d: Buffer) => process.stderr.write(`[torch] ${d}`));
    this.#lines = createInterface({ input: this.#proc.stdout });
    this.#lines.on('line', (l) => this.#pending.shift()?.(l));
  }

  run(request: string): Promise<number[]> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`PyTorch peer exited (${code}) during '${request}'`));
      this.#proc.once('exit', onExit);
      this.#pending.push((line) => {
        this.#proc.off('exit', onExit);
        resolve(JSON.parse(line) as number[]);
      });
      this.#proc.stdin.write(`${request}\n`);
    });
  }

  close(): void {
    this.#proc.stdin.end();
    this.#lines.close();
  }
}

/**
 * glibc told to keep freed memory in its heap (no mmap for big blocks, no trimming): it spares PyTorch the page
 * faults that dominate its step on these machines, so it is the strongest PyTorch here and the ratios' reference.
 */
export const TUNED_GLIBC_ENV = { MALLOC_MMAP_MAX_: '0', MALLOC_TRIM_THRESHOLD_: '1099511627776' };

export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** A fraction as a percentage to 2 decimals, for the JSON lines; null stays null. */
export const pct = (v: number | null | undefined): number | null => (v === null || v === undefined ? null : round(100 * v, 2));

/** |a - b| / |b| of two scalars (the cross-checks' loss terms). */
export const relScalar = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

/** Two tensors' difference: max |a - b|, max |a - b| / max |b| and ||a - b|| / ||b|| (the cross-checks). */
export function relTensor(a: Tensor, b: Tensor): { maxAbs: number; relMax: number; relL2: number } {
  return tidy(() => {
    if (a.shape.join(',') !== b.shape.join(',')) throw new Error(`shape [${a.shape}] vs [${b.shape}]`);
    const d = a.sub(b);
    const maxAbs = d.abs().max().item();
    const scale = b.abs().max().item();
    return { maxAbs, relMax: maxAbs / Math.max(scale, 1e-30), relL2: d.norm().item() / Math.max(b.norm().item(), 1e-30) };
  });
}

/**
 * The mIoU over background and voc-mini's six frequent classes (each in 100 to 351 of train_aug's 1,000 images; every
 * other class is in 1 to 50): the classes a network can learn from these images, and where seeds, which are told each image's
 * tags, and a segmenter, which is not, compete on equal terms. Null where one of them has no pixels.
 */
export const FREQUENT = ['background', 'cat', 'cow', 'dog', 'horse', 'person', 'sheep'];
export function frequentMiou(r: MiouResult): number | null {
  const f = r.classes.filter((c) => FREQUENT.includes(c.name));
  return f.length === FREQUENT.length && f.every((c) => c.iou !== null) ? f.reduce((s, c) => s + c.iou!, 0) / f.length : null;
}
