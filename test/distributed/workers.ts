// Spawning a few worker processes over loopback, torchrun-style (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), for
// the distributed tests. Each worker is a script under dist/test/distributed/ that prints one JSON line on success.
import { spawn } from 'node:child_process';
import { freeLoopbackPort } from '../../src/engine/index.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const here = dirname(fileURLToPath(import.meta.url));

export { freeLoopbackPort as freePort } from '../../src/engine/index.js';

export interface WorkerResult {
  rank: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
  /** The last line of stdout parsed as JSON, when it is JSON. */
  json: unknown;
  seconds: number;
}

/** Runs `script` (a file in this folder, compiled) once per rank with 1 engine thread; resolves when all exit. */
export async function runWorkers(
  script: string, worldSize: number, opts: { args?: string[]; env?: (rank: number) => NodeJS.ProcessEnv; timeoutMs?: number; port?: number } = {},
): Promise<WorkerResult[]> {
  const port = opts.port ?? await freeLoopbackPort();
  const t0 = Date.now();
  return Promise.all(Array.from({ length: worldSize }, (_, rank) => new Promise<WorkerResult>((resolve) => {
    const child = spawn(process.execPath, ['--single-threaded-gc', join(here, script), ...(opts.args ?? [])], {
      env: {
        ...process.env, WEAKSEG_NUM_THREADS: '1', OMP_NUM_THREADS: '1',
        RANK: String(rank), WORLD_SIZE: String(worldSize), LOCAL_RANK: String(rank),
        MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), ...(opts.env?.(rank) ?? {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      let json: unknown = null;
      try { json = JSON.parse(last); } catch { /* not JSON */ }
      resolve({ rank, code, signal, out, err, json, seconds: (Date.now() - t0) / 1000 });
    });
  })));
}
