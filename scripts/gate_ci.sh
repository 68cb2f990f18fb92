#!/usr/bin/env bash
# The regression gate as CI runs it (ctest gate and gate.canary):
#
#   scripts/gate_ci.sh NEW_PROGRAM            the base program, built from the commit named in
#                                             .ci/gate-base, against NEW_PROGRAM: must pass
#   scripts/gate_ci.sh --canary NEW_PROGRAM   NEW_PROGRAM against itself with flash made 2x slower
#                                             (LONGATTN_INJECT_SLOWDOWN=flash:2): the gate must fail
#
# The base is built once per commit into build-gate-base/ (a git worktree beside this clone's
# checkout; the longattn program only, CPU only). Move .ci/gate-base forward when a change is
# meant to make things slower, or when the base program can no longer run the gate suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--canary" ]; then
  [ $# -eq 2 ] || { echo "usage: scripts/gate_ci.sh [--canary] NEW_PROGRAM" >&2; exit 2; }
  rc=0
  bash "$root/scripts/gate.sh" --new-env LONGATTN_INJECT_SLOWDOWN=flash:2 "$2" "$2" || rc=$?
  [ "$rc" -eq 1 ] && { echo "gate canary: the injected 2x slowdown of flash failed the gate, as it must"; exit 0; }
  echo "gate canary: the gate exited $rc with flash made 2x slower; it must exit 1" >&2
  exit 1
fi
[ $# -eq 1 ] || { echo "usage: scripts/gate_ci.sh [--canary] NEW_PROGRAM" >&2; exit 2; }
commit=$(tr -d '[:space:]' < "$root/.ci/gate-base")
git -C "$root" cat-file -e "$commit^{commit}" 2>/dev/null ||
  { echo "gate: the base commit $commit (.ci/gate-base) is not in this clone; fetch the full history" >&2; exit 2; }
dir=$root/build-gate-base
if [ "$(cat "$dir/commit" 2>/dev/null)" != "$commit" ]; then
  echo "gate: building the base program at $commit into $dir"
  rm -rf "$dir"
  git -C "$root" worktree prune
  git -C "$root" worktree add --detach "$dir/src" "$commit" >/dev/null
  cmake -S "$dir/src" -B "$dir/build" -G Ninja -DLONGATTN_TESTS=OFF -DLONGATTN_CUDA=OFF >/dev/null
  cmake --build "$dir/build" --target longattn
  echo "$commit" > "$dir/commit"
fi
exec bash "$root/scripts/gate.sh" "$dir/build/longattn" "$1"
