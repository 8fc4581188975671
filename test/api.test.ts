// The package entry point (package.json "main") exposes every layer under its own namespace.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as weakseg from '../src/index.js';

test('the package entry point exposes each layer and the everyday engine names', () => {
  assert.equal(typeof weakseg.pipeline.runPipeline, 'function');
  assert.equal(typeof weakseg.pipeline.runDemo, 'function');
  assert.equal(typeof weakseg.backbones.createBackbone, 'function');
  assert.equal(typeof weakseg.refine.denseCrf, 'function');
  assert.equal(typeof weakseg.segmentation.DeepLab, 'function');
  assert.equal(typeof weakseg.evaluation.ConfusionMatrix, 'function');
  assert.equal(typeof weakseg.predict.predict, 'function');
  assert.equal(typeof weakseg.onnx.segmenterToOnnx, 'function');
  assert.equal(typeof weakseg.onnx.exportRun, 'function');
  assert.equal(typeof weakseg.web.serveDirectory, 'function');
  const t = weakseg.tensor([1, 2, 3]);
  assert.deepEqual(Array.from(weakseg.F.relu(t.neg()).toFloat32Array()), [0, 0, 0]);
  weakseg.dispose(t);
});
