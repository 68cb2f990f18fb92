// Microbenchmarks of the CPU kernels with a fixed iteration count, GFLOP/s from exact pair counts
// (SPEC §1), and an OpenBLAS sgemm in the same binary so every figure reads as a fraction of this
// machine's BLAS peak. Arguments: N (sequence length); B=1, H=8, d=64, fp32 unless named.
//
// strided/...: what bounds `flash` on strided(128)+causal, the `kernels` suite's sparse pattern:
// the pattern, its band alone (local(127,0), 80% of its pairs) with each head's rows a token apart
// as in [B, N, H, d], and the same band on contiguous rows (B=8, H=1: the same work). Read against
// flash_full at the same N.
//
// tile/PATH/...: `flash` on one tile path (kernels/flash_tiles.h), forced, on that path's dtype,
// with pct_peak against the path's own peak (its FLOP per cycle x cores x measured clock). A path
// this CPU cannot run is listed and skipped with the feature it lacks.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include "kernels/blas.h"
#include "kernels/cpu.h"
#include "kernels/flash_tiles.h"
#include "kernels/registry.h"
#include "tests/check.h"

using namespace longattn;

namespace {

constexpr int64_t kH = 8, kD = 64;

void attention(benchmark::State& st, const char* kernel, nlohmann::json pattern, int64_t B = 1, int64_t H = kH) {
  const Shape s{B, st.range(0), H, kD};
  const test::Problem prob(s, 1);
  const Pattern p = parse_pattern(pattern);
  std::vector<float> o, lse;
  AttentionArgs a = prob.args(p, o, lse);
  const Kernel* k = find_kernel(kernel);
  for (auto _ : st) k->run(a);
  const double flops = 4.0 * kD * B * p.pairs_all_heads(H, s.N);
  st.counters["GFLOPs"] = benchmark::Counter(flops * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}

void tile_path(benchmark::State& st, const TilePath* path, nlohmann::json pattern, int64_t d) {
  if (!path->available()) {
    st.SkipWithError((std::string(path->name) + " needs " + path->needs + ", which this CPU lacks").c_str());
    return;
  }
  const Shape s{1, st.range(0), kH, d};
  test::Problem prob(s, 1);
  for (auto* t : {&prob.q, &prob.k, &prob.v}) round_all(path->dtype, t->data(), int64_t(t->size()));
  const Pattern p = parse_pattern(pattern);
  std::vector<float> o, lse;
  AttentionArgs a = prob.args(p, o, lse);
  a.dtype = path->dtype;
  force_tile_path(path);
  for (auto _ : st) find_kernel("flash")->run(a);
  force_tile_path(nullptr);
  const double flops = 4.0 * d * p.pairs_all_heads(kH, s.N);
  static const double clock = measured_clock_ghz();
  const double peak = path->peak_flops_per_cycle() * omp_get_max_threads() * clock * 1e9;
  st.counters["GFLOPs"] = benchmark::Counter(flops * st.iterations() / 1e9, benchmark::Counter::kIsRate);
  st.counters["pct_peak"] = benchmark::Counter(100.0 * flops * st.iterations() / peak, benchmark::Counter::kIsRate);
  st.SetLabel(std::string(dtype_name(path->dtype)) + ", peak " + std::to_string(int(peak / 1e9)) + " GFLOP/s");
}

void sgemm(benchmark::State& st) {
  const int64_t n = st.range(0);
  std::vector<float> a(n * n, 1.0f), b(n * n, 1.0f), c(n * n);
  openblas_set_num_threads(omp_get_max_threads());
  for (auto _ : st)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
  st.counters["GFLOPs"] = benchmark::Counter(2.0 * n * n * n * st.iterations() / 1e9, benchmark::Counter::kIsRate);
}

const nlohmann::json kFull = {{"kind", "full"}};
const nlohmann::json kCausal = {{"kind", "full"}, {"causal", true}};
const nlohmann::json kLongnet = {{"kind", "dilated"}, {"levels", "longnet"}};
const nlohmann::json kStrided = {{"kind", "strided"}, {"stride", 128}, {"causal", true}};
const nlohmann::json kBand = {{"kind", "local"}, {"left", 127}, {"right", 0}};

}  // namespace

BENCHMARK(sgemm)->Arg(2048)->Iterations(10)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(attention, vanilla_full, "vanilla", kFull)->Arg(4096)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(attention, flash_full, "flash", kFull)->Arg(4096)->Arg(8192)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(attention, flash_causal, "flash", kCausal)->Arg(4096)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(attention, dilated_longnet, "dilated", kLongnet)->Arg(16384)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(attention, strided/flash_strided128_causal, "flash", kStrided)->Arg(8192)->Iterations(20)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(attention, strided/flash_band_B1_H8, "flash", kBand)->Arg(8192)->Iterations(20)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(attention, strided/flash_band_B8_H1, "flash", kBand, 8, 1)->Arg(8192)->Iterations(20)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  ensure_blas_core(argv);  // OpenBLAS on the CPU's proper core, as in longattn itself
  for (const TilePath& t : tile_paths())
    for (const auto& [pname, pattern] : {std::pair{"full", kFull}, std::pair{"causal", kCausal}})
      for (int64_t d : {64, 128})
        benchmark::RegisterBenchmark((std::string("tile/") + t.name + "/flash_" + pname + "/d" + std::to_string(d)).c_str(),
                                     tile_path, &t, pattern, d)
            ->Arg(4096)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("blas_core", blas_core());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
