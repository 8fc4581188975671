#!/usr/bin/env node
// The `weakseg` command: train a classifier from image-level tags, make CAMs, score their seeds.
// Settings come from defaults < the run directory's config.json < --config file < flags < --set key=value.
// The engine is loaded only when a stage runs, so --help and config errors answer at once.
import { existsSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import {
  ConfigError, type WeaksegConfig, mergeConfig, readConfigFile, readRunConfig, resolveConfig, setPath,
} from '../pipeline/config.js';

type Flags = Record<string, unknown>;

function num(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got '${v}'`);
    return n;
  };
}

function numList(name: string) {
  return (v: string): number[] => v.split(',').map((s) => num(name)(s.trim()));
}

function strList(v: string): string[] {
  return v.split(',').map((s) => s.trim()).filter(Boolean);
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

/** "0.05:0.60:0.01" */
function range(v: string): { from: number; to: number; step: number } {
  const parts = v.split(':').map((s) => Number(s));
  if (parts.length !== 3 || parts.some((n) => !Number.isFinite(n))) {
    throw new InvalidArgumentError(`--thresholds takes from:to:step (e.g. 0.05:0.60:0.01), got '${v}'`);
  }
  return { from: parts[0]!, to: parts[1]!, step: parts[2]! };
}

function commonOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'JSON config file (see `weakseg config --help`)')
    .option('-r, --run-dir <dir>', 'run directory: config.json, logs, checkpoints, CAMs, seeds, metrics.json')
    .option('--data-root <dir>', 'dataset root (VOC layout: JPEGImages/, ImageSets/Segmentation/, SegmentationClass/)')
    .option('--device <device>', "'cpu', 'cuda' or 'cuda:N'")
    .option('--threads <n>', 'engine threads (default: all cores)', num('--threads'))
    .option('--set <key=value>', 'set any config field by its dotted path, e.g. --set train.scaleRange=[0.5,1.5] (repeatable)', collect)
    .option('--no-progress', 'no progress bar (log lines instead)');
}

function modelOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--method <name>', 'weakly supervised method (default cam)').choices(['cam', 'seam']))
    .option('--backbone <name>', 'backbone (mobilenet_v2, resnet50, resnet101, resnet38)')
    .option('--weights <file>', 'pretrained backbone weights (.safetensors or .pth)')
    .addOption(new Option('--output-stride <n>', 'backbone output stride').choices(['8', '16', '32']).argParser(Number))
    .option('--channels-last', 'run convolutions in channels-last memory order');
}

function trainOptions(cmd: Command): Command {
  return cmd
    .option('--train-split <split>', 'split to train on (default train_aug)')
    .option('--epochs <n>', 'epochs (default 8)', num('--epochs'))
    .option('--batch-size <n>', 'batch size (default 16)', num('--batch-size'))
    .option('--crop-size <px>', 'square training crop (default 224)', num('--crop-size'))
    .option('--lr <lr>', 'backbone learning rate; new layers get lr x head-lr-mult (default 0.01)', num('--lr'))
    .option('--head-lr-mult <x>', 'learning-rate multiplier of the new layers (default 10)', num('--head-lr-mult'))
    .option('--momentum <m>', 'SGD momentum (default 0.9; 0 reproduces the official PSA/SEAM/IRN code)', num('--momentum'))
    .option('--weight-decay <wd>', 'weight decay (default 1e-4)', num('--weight-decay'))
    .option('--seed <n>', 'seed for data order, augmentation and initialisation (default 0)', num('--seed'))
    .option('--max-steps <n>', 'stop after this many steps (smoke runs)', num('--max-steps'))
    .option('--resume', 'continue the run from its newest checkpoint');
}

function camOptions(cmd: Command): Command {
  return cmd
    .option('--splits <list>', 'splits to make CAMs for, comma-separated (default train,val)', strList)
    .option('--scales <list>', 'inference scales, comma-separated (default 0.5,1,1.5,2)', numList('--scales'))
    .option('--no-flip', 'no horizontally flipped passes')
    .option('--checkpoint <file>', "weights to use (default: the run's model.safetensors)");
}

function evalOptions(cmd: Command): Command {
  return cmd
    .option('--split <split>', 'split to score (default train)')
    .option('--fit-split <split>', "leak-free mode: choose t on this split ('none' for no fit split; default val)")
    .option('--threshold <t>', 'fixed mode: score at this background threshold', num('--threshold'))
    .option('--thresholds <from:to:step>', 'threshold sweep (default 0.05:0.60:0.01)', range)
    .option('--no-seeds', 'do not write seed PNGs');
}

function parseSetValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** Flags to a partial config object. */
function flagsToConfig(f: Flags): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const put = (path: string, v: unknown) => {
    if (v !== undefined) setPath(out, path, v);
  };
  put('runDir', f.runDir);
  put('device', f.device);
  put('threads', f.threads);
  put('data.root', f.dataRoot);
  put('data.trainSplit', f.trainSplit);
  put('model.method', f.method);
  put('model.backbone', f.backbone);
  put('model.weights', f.weights);
  put('model.outputStride', f.outputStride);
  if (f.channelsLast) put('model.channelsLast', true);
  put('train.epochs', f.epochs);
  put('train.batchSize', f.batchSize);
  put('train.cropSize', f.cropSize);
  put('train.lr', f.lr);
  put('train.headLrMult', f.headLrMult);
  put('train.momentum', f.momentum);
  put('train.weightDecay', f.weightDecay);
  put('train.seed', f.seed);
  put('train.maxSteps', f.maxSteps);
  put('cams.splits', f.splits);
  put('cams.scales', f.scales);
  if (f.flip === false) put('cams.flip', false);
  put('cams.checkpoint', f.checkpoint);
  put('eval.split', f.split);
  if (f.fitSplit !== undefined) put('eval.fitSplit', f.fitSplit === 'none' ? null : f.fitSplit);
  put('eval.threshold', f.threshold);
  put('eval.thresholds', f.thresholds);
  if (f.seeds === false) put('eval.writeSeeds', false);
  for (const kv of (f.set as string[] | undefined) ?? []) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--set takes key=value (e.g. train.lr=0.01), got '${kv}'`);
    setPath(out, kv.slice(0, eq), parseSetValue(kv.slice(eq + 1)));
  }
  return out;
}

