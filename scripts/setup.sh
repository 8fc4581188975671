#!/usr/bin/env bash
# Installs everything weakseg needs on a fresh Debian/Ubuntu machine: libtorch, a fast BLAS and PyTorch (for the
# reference checks) from apt (skipped when $LIBTORCH points at a libtorch), then the npm packages, which build the
# native engine.
# With Debian's reference BLAS a 1024^3 matmul runs at 4 GFLOP/s instead of ~116 with OpenBLAS.
# Debian's chromium runs the web page's browser test (skipped where it is absent; WEAKSEG_NO_CHROMIUM=1 leaves it out).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
if [ -z "${LIBTORCH:-}" ]; then
  [ -f /usr/include/ATen/ATen.h ] || need+=(libtorch-dev)
  dpkg -s libopenblas0-pthread >/dev/null 2>&1 || need+=(libopenblas0-pthread)
  # Gloo's headers, which c10d's ProcessGroupGloo.hpp includes (distributed training on CPU; the library itself
  # comes with libtorch).
  [ -f /usr/include/gloo/config.h ] || need+=(libgloo-dev)
  # PyTorch and torchvision for the tests that compare the backbones' forwards with theirs (and the benchmarks'
  # PyTorch timings); Debian's python3-torch is built on the same libtorch as libtorch-dev.
  /usr/bin/python3 -c 'import torch, torchvision' >/dev/null 2>&1 || need+=(python3-torch python3-torchvision)
fi
[ -n "${WEAKSEG_NO_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "weakseg setup: apt-get install ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# onnxruntime-node (tests, bench:predict) ships its CPU binary in the npm package; its install script would only
# fetch optional CUDA binaries from NuGet, which a machine without internet access beyond the registry cannot reach.
ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
