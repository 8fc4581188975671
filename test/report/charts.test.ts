import assert from 'node:assert/strict';
import { test } from 'node:test';

import { BAR_LABEL_WIDTH, MARGIN, barChart, lineChart, linearScale, niceDomain, niceTicks, thinPoints } from '../../src/report/charts.js';

/** The numbers of an SVG path's d attribute, as [command, x, y] triples. */
function pathCommands(svg: string, index = 0): [string, number, number][] {
  const ds = [...svg.matchAll(/<path d="([^"]+)"/g)].map((m) => m[1]!);
  assert.ok(ds.length > index, `expected at least ${index + 1} paths, got ${ds.length}`);
  return [...ds[index]!.matchAll(/([ML])(-?[\d.]+),(-?[\d.]+)/g)].map((m) => [m[1]!, Number(m[2]), Number(m[3])]);
}

test('linearScale maps the domain ends onto the range ends, and a flat domain to the middle', () => {
  const s = linearScale([0, 10], [100, 300]);
  assert.equal(s(0), 100);
  assert.equal(s(10), 300);
  assert.equal(s(2.5), 150);
  assert.equal(s(-5), 0); // extrapolates
  const flipped = linearScale([0, 1], [200, 40]); // SVG y grows downwards
  assert.equal(flipped(0.25), 160);
  assert.equal(linearScale([3, 3], [0, 10])(3), 5);
});

test('niceTicks and niceDomain use 1/2/5 steps without float noise', () => {
  assert.deepEqual(niceTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(niceTicks(0.05, 0.6, 6), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
  assert.deepEqual(niceTicks(0, 100, 5), [0, 20, 40, 60, 80, 100]);
  assert.deepEqual(niceTicks(1, 496, 6), [100, 200, 300, 400]);
  assert.deepEqual(niceDomain(18.4, 25.9, 5), [18, 26]);
  assert.deepEqual(niceDomain(0, 0.73, 5), [0, 0.8]);
  assert.deepEqual(niceTicks(2, 2), [2]);
});

test('lineChart: data points land where the margins and domains put them', () => {
  const width = 260;
  const height = 148;
  const svg = lineChart({
    xLabel: 'x', yLabel: 'y', width, height, xDomain: [0, 10], yDomain: [0, 1],
    series: [{ name: 'a', color: '#123456', points: [[0, 0], [5, 0.5], [10, 1], [2.5, 0.25]] }],
  });
  // Plot area: x from MARGIN.left to width - MARGIN.right, y from height - MARGIN.bottom (value 0) up to MARGIN.top.
  const px = (v: number) => MARGIN.left + (v / 10) * (width - MARGIN.left - MARGIN.right);
  const py = (v: number) => height - MARGIN.bottom - v * (height - MARGIN.bottom - MARGIN.top);
  assert.deepEqual(pathCommands(svg), [
    ['M', px(0), py(0)], ['L', px(5), py(0.5)], ['L', px(10), py(1)], ['L', px(2.5), py(0.25)],
  ]);
  // With these numbers: (0,0) -> (60,104), (10,1) -> (240,48).
  assert.deepEqual([px(0), py(0), px(10), py(1)], [60, 104, 240, 48]);
  assert.match(svg, /stroke="#123456"/);
  assert.ok(svg.startsWith('<svg') && svg.endsWith('</svg>'));
});

test('lineChart: a null value breaks the line into subpaths; markers sit at their x', () => {
  const svg = lineChart({
    xLabel: 't', yLabel: 'mIoU', width: 260, height: 148, xDomain: [0, 10], yDomain: [0, 1],
    series: [{ name: 'curve', color: 'red', points: [[0, 0], [2, 0.2], [4, null], [6, 0.6], [10, 1]] }],
    markers: [{ x: 5, label: 't = 5' }],
  });
  const cmds = pathCommands(svg).map(([c]) => c);
  assert.deepEqual(cmds, ['M', 'L', 'M', 'L']);
  const marker = svg.match(/<line x1="([\d.]+)" x2="([\d.]+)" y1="48" y2="104" stroke="#888"/);
  assert.ok(marker, 'marker line spans the plot area');
  assert.equal(Number(marker[1]), 150);
});

test('lineChart: the default y range starts at 0 for non-negative data and rounds out to a tick', () => {
  const svg = lineChart({ xLabel: 'x', yLabel: 'y', width: 260, height: 148, series: [{ name: 's', color: 'blue', points: [[0, 0.1], [1, 0.7]] }] });
  // 0.7 plus 8 % headroom rounds out to 0.8: the top tick label is 0.8 and the value 0.1 sits at 1/8 of the height.
  assert.match(svg, />0\.8<\/text>/);
  const [, y0] = pathCommands(svg)[0]!.slice(1) as [number, number];
  assert.ok(Math.abs(y0 - (104 - (0.1 / 0.8) * 56)) < 0.01, `y of 0.1 is ${y0}`);
});

test('barChart: bar lengths are proportional to the values; null is n/a; names are escaped', () => {
  const width = 600;
  const svg = barChart({
    categories: ['background', '<script>alert(1)</script>'],
    series: [{ name: 'seeds', color: '#4e79a7', values: [50, null] }, { name: 'crf', color: '#f28e2b', values: [100, 25] }],
    domain: [0, 100], xLabel: 'IoU %', width,
  });
  const full = width - 50 - BAR_LABEL_WIDTH; // the domain's span in pixels
  const widths = [...svg.matchAll(/<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
  // Legend swatches are 10 wide; the bars follow in category order.
  const bars = widths.filter(([, w]) => w !== 10);
  assert.deepEqual(bars, [[BAR_LABEL_WIDTH, full / 2], [BAR_LABEL_WIDTH, full], [BAR_LABEL_WIDTH, full / 4]]);
  assert.match(svg, />n\/a</);
  assert.ok(!svg.includes('<script>'));
  assert.ok(svg.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
});

test('thinPoints averages consecutive buckets and keeps short series as they are', () => {
  const pts: [number, number][] = Array.from({ length: 10 }, (_, i) => [i, i * i]);
  assert.deepEqual(thinPoints(pts, 20), pts);
  assert.deepEqual(thinPoints(pts, 5), [[0.5, 0.5], [2.5, 6.5], [4.5, 20.5], [6.5, 42.5], [8.5, 72.5]]);
});
