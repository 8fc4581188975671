// One rank of the SyncBatchNorm test (test/distributed/syncbn.test.ts): rank r runs the case on its rows of the
// global batch with BatchNorm synchronised over the group, sums the parameter gradients over the ranks (what
// data-parallel training averages) and prints the result. Run by the test runner directly (no WORLD_SIZE), it does
// nothing.
import { ProcessGroup, distEnvFrom, tensor } from '../../src/engine/index.js';
import { GLOBAL_BATCH, syncBnCase } from './syncbn-case.js';

const env = distEnvFrom();
if (env && process.argv[2] === 'syncbn') {
  try {
    const pg = ProcessGroup.init({ ...env, timeoutMs: 30_000 });
    const share = GLOBAL_BATCH / env.worldSize;
    const result = syncBnCase(env.rank * share, share, pg);
    for (const [name, g] of Object.entries(result.grads)) {
      const t = tensor(new Float32Array(g));
      pg.allReduce([t], 'sum');
      result.grads[name] = [...t.toFloat32Array()];
    }
    pg.destroy();
    process.stdout.write(`${JSON.stringify({ rank: env.rank, ...result })}\n`);
  } catch (e) {
    process.stdout.write(`${JSON.stringify({ rank: env.rank, error: (e as Error).message })}\n`);
    process.exitCode = 3;
  }
}
