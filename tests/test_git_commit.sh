#!/usr/bin/env bash
# harness/git_commit.cmake, which names the built code in every results file: the commit, -dirty
# while tracked files differ from it (untracked ones, and the suite's outputs in results/ and plots/,
# do not count), "unknown" outside a repository, and the header left untouched (so nothing
# recompiles) while the answer stays the same.
# Usage: tests/test_git_commit.sh harness/git_commit.cmake [cmake]
set -euo pipefail
script=$(realpath "$1")
cmake=${2:-cmake}
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
fail() { echo "test_git_commit: FAILED: $*" >&2; exit 1; }
names() { grep -qx "#define LONGATTN_GIT_COMMIT \"$1\"" "$t/h" || fail "expected $1, the header says: $(cat "$t/h")"; }
run() { "$cmake" -DSRC="$1" -DOUT="$t/h" -P "$script" || fail "cmake -P $script failed in $1"; }
commit() { git -c user.email=test@example.com -c user.name=test -c commit.gpgsign=false commit -q "$@"; }

git init -q "$t/r"
cd "$t/r"
mkdir results plots
echo a > tracked && echo r > results/x.json && echo p > plots/x.md
git add tracked results plots && commit -m one
one=$(git rev-parse --short HEAD)
run "$t/r"
names "$one"

touch -d 2000-01-01 "$t/h"
run "$t/r"
[ "$(stat -c %Y "$t/h")" = "$(date -d 2000-01-01 +%s)" ] || fail "the header was rewritten though the commit had not changed"

echo b > tracked
run "$t/r"
names "$one-dirty"
git add tracked  # staged, still not committed
run "$t/r"
names "$one-dirty"
git reset -q && git checkout -q tracked
echo c > untracked && echo r2 > results/x.json && echo p2 > plots/x.md  # outputs, not code
run "$t/r"
names "$one"

commit --allow-empty -m two
run "$t/r"
names "$(git rev-parse --short HEAD)"

mkdir "$t/plain"
GIT_CEILING_DIRECTORIES="$t" run "$t/plain"
names unknown
echo "test_git_commit: ok"
