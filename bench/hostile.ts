// bench:hostile: the hostile-input corpus of issue 15, each case in its own process so that its peak resident
// memory is its own and a native abort would show as a crash. Every case must be refused (or handled) with a
// clear error, in under MEMORY_BOUND_MB. Ends with one JSON line: cases, refused, crashed, peak_rss_mb.
//
//   npm run bench:hostile            all cases
//   node dist/bench/hostile.js CASE  one case, in this process (what the parent runs)
import { spawnSync } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as zlib from 'node:zlib';
import { makeZip } from '../test/engine/zip-writer.js';

const MEMORY_BOUND_MB = 1024;
const here = fileURLToPath(import.meta.url);
const fixtures = join(here, '..', '..', '..', 'test', 'fixtures');

/** Deflates `total` bytes of `fill`, produced in 1 MiB pieces (never whole), with their CRC. */
async function deflatedFill(total: number, fill: number): Promise<{ compressed: Uint8Array; crc: number }> {
  const piece = Buffer.alloc(1 << 20, fill);
  const deflate = zlib.createDeflateRaw({ level: 9 });
  const out: Buffer[] = [];
  deflate.on('data', (b: Buffer) => out.push(b));
  let crc = 0;
  for (let done = 0; done < total; done += piece.length) {
    const part = piece.subarray(0, Math.min(piece.length, total - done));
    crc = zlib.crc32(part, crc);
    if (!deflate.write(part)) await new Promise((r) => deflate.once('drain', r));
  }
  await new Promise((r) => deflate.end(r));
  return { compressed: Buffer.concat(out), crc };
}

/** A PNG of width x height pixels of one grey, its rows deflated as they are made: a few hundred KB. */
async function flatPng(path: string, width: number, height: number, colorType: 0 | 2 | 3): Promise<void> {
  const channels = colorType === 2 ? 3 : 1;
  const row = Buffer.alloc(1 + width * channels, 0x80);
  row[0] = 0; // filter: none
  const deflate = zlib.createDeflate({ level: 9 });
  const idat: Buffer[] = [];
  deflate.on('data', (b: Buffer) => idat.push(b));
  for (let y = 0; y < height; y++) if (!deflate.write(row)) await new Promise((r) => deflate.once('drain', r));
  await new Promise((r) => deflate.end(r));
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = colorType;
  const parts = [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr)];
  if (colorType === 3) parts.push(chunk('PLTE', Buffer.alloc(256 * 3)));
  parts.push(chunk('IDAT', Buffer.concat(idat)), chunk('IEND', Buffer.alloc(0)));
  const out = createWriteStream(path);
  for (const p of parts) out.write(p);
  await new Promise((r) => out.end(r));
}

/** A torch-like data.pkl: an empty OrderedDict (protocol 2). */
const EMPTY_STATE_DICT_PKL = Uint8Array.from([0x80, 2, 0x63, ...Buffer.from('collections\nOrderedDict\n'), 0x29, 0x52, 0x2e]);

