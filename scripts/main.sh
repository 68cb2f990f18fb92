#!/usr/bin/env bash
# Sets up, builds, and runs the main job: the smoke suite on 2 ranks (every method x pattern,
# verified) and the single-rank kernel comparison, each printing its table and writing results/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p results/latest
mpirun -np 2 --oversubscribe build/longattn run smoke --out results/latest/smoke.json
build/longattn run kernels --out results/latest/kernels.json
