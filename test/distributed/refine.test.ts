// The per-image stages split over 2 ranks over loopback (2 processes x 1 thread): a tiny demo run made by 1 process,
// then its crf, random-walk, irn-walk and seg-eval stages rerun by 2 ranks on a copy without their outputs. Each
// rank takes every other image; the thresholds and exponents chosen on the fit split, the masks (byte for byte),
// the info files and the scores must be those of the 1-process run.
import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { distBackends } from '../../src/engine/index.js';
import { tempDir } from '../data/helpers.js';
import { runWorkers } from './workers.js';

const skip = distBackends().includes('gloo') ? false : 'the native engine was built without Gloo (apt-get install libgloo-dev, then npm run build:native)';

/** The folders of per-image outputs the four stages write, relative to the run directory. */
const OUTPUTS = ['crf', 'pseudo', join('irn', 'pseudo'), join('seg', 'pred')];
const STAGES = ['crf', 'random-walk', 'irn-walk', 'seg-eval'];

/** Every file under `dir`, relative to it. */
function files(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((e) =>
    (e.isDirectory() ? files(dir, join(prefix, e.name)) : [join(prefix, e.name)]));
}

/** A stage's metrics without what depends on the run directory or the clock. */
function figures(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(figures);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).filter(([k]) => !/^(dir|predictionsDir|model|seconds|ms[A-Z]\w*)$/.test(k))
      .map(([k, x]) => [k, figures(x)]));
  }
  return v;
}

test('crf, random-walk, irn-walk and seg-eval on 2 ranks write the files and scores of 1 process', { skip, timeout: 600_000 }, async (t) => {
  const dir = await tempDir(t);
  const one = join(dir, 'one');
  const [prepared] = await runWorkers('refine-worker.js', 1, { args: ['prepare', one], timeoutMs: 540_000 });
  assert.equal(prepared!.code, 0, `${prepared!.out}${prepared!.err}`);

  // The same run without the four stages' outputs and records (its data read in place).
  const two = join(dir, 'two');
  cpSync(one, two, { recursive: true, filter: (src) => src !== join(one, 'data') });
  for (const o of OUTPUTS) rmSync(join(two, o), { recursive: true, force: true });
  const metricsOf = (run: string) => JSON.parse(readFileSync(join(run, 'metrics.json'), 'utf8')) as Record<string, unknown>;
  const kept = metricsOf(two);
  for (const s of STAGES) delete kept[s];
  writeFileSync(join(two, 'metrics.json'), JSON.stringify(kept));

  const ranks = await runWorkers('refine-worker.js', 2, { args: ['stages', two, join(one, 'data')], timeoutMs: 300_000 });
  for (const w of ranks) assert.equal(w.code, 0, `rank ${w.rank}: ${w.out}${w.err}`);

  let compared = 0;
  for (const o of OUTPUTS) {
    const expected = files(join(one, o)).sort();
    assert.deepEqual(files(join(two, o)).sort(), expected, o);
    for (const f of expected) {
      assert.ok(readFileSync(join(one, o, f)).equals(readFileSync(join(two, o, f))), `${join(o, f)} differs`);
      compared++;
    }
  }
  // crf: train (6) and train_aug (12); pseudo and irn/pseudo: the same; seg/pred: val (6); an info.json or fit.json here and there.
  assert.ok(compared >= 18 * 3 + 6, `${compared} files compared`);
  const [m1, m2] = [metricsOf(one), metricsOf(two)];
  for (const s of STAGES) {
    assert.ok(m2[s], `the 2-rank run recorded no '${s}' metrics`);
    assert.deepEqual(figures(m2[s]), figures(m1[s]), s);
  }
  // The fit sweeps ran (their curves are compared above) and the scored splits were scored.
  assert.ok((m1['random-walk'] as { fit: unknown }).fit);
  assert.equal((m1['irn-walk'] as { fit: { candidates: unknown[] } }).fit.candidates.length, 2 * 10, 'IRN: 2 lengths x 10 background scores');
  assert.ok((m1['seg-eval'] as { result: unknown }).result);
  assert.ok(existsSync(join(two, 'crf', 'fit.json')));
});
