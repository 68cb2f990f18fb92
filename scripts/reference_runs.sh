#!/usr/bin/env bash
# The committed results in results/: every suite on the reference machine (2 cores), one after
# another on an otherwise idle machine, with their PyTorch peers, then the charts. Takes about an hour.
#
# `scripts/reference_runs.sh zen4` instead remakes only results/zen4/ and plots/zen4/, the second
# CPU's files, and runs only on such a CPU (an AMD EPYC with AVX512-BF16 and no AMX).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = zen4 ]; then
  grep -q AuthenticAMD /proc/cpuinfo && grep -qw avx512_bf16 /proc/cpuinfo && ! grep -qw amx_bf16 /proc/cpuinfo ||
    { echo "reference_runs: zen4: this is not a Zen 4 class CPU (AMD, AVX512-BF16, no AMX); its files would describe another machine" >&2; exit 2; }
  Z=results/zen4
  build/longattn run cpu-vs-sdpa --out $Z/cpu-vs-sdpa.json --quiet
  bash scripts/peers.sh cpu-vs-sdpa --out $Z/cpu-vs-sdpa.torch.json
  build/longattn run dilated-1m --out $Z/dilated-1m.json --quiet
  build/longattn run sparse --out $Z/sparse.json --quiet
  build/longattn plot $Z/cpu-vs-sdpa.json $Z/cpu-vs-sdpa.torch.json --out plots/zen4
  exit 0
fi
[ $# -eq 0 ] || { echo "reference_runs: usage: scripts/reference_runs.sh [zen4]" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# One rank runs without mpirun (which would bind it to a single core); two ranks one core each.
run() {
  local np=$1; shift
  if [ "$np" = 1 ]; then build/longattn run "$@" --quiet; else mpirun -np "$np" --oversubscribe build/longattn run "$@" --quiet; fi
}
run 2 smoke --out results/smoke.np2.json
run 1 smoke --out results/smoke.np1.json
run 2 comm --out results/comm.np2.json
run 1 kernels --out results/kernels.json
bash scripts/peers.sh kernels --out results/kernels.torch.json
run 1 cpu-vs-sdpa --out results/cpu-vs-sdpa.json
bash scripts/peers.sh cpu-vs-sdpa --out results/cpu-vs-sdpa.torch.json
run 1 distributed-mha --out results/distributed-mha.np1.json
run 2 distributed-mha --out results/distributed-mha.np2.json
run 1 longnet-scaling --out results/longnet-scaling.np1.json
run 2 longnet-scaling --out results/longnet-scaling.np2.json
# The PyTorch peers of the same cases, each right after its longattn run above where the run is
# short (the first use installs PyTorch into ~/.cache/longattn).
bash scripts/peers.sh longnet-scaling --out results/longnet-scaling.torch.json
build/longattn plot results/kernels.json results/kernels.torch.json --out plots/kernels
build/longattn plot results/cpu-vs-sdpa.json results/cpu-vs-sdpa.torch.json --out plots/cpu-vs-sdpa
build/longattn plot results/distributed-mha.np1.json results/distributed-mha.np2.json --out plots/distributed-mha
build/longattn plot results/longnet-scaling.np1.json results/longnet-scaling.np2.json results/longnet-scaling.torch.json \
  --out plots/longnet-scaling
# Scaling with one core per rank, so that two ranks have twice one rank's hardware.
build/longattn run scaling --threads 1 --out results/scaling.np1.json --quiet
run 2 scaling --out results/scaling.np2.json
build/longattn plot results/scaling.np1.json results/scaling.np2.json --out plots/scaling
# Four ranks on two cores, oversubscribed (the results' context says so): the model's 4-rank cases.
run 4 scaling4 --out results/scaling.np4.json
run 2 ring --out results/ring.np2.json
run 2 usp --out results/usp.np2.json
# Error against float64 as the rank count grows (forward and backward, fp32 and bf16): 1 to 8 ranks,
# oversubscribed beyond 2; only the error_vs_ranks chart is kept.
for np in 1 2 4 8; do run $np error-vs-ranks --out results/error-vs-ranks.np$np.json; done
build/longattn plot results/error-vs-ranks.np{1,2,4,8}.json --out plots/error-vs-ranks
rm -f plots/error-vs-ranks/{scaling,comm_share}.{png,svg}
# B·N held at 16K tokens, every context-parallel method beside its kernel; the efficiency chart.
for np in 1 2 4; do run $np fixed-tokens --out results/fixed-tokens.np$np.json; done
build/longattn plot results/fixed-tokens.np{1,2,4}.json --out plots/fixed-tokens
# Two namespaces joined by a veth pair, TCP between the ranks (root; skipped where namespaces are not allowed).
if bash scripts/netns.sh --check >/dev/null 2>&1; then
  bash scripts/netns.sh --out-dir results/netns comm ring distributed-mha usp
  build/longattn plot results/netns/distributed-mha.netns.json --out plots/netns
fi
# LongNet's path-length claim: layers until the last token depends on the first, against N.
build/longattn reach-chart --out plots/reach
# The model on this machine: calibrate, then the held-out runs made after it, then the table
# (about 35 minutes on 2 cores; the machine file is named after the host's CPU).
m=spr-2core V=results/validation/$m
build/longattn calibrate --name $m --out results/machines/$m.json --keep results/calibration/$m
mkdir -p $V
run 2 distributed-mha --out $V/distributed-mha.np2.json
build/longattn run scaling --threads 1 --out $V/scaling.np1.json --quiet
run 2 scaling --out $V/scaling.np2.json
build/longattn run cpu-vs-sdpa --out $V/cpu-vs-sdpa.json --quiet
build/longattn run longnet-scaling --out $V/longnet-scaling.np1.json --quiet
build/longattn run local-windows --out $V/local-windows.np1.json --quiet
build/longattn run local-windows --threads 1 --out $V/local-windows.t1.json --quiet
build/longattn model --validate $V/*.json --machine results/machines/$m.json > results/model-validation-$m.md
