// weakseg export on a run: the segmenter's .onnx and the web page's files; the classifier when the run has no
// segmenter; --web refused without a segmenter; the CLI command prints its summary.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { exportRun } from '../../src/export/run.js';
import { describeOnnx, readOnnxMetadata } from '../../src/export/graph.js';
import { parseModelMetadata } from '../../src/export/metadata.js';
import { CLASSES, makeClassifierRun, makeSegmenterRun, runConfig } from '../predict/fixtures.js';

const TMP = mkdtempSync(join(tmpdir(), 'weakseg-export-'));
after(() => rmSync(TMP, { recursive: true, force: true }));
const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

test('a run with a segmenter: segmenter.onnx with its classes, and the page with the model and onnxruntime-web', async () => {
  const run = join(TMP, 'seg');
  makeSegmenterRun(run);
  const web = join(TMP, 'web');
  const s = await exportRun(runConfig(run), { web }, { log: () => {} });
  assert.equal(s.segmenter, join(run, 'export', 'segmenter.onnx'));
  assert.equal(s.classifier, null);
  const info = parseModelMetadata(readOnnxMetadata(readFileSync(s.segmenter!)), s.segmenter!);
  assert.deepEqual(info.classes, CLASSES);
  for (const f of ['index.html', 'model.onnx', 'ort/ort.webgpu.min.mjs', 'ort/ort-wasm-simd-threaded.asyncify.wasm']) {
    assert.ok(existsSync(join(web, f)), f);
  }
  assert.deepEqual(readFileSync(join(web, 'model.onnx')), readFileSync(s.segmenter!));
  const html = readFileSync(join(web, 'index.html'), 'utf8');
  assert.ok(!/https?:\/\//.test(html.replace(/http:\/\/www\.w3\.org[^"]*/g, '')), 'the page loads nothing from the network');
  assert.match(html, /"labels":\["background","cat","dog","car"\]/);
});

test('a run without a segmenter: the classifier is exported; --web is refused; the CLI prints the summary', async () => {
  const run = join(TMP, 'cls');
  makeClassifierRun(run);
  const s = await exportRun(runConfig(run), {}, { log: () => {} });
  assert.equal(s.segmenter, null);
  assert.deepEqual(describeOnnx(readFileSync(s.classifier!)).outputs, ['logits', 'cams']);
  await assert.rejects(exportRun(runConfig(run), { web: join(TMP, 'w2') }, { log: () => {} }), /no segmentation model.*web page needs one/);
  const r = spawnSync(process.execPath, [MAIN, 'export', '-r', run, '--out', join(TMP, 'cli-out')], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout.trim().split('\n').pop()!).classifier, join(TMP, 'cli-out', 'classifier.onnx'));
});