/** Resolves the config of a command from its flags (exported for tests). */
export function configFromFlags(f: Flags): WeaksegConfig {
  const fromFlags = flagsToConfig(f);
  const file = f.config ? readConfigFile(String(f.config)) : {};
  const runDir = (fromFlags.runDir ?? file.runDir) as string | undefined;
  if (!runDir) throw new ConfigError('no run directory: pass --run-dir <dir> or set "runDir" in the config file');
  const saved = existsSync(resolve(runDir)) ? readRunConfig(runDir) ?? {} : {};
  const merged = mergeConfig(mergeConfig(saved, file), fromFlags);
  const source = f.config ? `configuration (file ${String(f.config)}, flags${Object.keys(saved).length ? `, ${runDir}/config.json` : ''})`
    : 'configuration';
  return resolveConfig(merged, source);
}

async function runStage(stage: 'train' | 'cams' | 'eval' | 'run', f: Flags): Promise<void> {
  const config = configFromFlags(f);
  const pipeline = await import('../pipeline/index.js');
  const hooks = { progress: f.progress === false ? false : ('auto' as const) };
  if (stage === 'train' || stage === 'run') await pipeline.trainClassifier(config, { ...hooks, resume: Boolean(f.resume) });
  if (stage === 'cams' || stage === 'run') await pipeline.makeCams(config, hooks);
  if (stage === 'eval' || stage === 'run') await pipeline.evaluateSeeds(config, hooks);
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('weakseg')
    .description('Weakly supervised semantic segmentation from image-level tags: train a classifier, make class ' +
      'activation maps (CAMs), turn them into seeds and score them.')
    .version('0.1.0')
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', `
Examples:
  weakseg train --data-root ../shared/data/voc-mini --weights ../shared/weights/mobilenet_v2_imagenet.safetensors -r runs/cam
  weakseg cams -r runs/cam --splits train,val
  weakseg eval -r runs/cam --split train --fit-split val
  weakseg run -c my-run.json          (train + cams + eval)
  weakseg config -c my-run.json       (print the resolved configuration)`);

  const add = (name: string, description: string, groups: ((c: Command) => Command)[], action: (f: Flags) => Promise<void>) => {
    let cmd = program.command(name).description(description);
    cmd = commonOptions(cmd);
    for (const g of groups) cmd = g(cmd);
    cmd.action(async (flags: Flags) => action(flags));
    return cmd;
  };
  add('train', 'train the classifier of a method from image-level tags (per-epoch checkpoints; --resume continues)',
    [modelOptions, trainOptions], (f) => runStage('train', f));
  add('cams', 'make multi-scale + flip CAMs of every image of the chosen splits (one safetensors file per image)',
    [modelOptions, camOptions], (f) => runStage('cams', f));
  add('eval', 'score CAM seeds against ground truth: mIoU, per-class IoU, precision, recall, threshold curve',
    [evalOptions], (f) => runStage('eval', f));
  add('run', 'train, make CAMs and evaluate, in one go', [modelOptions, trainOptions, camOptions, evalOptions],
    (f) => runStage('run', f));
  add('config', 'validate and print the resolved configuration (defaults filled in)',
    [modelOptions, trainOptions, camOptions, evalOptions], async (f) => {
      process.stdout.write(`${JSON.stringify(configFromFlags(f), null, 2)}\n`);
    });
  return program;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`weakseg: ${e.message}\n`);
      return 2;
    }
    process.stderr.write(`weakseg: error: ${(e as Error).message}\n`);
    if (process.env.WEAKSEG_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
    return 1;
  }
}

function invokedDirectly(): boolean {
  try {
    return Boolean(process.argv[1]) && realpathSync(process.argv[1]!) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}
if (invokedDirectly()) {
  process.exitCode = await main();
}
