#include "harness/verify.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "kernels/reference.h"
#include "kernels/tolerance.h"

namespace longattn {

std::vector<SampleRow> sample_rows(const Shape& g, uint64_t seed) {
  std::vector<SampleRow> rows;
  const int64_t total = g.B * g.H * g.N;
  const bool all = total <= 4096;
  std::mt19937_64 rng(seed + 17);
  for (int64_t t = 0; t < (all ? total : 256); ++t) {
    const int64_t x = all ? t : static_cast<int64_t>(rng() % static_cast<uint64_t>(total));
    rows.push_back({x / (g.H * g.N), (x / g.N) % g.H, x % g.N});
  }
  return rows;
}

RowErrors check_rows(const AttentionArgs& ref, const std::vector<SampleRow>& rows, const RowAccess& at) {
  const int64_t d = ref.shape.d;
  RowErrors total;
#pragma omp parallel
  {
    std::vector<double> orow(d);
    RowErrors mine;
#pragma omp for schedule(dynamic)
    for (size_t t = 0; t < rows.size(); ++t) {
      const SampleRow r = rows[t];
      double l;
      reference_row(ref, r.b, r.h, r.i, orow.data(), &l, at.q(r));
      const float* o = at.o(r);
      for (int64_t x = 0; x < d; ++x) {
        const double e = std::isfinite(o[x]) ? std::abs(o[x] - orow[x]) : INFINITY;
        mine.o = std::max(mine.o, e);
      }
      if (at.lse) {
        const float got = *at.lse(r);
        // Relative to |LSE_ref| beyond 1 (SPEC §4): large scores make LSE large.
        const double e = (std::isinf(l) && got == l) ? 0
                         : std::isfinite(got)        ? std::abs(got - l) / std::max(1.0, std::abs(l))
                                                     : INFINITY;
        mine.lse = std::max(mine.lse, e);
      }
    }
#pragma omp critical
    total.o = std::max(total.o, mine.o), total.lse = std::max(total.lse, mine.lse);
  }
  return total;
}

nlohmann::json error_report(const RowErrors& e, double max_abs_v, const std::string& dtype, bool has_lse,
                            double rows_checked) {
  const DType t = parse_dtype(dtype, "dtype");
  const double bound = lse_tolerance(t), tol_o = o_tolerance(t, max_abs_v);
  const bool passed = e.o <= tol_o && (!has_lse || e.lse <= bound);
  return {{"o_max_abs", e.o},
          {"lse_max_abs", has_lse ? nlohmann::json(e.lse) : nlohmann::json(nullptr)},
          {"o_tolerance", tol_o},
          {"lse_tolerance", bound},
          {"rows_checked", rows_checked},
          {"passed", passed}};
}

}  // namespace longattn