/** Each case returns normally only if the input was handled; the message says how. */
const CASES: Record<string, (dir: string) => Promise<string>> = {
  async 'png-12000x12000-one-colour'(dir) {
    const path = join(dir, 'big.png');
    await flatPng(path, 12000, 12000, 2);
    const { decodeImage } = await import('../src/data/image.js');
    await decodeImage(path);
    return 'decoded';
  },
  async 'mask-png-30000x30000'(dir) {
    const path = join(dir, 'mask.png');
    await flatPng(path, 30000, 30000, 3);
    const { readMask } = await import('../src/data/mask.js');
    await readMask(path);
    return 'decoded';
  },
  async 'pth-data.pkl-inflates-to-1GiB'(dir) {
    const size = 2 ** 30;
    const { compressed, crc } = await deflatedFill(size, 0);
    const path = join(dir, 'bomb.pth');
    writeFileSync(path, makeZip([{ name: 'archive/data.pkl', data: new Uint8Array(0), method: 8, compressed, crc, uncompressedSize: size }]));
    const { readPth } = await import('../src/engine/serialize/index.js');
    readPth(path);
    return 'read';
  },
  async 'pth-data.pkl-understates-its-size'(dir) {
    const size = 256 * 2 ** 20;
    const { compressed, crc } = await deflatedFill(size, 0x4e); // 'N' (None) repeated: a valid, endless pickle
    const path = join(dir, 'liar.pth');
    writeFileSync(path, makeZip([{ name: 'archive/data.pkl', data: new Uint8Array(0), method: 8, compressed, crc, uncompressedSize: 1000 }]));
    const { readPth } = await import('../src/engine/serialize/index.js');
    readPth(path);
    return 'read';
  },
  async 'pth-storage-inflates-to-1GiB'(dir) {
    const size = 2 ** 30;
    const { compressed, crc } = await deflatedFill(size, 0);
    const pkl = readFileSync(join(fixtures, 'tiny_state_dict.pth')); // a real archive, its first storage swapped
    const { ZipReader } = await import('../src/engine/serialize/zip.js');
    const real = ZipReader.fromBuffer(pkl, 'tiny_state_dict.pth');
    const entries = [...real.entries.keys()].map((name, i) => (name.includes('/data/') && i === [...real.entries.keys()].findIndex((n) => n.includes('/data/'))
      ? { name, data: new Uint8Array(0), method: 8, compressed, crc, uncompressedSize: size }
      : { name, data: real.read(name) }));
    real.close();
    const path = join(dir, 'storage-bomb.pth');
    writeFileSync(path, makeZip(entries));
    const { readPth } = await import('../src/engine/serialize/index.js');
    readPth(path);
    return 'read';
  },
  async 'pth-os.system-pickle'() {
    const { readPth } = await import('../src/engine/serialize/index.js');
    readPth(join(fixtures, 'hostile_os_system.pth'));
    return 'read';
  },
  async 'pth-empty-state-dict (control: accepted)'(dir) {
    const path = join(dir, 'empty.pth');
    writeFileSync(path, makeZip([{ name: 'archive/data.pkl', data: EMPTY_STATE_DICT_PKL, method: 8 }]));
    const { readPth } = await import('../src/engine/serialize/index.js');
    readPth(path);
    return 'read (expected)';
  },
  async 'safetensors-4GiB-header-length'(dir) {
    const path = join(dir, 'huge-header.safetensors');
    const head = Buffer.alloc(16);
    head.writeBigUInt64LE(2n ** 32n);
    writeFileSync(path, head);
    const { loadSafetensors } = await import('../src/engine/serialize/index.js');
    loadSafetensors(path);
    return 'read';
  },
  async 'crf-nan-unary'() {
    const { denseCrf } = await import('../src/refine/crf.js');
    const prob = new Float32Array(2 * 64 * 64).fill(0.5);
    prob[100] = Number.NaN;
    denseCrf({ rgb: new Uint8Array(64 * 64 * 3), width: 64, height: 64 }, prob, 2, 'psa');
    return 'ran';
  },
  async 'crf-sxy-1e-30'() {
    const { DenseCRF2D } = await import('../src/refine/crf.js');
    const crf = new DenseCRF2D(64, 64, 2);
    try {
      crf.addPairwiseBilateral(1e-30, 13, new Uint8Array(64 * 64 * 3), 10);
    } finally {
      crf.dispose();
    }
    return 'ran';
  },
  async 'maskedFill-int64-mask'() {
    const { tensor } = await import('../src/engine/index.js');
    tensor([1, 2, 3]).maskedFill(tensor([1, 0, 1], { dtype: 'int64' }), 0);
    return 'ran';
  },
  async 'set-__proto__'() {
    const { setPath } = await import('../src/pipeline/config.js');
    setPath({}, '__proto__.polluted', 1);
    return ({} as Record<string, unknown>).polluted === 1 ? 'Object.prototype POLLUTED' : 'set';
  },
  async 'run-over-foreign-files'(dir) {
    const { demoConfig, runPipeline } = await import('../src/pipeline/index.js');
    const { makeSyntheticDataset } = await import('../src/data/index.js');
    await makeSyntheticDataset({ root: join(dir, 'data'), seed: 0, train: 8, scored: 2, val: 2, size: 32 });
    const runDir = join(dir, 'run');
    mkdirSync(join(runDir, 'checkpoints'), { recursive: true });
    writeFileSync(join(runDir, 'checkpoints', 'mine.pth'), 'x');
    try {
      await runPipeline(demoConfig({ out: runDir, size: 'tiny', overrides: { data: { root: join(dir, 'data') } } }), { progress: false, log: () => {} });
    } finally {
      if (readFileSync(join(runDir, 'checkpoints', 'mine.pth'), 'utf8') !== 'x') throw new Error('mine.pth was lost'); // eslint-disable-line no-unsafe-finally
    }
    return 'ran';
  },
};

/** Child: run one case, print {handled, message, rss_mb}. A case that throws an Error was refused. */
async function runCase(name: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'weakseg-hostile-'));
  let result: { refused: boolean; message: string };
  try {
    result = { refused: false, message: await CASES[name]!(dir) };
  } catch (e) {
    result = { refused: true, message: e instanceof Error ? e.message : String(e) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(JSON.stringify({ ...result, rss_mb: Math.round(process.resourceUsage().maxRSS / 1024) }));
}

function parseResult(line: string): { refused: boolean; message: string; rss_mb: number } | null {
  try {
    return JSON.parse(line) as { refused: boolean; message: string; rss_mb: number };
  } catch {
    return null; // no result line: the process died
  }
}

async function main(): Promise<void> {
  let refused = 0;
  let crashed = 0;
  let peak = 0;
  let overBound = 0;
  const names = Object.keys(CASES);
  for (const name of names) {
    const r = spawnSync(process.execPath, ['--single-threaded-gc', here, name], { encoding: 'utf8', timeout: 300_000 });
    const last = r.stdout.trim().split('\n').pop() ?? '';
    const out = parseResult(last);
    if (r.status !== 0 || !out) {
      crashed++;
      console.log(`${name.padEnd(44)} CRASHED (status ${r.status}, signal ${r.signal}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
      continue;
    }
    if (out.refused) refused++;
    peak = Math.max(peak, out.rss_mb);
    if (out.rss_mb > MEMORY_BOUND_MB) overBound++;
    console.log(`${name.padEnd(44)} ${out.refused ? 'refused' : 'handled'}  ${String(out.rss_mb).padStart(5)} MB  ${out.message.slice(0, 160)}`);
  }
  console.log(JSON.stringify({ cases: names.length, refused, crashed, peak_rss_mb: peak, rss_bound_mb: MEMORY_BOUND_MB, over_bound: overBound }));
}

if (process.argv[2]) await runCase(process.argv[2]);
else await main();
