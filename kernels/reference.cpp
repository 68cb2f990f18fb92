#include "kernels/reference.h"

#include <omp.h>

#include <cmath>
#include <limits>

namespace longattn {

void reference_row(const AttentionArgs& a, int64_t b, int64_t h, int64_t i, double* o_row, double* lse,
                   const float* q_row) {
  const Shape sh = a.shape;
  const int64_t ld = sh.H * sh.d;
  auto row = [&](const float* t, int64_t pos) { return t + (b * sh.N + pos) * ld + h * sh.d; };
  const float* q = q_row ? q_row : row(a.q, i);
  // The disjoint union of the levels: a key in two levels appears twice.
  std::vector<int64_t> keys;
  for (int l = 0; l < a.pattern.level_count(sh.N); ++l) a.pattern.keys(l, a.head0 + h, i, sh.N, keys);
  std::vector<double> s(keys.size());
  double mx = -std::numeric_limits<double>::infinity();
  for (size_t t = 0; t < keys.size(); ++t) {
    const float* k = row(a.k, keys[t]);
    double dot = 0;
    for (int64_t c = 0; c < sh.d; ++c) dot += static_cast<double>(q[c]) * k[c];
    s[t] = a.scale * dot;
    mx = std::max(mx, s[t]);
  }
  for (int64_t c = 0; c < sh.d; ++c) o_row[c] = 0;
  if (keys.empty()) {
    *lse = -std::numeric_limits<double>::infinity();
    return;
  }
  double z = 0;
  for (size_t t = 0; t < keys.size(); ++t) {
    const double p = std::exp(s[t] - mx);
    z += p;
    const float* v = row(a.v, keys[t]);
    for (int64_t c = 0; c < sh.d; ++c) o_row[c] += p * v[c];
  }
  for (int64_t c = 0; c < sh.d; ++c) o_row[c] /= z;
  *lse = mx + std::log(z);
}

void reference_attention(const AttentionArgs& a) {
  const Shape sh = a.shape;
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t t = 0; t < sh.B * sh.H * sh.N; ++t) {
    const int64_t b = t / (sh.H * sh.N), h = (t / sh.N) % sh.H, i = t % sh.N;
    std::vector<double> o(sh.d);
    double lse;
    reference_row(a, b, h, i, o.data(), &lse);
    float* out = a.o + (b * sh.N + i) * sh.H * sh.d + h * sh.d;
    for (int64_t c = 0; c < sh.d; ++c) out[c] = static_cast<float>(o[c]);
    if (a.lse) a.lse[(b * sh.H + h) * sh.N + i] = static_cast<float>(lse);
  }
}

}  // namespace longattn
