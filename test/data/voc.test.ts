import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { VOC_CLASSES } from '../../src/data/dataset.js';
import { BadFileLog, DataError } from '../../src/data/errors.js';
import { encodeMask } from '../../src/data/mask.js';
import { readVoc, vocObjectNames } from '../../src/data/voc.js';
import { solidJpeg, tempDir, writeFileDeep } from './helpers.js';

const VOC_MINI = '/work/shared/data/voc-mini';
const cls = (name: string) => VOC_CLASSES.indexOf(name);

const XML_A = `<annotation>
  <folder>VOC2012</folder><filename>a.jpg</filename>
  <object>
    <name>dog</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>
  </object>
  <!-- <object><name>cat</name></object> is commented out -->
  <object>
    <name>
      person
    </name>
    <part><name>head</name><bndbox><xmin>1</xmin></bndbox></part>
    <difficult>1</difficult>
  </object>
</annotation>`;

/** a: XML labels; b: labels JSON; c: mask only (values 0, 5 = bottle, 255). */
async function makeVoc(root: string, split: string[], json: object = { classes: VOC_CLASSES, labels: { b: ['cat', 'car'] } }) {
  for (const id of ['a', 'b', 'c']) await writeFileDeep(join(root, 'JPEGImages', `${id}.jpg`), await solidJpeg(4, 4));
  await writeFileDeep(join(root, 'Annotations', 'a.xml'), XML_A);
  await writeFileDeep(join(root, 'image_labels.json'), JSON.stringify(json));
  await writeFileDeep(
    join(root, 'SegmentationClass', 'c.png'),
    encodeMask({ width: 4, height: 4, data: new Uint8Array([0, 0, 5, 5, 0, 5, 5, 255, 0, 0, 0, 0, 0, 0, 0, 0]) }),
  );
  await writeFileDeep(join(root, 'ImageSets', 'Segmentation', 'train.txt'), split.join('\n') + '\n');
}

test('VOC: labels from XML, else labels JSON, else mask', async (t) => {
  const root = await tempDir(t);
  await makeVoc(root, ['a', 'b', 'c']);
  const ds = await readVoc({ root, split: 'train' });
  assert.deepEqual(ds.classes, [...VOC_CLASSES]);
  assert.deepEqual(
    ds.items.map((i) => [i.id, i.labels]),
    [
      ['a', [cls('dog'), cls('person')]], // difficult objects count; the part "head" does not
      ['b', [cls('car'), cls('cat')]],
      ['c', [cls('bottle')]],
    ],
  );
  assert.deepEqual(ds.labelSources, { xml: 1, json: 1, mask: 1 });
  assert.equal(ds.items[0]?.imagePath, join(root, 'JPEGImages', 'a.jpg'));
  assert.equal(ds.items[0]?.maskPath, undefined);
  assert.equal(ds.items[2]?.maskPath, join(root, 'SegmentationClass', 'c.png'));
  assert.equal(ds.badFiles.count, 0);
});

test('VOC: without the mask source, an item with no labels is a bad file', async (t) => {
  const root = await tempDir(t);
  await makeVoc(root, ['a', 'c']);
  await assert.rejects(readVoc({ root, split: 'train', labelSources: ['xml', 'json'] }), /c\.jpg: no image-level labels for "c"/);
});

test('VOC: a missing image fails with its path, or is skipped and counted', async (t) => {
  const root = await tempDir(t);
  await makeVoc(root, ['a', 'ghost', 'b']);
  const expected = join(root, 'JPEGImages', 'ghost.jpg');
  await assert.rejects(readVoc({ root, split: 'train' }), (e: unknown) => {
    assert.ok(e instanceof DataError);
    assert.equal(e.path, expected);
    assert.match(e.message, /ghost\.jpg: image not found \(listed in split "train"\)/);
    return true;
  });
  const reported: string[] = [];
  const log = new BadFileLog((bad) => reported.push(bad.path));
  const ds = await readVoc({ root, split: 'train', onBadFile: 'skip', badFiles: log });
  assert.deepEqual(ds.items.map((i) => i.id), ['a', 'b']);
  assert.equal(ds.badFiles, log);
  assert.equal(log.count, 1);
  assert.deepEqual(reported, [expected]);
  assert.equal(log.entries[0]?.id, 'ghost');
});

test('VOC: an unknown tag in the labels JSON names the file, the id and the tag', async (t) => {
  const root = await tempDir(t);
  await makeVoc(root, ['b'], { labels: { b: ['cat', 'kitty'] } });
  await assert.rejects(readVoc({ root, split: 'train' }), /image_labels\.json: labels\["b"\]: unknown tag "kitty"/);
  const ds = await readVoc({ root, split: 'train', onBadFile: 'skip', badFiles: new BadFileLog(() => {}) });
  assert.equal(ds.items.length, 0);
  assert.equal(ds.badFiles.count, 1);
});

