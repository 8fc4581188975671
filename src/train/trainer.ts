// The shared trainer: epochs over BatchLoader batches, SGD (or AdamW) with the methods' learning-rate groups (1x
// backbone, 10x new layers), a poly (or step, or cosine; each with warmup) schedule, one tidy scope and one yield to
// the event loop per step (so the loader keeps decoding ahead), per-epoch atomic checkpoints with resume, and
// structured progress events. Any Trainable (a method, the affinity net, a segmenter) plugs in; its afterBackward and
// afterStep hooks, and the trainer options', run inside the step.
import { rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { type Device, type Tensor, getNumThreads, manualSeed, tensor, tidy } from '../engine/index.js';
import { AdamW, type LrFactor, LrScheduler, type Optimizer, SGD, cosine, poly, stepAtEpochs, withWarmup } from '../nn/index.js';
import { type Batch, type BatchLoader, Rng } from '../data/index.js';
import type { StepContext, StepHooks, TrainBatch, Trainable } from './contract.js';
import { latestCheckpoint, loadCheckpoint, midEpochCheckpointPath, pruneCheckpoints, saveCheckpoint } from './checkpoint.js';
import type { DataParallel } from './data-parallel.js';

export interface OptimizerSettings {
  /** 'sgd' (default; momentum, nesterov) or 'adamw' (betas, eps; weight decay applied to the weights directly). */
  type?: 'sgd' | 'adamw';
  /** Base (backbone) learning rate; each group multiplies it by its lrMult. */
  lr: number;
  /** SGD: 0.9 in the reference PyTorch run; 0 reproduces the official PSA/SEAM/IRN code (methods-reference 3(c)). */
  momentum?: number;
  weightDecay: number;
  nesterov?: boolean;
  /** AdamW's moment decay rates (default 0.9, 0.999) and denominator epsilon (default 1e-8). */
  betas?: [number, number];
  eps?: number;
  /** The poly schedule's exponent when no `schedule` is given: lr = lr0 (1 - step / totalSteps)^power (default 0.9). */
  polyPower?: number;
}

/**
 * The learning-rate factor over training, each after `warmupSteps` steps of linear warmup from `warmupFactor`
 * (default 0.1): poly (1 - step / total)^power, step (times gamma at each listed epoch), or cosine (down to minFactor).
 */
export type ScheduleSettings = { warmupSteps?: number; warmupFactor?: number } & (
  | { type: 'poly'; power: number }
  | { type: 'step'; epochs: number[]; gamma: number }
  | { type: 'cosine'; minFactor?: number });

export type TrainEvent =
  | { type: 'start'; epochs: number; stepsPerEpoch: number; totalSteps: number; startEpoch: number; startStep: number;
    groups: { name: string; params: number; lr: number }[]; threads: number }
  | { type: 'resume'; path: string; epoch: number; step: number; stepsPerEpoch: number }
  | { type: 'step'; epoch: number; step: number; totalSteps: number; stepInEpoch: number; stepsPerEpoch: number;
    loss: number; parts: Record<string, number>; lr: number; stepMs: number; waitMs: number; imagesPerSec: number;
    etaSec: number }
  | { type: 'epoch'; epoch: number; epochs: number; step: number; meanLoss: number; seconds: number; steps: number;
    stepMsMean: number; imagesPerSec: number; dataWaitShare: number; checkpoint: string | null }
  | { type: 'done'; epochs: number; step: number; seconds: number; dataWaitShare: number };

export interface TrainerOptions {
  method: Trainable;
  /** Built with `dropLast: true` and a fixed crop size, seeded with `seed`. */
  loader: BatchLoader;
  epochs: number;
  optimizer: OptimizerSettings;
  /** Default: poly with optimizer.polyPower. */
  schedule?: ScheduleSettings;
  /** Called in every step after the method's own hooks: after backward (gradient all-reduce) and after the update. */
  hooks?: StepHooks;
  /** Seeds libtorch per epoch (data order and augmentation come from the loader's own seed). */
  seed?: number;
  device?: Device;
  /** Run the convolutions in channels-last memory order (often faster on CPU). */
  channelsLast?: boolean;
  /** Where per-epoch checkpoints go; none are written without it. */
  checkpointDir?: string;
  /** Continue from the newest checkpoint in checkpointDir, if any (default false). */
  resume?: boolean;
  /**
   * Also write a rolling mid-epoch checkpoint (checkpoints/last.safetensors) every this many steps, so a killed
   * run resumes within the epoch (default 0: epoch checkpoints only).
   */
  checkpointEverySteps?: number;
  /** Checkpoints to keep (newest first); 0 keeps all (default 0). */
  keepCheckpoints?: number;
  /** Stop after this many global steps (smoke runs, tests); the schedule still spans all epochs. */
  maxSteps?: number;
  /** Receives every event (log files, progress bars, tests). */
  onEvent?: (event: TrainEvent) => void;
  /** Strings stored in each checkpoint's metadata (backbone, config...). */
  checkpointMetadata?: Record<string, string>;
  signal?: AbortSignal;
  /**
   * Data-parallel training (the loader sharded to match): gradients averaged across ranks after backward, rank 0's
   * model broadcast at the start, the logged loss averaged over ranks, checkpoints written by rank 0 only.
   */
  distributed?: DataParallel;
}

export interface TrainResult {
  epochsCompleted: number;
  steps: number;
  /** Mean loss of each epoch run in this call. */
  epochLosses: number[];
  /** Every step's loss run in this call. */
  stepLosses: number[];
  lastCheckpoint: string | null;
  seconds: number;
  dataWaitShare: number;
  stepMsMean: number;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Moves a collated batch to tensors on the device (owned by the current tidy scope). */
export function batchToTensors(batch: Batch, device: Device, channelsLast: boolean): TrainBatch {
  const [n, c, h, w] = batch.shape;
  const numClasses = batch.labels.length / n;
  let images: Tensor = tensor(batch.images, { shape: [n, c, h, w] });
  if (device !== 'cpu') images = images.to({ device });
  if (channelsLast) images = images.channelsLast();
  let labels: Tensor = tensor(batch.labels, { shape: [n, numClasses] });
  if (device !== 'cpu') labels = labels.to({ device });
  const out: TrainBatch = { images, labels, ids: batch.ids };
  if (batch.valid) {
    let valid = tensor(batch.valid, { shape: [n, h, w], dtype: 'bool' });
    if (device !== 'cpu') valid = valid.to({ device });
    out.valid = valid;
  }
  if (batch.masks) {
    let masks = tensor(batch.masks, { shape: [n, h, w] }).long();
    if (device !== 'cpu') masks = masks.to({ device });
    out.masks = masks;
  }
  if (batch.partner) {
    const partner = batchToTensors({ ...batch.partner, shape: batch.shape }, device, channelsLast);
    out.partner = { images: partner.images, labels: partner.labels, ids: partner.ids };
  }
  return out;
}

/** Builds the optimizer (SGD by default, or AdamW) over the method's parameter groups. */
export function makeOptimizer(method: Trainable, s: OptimizerSettings): Optimizer {
  const groups = method.paramGroups().filter((g) => g.params.length > 0);
  if ((s.type ?? 'sgd') === 'adamw') {
    return new AdamW(groups, { lr: s.lr, weightDecay: s.weightDecay, ...(s.betas ? { betas: s.betas } : {}), ...(s.eps !== undefined ? { eps: s.eps } : {}) });
  }
  return new SGD(groups, { lr: s.lr, momentum: s.momentum ?? 0, weightDecay: s.weightDecay, nesterov: s.nesterov ?? false });
}

/** The learning-rate factor of each global step (see ScheduleSettings). */
export function makeSchedule(s: ScheduleSettings, totalSteps: number, stepsPerEpoch: number): LrFactor {
  const base = s.type === 'poly' ? poly(totalSteps, s.power)
    : s.type === 'step' ? stepAtEpochs(s.epochs, stepsPerEpoch, s.gamma)
      : cosine(totalSteps, s.minFactor ?? 0);
  return s.warmupSteps ? withWarmup(base, s.warmupSteps, s.warmupFactor ?? 0.1) : base;
}

export async function train(options: TrainerOptions): Promise<TrainResult> {
  const { method, loader, epochs } = options;
  const device = options.device ?? 'cpu';
  const seed = options.seed ?? 0;
  const emit = options.onEvent ?? (() => {});
  if (!Number.isInteger(epochs) || epochs < 1) throw new RangeError(`epochs must be a positive integer, got ${epochs}`);
  const stepsPerEpoch = loader.batchesPerEpoch;
  if (stepsPerEpoch < 1) throw new RangeError('the training set is smaller than one batch');
  const totalSteps = epochs * stepsPerEpoch;

  if (device !== 'cpu' || options.channelsLast) {
    method.model.to({ device, memoryFormat: options.channelsLast ? 'channels_last' : undefined });
  }
  method.model.train();
  const optimizer = makeOptimizer(method, options.optimizer);
  const scheduler = new LrScheduler(optimizer,
    makeSchedule(options.schedule ?? { type: 'poly', power: options.optimizer.polyPower ?? 0.9 }, totalSteps, stepsPerEpoch));
  const dp = options.distributed;
  // Gradients are averaged first, so the method's own hooks see what every rank sees.
  const hooks: StepHooks[] = [dp ?? {}, method, options.hooks ?? {}];
  const writes = dp?.isMain ?? true;

  let startEpoch = 0;
  let step = 0;
  let lastCheckpoint: string | null = null;
  if (options.resume && options.checkpointDir) {
    const path = latestCheckpoint(options.checkpointDir);
    if (path) {
      const { info } = loadCheckpoint(path, method.model, optimizer);
      if (info.method && info.method !== method.name) {
        throw new Error(`${path}: checkpoint of method '${info.method}', cannot resume method '${method.name}'`);
      }
      if (info.totalSteps !== totalSteps) {
        throw new Error(`${path}: checkpoint was made for ${info.totalSteps} total steps, this run has ${totalSteps} ` +
          '(epochs, batch size or dataset changed); start a new run directory');
      }
      // A mid-epoch checkpoint resumes inside its epoch: the loader skips the batches already trained on.
      startEpoch = Math.floor(info.step / stepsPerEpoch);
      step = info.step;
      lastCheckpoint = path;
      scheduler.setStep(step);
      emit({ type: 'resume', path, epoch: startEpoch, step, stepsPerEpoch });
    }
  }

  dp?.start(method.model, step);
  emit({
    type: 'start', epochs, stepsPerEpoch, totalSteps, startEpoch, startStep: step,
    groups: optimizer.groups.map((g) => ({ name: g.name, params: g.params.length, lr: g.initialLr })),
    threads: getNumThreads(),
  });

  const t0 = performance.now();
  const epochLosses: number[] = [];
  const stepLosses: number[] = [];
  let waitTotal = 0;
  let elapsedTotal = 0;
  let stepMsTotal = 0;
  let stepsRun = 0;
  const maxSteps = options.maxSteps ?? Infinity;
  let epochsCompleted = startEpoch;

  const everySteps = options.checkpointEverySteps ?? 0;
  for (let epoch = startEpoch; epoch < epochs && step < maxSteps; epoch++) {
    const skipBatches = step - epoch * stepsPerEpoch;
    loader.resetStats();
    const epochStart = performance.now();
    let lossSum = 0;
    let count = 0;
    let images = 0;
    let stepMsEpoch = 0;
    let stepInEpoch = skipBatches;
    let lastEnd = performance.now();
    for await (const batch of loader.epoch(epoch, { skipBatches })) {
      options.signal?.throwIfAborted();
      // Seeded per step (dropout, random init inside losses), so a resumed run repeats the same numbers.
      manualSeed((dp?.rank ? new Rng(seed, step, 2, dp.rank) : new Rng(seed, step)).nextUint32());
      const waitMs = performance.now() - lastEnd;
      const context: StepContext = { epoch, step, totalSteps, rng: new Rng(seed, step, 1) };
      const lr = optimizer.groups[0]?.lr ?? 0;
      const s0 = performance.now();
      const { loss, parts } = tidy(() => {
        const tb = batchToTensors(batch, device, options.channelsLast ?? false);
        const out = method.loss(tb, context);
        optimizer.zeroGrad();
        out.loss.backward();
        const named: Record<string, number> = {};
        for (const [k, t] of Object.entries(out.parts ?? {})) named[k] = t.item();
        // Averaged over ranks (the global batch's loss), before the check: every rank stops together.
        const [value = NaN, ...partValues] = dp ? dp.mean([out.loss.item(), ...Object.values(named)]) : [out.loss.item()];
        if (dp) Object.keys(named).forEach((k, i) => { named[k] = partValues[i]!; });
        if (!Number.isFinite(value)) {
          throw new Error(`training diverged: loss is ${value} at epoch ${epoch + 1}, step ${step + 1} ` +
            '(lower the learning rate, or check the inputs)');
        }
        for (const h of hooks) h.afterBackward?.(context);
        optimizer.step();
        for (const h of hooks) h.afterStep?.(context);
        return { loss: value, parts: named };
      });
      const stepMs = performance.now() - s0;
      scheduler.next();
      step++;
      stepInEpoch++;
      stepsRun++;
      count++;
      const stepImages = batch.ids.length * (dp?.worldSize ?? 1); // the global batch
      images += stepImages;
      lossSum += loss;
      stepLosses.push(loss);
      stepMsEpoch += stepMs;
      stepMsTotal += stepMs;
      const now = performance.now();
      const perStep = (now - t0) / stepsRun;
      emit({
        type: 'step', epoch, step, totalSteps, stepInEpoch, stepsPerEpoch, loss, parts, lr, stepMs, waitMs,
        imagesPerSec: stepImages / ((now - lastEnd) / 1000),
        etaSec: (perStep * (Math.min(totalSteps, maxSteps) - step)) / 1000,
      });
      if (options.checkpointDir && writes && everySteps > 0 && step % everySteps === 0 && stepInEpoch < stepsPerEpoch) {
        saveCheckpoint(options.checkpointDir, method.model, optimizer, {
          epoch, step, totalSteps, seed, method: method.name, extra: options.checkpointMetadata,
        }, midEpochCheckpointPath(options.checkpointDir));
      }
      await yieldToEventLoop();
      lastEnd = performance.now();
      if (step >= maxSteps) break;
    }
    if (count === 0 && skipBatches < stepsPerEpoch && step < maxSteps) {
      // Every item was skipped as bad (onBadFile 'skip'): saving an untrained model would pass for a result.
      throw new Error(`epoch ${epoch + 1} yielded no batch: all ${loader.badFiles.count} of its images that were tried ` +
        'were skipped as bad; nothing was trained');
    }
    const seconds = (performance.now() - epochStart) / 1000;
    const stats = loader.stats;
    waitTotal += stats.waitMsTotal;
    // The share of the epoch's wall time (its checkpoint excepted): the loader's own share ends at its last batch,
    // so it leaves out the last step's compute and reads 100 % for a one-batch epoch.
    const epochMs = seconds * 1000;
    elapsedTotal += epochMs;
    const finished = stepInEpoch === stepsPerEpoch && count > 0;
    let checkpoint: string | null = null;
    if (finished) {
      epochsCompleted = epoch + 1;
      if (options.checkpointDir && writes) {
        checkpoint = saveCheckpoint(options.checkpointDir, method.model, optimizer, {
          epoch: epoch + 1, step, totalSteps, seed, method: method.name, extra: options.checkpointMetadata,
        });
        pruneCheckpoints(options.checkpointDir, options.keepCheckpoints ?? 0);
        rmSync(midEpochCheckpointPath(options.checkpointDir), { force: true });
        lastCheckpoint = checkpoint;
      }
    }
    const meanLoss = count ? lossSum / count : NaN;
    epochLosses.push(meanLoss);
    emit({
      type: 'epoch', epoch: epoch + 1, epochs, step, meanLoss, seconds, steps: count,
      stepMsMean: count ? stepMsEpoch / count : 0, imagesPerSec: images / seconds, dataWaitShare: epochMs > 0 ? stats.waitMsTotal / epochMs : 0,
      checkpoint,
    });
  }
  const seconds = (performance.now() - t0) / 1000;
  const dataWaitShare = elapsedTotal > 0 ? waitTotal / elapsedTotal : 0;
  emit({ type: 'done', epochs: epochsCompleted, step, seconds, dataWaitShare });
  optimizer.dispose();
  return {
    epochsCompleted, steps: step, epochLosses, stepLosses, lastCheckpoint, seconds, dataWaitShare,
    stepMsMean: stepsRun ? stepMsTotal / stepsRun : 0,
  };
}
