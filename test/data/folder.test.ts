import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BadFileLog, DataError } from '../../src/data/errors.js';
import { readFolder } from '../../src/data/folder.js';
import { encodeMask } from '../../src/data/mask.js';
import { solidJpeg, tempDir, writeFileDeep } from './helpers.js';

async function makeImages(root: string, paths: string[]) {
  for (const p of paths) await writeFileDeep(join(root, p), await solidJpeg(4, 4));
}

const quiet = () => new BadFileLog(() => {});

test('folder + CSV: header, quoting, ; and | separators, extra fields, empty tags', async (t) => {
  const root = await tempDir(t);
  await makeImages(root, ['img/1.jpg', 'img/2.jpg', 'img/3.jpg', 'img/4.jpg', 'my, photo.jpg']);
  await writeFileDeep(
    join(root, 'labels.csv'),
    '\uFEFFPath,Tags\r\n' +
      'img/1.jpg,cat;dog\r\n' +
      'img/2.jpg,"person | potted plant"\r\n' +
      '\r\n' +
      'img/3.jpg,cat,dog\r\n' +
      'img/4.jpg,\r\n' +
      '"my, photo.jpg","dog;""odd"" tag"\n',
  );
  const ds = await readFolder({ root, labels: join(root, 'labels.csv') });
  // No classes given: all tags, sorted.
  assert.deepEqual(ds.classes, ['"odd" tag', 'cat', 'dog', 'person', 'potted plant']);
  assert.deepEqual(
    ds.items.map((i) => [i.id, i.labels]),
    [
      ['img/1', [1, 2]],
      ['img/2', [3, 4]],
      ['img/3', [1, 2]],
      ['img/4', []],
      ['my, photo', [0, 2]],
    ],
  );
  assert.equal(ds.items[0]?.imagePath, join(root, 'img', '1.jpg'));
});

test('folder + JSON, both forms; classes from the file or given; masks by relative path', async (t) => {
  const root = await tempDir(t);
  await makeImages(root, ['a.jpg', 'sub/b.png']);
  await writeFileDeep(join(root, 'masks', 'sub', 'b.png'), encodeMask({ width: 4, height: 4, data: new Uint8Array(16) }));
  await writeFileDeep(join(root, 'plain.json'), JSON.stringify({ 'a.jpg': ['dog'], 'sub/b.png': ['cat', 'dog'] }));
  await writeFileDeep(join(root, 'full.json'), JSON.stringify({ classes: ['dog', 'cat', 'bird'], labels: { 'a.jpg': ['dog'], 'sub/b.png': ['cat'] } }));

  const plain = await readFolder({ root, labels: join(root, 'plain.json'), masks: join(root, 'masks') });
  assert.deepEqual(plain.classes, ['cat', 'dog']);
  assert.deepEqual(plain.items.map((i) => [i.id, i.labels, i.maskPath]), [
    ['a', [1], undefined],
    ['sub/b', [0, 1], join(root, 'masks', 'sub', 'b.png')],
  ]);

  const full = await readFolder({ root, labels: join(root, 'full.json') });
  assert.deepEqual(full.classes, ['dog', 'cat', 'bird']);
  assert.deepEqual(full.items.map((i) => i.labels), [[0], [1]]);

  const given = await readFolder({ root, labels: join(root, 'plain.json'), classes: ['dog', 'cat', 'cow'] });
  assert.deepEqual(given.items.map((i) => i.labels), [[0], [0, 1]]);
  await assert.rejects(
    readFolder({ root, labels: join(root, 'full.json'), classes: ['cat', 'dog'] }),
    /full\.json: "classes" \(dog, cat, bird\) differ from the classes given \(cat, dog\)/,
  );
});

test('folder: an unknown tag names the file, the line or key, and the tag', async (t) => {
  const root = await tempDir(t);
  await makeImages(root, ['1.jpg', '2.jpg']);
  const csv = join(root, 'labels.csv');
  await writeFileDeep(csv, 'path,tags\n1.jpg,cat\n2.jpg,cat;kitty\n');
  await assert.rejects(readFolder({ root, labels: csv, classes: ['cat', 'dog'] }), (e: unknown) => {
    assert.ok(e instanceof DataError);
    assert.equal(e.path, csv);
    assert.match(e.message, /labels\.csv: line 3 \("2\.jpg"\): unknown tag "kitty" \(known classes: cat, dog\)/);
    return true;
  });
  await writeFileDeep(csv, '1.jpg,"cat dog"\n');
  await assert.rejects(readFolder({ root, labels: csv, classes: ['cat', 'dog'] }), /line 1 \("1\.jpg"\): unknown tag "cat dog" .*; separate tags with ";" or "\|"/);
  await writeFileDeep(csv, 'path,tags\n1.jpg,cat\n2.jpg,cat;kitty\n');
  const json = join(root, 'labels.json');
  await writeFileDeep(json, JSON.stringify({ '1.jpg': ['kitty'] }));
  await assert.rejects(readFolder({ root, labels: json, classes: ['cat'] }), /labels\.json: key "1\.jpg" \("1\.jpg"\): unknown tag "kitty"/);

  const ds = await readFolder({ root, labels: csv, classes: ['cat', 'dog'], onBadFile: 'skip', badFiles: quiet() });
  assert.deepEqual(ds.items.map((i) => i.id), ['1']);
  assert.equal(ds.badFiles.count, 1);
  assert.match(ds.badFiles.entries[0]?.reason ?? '', /unknown tag "kitty"/);
});

test('folder: missing images and duplicates are reported by path; skip mode counts them', async (t) => {
  const root = await tempDir(t);
  await makeImages(root, ['1.jpg']);
  const csv = join(root, 'labels.csv');
  await writeFileDeep(csv, '1.jpg,cat\nlost.jpg,cat\n1.jpg,dog\n');
  await assert.rejects(
    readFolder({ root, labels: csv }),
    new RegExp(`${join(root, 'lost.jpg')}: image not found \\(listed in ${csv}, line 2\\)`),
  );
  const ds = await readFolder({ root, labels: csv, onBadFile: 'skip', badFiles: quiet() });
  assert.deepEqual(ds.items.map((i) => [i.id, i.labels]), [['1', [0]]]);
  assert.equal(ds.badFiles.count, 2);
  assert.match(ds.badFiles.summary(), /2 bad file\(s\) skipped:[\s\S]*lost\.jpg: image not found[\s\S]*line 3: duplicate entry for "1\.jpg" \(first at line 1\)/);
});

test('folder: malformed labels files are errors naming the file', async (t) => {
  const root = await tempDir(t);
  await writeFileDeep(join(root, 'q.csv'), '1.jpg,"cat\n');
  await assert.rejects(readFolder({ root, labels: join(root, 'q.csv') }), /q\.csv: line 1: unterminated quoted field/);
  await writeFileDeep(join(root, 'v.json'), JSON.stringify({ '1.jpg': 'cat' }));
  await assert.rejects(readFolder({ root, labels: join(root, 'v.json') }), /v\.json: key "1\.jpg": expected an array of tags, got "cat"/);
  await assert.rejects(readFolder({ root, labels: join(root, 'none.csv') }), /none\.csv: cannot read labels file \(ENOENT/);
});
