// One rank of the collectives tests (test/dist/collectives.test.ts): `node collectives-worker.js <scenario>`.
// Run by the test runner directly (no WORLD_SIZE), it does nothing.
import { ProcessGroup, distEnvFrom, tensor } from '../../src/engine/index.js';

const env = distEnvFrom();
const scenario = process.argv[2];
if (env && scenario) {
  const timeoutMs = Number(process.env.DIST_TIMEOUT_MS ?? 20_000);
  const report = (o: unknown) => process.stdout.write(`${JSON.stringify(o)}\n`);
  try {
    const pg = ProcessGroup.init({ ...env, timeoutMs });
    const r = env.rank;
    if (scenario.startsWith('ops')) {
      // Rank r holds r + 1 + i at element i; tensors of two dtypes, a bucket cap of 8 bytes so that there are several.
      const a = tensor(new Float32Array([r + 1, r + 2, r + 3]));
      const b = tensor(new Float32Array([10 * (r + 1)]));
      const c = tensor(new Int32Array([r, -r]), { dtype: 'int32' });
      pg.allReduce([a, b, c], 'sum', { bucketBytes: 8 });
      const avg = tensor(new Float32Array([r * 2, 1]));
      pg.allReduce([avg], 'avg');
      const mx = tensor(new Float32Array([r, -r]));
      pg.allReduce([mx], 'max');
      // Broadcast from the last rank into a parameter-like leaf that requires grad.
      const p = tensor(new Float32Array([r, r, r]), { requiresGrad: true });
      pg.broadcast([p], env.worldSize - 1);
      const parts = pg.allGather(tensor(new Float32Array([r, r * r])));
      pg.barrier();
      report({
        rank: r, scenario: 'ops', sum: [...a.toFloat32Array(), ...b.toFloat32Array()], sumInt: Array.from(c.dataSync() as Int32Array),
        avg: [...avg.toFloat32Array()], max: [...mx.toFloat32Array()], broadcast: [...p.toFloat32Array()],
        requiresGrad: p.requiresGrad, gathered: parts.map((t) => [...t.toFloat32Array()]),
      });
    }
    if (scenario === 'ops+kill') {
      // The last rank dies (SIGKILL, no chance to say goodbye) after one barrier; the others are in an all-reduce.
      pg.barrier();
      if (r === env.worldSize - 1) process.kill(process.pid, 'SIGKILL');
      const t0 = Date.now();
      try {
        pg.allReduce([tensor(new Float32Array(1000))]);
        report({ rank: r, scenario: 'kill', error: null });
      } catch (e) {
        report({ rank: r, scenario: 'kill', error: (e as Error).message, seconds: (Date.now() - t0) / 1000 });
      }
    }
    pg.destroy();
  } catch (e) {
    report({ rank: env.rank, error: (e as Error).message });
    process.exitCode = 3;
  }
}
