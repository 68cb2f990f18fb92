#!/usr/bin/env bash
# Run on the CPU machine before a GPU check: downloads the Debian packages the build needs and a
# bare GPU machine may lack (OpenBLAS, GoogleTest, Google Benchmark, nlohmann-json, CLI11, pkgconf;
# about 13 MB) into .gpu-deps/, which git ignores. Carry that folder with the call that runs
# scripts/gpu_check.sh there, which unpacks it under /tmp (never into /) where the machine lacks them.
#
#   bash scripts/gpu_deps.sh        # then run: bash scripts/gpu_check.sh, carrying .gpu-deps
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(libopenblas0-openmp libopenblas-openmp-dev libopenblas-dev libopenblas0 libgfortran5
          nlohmann-json3-dev libcli11-dev libgtest-dev libbenchmark-dev libbenchmark1debian
          pkgconf-bin libpkgconf3)
command -v apt-get >/dev/null || { echo "gpu_deps: needs apt-get (a Debian or Ubuntu machine)" >&2; exit 2; }
rm -rf .gpu-deps && mkdir -p .gpu-deps
# apt-get download writes to the current folder; as root it warns that _apt cannot write there.
(cd .gpu-deps && apt-get download "${packages[@]}" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
n=$(ls .gpu-deps/*.deb 2>/dev/null | wc -l)
[ "$n" -eq "${#packages[@]}" ] || { echo "gpu_deps: got $n of ${#packages[@]} packages; is apt reachable (apt-get update)?" >&2; exit 1; }
echo "gpu_deps: $n packages, $(du -sh .gpu-deps | cut -f1), in .gpu-deps/"
