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

GradErrors check_grad_rows(const AttentionArgs& a, const float* dout, const float* dq, const float* dk,
                           const float* dv, const std::vector<SampleRow>& rows) {
  const Shape g = a.shape;
  const int64_t N = g.N, d = g.d, ld = g.H * d, kv_ld = g.kv_heads() * d, G = g.group();
  std::vector<PatternLevel> levels;  // resolved once: contains() is asked N times per row
  for (int l = 0; l < a.pattern.level_count(N); ++l) levels.push_back(a.pattern.level(l, N));
  GradErrors total;
#pragma omp parallel
  {
    std::vector<double> gq(d), gk(d), gv(d);
    GradErrors mine;
#pragma omp for schedule(dynamic)
    for (size_t t = 0; t < rows.size(); ++t) {
      const SampleRow r = rows[t];
      const int64_t kvh = r.h / G;
      auto kv_at = [&](int64_t pos) { return (r.b * N + pos) * kv_ld + kvh * d; };
      std::fill(gq.begin(), gq.end(), 0.0), std::fill(gk.begin(), gk.end(), 0.0), std::fill(gv.begin(), gv.end(), 0.0);
      // dQ of the row's head; dK and dV of its KV head at the row's position, from every query head
      // of the group (GQA, SPEC §1).
      for (int64_t h = kvh * G; h < (kvh + 1) * G; ++h) {
        const int64_t head = a.head0 + h;
        auto at = [&](int64_t pos) { return (r.b * N + pos) * ld + h * d; };
        const float* lse = a.lse + (r.b * g.H + h) * N;
        // Pair (i, j): P = m exp(s - LSE_i), dS = P (dO_i . v_j - D_i), D_i = dO_i . O_i.
        auto pair = [&](int64_t i, int64_t j, int m, double& p, double& ds) {
          const float *q = a.q + at(i), *k = a.k + kv_at(j), *v = a.v + kv_at(j), *go = dout + at(i), *o = a.o + at(i);
          double s = 0, dp = 0, D = 0;
          for (int64_t c = 0; c < d; ++c) s += double(q[c]) * k[c], dp += double(go[c]) * v[c], D += double(go[c]) * o[c];
          p = m * std::exp(a.scale * s - lse[i]);
          ds = p * (dp - D);
        };
        for (int64_t other = 0; other < N; ++other) {
          int m_q = 0, m_k = 0;  // (r.i, other) as (query, key), and (other, r.i)
          for (const PatternLevel& lv : levels) {
            if (h == r.h) m_q += lv.contains(head, r.i, other, N);
            m_k += lv.contains(head, other, r.i, N);
          }
          double p, ds;
          if (m_q > 0 && lse[r.i] != -INFINITY) {
            pair(r.i, other, m_q, p, ds);
            for (int64_t c = 0; c < d; ++c) gq[c] += a.scale * ds * a.k[kv_at(other) + c];
          }
          if (m_k > 0 && lse[other] != -INFINITY) {
            pair(other, r.i, m_k, p, ds);
            for (int64_t c = 0; c < d; ++c) gv[c] += p * dout[at(other) + c], gk[c] += a.scale * ds * a.q[at(other) + c];
          }
        }
      }
      auto err = [](const float* got, const std::vector<double>& want, double& e, double& max_ref) {
        for (size_t c = 0; c < want.size(); ++c) {
          e = std::max(e, std::isfinite(got[c]) ? std::abs(got[c] - want[c]) : INFINITY);
          max_ref = std::max(max_ref, std::abs(want[c]));
        }
      };
      err(dq + (r.b * N + r.i) * ld + r.h * d, gq, mine.dq, mine.max_ref);
      err(dk + kv_at(r.i), gk, mine.dk, mine.max_ref);
      err(dv + kv_at(r.i), gv, mine.dv, mine.max_ref);
    }
#pragma omp critical
    {
      total.dq = std::max(total.dq, mine.dq), total.dk = std::max(total.dk, mine.dk);
      total.dv = std::max(total.dv, mine.dv), total.max_ref = std::max(total.max_ref, mine.max_ref);
    }
  }
  return total;
}

nlohmann::json error_report(const RowErrors& e, double max_abs_v, const std::string& dtype, bool has_lse,
                            double rows_checked, const GradErrors* grads) {
  const DType t = parse_dtype(dtype, "dtype");
  const double bound = lse_tolerance(t), tol_o = o_tolerance(t, max_abs_v);
  bool passed = e.o <= tol_o && (!has_lse || e.lse <= bound);
  nlohmann::json j = {{"o_max_abs", e.o},
                      {"lse_max_abs", has_lse ? nlohmann::json(e.lse) : nlohmann::json(nullptr)},
                      {"o_tolerance", tol_o},
                      {"lse_tolerance", bound},
                      {"rows_checked", rows_checked}};
  if (grads) {
    const double tol = grad_tolerance(t, grads->max_ref);
    passed = passed && grads->dq <= tol && grads->dk <= tol && grads->dv <= tol;
    j["grad"] = {{"dq_max_abs", grads->dq}, {"dk_max_abs", grads->dk}, {"dv_max_abs", grads->dv}, {"tolerance", tol}};
  }
  j["passed"] = passed;
  return j;
}

}  // namespace longattn
