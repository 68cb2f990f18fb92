#!/usr/bin/env bash
# The kernels as an AVX2-only x86 builds them (-march=haswell: no AVX-512, so the fp32 tiles take
# their 8-lane AVX2 strips and simd.h its 8-lane halves), in build-avx2/, and their tests against
# the oracle. The code runs on any CPU with AVX2 and FMA; elsewhere this prints why and skips.
# Run after scripts/setup.sh. Usage: scripts/avx2.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! grep -qw avx2 /proc/cpuinfo || ! grep -qw fma /proc/cpuinfo; then
  echo "avx2.sh: skipped: this CPU lacks AVX2 or FMA, so it cannot run an AVX2 build"
  exit 0
fi
cmake -S . -B build-avx2 -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLONGATTN_CUDA=OFF -DLONGATTN_NATIVE=OFF \
  -DCMAKE_CXX_FLAGS="-march=haswell" >/dev/null
cmake --build build-avx2 --target longattn_tests
build-avx2/longattn_tests --gtest_brief=1 --gtest_filter='Kernels.*:Every/TilePaths.*:TilePathSelection.*:Merge.*'
