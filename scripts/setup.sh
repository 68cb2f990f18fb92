#!/usr/bin/env bash
# Installs the Debian packages longattn needs (only those missing), then configures and builds
# into build/. Safe to run again: it skips what is installed and rebuilds only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake ninja-build g++ pkg-config git
          libopenmpi-dev openmpi-bin nlohmann-json3-dev libcli11-dev libopenblas-dev libopenblas-openmp-dev
          libgtest-dev libbenchmark-dev python3-matplotlib python3-jsonschema python3-numpy)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cmake -S . -B build -G Ninja ${LONGATTN_CMAKE_ARGS:-} >/dev/null
cmake --build build
