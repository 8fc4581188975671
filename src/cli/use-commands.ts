// The commands that use what a run trained: predict on new images, export to ONNX (and the web page), serve the page.
import { Command, InvalidArgumentError, Option } from 'commander';
import type { WeaksegConfig } from '../pipeline/config.js';

type Flags = Record<string, unknown>;

export interface UseCommandContext {
  /** Adds the options every run command takes (-r, -c, --device, --threads, --set, --no-progress). */
  commonOptions: (cmd: Command) => Command;
  configFromFlags: (f: Flags) => WeaksegConfig;
}

function positive(name: string, integer = false) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
      throw new InvalidArgumentError(`${name} must be a positive ${integer ? 'integer' : 'number'}, got '${v}'`);
    }
    return n;
  };
}

function fraction(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !(n >= 0 && n <= 1)) throw new InvalidArgumentError(`${name} must be in [0, 1], got '${v}'`);
    return n;
  };
}

export function addUseCommands(program: Command, ctx: UseCommandContext): void {
  ctx.commonOptions(program.command('predict')
    .description("segment new images with the run's segmenter (or, without one, its classifier: tags -> CAMs -> seeds -> CRF); " +
      'writes per image a palette PNG mask, an overlay JPEG and a JSON line; a rerun skips images already done'))
    .option('-i, --input <path>', 'an image, or a folder of images (searched recursively)')
    .option('-l, --list <file>', 'a text file of image paths, one per line (relative to the file)')
    .requiredOption('-o, --out <dir>', 'output folder')
    .option('--scales <list>', 'test-time scales, comma-separated (default seg.scales; cams.scales for the classifier)',
      (v: string) => v.split(',').map((s) => positive('--scales')(s.trim())))
    .option('--no-flip', 'no horizontally flipped passes')
    .addOption(new Option('--crf <preset>', "segmenter: dense CRF preset, or 'none' (default seg.crf)").choices(['psa', 'deeplab', 'none']))
    .option('--max-side <px>', 'longest side the network sees; larger images are predicted downsized and the mask scaled back (default 1024)',
      positive('--max-side', true))
    .option('--tags <list>', 'the images\' tags, comma-separated: the classifier uses them instead of predicting tags; the segmenter predicts only background and these classes',
      (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean))
    .option('--tag-threshold <p>', 'classifier path: sigmoid score above which a class is a tag (default 0.5)', fraction('--tag-threshold'))
    .option('--opacity <a>', 'mask opacity in the overlay JPEG (default 0.5)', fraction('--opacity'))
    .addOption(new Option('--on-bad-file <policy>', 'unreadable or corrupt image: skip it (reported) or fail').choices(['skip', 'fail']).default('skip'))
    .action(async (f: Flags) => {
      const config = ctx.configFromFlags(f);
      const { predict } = await import('../predict/predict.js');
      const summary = await predict(config, {
        input: f.input as string | undefined, list: f.list as string | undefined, out: String(f.out),
        ...(f.scales ? { scales: f.scales as number[] } : {}), ...(f.flip === false ? { flip: false } : {}),
        ...(f.crf ? { crf: f.crf === 'none' ? null : f.crf as 'psa' | 'deeplab' } : {}),
        ...(f.maxSide ? { maxSide: f.maxSide as number } : {}), ...(f.tags ? { tags: f.tags as string[] } : {}),
        ...(f.tagThreshold !== undefined ? { tagThreshold: f.tagThreshold as number } : {}),
        ...(f.opacity !== undefined ? { opacity: f.opacity as number } : {}), onBadFile: f.onBadFile as 'skip' | 'fail',
      }, { progress: f.progress === false ? false : 'auto', log: (l) => process.stderr.write(`${l}\n`) });
      process.stdout.write(`${JSON.stringify({ predicted: summary.predicted, kept: summary.kept, bad_files: summary.badFiles.length, images_per_s: summary.imagesPerSecond, out: summary.out })}\n`);
    });

  ctx.commonOptions(program.command('export')
    .description("export the run's segmenter (and, with --classifier, its CAM classifier) as ONNX models, with the " +
      'preprocessing and class names in their metadata; --web writes a static page that segments images in the browser'))
    .addOption(new Option('--format <format>', 'model format').choices(['onnx']).default('onnx'))
    .option('--out <dir>', 'folder of the .onnx files (default <run>/export)')
    .option('--classifier', 'also export the classifier with its CAM head (always, when the run has no segmenter)')
    .option('--web <dir>', 'write the web page (index.html, model.onnx, onnxruntime-web) to this folder')
    .option('--web-max-side <px>', "the page's longest image side fed to the network (default 512)", positive('--web-max-side', true))
    .action(async (f: Flags) => {
      const config = ctx.configFromFlags(f);
      const { exportRun } = await import('../export/run.js');
      const summary = await exportRun(config, {
        format: 'onnx', classifier: Boolean(f.classifier), ...(f.out ? { out: String(f.out) } : {}),
        ...(f.web ? { web: String(f.web) } : {}), ...(f.webMaxSide ? { webMaxSide: f.webMaxSide as number } : {}),
      });
      process.stdout.write(`${JSON.stringify(summary)}\n`);
    });

  program.command('serve')
    .description('serve a folder written by `weakseg export --web` on localhost (with the headers that let onnxruntime-web use threads)')
    .argument('<dir>', 'the folder with index.html')
    .option('-p, --port <n>', 'port (default 8000; 0 picks a free one)', (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError(`--port must be 0..65535, got '${v}'`);
      return n;
    }, 8000)
    .option('--host <host>', 'address to listen on (default 127.0.0.1: this machine only)', '127.0.0.1')
    .action(async (dir: string, f: Flags) => {
      const { serveDirectory } = await import('../web/serve.js');
      const s = await serveDirectory(dir, { port: f.port as number, host: String(f.host) });
      process.stdout.write(`serving ${dir} at ${s.url} (Ctrl+C to stop)\n`);
      await new Promise<void>((r) => s.server.on('close', () => r()));
    });
}
