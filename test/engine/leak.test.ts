// 10,000 small training steps must run in flat memory: the resident set at the end within 5% of step 1,000.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { F, manualSeed, memory, rand, randn, tidy } from '../../src/engine/index.js';
import { BatchNorm2d, Conv2d, Linear, SGD, Sequential, ReLU } from '../../src/nn/index.js';

test('10,000 training steps keep resident memory flat', async () => {
  manualSeed(1);
  const net = new Sequential(new Conv2d(3, 8, 3, { padding: 1 }), new BatchNorm2d(8), new ReLU());
  const head = new Linear(8, 5);
  const opt = new SGD([...net.parameters(), ...head.parameters()], { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
  const x = randn([2, 3, 8, 8]);
  const y = tidy(() => rand([2, 5]).gt(0.5).float());
  let liveAt1000 = 0;
  let rssAt1000 = 0;
  let firstLoss = 0, lastLoss = 0;
  for (let step = 1; step <= 10_000; step++) {
    const loss = tidy(() => {
      const l = F.multilabelSoftMarginLoss(head.forward(net.forward(x).mean([2, 3])), y);
      opt.zeroGrad();
      l.backward();
      opt.step();
      return l.item();
    });
    if (step === 1) firstLoss = loss;
    lastLoss = loss;
    // A real loop yields once per step; this lets V8's finalizers and GC do their share as well.
    if (step % 100 === 0) await new Promise((r) => setImmediate(r));
    if (step === 1000) {
      rssAt1000 = process.memoryUsage().rss;
      liveAt1000 = memory().liveTensors;
    }
  }
  const rssEnd = process.memoryUsage().rss;
  assert.ok(lastLoss < firstLoss, `training should lower the loss (${firstLoss} -> ${lastLoss})`);
  assert.equal(memory().liveTensors, liveAt1000, 'no tensor handle may survive its step');
  const growth = (rssEnd - rssAt1000) / rssAt1000;
  assert.ok(growth < 0.05, `RSS grew ${(growth * 100).toFixed(1)}% from step 1,000 (${rssAt1000} -> ${rssEnd} bytes)`);
});
