// Every benchmark's command line (bench/common.ts benchArgs): `--help` prints the usage from its header comment and
// exits 0 before any work; an unknown option or a missing value exits 2 with one line naming it, no stack trace.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const benchDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench');
const benches = readdirSync(benchDir).filter((f) => f.endsWith('.js') && readFileSync(join(benchDir, f), 'utf8').includes('benchArgs(import.meta.url'));
const node = (file: string, ...args: string[]) =>
  spawnSync(process.execPath, [join(benchDir, file), ...args], { encoding: 'utf8', timeout: 60000 });

test('the benchmarks that take options all read them through benchArgs', () => {
  for (const name of ['cam.js', 'pixelss.js', 'chain.js', 'ddp.js', 'predict.js', 'determinism.js']) assert.ok(benches.includes(name), name);
});

test('--help prints each benchmark\'s usage and exits 0 without running it', () => {
  for (const file of benches) {
    const r = node(file, '--help');
    assert.equal(r.status, 0, `${file}: ${r.stderr}`);
    const firstLine = r.stdout.split('\n')[0]!;
    assert.match(firstLine, /^(npm run bench:|node dist\/bench\/)/, `${file} usage: ${firstLine}`);
    assert.ok(!r.stdout.includes('{"'), `${file} printed a JSON line: it ran`);
  }
});

test('an unknown option or a missing value is one line naming it, exit code 2', () => {
  const unknown = node('cam.js', '--seedz', '3');
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /^bench cam: .*'--seedz'.*--help lists the options\)\n$/);
  const missing = node('pixelss.js', '--seed-list');
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /^bench pixelss: .*'--seed-list.*--help lists the options\)\n$/);
  for (const r of [unknown, missing]) assert.ok(!/TypeError|\n\s+at /.test(r.stderr), r.stderr);
});
