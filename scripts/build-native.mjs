#!/usr/bin/env node
// Builds the native engine against libtorch, found in this order:
//   1. $LIBTORCH (a directory with include/ and lib/);
//   2. the libtorch inside an importable Python PyTorch ($PYTHON, python3, /usr/bin/python3, /opt/torch/.venv/bin/python)
//      (this is how CUDA builds happen);
//   3. the system's (Debian/Ubuntu libtorch-dev).
// The C++ ABI define is derived from the libtorch found: a mismatch links and loads, then crashes later.
// Usage: node scripts/build-native.mjs [--force]
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const force = process.argv.includes('--force');

function fail(msg) {
  console.error(`weakseg: ${msg}`);
  process.exit(1);
}

function abiFromSymbols(libDir) {
  // libc10 exports std::string-taking symbols; their mangled names carry __cxx11 only under the new ABI.
  const out = spawnSync('nm', ['-D', '--defined-only', join(libDir, 'libc10.so')], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (out.status !== 0) fail(`cannot read symbols of ${join(libDir, 'libc10.so')} with nm (install binutils)`);
  return out.stdout.includes('__cxx11') ? 1 : 0;
}

function libtorchAt(inc, lib) {
  return existsSync(join(inc, 'ATen', 'ATen.h')) && existsSync(join(lib, 'libtorch_cpu.so'));
}

function fromEnv() {
  const dir = process.env.LIBTORCH;
  if (!dir) return null;
  const inc = join(dir, 'include'), lib = join(dir, 'lib');
  if (!libtorchAt(inc, lib)) fail(`LIBTORCH=${dir} has no include/ATen/ATen.h or lib/libtorch_cpu.so`);
  return { source: `LIBTORCH=${dir}`, inc, lib, abi: abiFromSymbols(lib), cuda: existsSync(join(lib, 'libtorch_cuda.so')) };
}

function fromPython() {
  const candidates = [process.env.PYTHON, 'python3', '/usr/bin/python3', '/opt/torch/.venv/bin/python'].filter(Boolean);
  const probe = 'import json,os,torch;d=os.path.dirname(torch.__file__);' +
    'print(json.dumps({"dir":d,"abi":int(torch.compiled_with_cxx11_abi()),"cuda":torch.version.cuda,"version":torch.__version__}))';
  for (const py of [...new Set(candidates)]) {
    const out = spawnSync(py, ['-c', probe], { encoding: 'utf8', timeout: 120000 });
    if (out.status !== 0 || !out.stdout) continue;
    let info;
    try { info = JSON.parse(out.stdout.trim().split('\n').pop()); } catch { continue; }
    const inc = join(info.dir, 'include'), lib = join(info.dir, 'lib');
    if (!libtorchAt(inc, lib)) continue;
    // Debian's python3-torch links its lib/ into the system libtorch (libtorch-dev), which step 3 finds under its
    // own name: building against the links would only change the recorded source and force a full rebuild.
    if (!realpathSync(join(lib, 'libtorch_cpu.so')).startsWith(`${realpathSync(info.dir)}/`)) continue;
    return { source: `Python torch ${info.version} (${py})`, inc, lib, abi: info.abi,
             cuda: Boolean(info.cuda) && existsSync(join(lib, 'libtorch_cuda.so')) };
  }
  return null;
}

function fromSystem() {
  let multiarch = 'x86_64-linux-gnu';
  try { multiarch = execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim() || multiarch; } catch { /* keep default */ }
  for (const lib of [`/usr/lib/${multiarch}`, '/usr/lib', '/usr/local/lib']) {
    for (const inc of ['/usr/include', '/usr/local/include']) {
      if (libtorchAt(inc, lib)) return { source: `system libtorch (${lib})`, inc, lib, abi: abiFromSymbols(lib), cuda: false };
    }
  }
  return null;
}

const torch = fromEnv() ?? fromPython() ?? fromSystem();
if (!torch) {
  fail('libtorch not found. Install it (Debian/Ubuntu: apt-get install libtorch-dev libopenblas0-pthread), ' +
       'or point LIBTORCH at a libtorch directory, or make a Python with torch importable as python3 or $PYTHON.');
}

// c10::Allocator changed between releases: allocate() lost its const, and copy_data() became pure virtual.
const allocatorHeader = readFileSync(join(torch.inc, 'c10', 'core', 'Allocator.h'), 'utf8');
const allocConst = /virtual\s+DataPtr\s+allocate\(\s*size_t\s+\w*\s*\)\s*const\s*=\s*0/.test(allocatorHeader) ? 1 : 0;
const allocCopyData = /virtual\s+void\s+copy_data\([^)]*\)\s*const\s*=\s*0/.test(allocatorHeader) ? 1 : 0;

