// Turns trainer events into a human log (console and/or file), a JSON-lines log and, on a terminal, a progress
// bar with ETA. Without a terminal (nohup, CI) the bar is replaced by a log line every `logEvery` steps.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import cliProgress from 'cli-progress';
import type { TrainEvent } from './trainer.js';
import { writingTo } from '../io/files.js';

export interface ReporterOptions {
  /** Human-readable log file (appended). */
  textLog?: string;
  /** One JSON object per event (appended). */
  jsonLog?: string;
  /** Print to the console (default true). */
  console?: boolean;
  /** 'auto' (default): a bar when stderr is a terminal. */
  progress?: boolean | 'auto';
  /** Steps between step lines in the text log (default 10). */
  logEvery?: number;
  /** Where console lines go (default: stdout). */
  write?: (line: string) => void;
}

const append = (path: string, text: string) => writingTo(path, () => appendFileSync(path, text));

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}

/** "580 steps done (4 epochs and 80 steps of epoch 5)": a rolling checkpoint can stop inside an epoch. */
export function resumedAt(step: number, epochs: number, stepsPerEpoch: number): string {
  const within = step - epochs * stepsPerEpoch;
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  return `${plural(step, 'step')} done (${plural(epochs, 'epoch')}${within > 0 ? ` and ${plural(within, 'step')} of epoch ${epochs + 1}` : ''})`;
}

export class TrainReporter {
  readonly #opts: ReporterOptions;
  #multi: cliProgress.MultiBar | null = null;
  #bar: cliProgress.SingleBar | null = null;
  readonly #useBar: boolean;

  constructor(options: ReporterOptions = {}) {
    this.#opts = options;
    const p = options.progress ?? 'auto';
    this.#useBar = (options.console ?? true) && (p === 'auto' ? Boolean(process.stderr.isTTY) : p);
    for (const f of [options.textLog, options.jsonLog]) if (f) mkdirSync(dirname(f), { recursive: true });
  }

  /** Writes a line to the text log and the console (above the bar, if any). */
  line(text: string): void {
    const stamped = `${new Date().toISOString()} ${text}`;
    if (this.#opts.textLog) append(this.#opts.textLog, `${stamped}\n`);
    if (this.#opts.console ?? true) {
      if (this.#multi) this.#multi.log(`${text}\n`);
      else (this.#opts.write ?? ((l: string) => process.stdout.write(`${l}\n`)))(text);
    }
  }

  /**
   * Drops the log lines of steps after `step` (and of epochs after `epoch`): a run killed after its last
   * checkpoint logged steps that the resumed run replays, and each step should be in the logs once.
   */
  #dropReplayed(step: number, epoch: number): void {
    const keep = (path: string | undefined, later: (line: string) => boolean) => {
      if (!path || !existsSync(path)) return;
      const lines = readFileSync(path, 'utf8').split('\n');
      const kept = lines.filter((l) => !later(l));
      if (kept.length !== lines.length) writingTo(path, () => writeFileSync(path, kept.join('\n')));
    };
    keep(this.#opts.jsonLog, (l) => {
      try {
        const e = JSON.parse(l) as { type?: unknown; step?: unknown };
        return (e.type === 'step' || e.type === 'epoch') && typeof e.step === 'number' && e.step > step;
      } catch {
        return false;
      }
    });
    keep(this.#opts.textLog, (l) => {
      const s = /\(global (\d+)\//.exec(l);
      const ep = /\bepoch (\d+)\/\d+ done in/.exec(l);
      return (s !== null && Number(s[1]) > step) || (ep !== null && Number(ep[1]) > epoch);
    });
  }

  readonly onEvent = (e: TrainEvent): void => {
    if (e.type === 'resume') this.#dropReplayed(e.step, e.epoch);
    if (this.#opts.jsonLog) append(this.#opts.jsonLog, `${JSON.stringify({ time: new Date().toISOString(), ...e })}\n`);
    switch (e.type) {
      case 'resume':
        this.line(`resumed from ${e.path}: ${resumedAt(e.step, e.epoch, e.stepsPerEpoch)}`);
        break;
      case 'start':
        this.line(`training ${e.epochs} epochs x ${e.stepsPerEpoch} steps = ${e.totalSteps} steps; groups: ` +
          e.groups.map((g) => `${g.name} (${g.params} tensors, lr ${g.lr})`).join(', '));
        if (this.#useBar) {
          this.#multi = new cliProgress.MultiBar({
            format: 'epoch {epoch}/{epochs} |{bar}| {value}/{total} | loss {loss} | lr {lr} | {ips} img/s | ' +
              'data wait {wait}% | ETA {eta_formatted}',
            hideCursor: true, clearOnComplete: true, etaBuffer: 20, fps: 4,
          }, cliProgress.Presets.shades_classic);
          this.#bar = this.#multi.create(e.totalSteps, e.startStep, {
            epoch: e.startEpoch + 1, epochs: e.epochs, loss: '-', lr: '-', ips: '-', wait: '-',
          });
        }
        break;
      case 'step': {
        const waitPct = e.stepMs + e.waitMs > 0 ? (100 * e.waitMs) / (e.stepMs + e.waitMs) : 0;
        this.#bar?.update(e.step, {
          epoch: e.epoch + 1, loss: e.loss.toFixed(4), lr: e.lr.toExponential(2), ips: e.imagesPerSec.toFixed(1),
          wait: waitPct.toFixed(1),
        });
        const every = this.#opts.logEvery ?? 10;
        if (e.stepInEpoch % every === 0 || e.stepInEpoch === e.stepsPerEpoch) {
          // Name the loss terms when there are several (SEAM's cls/er/ecr...); a lone term is the loss itself.
          const parts = Object.entries(e.parts);
          const extra = parts.length > 1 ? ` (${parts.map(([k, v]) => `${k} ${v.toFixed(4)}`).join(', ')})` : '';
          const text = `epoch ${e.epoch + 1} step ${e.stepInEpoch}/${e.stepsPerEpoch} (global ${e.step}/${e.totalSteps}) ` +
            `loss ${e.loss.toFixed(4)}${extra} lr ${e.lr.toExponential(3)} step ${e.stepMs.toFixed(0)} ms ` +
            `${e.imagesPerSec.toFixed(1)} img/s ETA ${formatDuration(e.etaSec)}`;
          if (this.#opts.textLog) append(this.#opts.textLog, `${new Date().toISOString()} ${text}\n`);
          if (!this.#useBar && (this.#opts.console ?? true)) (this.#opts.write ?? ((l: string) => process.stdout.write(`${l}\n`)))(text);
        }
        break;
      }
      case 'epoch':
        this.line(`epoch ${e.epoch}/${e.epochs} done in ${formatDuration(e.seconds)}: mean loss ${e.meanLoss.toFixed(4)}, ` +
          `${e.stepMsMean.toFixed(0)} ms/step, ${e.imagesPerSec.toFixed(1)} img/s, ` +
          `data wait ${(100 * e.dataWaitShare).toFixed(1)}% of the time` +
          (e.checkpoint ? `; checkpoint ${e.checkpoint}` : ''));
        break;
      case 'done':
        this.close();
        this.line(`training finished: ${e.epochs} epochs, ${e.step} steps in ${formatDuration(e.seconds)}; ` +
          `data wait ${(100 * e.dataWaitShare).toFixed(1)}% overall`);
        break;
    }
  };

  /** Stops the bar (also call this when training throws). */
  close(): void {
    this.#multi?.stop();
    this.#multi = null;
    this.#bar = null;
  }
}
