#!/usr/bin/env bash
# The regression gate as CI runs it: the smoke suite on 2 ranks, compared with the committed
# baseline on figures normalised by the run's own sgemm calibration. A real 2x slowdown fails;
# noise does not (a verdict needs +THRESHOLD% and Mann-Whitney p < 0.05 over 10 samples each).
# Usage: gate.sh BUILD/longattn [THRESHOLD_PCT]
set -euo pipefail
exe=$1
threshold=${2:-50}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)/smoke.np2.json
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -np 2 --oversubscribe "$exe" run smoke --out "$out" --quiet
"$exe" compare "$root/results/baseline/smoke.np2.json" "$out" --threshold "$threshold" --metric vs-sgemm
