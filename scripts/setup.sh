#!/usr/bin/env bash
# Installs everything weakseg needs on a fresh Debian/Ubuntu machine: libtorch and a fast BLAS from apt
# (skipped when $LIBTORCH points at a libtorch), then the npm packages, which build the native engine.
# With Debian's reference BLAS a 1024^3 matmul runs at 4 GFLOP/s instead of ~116 with OpenBLAS.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${LIBTORCH:-}" ]; then
  need=()
  [ -f /usr/include/ATen/ATen.h ] || need+=(libtorch-dev)
  dpkg -s libopenblas0-pthread >/dev/null 2>&1 || need+=(libopenblas0-pthread)
  if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "weakseg setup: apt-get install ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

npm ci --no-audit --no-fund
