/**
 * Dense CRF benchmark: 500×375 image, 21 labels, 10 mean-field iterations, both presets, on one core
 * (libtorch's intra-op threads set to 1; the lattice passes are native/lattice.cc), then on all cores.
 * Run with `node dist/bench/crf.js` (after `npx tsc -p tsconfig.json`). The image is the first voc-mini
 * JPEG upscaled with sharp, or a synthetic one when the data is absent. The unary is synthetic (smooth
 * random class blobs plus noise): CRF cost does not depend on what the probabilities mean.
 * Prints per-preset medians (wall clock, and process CPU time, which a loaded shared machine inflates
 * less), then one final JSON line with the headline (slowest preset) figures.
 */
import { readdir } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import { CRF_PRESETS, type CrfPresetName } from '../src/refine/crf-presets.js';
import { DenseCRF2D } from '../src/refine/crf.js';
import { Rng } from '../src/data/rng.js';
import { median } from './common.js';
import { getNumThreads, setNumThreads } from '../src/engine/index.js';

const rng = (seed: number) => {
  const r = new Rng(seed);
  return () => r.float();
};

const WIDTH = 500;
const HEIGHT = 375;
const LABELS = 21;
const ITERATIONS = 10;
const RUNS = 7;
const TARGET_MS = 1000;
const VOC_JPEGS = '/work/shared/data/voc-mini/JPEGImages';

interface Timing {
  crfMs: number;
  crfCpuMs: number;
  unaryMs: number;
  latticeMs: number;
  iterMs: number;
}

async function loadImage(): Promise<{ rgb: Uint8Array; source: string }> {
  try {
    const name = (await readdir(VOC_JPEGS)).filter((f) => f.endsWith('.jpg')).sort()[0];
    if (name !== undefined) {
      const buf = await sharp(join(VOC_JPEGS, name))
        .removeAlpha()
        .resize(WIDTH, HEIGHT, { fit: 'fill' })
        .raw()
        .toBuffer();
      return { rgb: new Uint8Array(buf.buffer, buf.byteOffset, buf.length), source: name };
    }
  } catch {
    // fall through to the synthetic image
  }
  const rgb = new Uint8Array(WIDTH * HEIGHT * 3);
  const rand = rng(7);
  for (let y = 0, i = 0; y < HEIGHT; y++) {
    for (let x = 0; x < WIDTH; x++, i += 3) {
      const inside = (x - 250) ** 2 / 150 ** 2 + (y - 190) ** 2 / 110 ** 2 < 1;
      rgb[i] = (inside ? 200 : 40) + rand() * 30;
      rgb[i + 1] = (inside ? 60 : 120) + rand() * 30;
      rgb[i + 2] = (x / WIDTH) * 200 + rand() * 30;
    }
  }
  return { rgb, source: 'synthetic' };
}

/** Softmax of a few random Gaussian blobs per label plus pixel noise, label-major [L][H][W]. */
function syntheticProbabilities(): Float32Array {
  const n = WIDTH * HEIGHT;
  const rand = rng(42);
  const logits = new Float32Array(LABELS * n);
  for (let l = 0; l < LABELS; l++) {
    const blobs = Array.from({ length: 3 }, () => ({
      x: rand() * WIDTH,
      y: rand() * HEIGHT,
      s: 30 + rand() * 90,
      a: 2 + rand() * 4,
    }));
    for (let y = 0, p = 0; y < HEIGHT; y++) {
      for (let x = 0; x < WIDTH; x++, p++) {
        let v = (rand() - 0.5) * 2;
        for (const b of blobs) v += b.a * Math.exp(-((x - b.x) ** 2 + (y - b.y) ** 2) / (2 * b.s * b.s));
        logits[l * n + p] = v;
      }
    }
  }
  const prob = new Float32Array(LABELS * n);
  for (let p = 0; p < n; p++) {
    let sum = 0;
    for (let l = 0; l < LABELS; l++) sum += (prob[l * n + p] = Math.exp(logits[l * n + p]));
    for (let l = 0; l < LABELS; l++) prob[l * n + p] /= sum;
  }
  return prob;
}

/** One full CRF (unary, both kernels' lattices, 10 iterations), then a 0-iteration run to isolate one iteration. */
function timeOnce(preset: CrfPresetName, rgb: Uint8Array, prob: Float32Array): Timing {
  const p = CRF_PRESETS[preset];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const crf = new DenseCRF2D(WIDTH, HEIGHT, LABELS);
  crf.setUnaryFromProbabilities(prob, p.clip);
  const t1 = performance.now();
  crf.addPairwiseGaussian(p.gaussian.sxy, p.gaussian.compat);
  crf.addPairwiseBilateral(p.bilateral.sxy, p.bilateral.srgb, rgb, p.bilateral.compat);
  const t2 = performance.now();
  crf.inference(ITERATIONS);
  const t3 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  // Zero iterations = the fixed cost of inference (initial softmax, layout changes).
  crf.inference(0);
  const t4 = performance.now();
  return {
    crfMs: t3 - t0,
    crfCpuMs: (cpu.user + cpu.system) / 1000,
    unaryMs: t1 - t0,
    latticeMs: t2 - t1,
    iterMs: (t3 - t2 - (t4 - t3)) / ITERATIONS,
  };
}

const round1 = (x: number): number => Math.round(x * 10) / 10;

async function main(): Promise<void> {
  const { rgb, source } = await loadImage();
  const prob = syntheticProbabilities();
  console.log(
    `dense CRF: ${WIDTH}x${HEIGHT} (${source}), ${LABELS} labels, ${ITERATIONS} iterations, ` +
      `median of ${RUNS} after 1 warm-up, load average ${loadavg()[0].toFixed(1)}`,
  );
  const allThreads = getNumThreads();
  const results: Record<string, Record<string, number>> = {};
  const measure = (threads: number): void => {
    setNumThreads(threads);
    for (const preset of Object.keys(CRF_PRESETS) as CrfPresetName[]) {
      timeOnce(preset, rgb, prob);
      const runs = Array.from({ length: RUNS }, () => timeOnce(preset, rgb, prob));
      const med = (key: keyof Timing): number => round1(median(runs.map((t) => t[key])));
      const r = {
        crf_ms_median: med('crfMs'),
        crf_cpu_ms_median: med('crfCpuMs'),
        crf_ms_min: round1(Math.min(...runs.map((t) => t.crfMs))),
        unary_ms: med('unaryMs'),
        lattice_ms: med('latticeMs'),
        iter_ms: med('iterMs'),
      };
      if (threads === 1) results[preset] = r;
      else results[preset][`crf_ms_median_${threads}_threads`] = r.crf_ms_median;
      console.log(
        `${preset.padEnd(8)} ${threads} thread(s): total ${r.crf_ms_median} ms (cpu ${r.crf_cpu_ms_median}, min ${r.crf_ms_min}) | ` +
          `unary ${r.unary_ms} ms | lattice build ${r.lattice_ms} ms | per iteration ${r.iter_ms} ms`,
      );
    }
  };
  measure(1);
  if (allThreads > 1) measure(allThreads);
  const [headline, worst] = Object.entries(results).reduce((a, b) => (b[1].crf_ms_median > a[1].crf_ms_median ? b : a));
  console.log(JSON.stringify({ ...worst, target_ms: TARGET_MS, headline_preset: headline, presets: results }));
}

await main();
