// npm run bench:engine [-- --device cuda] [--rounds 4] [--steps 5]
// A ResNet-style training step and a 3x3 convolution (forward, forward+backward), NCHW and channels-last,
// timed in weakseg and, interleaved in the same run, in PyTorch on the same machine. Ends with one JSON line.
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

import { F, Tensor, getNumThreads, manualSeed, noGrad, randn, rand, synchronize, tidy, engineInfo } from '../src/engine/index.js';
import { BatchNorm2d, Conv2d, Linear, Module, SGD } from '../src/nn/index.js';
import { TorchPeer, benchArgs, findTorchPython, median, round } from './common.js';

const args = benchArgs(import.meta.url, {
  device: { type: 'string', default: 'cpu' },
  rounds: { type: 'string', default: '4' },
  steps: { type: 'string', default: '5' },
  warmup: { type: 'string', default: '3' },
});
const device = args.device!;
const rounds = Number(args.rounds), steps = Number(args.steps), warmup = Number(args.warmup);

// GFLOP per call, 2 per multiply-accumulate, conv and linear layers only (engine-notes.md section 2).
const GFLOP = { step: 37.071, conv_fwd: 1.850, conv_fwdbwd: 5.549 };

class Block extends Module {
  readonly c1 = this.registerModule('0', new Conv2d(64, 64, 3, { padding: 1, bias: false }));
  readonly b1 = this.registerModule('1', new BatchNorm2d(64));
  readonly c2 = this.registerModule('3', new Conv2d(64, 64, 3, { padding: 1, bias: false }));
  readonly b2 = this.registerModule('4', new BatchNorm2d(64));
  forward(x: Tensor): Tensor {
    return this.b2.forward(this.c2.forward(this.b1.forward(this.c1.forward(x)).relu_()));
  }
}

class Net extends Module {
  readonly conv1 = this.registerModule('conv1', new Conv2d(3, 64, 7, { stride: 2, padding: 3, bias: false }));
  readonly bn1 = this.registerModule('bn1', new BatchNorm2d(64));
  readonly blocks = [0, 1, 2].map((i) => this.registerModule(`block${i}`, new Block()));
  readonly fc = this.registerModule('fc', new Linear(64, 20));
  forward(x: Tensor): Tensor {
    let h = F.maxPool2d(this.bn1.forward(this.conv1.forward(x)).relu_(), 3, { stride: 2, padding: 1 });
    for (const b of this.blocks) h = b.forward(h).add_(h).relu_();
    return this.fc.forward(h.mean([2, 3]));
  }
}

manualSeed(0);
// One network per memory format, as a user would hold it (converting per step would time the conversion).
const nets = {
  nchw: new Net().to({ device }),
  cl: new Net().to({ device, memoryFormat: 'channels_last' }),
};
const opts = { nchw: new SGD(nets.nchw.parameters(), { lr: 0.01 }), cl: new SGD(nets.cl.parameters(), { lr: 0.01 }) };
const inputs = Object.fromEntries((['nchw', 'cl'] as const).map((fmt) => {
  const make = (shape: number[]) => {
    const t = randn(shape, { device });
    return fmt === 'cl' && shape.length === 4 ? t.channelsLast() : t;
  };
  return [fmt, { x: make([8, 3, 224, 224]), a: make([8, 64, 56, 56]), w: make([64, 64, 3, 3]) }];
})) as Record<'nchw' | 'cl', { x: Tensor; a: Tensor; w: Tensor }>;
const y = tidy(() => rand([8, 20], { device }).gt(0.5).float());

function runOurs(workload: string): void {
  const [kind, fmt] = [workload.slice(0, workload.lastIndexOf('_')), workload.slice(workload.lastIndexOf('_') + 1)];
  const { x, a, w } = inputs[fmt as 'nchw' | 'cl'];
  tidy(() => {
    if (kind === 'step') {
      const f = fmt as 'nchw' | 'cl';
      const loss = F.multilabelSoftMarginLoss(nets[f].forward(x), y);
      opts[f].zeroGrad();
      loss.backward();
      opts[f].step();
    } else if (kind === 'conv_fwd') {
      noGrad(() => F.conv2d(a, w, null, { padding: 1 }));
    } else {
      a.requiresGrad_(true);
      w.requiresGrad_(true);
      F.conv2d(a, w, null, { padding: 1 }).sum().backward();
      a.grad = null;
      w.grad = null;
    }
    synchronize();
  });
}

function timeOurs(workload: string, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    runOurs(workload);
    out.push(performance.now() - t0);
  }
  return out;
}

const workloads = ['step_nchw', 'step_cl', 'conv_fwd_nchw', 'conv_fwd_cl', 'conv_fwdbwd_nchw', 'conv_fwdbwd_cl'];
const python = findTorchPython();
const peer = python
  ? new TorchPeer(python, join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'engine_torch.py'),
    [String(getNumThreads()), device])
  : null;

console.log(`engine: ${JSON.stringify(engineInfo())}`);
console.log(python ? `PyTorch peer: ${python}` : 'PyTorch peer: none found (set WEAKSEG_TORCH_PYTHON); ratios skipped');
console.log(`device ${device}, ${getNumThreads()} threads, ${rounds} interleaved rounds x ${steps} steps after ${warmup} warm-up`);

const ours: Record<string, number[]> = {}, theirs: Record<string, number[]> = {};
for (const wl of workloads) {
  timeOurs(wl, warmup);
  if (peer) await peer.run(`${wl} ${warmup}`);
  ours[wl] = [];
  theirs[wl] = [];
}
for (let r = 0; r < rounds; r++) {
  for (const wl of workloads) {
    ours[wl]!.push(...timeOurs(wl, steps));
    if (peer) theirs[wl]!.push(...(await peer.run(`${wl} ${steps}`)));
    await new Promise((res) => setImmediate(res));  // let finalizers run between rounds
  }
}
peer?.close();

const summary: Record<string, number | string> = { device, threads: getNumThreads() };
console.log('\nworkload            weakseg ms  GFLOP/s   pytorch ms  GFLOP/s   ratio');
for (const wl of workloads) {
  const kind = wl.slice(0, wl.lastIndexOf('_')) as keyof typeof GFLOP;
  const ms = median(ours[wl]!);
  const pt = peer ? median(theirs[wl]!) : NaN;
  const ratio = ms / pt;
  summary[`${wl}_ms`] = round(ms, 2);
  summary[`${wl}_gflops`] = round(GFLOP[kind] / (ms / 1000), 1);
  if (peer) {
    summary[`${wl}_torch_ms`] = round(pt, 2);
    summary[`${wl}_ratio`] = round(ratio, 3);
  }
  console.log(`${wl.padEnd(18)} ${ms.toFixed(1).padStart(10)} ${(GFLOP[kind] / (ms / 1000)).toFixed(0).padStart(8)}` +
    (peer ? ` ${pt.toFixed(1).padStart(12)} ${(GFLOP[kind] / (pt / 1000)).toFixed(0).padStart(8)} ${ratio.toFixed(3).padStart(7)}` : ''));
}
console.log(JSON.stringify(summary));
