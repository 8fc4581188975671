// Disk errors name the file (issue 15, item 10): a full disk under a log, and a run directory that cannot be
// created, as `weakseg train` meets them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { makeSyntheticDataset } from '../../src/data/index.js';
import { demoConfig } from '../../src/pipeline/index.js';
import { tempDir } from '../data/helpers.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

test('a full disk and an uncreatable run directory are errors naming the file or folder', { skip: !existsSync('/dev/full') && 'no /dev/full' }, async (t) => {
  const dir = await tempDir(t);
  const data = join(dir, 'data');
  await makeSyntheticDataset({ root: data, seed: 1, train: 8, scored: 2, val: 2, size: 32 });
  const train = (runDir: string) => {
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify(demoConfig({ out: runDir, size: 'tiny', overrides: { data: { root: data }, train: { epochs: 1, batchSize: 4 } } })));
    return spawnSync(process.execPath, [cli, 'train', '-c', file, '--no-progress'], { encoding: 'utf8', timeout: 60_000 });
  };

  // train.log on a full device (/dev/full answers every write with ENOSPC).
  const full = join(dir, 'full');
  mkdirSync(full);
  symlinkSync('/dev/full', join(full, 'train.log'));
  const r = train(full);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, new RegExp(`${join(full, 'train.log').replace(/[.]/g, '\\.')}: cannot write \\(ENOSPC: no space left on device`));
  assert.ok(!existsSync(join(full, 'model.safetensors')));

  // A run directory below a file.
  writeFileSync(join(dir, 'afile'), 'x');
  const below = train(join(dir, 'afile', 'run'));
  assert.notEqual(below.status, 0);
  assert.match(below.stderr, /cannot create the run directory .*afile\/run: .*afile is a file, not a folder/);
});
