// The folders of src/ are layers (README, "Layout"): each may import only itself and the folders below it, so the
// architecture reads from the folder tree and nothing low-level drags in a stage, a command or the web page.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const src = join(root, 'src');

/** Bottom layer first, as the README's layout table lists them. */
const LAYERS = ['io', 'engine', 'nn', 'backbones', 'data', 'eval', 'train', 'methods', 'cams', 'refine', 'segmentation',
  'report', 'pipeline', 'predict', 'export', 'web', 'cli'];

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []);
}

/** Relative module specifiers of a file: `from '...'` (imports, type imports, re-exports) and `import('...')`. */
function relativeImports(code: string): string[] {
  const found = [...code.matchAll(/\bfrom\s+'(\.{1,2}\/[^']+)'|\bimport\(\s*'(\.{1,2}\/[^']+)'\s*\)/g)];
  return found.map((m) => (m[1] ?? m[2])!);
}

/** The src folder a path lies in ('' for src/index.ts, the package's entry, which may import every layer). */
function layerOf(path: string): string {
  const rel = relative(src, path).split(sep);
  return rel.length > 1 ? rel[0]! : '';
}

test('relativeImports finds static, type, re-export and lazy imports, not strings that merely look alike', () => {
  const code = [
    "import { a } from '../engine/index.js';",
    "import type { B } from './b.js';",
    "export * from '../data/mask.js';",
    "const m = await import('../pipeline/index.js');",
    "const s = 'from ../nowhere';",
    "import { readFileSync } from 'node:fs';",
  ].join('\n');
  assert.deepEqual(relativeImports(code), ['../engine/index.js', './b.js', '../data/mask.js', '../pipeline/index.js']);
});

test('every src folder is a known layer, and imports only itself and the layers below it', () => {
  const folders = readdirSync(src, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  assert.deepEqual(folders.filter((f) => !LAYERS.includes(f)), [], 'src folders missing from LAYERS (place them in the order)');
  const upward: string[] = [];
  let checked = 0;
  for (const file of tsFiles(src)) {
    const from = layerOf(file);
    for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
      checked++;
      const to = layerOf(resolve(dirname(file), spec));
      if (from === '' || to === from) continue;
      assert.ok(LAYERS.includes(to), `${relative(root, file)} imports '${spec}', outside the src layers`);
      if (LAYERS.indexOf(to) > LAYERS.indexOf(from)) upward.push(`${relative(root, file)} (${from}) imports ${spec} (${to})`);
    }
  }
  assert.ok(checked > 500, `only ${checked} imports found: the pattern no longer matches the code`);
  assert.deepEqual(upward, [], 'imports from a lower layer into a higher one');
});
