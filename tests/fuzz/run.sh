#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, with ASan and UBSan) into build-fuzz/ and runs each for
# SECONDS (default 60) from its seed corpus in tests/fuzz/corpus/ (copied: findings never write
# into the repository). Fails on any crash, sanitizer report, timeout or out-of-memory; a finding
# is left in build-fuzz/ as crash-*, with the command to reproduce it. Usage: run.sh [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-60}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: SECONDS must be a positive whole number" >&2; exit 2; }
cxx=${CLANGXX:-$(command -v clang++ || true)}
[ -n "$cxx" ] || { echo "fuzz: clang++ not found; apt-get install clang" >&2; exit 2; }
out=$root/build-fuzz
mkdir -p "$out"
flags=(-std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$root" -DLONGATTN_SOURCE_DIR="\"$root\"" -DLONGATTN_PYTHON="\"python3\"")
declare -A sources=(
  [npy]="harness/npy.cpp"
  [pattern]="kernels/pattern.cpp harness/json_input.cpp"
  [suite]="harness/suite_file.cpp harness/paths.cpp kernels/pattern.cpp harness/json_input.cpp kernels/cpu.cpp"
)
for t in npy pattern suite; do
  srcs=()
  for s in ${sources[$t]}; do srcs+=("$root/$s"); done
  "$cxx" "${flags[@]}" "$root/tests/fuzz/fuzz_$t.cpp" "${srcs[@]}" -o "$out/fuzz_$t"
done
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1
for t in npy pattern suite; do
  corpus=$out/corpus-$t
  rm -rf "$corpus" && cp -r "$root/tests/fuzz/corpus/$t" "$corpus"
  echo "fuzz: $t for $seconds s"
  (cd "$out" && ./fuzz_$t -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 \
     -print_final_stats=1 "$corpus" 2>&1 | tee "$out/fuzz_$t.log" | grep -E "^Done|ERROR|SUMMARY|crash-|stat::number_of_executed_units" || true)
  if grep -qE "ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error|SUMMARY: UndefinedBehaviorSanitizer" "$out/fuzz_$t.log"; then
    echo "fuzz: $t found a problem; see $out/fuzz_$t.log and reproduce with: $out/fuzz_$t $out/crash-*" >&2
    exit 1
  fi
done
echo "fuzz: 3 targets clean"
