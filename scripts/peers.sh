#!/usr/bin/env bash
# PyTorch as a peer: times the cases of a longattn suite in PyTorch (SDPA, matmul-softmax-matmul,
# LongNet's gather-and-SDPA recipe), verified by the same oracle, written as a results file.
#
#   scripts/peers.sh SUITE [--out FILE] [--threads T]
#
# SUITE is a name from `build/longattn list` or a suite file. FILE defaults to
# results/SUITE.torch.json. The first run makes a virtual environment with PyTorch 2.x and NumPy
# from PyPI (several GB: the wheel brings CUDA libraries) at $LONGATTN_PEERS_VENV, by default
# ~/.cache/longattn/peers-venv, outside the repository; CI never installs it. Exit: 0 ok, 1 some
# peer output failed verification, 2 bad input or PyTorch not installable.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
usage="usage: scripts/peers.sh SUITE [--out FILE] [--threads T]"
suite="" out="" threads=()
while [ $# -gt 0 ]; do
  case $1 in
    --out) [ -n "${2:-}" ] || { echo "peers: --out: give a file; $usage" >&2; exit 2; }; out=$2; shift 2 ;;
    --threads) [[ ${2:-} =~ ^[1-9][0-9]{0,3}$ ]] || { echo "peers: --threads: give a whole number 1..9999; $usage" >&2; exit 2; }
               threads=(--threads "$2"); shift 2 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "peers: unknown option $1; $usage" >&2; exit 2 ;;
    *) [ -z "$suite" ] || { echo "peers: one suite at a time; $usage" >&2; exit 2; }; suite=$1; shift ;;
  esac
done
[ -n "$suite" ] || { echo "peers: no suite given; $usage" >&2; exit 2; }
longattn=${LONGATTN_PROGRAM:-$root/build/longattn}
[ -x "$longattn" ] || { echo "peers: $longattn not found; build it first: bash scripts/setup.sh" >&2; exit 2; }

venv=${LONGATTN_PEERS_VENV:-$HOME/.cache/longattn/peers-venv}
if ! "$venv/bin/python" -c "import torch, numpy" 2>/dev/null; then
  echo "peers: installing PyTorch and NumPy into $venv (first use; several GB)" >&2
  log=$(mktemp)
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q "torch>=2,<3" numpy; } >"$log" 2>&1 \
      || ! "$venv/bin/python" -c "import torch, numpy" 2>>"$log"; then
    echo "peers: PyTorch could not be installed into $venv. What pip or venv said, last lines:" >&2
    tail -n 5 "$log" | sed 's/^/  /' >&2
    echo "peers: install it by hand and run again:" >&2
    echo "  python3 -m venv $venv    (Debian: apt-get install python3-venv first)" >&2
    echo "  $venv/bin/pip install 'torch>=2,<3' numpy" >&2
    echo "or point LONGATTN_PEERS_VENV at an environment that has torch and numpy." >&2
    rm -f "$log"
    exit 2
  fi
  rm -f "$log"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$longattn" run "$suite" --plan > "$work/plan.json"  # bad suites exit 2 here, with the loader's message
name=$("$venv/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['suite'])" "$work/plan.json")
[ -n "$out" ] || out=$root/results/$name.torch.json
dir=$(dirname "$out")
[ -d "$dir" ] || { echo "peers: --out: directory $dir does not exist; create it first" >&2; exit 2; }
[ ! -e "$out" ] || [ -f "$out" ] || { echo "peers: --out: $out is not a regular file; name a file" >&2; exit 2; }
# The commit, with -dirty where tracked files other than results/ and plots/ differ from it (as
# the program's own results say: harness/git_commit.cmake).
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ "$commit" = unknown ] || git -C "$root" --no-optional-locks diff --quiet HEAD -- . ':(exclude)results' ':(exclude)plots' 2>/dev/null ||
  commit="$commit-dirty"
exec "$venv/bin/python" "$root/harness/peers.py" --plan "$work/plan.json" --longattn "$longattn" --out "$out" \
  ${threads[@]+"${threads[@]}"} --command-line "scripts/peers.sh $suite${out:+ --out $out}" \
  --git-commit "$commit"
