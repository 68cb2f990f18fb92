#!/usr/bin/env bash
# Sets up, builds, and runs every test (unit, distributed under mpirun 1-4 ranks, CLI, smoke suite
# and the regression gate against the committed baseline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd build && ctest --output-on-failure -j 2
