// `weakseg train --nproc-per-node 2`: the CLI's launcher over loopback. A worker killed with SIGKILL mid-training
// stops the run with errors naming the lost rank, leaves no half-written file, and the same command with --resume
// finishes the run from the last checkpoint.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { distBackends } from '../../src/engine/index.js';
import { makeSyntheticDataset } from '../../src/data/index.js';
import { demoConfig, readMetrics } from '../../src/pipeline/index.js';
import { tempDir } from '../data/helpers.js';
import { freePort, here } from './workers.js';

const skip = distBackends().includes('gloo') ? false : 'the native engine was built without Gloo (apt-get install libgloo-dev, then npm run build:native)';
const bin = resolve(here, '..', '..', 'src', 'cli', 'main.js');

function weakseg(args: string[], onStderr: (all: string) => void = () => {}) {
  const child = spawn(process.execPath, ['--single-threaded-gc', bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; onStderr(err); });
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  return new Promise<{ code: number | null; out: string; err: string }>((res) => child.on('close', (code) => {
    clearTimeout(timer);
    res({ code, out, err });
  }));
}

test('launcher: kill -9 one worker, the run stops naming it; the same command with --resume finishes it', { skip }, async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'data');
  await makeSyntheticDataset({ root: data, seed: 4, train: 24, scored: 4, val: 4, size: 64 });
  const config = demoConfig({
    out: join(dir, 'run'), size: 'tiny',
    overrides: { data: { root: data }, runtime: { logEvery: 1, checkpointEverySteps: 1 }, train: { epochs: 4, batchSize: 8, cropSize: 64 } },
  });
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config));
  const log = join(config.runDir, 'train.log.jsonl');
  const steps = () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter((l) => l.includes('"type":"step"')).length : 0);
  const args = ['train', '-c', file, '--nproc-per-node', '2', '--master-port', String(await freePort()), '--dist-timeout', '20', '--no-progress'];

  let killed: number | null = null;
  const poll = setInterval(() => {
    if (killed !== null) return;
    const pid = /worker rank 1 of 2 \(local 1\): pid (\d+)/.exec(stderrSoFar)?.[1];
    if (pid && steps() >= 2) {
      // Stopped first, so that it dies mid-training however fast the steps are (rank 0 waits for it meanwhile).
      killed = Number(pid);
      process.kill(killed, 'SIGSTOP');
      setTimeout(() => process.kill(killed!, 'SIGKILL'), 300);
    }
  }, 50);
  let stderrSoFar = '';
  const first = await weakseg(args, (e) => { stderrSoFar = e; });
  clearInterval(poll);
  assert.ok(killed, `no worker was killed: ${first.err}`);
  assert.notEqual(first.code, 0);
  assert.match(first.err, new RegExp(`worker rank 1 \\(pid ${killed}\\) was killed by SIGKILL`));
  assert.match(first.err, /\(rank 0 of 2, gloo\) failed: .*rank 1 stopped responding \(lost\)/);
  const stopped = steps();
  assert.ok(stopped < 12, `the run went on to step ${stopped}`);
  const leftovers = readdirSync(join(config.runDir, 'checkpoints')).filter((f) => f.includes('.tmp'));
  assert.deepEqual(leftovers, []);


  const second = await weakseg([...args, "--resume"]);
  assert.equal(second.code, 0, second.err);
  assert.match(second.out, /resum/i);
  const m = readMetrics(config) as { train: { steps: number } };
  assert.equal(m.train.steps, 12); // 24 images / 8 x 4 epochs
});
