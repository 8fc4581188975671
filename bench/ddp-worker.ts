// One process of bench:ddp (bench/ddp.ts): `node ddp-worker.js train <config.json>` trains the config's classifier
// (distributed when torchrun's variables are set) and prints its model path; `node ddp-worker.js allreduce <MiB>
// <reps>` times all-reducing one float32 buffer over the world group and prints the median seconds.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { ProcessGroup, distEnvFrom, zeros } from '../src/engine/index.js';
import { resolveConfig, trainClassifier } from '../src/pipeline/index.js';

const [mode, a, b] = process.argv.slice(2);
if (mode === 'train' && a) {
  const config = resolveConfig(JSON.parse(readFileSync(a, 'utf8')));
  const fit = await trainClassifier(config, { progress: false, log: () => {} });
  process.stdout.write(`${JSON.stringify({ model: fit.model, steps: fit.steps })}\n`);
} else if (mode === 'allreduce' && a && b) {
  const env = distEnvFrom();
  if (!env) throw new Error('allreduce needs RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT');
  const pg = ProcessGroup.init({ ...env, timeoutMs: 120_000 });
  const t = zeros([Math.round((Number(a) * 2 ** 20) / 4)]);
  pg.allReduce([t], 'sum'); // warm-up: connections and buffers
  const times: number[] = [];
  for (let i = 0; i < Number(b); i++) {
    pg.barrier();
    const t0 = performance.now();
    pg.allReduce([t], 'sum', { bucketBytes: 2 ** 40 });
    times.push((performance.now() - t0) / 1000);
  }
  times.sort((x, y) => x - y);
  process.stdout.write(`${JSON.stringify({ rank: env.rank, seconds: times[Math.floor(times.length / 2)] })}\n`);
  pg.destroy();
}