// Collectives (native/dist.cc): c10d's Gloo group needs Gloo's headers (Debian: libgloo-dev; pip torch ships
// them in its include/), its NCCL group a CUDA libtorch and CUDA's runtime headers (a CUDA toolkit, or pip's
// nvidia-cuda-runtime wheel). Without them the engine builds without that backend and says so when asked for it.
const c10dHeader = (name) => existsSync(join(torch.inc, 'torch', 'csrc', 'distributed', 'c10d', name));
const withGloo = c10dHeader('ProcessGroupGloo.hpp') &&
  [torch.inc, '/usr/include', '/usr/local/include'].some((d) => existsSync(join(d, 'gloo', 'config.h'))) ? 1 : 0;
const cudaInc = [process.env.CUDA_HOME && join(process.env.CUDA_HOME, 'include'), '/usr/local/cuda/include',
  join(torch.inc, '..', '..', 'nvidia', 'cuda_runtime', 'include')]
  .find((d) => d && existsSync(join(d, 'cuda_runtime_api.h'))) ?? '';
const withNccl = torch.cuda && c10dHeader('ProcessGroupNCCL.hpp') && cudaInc ? 1 : 0;
if (!withGloo) console.warn('weakseg: no Gloo headers found (apt-get install libgloo-dev): building without distributed training on CPU');

const config = { ...torch, allocConst, allocCopyData, withGloo, withNccl, cudaInc };
const buildDir = join(root, 'build');
const configPath = join(buildDir, 'weakseg-libtorch.json');
const previous = existsSync(configPath) ? readFileSync(configPath, 'utf8') : '';
const configJson = JSON.stringify(config, null, 2);
console.log(`weakseg: building the native engine against ${torch.source}` +
            ` (C++ ABI ${torch.abi}, CUDA ${torch.cuda ? 'yes' : 'no'}, collectives: ${[withGloo && 'gloo', withNccl && 'nccl'].filter(Boolean).join(', ') || 'none'})`);

const nodeGyp = [process.env.npm_config_node_gyp,
  join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')]
  .find((p) => p && existsSync(p));
if (!nodeGyp) fail('node-gyp not found (it ships with npm; set npm_config_node_gyp to its node-gyp.js)');

// Offline builds: use the headers of the running Node when they are installed, never a download.
const nodeDir = resolve(dirname(process.execPath), '..');
const gypCommon = existsSync(join(nodeDir, 'include', 'node', 'node_api.h')) ? [`--nodedir=${nodeDir}`] : [];

function gyp(args) {
  const r = spawnSync(process.execPath, [nodeGyp, ...gypCommon, ...args], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) fail(`node-gyp ${args[0]} failed (exit ${r.status})`);
}

if (force || previous !== configJson || !existsSync(join(buildDir, 'Makefile'))) {
  gyp(['configure', '--',
    `-Dtorch_inc=${torch.inc}`, `-Dtorch_lib=${torch.lib}`, `-Dcxx11_abi=${torch.abi}`,
    `-Dwith_cuda=${torch.cuda ? 1 : 0}`, `-Dalloc_const=${allocConst}`, `-Dalloc_copy_data=${allocCopyData}`,
    `-Dwith_gloo=${withGloo}`, `-Dwith_nccl=${withNccl}`, `-Dcuda_inc=${cudaInc}`]);
}
gyp(['build', `-j${Math.max(1, Math.min(cpus().length, 8))}`]);
mkdirSync(buildDir, { recursive: true });
writeFileSync(configPath, configJson);
