#!/usr/bin/env bash
# The regression gate: times the gate suite with two programs on this machine and fails when the
# new one is slower. Usage:
#
#   scripts/gate.sh [--new-env VAR=VALUE]... [--threshold PCT] BASE_PROGRAM NEW_PROGRAM
#
# Both programs run the same suite file (the smoke suite: every method x pattern, small shapes) on
# 2 ranks, interleaved: a round is base, new, base, new, each side's two runs pooled per case (20
# samples); only if a round flags a case does a second round run. A case fails the gate when it
# regressed in both rounds: median time up by more than THRESHOLD% (default 50) with one-sided
# Mann-Whitney p < 0.05. Raw time is the metric: both sides share the machine and alternate, so
# its drift touches both, and no figure comes from another machine. Why pooled runs and 50%: on
# the 2-core machines here one process can run a case 30-60% slower than the next process of the
# same binary, throughout (measured: 8 runs of one build, smoke on 2 ranks); a real 2x slowdown
# reads +100% in every round. --new-env sets a variable for the new program only (the canary:
# LONGATTN_INJECT_SLOWDOWN=flash:2 must fail). Exit: 0 pass, 1 regression, 2 bad input.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
threshold=50
suite=${LONGATTN_GATE_SUITE:-$root/suite/smoke.json}
new_env=()
usage="usage: scripts/gate.sh [--new-env VAR=VALUE]... [--threshold PCT] BASE_PROGRAM NEW_PROGRAM"
while [ $# -gt 0 ]; do
  case $1 in
    --new-env)
      [[ ${2:-} =~ ^[A-Za-z_][A-Za-z0-9_]*=.*$ ]] || { echo "gate: --new-env: give VAR=VALUE; $usage" >&2; exit 2; }
      new_env+=(-x "$2"); shift 2 ;;
    --threshold)
      [[ ${2:-} =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "gate: --threshold: give a percentage, e.g. 30; $usage" >&2; exit 2; }
      threshold=$2; shift 2 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "gate: unknown option $1; $usage" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || { echo "gate: expected two programs; $usage" >&2; exit 2; }
base=$1 new=$2
for p in "$base" "$new"; do
  [ -f "$p" ] && [ -x "$p" ] || { echo "gate: $p: no such program; build it first (cmake --build build) or give the path to a longattn binary" >&2; exit 2; }
done
[ -f "$suite" ] || { echo "gate: $suite: no such suite file (LONGATTN_GATE_SUITE)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

run() {  # $1: program, $2: output, rest: mpirun options
  local exe=$1 out=$2; shift 2
  mpirun -np 2 --oversubscribe "$@" "$exe" run "$suite" --out "$out" --quiet
}

round() {  # $1: round number; prints the table, leaves regressed case names in $work/regressed.$1
  local b=() n=()
  for i in 1 2; do
    run "$base" "$work/base.$1.$i.json"
    run "$new" "$work/new.$1.$i.json" ${new_env[@]+"${new_env[@]}"}
    b+=("$work/base.$1.$i.json") n+=("$work/new.$1.$i.json")
  done
  local rc=0
  "$new" compare "$(IFS=,; echo "${b[*]}")" "$(IFS=,; echo "${n[*]}")" --threshold "$threshold" --metric time \
    > "$work/compare.$1.md" || rc=$?
  cat "$work/compare.$1.md"
  [ "$rc" -le 1 ] || exit "$rc"  # bad input (e.g. the programs ran on different machines)
  grep '| REGRESSION |' "$work/compare.$1.md" | cut -d'|' -f2 | sort > "$work/regressed.$1" || true
}

round 1
[ -s "$work/regressed.1" ] || { echo "gate: no regression"; exit 0; }
echo "gate: $(wc -l < "$work/regressed.1") case(s) regressed; base and new run again to confirm"
round 2
confirmed=$(comm -12 "$work/regressed.1" "$work/regressed.2")
if [ -n "$confirmed" ]; then
  echo "gate: regression confirmed in both rounds:"
  echo "$confirmed"
  exit 1
fi
echo "gate: not confirmed by the second round (noise); pass"
