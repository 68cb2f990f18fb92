#!/usr/bin/env bash
# The GPU check, one command on a machine with an NVIDIA GPU (Ampere or newer), from a fresh start:
# build, `ctest -L gpu` (every kernel x pattern x dtype against the oracle, NCCL on one rank),
# compute-sanitizer on the tile kernel at small sizes, the `gpu` suite and its PyTorch peers, charts.
#
#   bash scripts/gpu_deps.sh     # first, on a machine with apt (the build's libraries, ~13 MB)
#   bash scripts/gpu_check.sh    # then on the GPU machine, with .gpu-deps/ beside the sources
#
# Writes results/gpu/gpu.json, results/gpu/gpu.torch.json, plots/gpu/ and a summary table; with
# $OUT set (the device tool's folder), also $OUT/gpu-check.tar.gz (results, charts, every log) and
# $OUT/summary.txt. Needs nvcc, cmake, ninja and a python3 with PyTorch, NumPy and matplotlib;
# the libraries it lacks come from .gpu-deps/, unpacked under /tmp (never into /). NCCL comes from
# the toolkit or from PyTorch's nvidia-nccl package. Exit 0 when every stage passed, 1 otherwise.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
t0=$SECONDS
status=0
logs=/tmp/longattn-gpu-logs
rm -rf "$logs" && mkdir -p "$logs" results/gpu plots/gpu
say() { printf '== [%4d s] %s\n' $((SECONDS - t0)) "$*" | tee -a "$logs/summary.txt"; }
failed() { say "FAILED: $*"; status=1; }
# Runs a stage with a time limit, its output in $logs/NAME.log (the last lines shown on failure).
stage() {
  local name=$1 limit=$2
  shift 2
  say "$name: $*"
  if ! timeout "$limit" "$@" >"$logs/$name.log" 2>&1; then
    tail -n 25 "$logs/$name.log"
    failed "$name (log: $logs/$name.log)"
    return 1
  fi
}
pack() {
  [ -n "${OUT:-}" ] || return 0
  cp "$logs/summary.txt" "$OUT/summary.txt"
  tar -czf "$OUT/gpu-check.tar.gz" results/gpu plots/gpu -C /tmp longattn-gpu-logs 2>/dev/null
}
trap pack EXIT

if ! nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,clocks.max.sm --format=csv,noheader \
    >"$logs/gpu.txt" 2>&1; then
  cat "$logs/gpu.txt"
  say "no NVIDIA GPU here (nvidia-smi failed); nothing to check"
  exit 2
fi
say "GPU: $(head -n 1 "$logs/gpu.txt"); $(nvcc --version | tail -n 1); $(python3 -c 'import torch; print("torch", torch.__version__)' 2>&1 | tail -n 1)"
arch=$(head -n 1 "$logs/gpu.txt" | cut -d, -f2 | tr -d ' .')  # "9.0" -> 90

