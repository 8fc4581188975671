#!/usr/bin/env -S node --single-threaded-gc
// Why the flag: V8's parallel and concurrent GC threads compete with libtorch's threads for the cores, and a
// parallel op waits for its slowest thread; on 2 cores a MobileNetV2 training step was 20-31 % faster without
// them (npm run bench:cam). The npm scripts pass it too; it cannot be switched on after start-up.
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
import { type OptionGroup, type Stage, stageNamed, stageNames, stages } from '../pipeline/stages.js';
import { addUseCommands } from './use-commands.js';
import { LaunchFailed, launch, launchOptions, wantsLaunch } from './launch.js';
import { methodDefinitions, methodNames } from '../methods/index.js';

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

function resumeOption(cmd: Command): Command {
  return cmd.option('--resume', 'continue an interrupted stage: keep its checkpoints and the files it already wrote');
}

function refineOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--crf <preset>', 'dense CRF settings (default psa), kernel widths scaled to each image (refine.crf.referenceSize)').choices(['psa', 'deeplab']))
    .option('--affinity-epochs <n>', 'AffinityNet epochs (default 8)', num('--affinity-epochs'))
    .option('--affinity-crop <px>', 'AffinityNet training crop (default 448)', num('--affinity-crop'));
}

function segOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--seg-head <head>', 'DeepLab head (default largefov; aspp has no BatchNorm and wants seg.lr 2.5e-4, it diverged at 0.001)').choices(['largefov', 'aspp']))
    .addOption(new Option('--pseudo-masks <stage>', 'the stage whose pseudo-masks the segmenter trains on (default random-walk), ' +
      "or 'groundTruth': the supervised ceiling, trained on the ground-truth masks of the images that have them")
      .choices([...stages().filter((s) => s.pseudoMasks).map((s) => s.name), 'groundTruth']))
    .option('--seg-epochs <n>', 'segmentation epochs (default 10)', num('--seg-epochs'))
    .option('--seg-eval-split <split>', 'split the segmenter is scored on (default val)');
}

function runOptions(cmd: Command): Command {
  return cmd
    .option('--stages <list>', `stages to run, comma-separated kebab-case names (default all: ${stageNames().join(',')}; ` +
      'saliency only with refine.saliency.dir)', strList)
    .option('--force <list>', 'rerun these stages and every stage after them, even when up to date, comma-separated (names as in --stages)', strList);
}

function modelOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--method <name>', `weakly supervised method (default ${methodNames()[0]}; its settings: ` +
      '--set method.<setting>=value, listed by `weakseg methods`)').choices(methodNames()))
    .option('--backbone <name>', 'backbone (mobilenet_v2, resnet50, resnet101, resnet38, tinynet)')
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
    .option('--seed <n>', "the classifier's seed for data order, augmentation, initialisation and dropout (train.seed, default 0; see runtime.deterministic)", num('--seed'))
    .option('--max-steps <n>', 'stop after this many steps (smoke runs)', num('--max-steps'));
}

