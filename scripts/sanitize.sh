#!/usr/bin/env bash
# The unit tests and the hostile-input table under AddressSanitizer and UndefinedBehaviorSanitizer
# (GCC), in build-asan/ (CPU only). Any sanitizer report fails: UBSan does not recover. Run after
# scripts/setup.sh (which installs the packages). Usage: scripts/sanitize.sh
set -euo pipefail
cd "$(dirname "$0")/.."
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLONGATTN_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" >/dev/null
cmake --build build-asan --target longattn_tests longattn
# Leaks are not checked: MPI and OpenMP keep their pools until exit by design.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
build-asan/longattn_tests --gtest_brief=1
/usr/bin/python3 tests/test_bad_input.py build-asan/longattn