# ---- the build's libraries: the machine's own where it has them, else .gpu-deps/ under /tmp ----
deps=()
if [ -d .gpu-deps ]; then
  prefix=/tmp/longattn-deps
  mkdir -p "$prefix"
  for f in .gpu-deps/*.deb; do
    dpkg-deb -x "$f" "$prefix" 2>/dev/null ||
      (d=$(mktemp -d) && cd "$d" && ar x "$root/$f" && tar -xf data.tar.* -C "$prefix") || failed "unpacking $f"
  done
  multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
  lib=$prefix/usr/lib/$multiarch
  # Debian's .pc files name /usr: the sysroot moves their -I and -L under the prefix.
  export PKG_CONFIG_PATH="$lib/openblas-openmp/pkgconfig:$lib/pkgconfig:$prefix/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export PKG_CONFIG_SYSROOT_DIR=$prefix
  export LD_LIBRARY_PATH="$lib/openblas-openmp:$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  deps+=(-DCMAKE_PREFIX_PATH="$prefix/usr")
  command -v pkg-config >/dev/null || deps+=(-DPKG_CONFIG_EXECUTABLE="$prefix/usr/bin/pkgconf")
else
  say "no .gpu-deps/ (scripts/gpu_deps.sh makes it): using the machine's own libraries"
fi
cuda_include=$(dirname "$(command -v nvcc)")/../include
if [ ! -e "$cuda_include/nccl.h" ] && [ ! -e /usr/include/nccl.h ]; then
  # PyTorch's wheel brings NCCL as the nvidia-nccl package: headers and libnccl.so.2.
  nccl=$(python3 -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null)
  if [ -n "$nccl" ] && [ -e "$nccl/include/nccl.h" ]; then
    deps+=(-DLONGATTN_NCCL_INCLUDE="$nccl/include" -DLONGATTN_NCCL_LIBRARY="$(ls "$nccl"/lib/libnccl.so* | head -n 1)")
    export LD_LIBRARY_PATH="$nccl/lib:$LD_LIBRARY_PATH"
  fi
fi

# ---- build: this GPU's architecture only, every core ----
stage configure 300 cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DLONGATTN_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${arch:-90}" -DLONGATTN_PYTHON="$(command -v python3)" "${deps[@]}" || exit 1
grep -E "longattn: CUDA|OpenBLAS|MPI" "$logs/configure.log" | tee -a "$logs/summary.txt"
stage build 420 cmake --build build-gpu --target longattn longattn_cuda_tests || exit 1

# ---- correctness: the GPU tests, then the sanitizers on the tile kernel's small cases ----
stage ctest 300 ctest --test-dir build-gpu -L gpu --output-on-failure
grep -E "tests passed|tests failed|Skipped|\*\*\*" "$logs/ctest.log" | head -n 20 | tee -a "$logs/summary.txt"
small='Cuda.DilatedOffsetsUseTheGlobalHead:Cuda.AttentionStepsOverSplitKeysMatchTheOracle'
sanitizer=$(command -v compute-sanitizer || echo "$(dirname "$(command -v nvcc)")/compute-sanitizer")
if [ -x "$sanitizer" ]; then
  for tool in memcheck racecheck; do
    stage "sanitizer-$tool" 180 "$sanitizer" --tool "$tool" --error-exitcode 3 \
      build-gpu/longattn_cuda_tests --gtest_filter="$small"
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$logs/sanitizer-$tool.log" | tee -a "$logs/summary.txt"
  done
else
  failed "compute-sanitizer not found"
fi

# ---- the gpu suite, its PyTorch peers (SDPA's backends, vanilla, LongNet's recipe), the charts ----
stage suite 420 build-gpu/longattn run gpu --out results/gpu/gpu.json
if python3 -c 'import torch, numpy' 2>/dev/null; then  # peers.sh takes the interpreter's prefix as its venv
  stage peers 420 env LONGATTN_PROGRAM=build-gpu/longattn LONGATTN_PEERS_VENV="$(python3 -c 'import sys; print(sys.prefix)')" \
    bash scripts/peers.sh gpu --out results/gpu/gpu.torch.json
else
  failed "peers: this python3 has no PyTorch and NumPy"
fi
files=(results/gpu/gpu.json)
[ -s results/gpu/gpu.torch.json ] && files+=(results/gpu/gpu.torch.json)
stage plot 120 build-gpu/longattn plot "${files[@]}" --out plots/gpu

# ---- the table: our kernels against PyTorch on each case (median ms) ----
python3 - "${files[@]}" <<'EOF' | tee -a "$logs/summary.txt"
import json, sys
cases = [c for f in sys.argv[1:] for c in json.load(open(f))["cases"]]
rows = {}
for c in cases:
    rows.setdefault((c["pattern_name"], c["N"]), {})[c["method"]] = c["time_ms"]["median"] if c["status"] == "ok" else c["status"]
cols = {"flash": "flash", "dilated": "dilated", "vanilla": "vanilla", "torch-sdpa-flash": "sdpa-flash",
        "torch-sdpa-cudnn": "sdpa-cudnn", "torch-sdpa-math": "sdpa-math", "torch-dilated": "lnet-recipe"}
ms = lambda r, m: r[m] if isinstance(r.get(m), float) else None
print("median ms ('skipped' / 'failed' as recorded); flash/SDPA = the faster SDPA backend's time over flash's"
      " (issue 16 asks >= 0.8); dil/recipe = LongNet's gather-and-SDPA recipe's time over dilated's (>= 2)")
print(f"{'pattern':26} {'N':>6} " + " ".join(f"{v:>11}" for v in cols.values()) + f" {'flash/SDPA':>10} {'dil/recipe':>10}")
for (p, n), r in sorted(rows.items()):
    cell = lambda m: f"{r[m]:11.3f}" if ms(r, m) else f"{str(r.get(m, '-'))[:11]:>11}"
    sdpa = [t for t in (ms(r, "torch-sdpa-flash"), ms(r, "torch-sdpa-cudnn")) if t]
    ratio = lambda a, b: f"{a / b:10.2f}" if a and b else f"{'-':>10}"
    print(f"{p[:26]:26} {n:>6} " + " ".join(cell(m) for m in cols) +
          f" {ratio(min(sdpa) if sdpa else None, ms(r, 'flash'))} {ratio(ms(r, 'torch-dilated'), ms(r, 'dilated'))}")
print("\ndistributed methods through NCCL (efficiency: rate as % of the single-GPU kernel's on the same case)")
for c in cases:
    if c["method"].startswith("dist-"):
        t = f"{c['time_ms']['median']:10.3f} ms" if c["status"] == "ok" else f"{c['status']}: {c.get('reason', '')[:70]}"
        eff = f"  {c['efficiency']['pct']:.0f}%" if "efficiency" in c else ""
        print(f"  {c['name'][:64]:64} {t}{eff}")
EOF
say "done: $([ $status = 0 ] && echo 'every stage passed' || echo 'some stage FAILED (above)'); results/gpu/, plots/gpu/"
exit $status
