// The folder format with data.classes (issue 15, item 6): class ids follow that list, and a tag outside it is an
// error naming the labels file and the line, or a skipped and counted file with onBadFile 'skip'.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { readSplit, resolveConfig, runPaths } from '../../src/pipeline/index.js';
import { solidJpeg, tempDir, writeFileDeep } from '../data/helpers.js';

test('folder format: data.classes sets the class order; an unknown tag names the file and line', async (t) => {
  const root = await tempDir(t);
  for (const name of ['1.jpg', '2.jpg', '3.jpg']) await writeFileDeep(join(root, 'img', name), await solidJpeg(4, 4));
  const labels = join(root, 'labels.csv');
  await writeFileDeep(labels, 'path,tags\nimg/1.jpg,dog\nimg/2.jpg,cat;dog\nimg/3.jpg,cat;zebra\n');
  const config = (onBadFile: 'fail' | 'skip') => resolveConfig({
    runDir: join(root, 'run'), data: { format: 'folder', root, labels, classes: ['dog', 'cat'], onBadFile },
  });
  await assert.rejects(readSplit(config('fail'), 'train'), new RegExp(`labels\\.csv: line 4 \\("img/3\\.jpg"\\): unknown tag "zebra" \\(known classes: dog, cat\\)`));
  const ds = await readSplit(config('skip'), 'train');
  assert.deepEqual(ds.classes, ['dog', 'cat'], 'the given order, not sorted');
  assert.deepEqual(ds.items.map((i) => [i.id, i.labels]), [['img/1', [0]], ['img/2', [0, 1]]]);
  assert.equal(ds.skipped, 1);
  const skipped = readFileSync(runPaths(config('skip')).skipped, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { path: string; reason: string });
  assert.deepEqual(skipped.map((s) => s.path), [labels]);
  assert.match(skipped[0]!.reason, /line 4 \("img\/3\.jpg"\): unknown tag "zebra"/);
});
