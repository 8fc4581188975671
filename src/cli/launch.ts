// `--nproc-per-node N`: the CLI as its own torchrun. It starts N workers on this machine, each the same weakseg
// command with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and
// its share of the cores, forwards SIGINT/SIGTERM/SIGHUP to them, and when one fails stops the others and exits
// with its status. Written here rather than taken from torchrun: that one is Python, and weakseg installs without it.
import { type ChildProcess, spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { Command, InvalidArgumentError } from 'commander';
import { freeLoopbackPort } from '../engine/distributed.js';

/** A launch whose workers failed; their errors are already on stderr. */
export class LaunchFailed extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** Set in the workers, so that the same command line runs the stage instead of launching again. */
const WORKER_FLAG = 'WEAKSEG_LAUNCHED_WORKER';

function positiveInt(name: string, min = 1, max = Infinity) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer in ${min}..${max}, got '${v}'`);
    return n;
  };
}

export function launchOptions(cmd: Command): Command {
  return cmd
    .option('--nproc-per-node <n>', 'data-parallel: start n worker processes on this machine (torchrun-style; Gloo on CPU, NCCL on CUDA)', positiveInt('--nproc-per-node'))
    .option('--nnodes <m>', 'machines taking part (default 1); start the same command on each, with its --node-rank', positiveInt('--nnodes'))
    .option('--node-rank <r>', 'this machine\'s index, 0..nnodes-1 (default 0)', positiveInt('--node-rank', 0))
    .option('--master-addr <host>', 'address of node 0, where rank 0 hosts the rendezvous store (default 127.0.0.1)')
    .option('--master-port <port>', 'port of the rendezvous store on node 0 (default: a free one with --nnodes 1, else 29500)', positiveInt('--master-port', 1, 65535))
    .option('--dist-timeout <s>', 'seconds rendezvous and each collective may wait before failing (default 300)', positiveInt('--dist-timeout'));
}

/** True when this invocation should start workers rather than run the stage itself. */
export function wantsLaunch(f: Record<string, unknown>): boolean {
  return f.nprocPerNode !== undefined && !process.env[WORKER_FLAG];
}

const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Runs this same command line in nproc-per-node workers; rejects with LaunchFailed (the first failure's status)
 * unless all succeed. After a failure the others get the time of a collective to notice it and exit with their own
 * error (which names the lost rank), at most 30 s; then SIGTERM, and SIGKILL 10 s later.
 */
export async function launch(f: Record<string, unknown>, argv: string[] = process.argv): Promise<void> {
  const status = await runWorkers(f, argv);
  if (status !== 0) throw new LaunchFailed(status, `a worker failed (status ${status})`);
}

async function runWorkers(f: Record<string, unknown>, argv: string[]): Promise<number> {
  const nproc = f.nprocPerNode as number;
  const nnodes = (f.nnodes as number | undefined) ?? 1;
  const nodeRank = (f.nodeRank as number | undefined) ?? 0;
  if (nodeRank >= nnodes) throw new InvalidArgumentError(`--node-rank ${nodeRank} is outside 0..${nnodes - 1} (--nnodes ${nnodes})`);
  const worldSize = nproc * nnodes;
  const masterAddr = (f.masterAddr as string | undefined) ?? process.env.MASTER_ADDR ?? '127.0.0.1';
  // One machine and no port given: any free one (torchrun --standalone); several machines agree on 29500 by default.
  const masterPort = (f.masterPort as number | undefined) ?? (process.env.MASTER_PORT ? Number(process.env.MASTER_PORT)
    : nnodes === 1 ? await freeLoopbackPort() : 29500);
  // Each worker gets its share of the cores unless --threads says otherwise (it applies per worker).
  const threads = String(Math.max(1, Math.floor(availableParallelism() / nproc)));
  const say = (line: string) => process.stderr.write(`weakseg launch: ${line}\n`);

  const children: ChildProcess[] = [];
  let failure: { status: number; message: string } | null = null;
  let stopTimer: NodeJS.Timeout | null = null;
  const stopAll = (signal: NodeJS.Signals) => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(signal);
  };
  const forward = FORWARDED.map((sig) => {
    const handler = () => {
      failure ??= { status: 128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1), message: `${sig} received` };
      stopAll(sig);
    };
    process.on(sig, handler);
    return () => process.off(sig, handler);
  });

  return new Promise((resolve) => {
    let running = nproc;
    for (let local = 0; local < nproc; local++) {
      const rank = nodeRank * nproc + local;
      const child = spawn(process.execPath, [...process.execArgv, ...argv.slice(1)], {
        stdio: 'inherit',
        env: {
          ...process.env, [WORKER_FLAG]: '1',
          RANK: String(rank), WORLD_SIZE: String(worldSize), LOCAL_RANK: String(local), LOCAL_WORLD_SIZE: String(nproc),
          GROUP_RANK: String(nodeRank), MASTER_ADDR: masterAddr, MASTER_PORT: String(masterPort),
          WEAKSEG_NUM_THREADS: process.env.WEAKSEG_NUM_THREADS ?? threads, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? threads,
          ...(f.distTimeout ? { WEAKSEG_DIST_TIMEOUT: String(f.distTimeout) } : {}),
        },
      });
      children.push(child);
      say(`worker rank ${rank} of ${worldSize} (local ${local}): pid ${child.pid}`);
      child.on('exit', (code, signal) => {
        running--;
        if ((code !== 0 || signal) && !failure) {
          failure = { status: code ?? 128 + 9, message: `worker rank ${rank} (pid ${child.pid}) ${signal ? `was killed by ${signal}` : `exited with status ${code}`}` };
          say(`${failure.message}; the other workers stop at their next collective`);
          const grace = Math.min(30, (f.distTimeout as number | undefined) ?? 30) * 1000;
          stopTimer = setTimeout(() => {
            stopAll('SIGTERM');
            stopTimer = setTimeout(() => stopAll('SIGKILL'), 10_000);
          }, grace);
        }
        if (running === 0) {
          if (stopTimer) clearTimeout(stopTimer);
          for (const off of forward) off();
          if (failure) say(`failed: ${failure.message}`);
          resolve(failure?.status ?? 0);
        }
      });
    }
  });
}