function camOptions(cmd: Command): Command {
  return cmd
    .option('--splits <list>', 'splits to make CAMs for, comma-separated (default train,val)', strList)
    .option('--scales <list>', 'inference scales, comma-separated (default 0.5,1,1.5,2)', numList('--scales'))
    .option('--no-flip', 'no horizontally flipped passes')
    .addOption(new Option('--normalization <mode>', "per-class normalisation of the fused maps (default auto: the method's own, max unless it asks for min-max)")
      .choices(['auto', 'max', 'minmax']))
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
  put('runtime.device', f.device);
  put('runtime.threads', f.threads);
  put('data.root', f.dataRoot);
  put('data.trainSplit', f.trainSplit);
  put('method.name', f.method);
  put('model.backbone', f.backbone);
  put('model.weights', f.weights);
  put('model.outputStride', f.outputStride);
  if (f.channelsLast) put('runtime.channelsLast', true);
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
  put('cams.normalization', f.normalization);
  put('cams.checkpoint', f.checkpoint);
  put('eval.split', f.split);
  if (f.fitSplit !== undefined) put('eval.fitSplit', f.fitSplit === 'none' ? null : f.fitSplit);
  put('eval.threshold', f.threshold);
  put('eval.thresholds', f.thresholds);
  if (f.seeds === false) put('eval.writeSeeds', false);
  put('refine.crf.preset', f.crf);
  put('refine.affinity.epochs', f.affinityEpochs);
  put('refine.affinity.cropSize', f.affinityCrop);
  put('seg.head', f.segHead);
  put('seg.pseudoMasks', f.pseudoMasks);
  put('seg.epochs', f.segEpochs);
  put('seg.evalSplit', f.segEvalSplit);
  put('run.stages', f.stages);
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

type StageHooksLike = { progress?: boolean | 'auto'; resume?: boolean };

function hooksFrom(f: Flags): StageHooksLike {
  return { progress: f.progress === false ? false : 'auto', resume: Boolean(f.resume) };
}

async function runStage(stage: Stage, f: Flags): Promise<void> {
  await stage.run(configFromFlags(f), hooksFrom(f));
}

async function runAll(f: Flags): Promise<void> {
  const config = configFromFlags(f);
  const force = (f.force as string[] | undefined) ?? [];
  try {
    for (const name of force) stageNamed(name, '--force');
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  const { runPipeline } = await import('../pipeline/index.js');
  await runPipeline(config, { ...hooksFrom(f), force });
}

/** `weakseg methods`: every registered method with its paper and its settings' defaults. */
export function describeMethods(): string {
  const lines: string[] = [];
  for (const d of methodDefinitions()) {
    lines.push(`${d.name} (${d.title}): ${d.paper}`);
    const defaults = d.settings.parse({}) as Record<string, unknown>;
    const shape = d.settings.shape as Record<string, { description?: string }>;
    const keys = Object.keys(shape);
    const inference = new Set<string>(d.inferenceSettings ?? []);
    if (!keys.length) lines.push('  no settings');
    for (const k of keys) {
      const value = k in defaults ? JSON.stringify(defaults[k]) : '(unset)';
      lines.push(`  ${k} = ${value}${inference.has(k) ? '  [inference]' : ''}${shape[k]?.description ? `  ${shape[k].description}` : ''}`);
    }
  }
  lines.push('', 'Choose one in a config as "method": { "name": "<name>", <setting>: <value>, ... }, or with --method <name>',
    'and --set method.<setting>=<value>. A setting marked [inference] is read by the CAM stage only: changing it',
    'remakes the CAMs and keeps the trained model.');
  return lines.join('\n');
}

async function runDemoCommand(f: Flags): Promise<void> {
  const { runDemo } = await import('../pipeline/index.js');
  const result = await runDemo({
    out: String(f.out), seed: Number(f.seed ?? 0), size: f.tiny ? 'tiny' : 'default',
    progress: f.progress === false ? false : 'auto',
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('weakseg')
    .description('Weakly supervised semantic segmentation from image-level tags: train a classifier, make class ' +
      'activation maps (CAMs), refine them (dense CRF, affinity random walk, IRN) into pseudo-masks, train a segmentation ' +
      'network on those, and score every step.')
    .version('0.1.0')
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', `
Examples:
  weakseg train --data-root ../shared/data/voc-mini --weights ../shared/weights/mobilenet_v2_imagenet.safetensors -r runs/cam
  weakseg cams -r runs/cam --splits train,val
  weakseg eval -r runs/cam --split train --fit-split val
  weakseg crf -r runs/cam && weakseg affinity -r runs/cam && weakseg random-walk -r runs/cam
  weakseg seg-train -r runs/cam && weakseg seg-eval -r runs/cam && weakseg report -r runs/cam
  weakseg run -c my-run.json          (every stage; rerun it to resume, finished stages are skipped)
  weakseg run -c my-run.json --stages crf,random-walk --force crf
                                      (stage names are kebab-case everywhere: commands, --stages, --force, run.stages)
  weakseg demo                        (the whole pipeline on built-in synthetic data, a few minutes on a CPU)
  weakseg config -c my-run.json       (print the resolved configuration)
  weakseg predict -r runs/cam -i my-photos/ -o predictions   (segment your own images)
  weakseg export -r runs/cam --web site && weakseg serve site (ONNX model and a page that segments in the browser)
  weakseg methods                     (the methods, their papers and settings)`);

  const add = (name: string, description: string, groups: ((c: Command) => Command)[], action: (f: Flags) => Promise<void>) => {
    let cmd = program.command(name).description(description);
    cmd = commonOptions(cmd);
    for (const g of groups) cmd = g(cmd);
    cmd.action(async (flags: Flags) => action(flags));
    return cmd;
  };
  // One command per registered stage, named as the stage, with the flags of the settings it reads.
  const groups: Record<OptionGroup, (c: Command) => Command> = {
    model: modelOptions, train: trainOptions, cams: camOptions, eval: evalOptions, refine: refineOptions, seg: segOptions,
    resume: resumeOption,
  };
  // Stages that split their work over ranks take the launcher's flags (--nproc-per-node ...), and so does `run`.
  for (const stage of stages()) {
    add(stage.name, `${stage.description} (settings: ${stage.section})`,
      [...stage.options.map((g) => groups[g]), ...(stage.distributed ? [launchOptions] : [])],
      (f) => (wantsLaunch(f) ? launch(f) : runStage(stage, f)));
  }
  add('run', 'every stage above in order from one config; finished stages are skipped and an interrupted one resumes',
    [modelOptions, trainOptions, camOptions, evalOptions, refineOptions, segOptions, runOptions, launchOptions],
    (f) => (wantsLaunch(f) ? launch(f) : runAll(f)));
  add('config', 'validate and print the resolved configuration (defaults filled in)',
    [modelOptions, trainOptions, camOptions, evalOptions, refineOptions, segOptions, runOptions], async (f) => {
      process.stdout.write(`${JSON.stringify(configFromFlags(f), null, 2)}\n`);
    });
  program.command('methods')
    .description('list the weakly supervised methods: name, paper and settings with their defaults')
    .action(() => {
      process.stdout.write(`${describeMethods()}\n`);
    });
  program.command('demo')
    .description('generate a synthetic tagged dataset whose objects a plain CAM only half finds, run every stage on it ' +
      '(a few minutes on 2 CPU cores), print each stage\'s mIoU and write the report; ends with one JSON line')
    .option('-o, --out <dir>', 'run directory (the data goes to <dir>/data)', 'runs/demo')
    .option('--seed <n>', 'seed of the data and the training', num('--seed'), 0)
    .option('--tiny', 'a seconds-long smoke run (tests)')
    .option('--no-progress', 'no progress bars (log lines instead)')
    .action(async (f: Flags) => runDemoCommand(f));
  addUseCommands(program, { commonOptions, configFromFlags });
  return program;
}

export async function main(argv: string[] = process.argv): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof LaunchFailed) return e.status;
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