test('VOC: dataset-level faults always throw, with a useful hint', async (t) => {
  const root = await tempDir(t);
  await makeVoc(root, ['a']);
  await assert.rejects(readVoc({ root, split: 'trainaug', onBadFile: 'skip' }), /trainaug\.txt: cannot read split list \(ENOENT.*available splits: train/);
  await writeFileDeep(join(root, 'other.json'), JSON.stringify({ classes: ['cat', 'dog'], labels: {} }));
  await assert.rejects(readVoc({ root, split: 'train', labelsJson: join(root, 'other.json') }), /other\.json: "classes" .* differ from the classes in use/);
  await writeFileDeep(join(root, 'bad.json'), '{"labels": {');
  await assert.rejects(readVoc({ root, split: 'train', labelsJson: join(root, 'bad.json') }), /bad\.json: invalid JSON/);
});

test('VOC XML extraction is tolerant but refuses truncated objects', () => {
  assert.deepEqual(vocObjectNames(XML_A, 'a.xml'), ['dog', 'person']);
  assert.deepEqual(vocObjectNames('<annotation><object><name>pottedplant</name></object></annotation>', 'x'), ['pottedplant']);
  assert.deepEqual(vocObjectNames('<annotation></annotation>', 'x'), []);
  assert.throws(() => vocObjectNames('<annotation><object><name>dog</name>', 'x.xml'), /x\.xml: malformed XML: 1 <object> but 0 <\/object>/);
  assert.throws(() => vocObjectNames('<html></html>', 'x.xml'), /not a VOC annotation/);
});

test('VOC: voc-mini with its labels JSON', { skip: !existsSync(VOC_MINI) && `${VOC_MINI} not present` }, async () => {
  const trainAug = await readVoc({ root: VOC_MINI, split: 'train_aug' });
  assert.equal(trainAug.items.length, 1000);
  assert.deepEqual(trainAug.labelSources, { xml: 0, json: 1000, mask: 0 });
  assert.equal(trainAug.items.filter((i) => i.maskPath).length, 437);
  assert.ok(trainAug.items.every((i) => i.labels.length > 0));

  const train = await readVoc({ root: VOC_MINI, split: 'train' });
  assert.equal(train.items.length, 437);
  assert.ok(train.items.every((i) => i.maskPath));
  const first = train.items.find((i) => i.id === '2007_000063');
  assert.deepEqual(first?.labels, [cls('chair'), cls('dog')]);

  // Without the JSON, labels come from the masks and agree with it on this image.
  const fromMasks = await readVoc({ root: VOC_MINI, split: 'val', labelsJson: false });
  assert.equal(fromMasks.items.length, 150);
  assert.deepEqual(fromMasks.labelSources, { xml: 0, json: 0, mask: 150 });
});

test('VOC: masks are checked when the split is opened (size, values), naming the mask; duplicate ids are errors', async (t) => {
  const root = await tempDir(t);
  await makeVoc(root, ['a', 'b', 'c']);
  const maskOf = (id: string) => join(root, 'SegmentationClass', `${id}.png`);
  // a: the wrong size (its image is 4x4); b: a value that is no class id.
  await writeFileDeep(maskOf('a'), encodeMask({ width: 5, height: 4, data: new Uint8Array(20) }));
  await writeFileDeep(maskOf('b'), encodeMask({ width: 4, height: 4, data: new Uint8Array(16).fill(30) }));
  await assert.rejects(readVoc({ root, split: 'train' }), (e: unknown) => {
    assert.ok(e instanceof DataError);
    assert.equal(e.path, maskOf('a'));
    assert.match(e.message, /a\.png: mask is 5x4 but its image .*a\.jpg is 4x4/);
    return true;
  });
  const log = new BadFileLog(() => {});
  const ds = await readVoc({ root, split: 'train', onBadFile: 'skip', badFiles: log });
  assert.deepEqual(ds.items.map((i) => i.id), ['c']);
  assert.deepEqual(log.entries.map((b) => b.path), [maskOf('a'), maskOf('b')]);
  assert.match(log.entries[1]!.reason, /mask value 30 is not a class id \(20 classes: ids 0\.\.20, and 255 for ignore\)/);

  await writeFileDeep(join(root, 'ImageSets', 'Segmentation', 'dup.txt'), 'c\n\nc\n');
  const list = join(root, 'ImageSets', 'Segmentation', 'dup.txt');
  await assert.rejects(readVoc({ root, split: 'dup' }), new RegExp(`${list.replace(/[.]/g, '\\.')}: line 3: duplicate id "c" \\(first at line 1\\)`));
});
