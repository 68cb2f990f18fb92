#include "kernels/reference.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/backward.h"

namespace longattn {

void reference_row(const AttentionArgs& a, int64_t b, int64_t h, int64_t i, double* o_row, double* lse,
                   const float* q_row) {
  const Shape sh = a.shape;
  const int64_t ld = sh.H * sh.d, kv_ld = sh.kv_heads() * sh.d;
  auto row = [&](const float* t, int64_t pos) { return t + (b * sh.N + pos) * kv_ld + (h / sh.group()) * sh.d; };
  const float* q = q_row ? q_row : a.q + (b * sh.N + i) * ld + h * sh.d;
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

void reference_backward(const BackwardArgs& ba) {
  const AttentionArgs& a = ba.fwd;
  const Shape sh = a.shape;
  const int64_t N = sh.N, d = sh.d, ld = sh.H * d, G = sh.group(), kv_ld = sh.kv_heads() * d;
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
  // One (batch, KV head) per task: its dK and dV gather from every query row of every query head of
  // its group, so a task owns them.
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t bg = 0; bg < sh.B * sh.kv_heads(); ++bg) {
    const int64_t b = bg / sh.kv_heads(), kvh = bg % sh.kv_heads();
    auto kv_at = [&](int64_t pos) { return (b * N + pos) * kv_ld + kvh * d; };
    std::vector<double> dq(N * d), dk(N * d, 0.0), dv(N * d, 0.0), s, o(d);
    std::vector<int64_t> keys;
    for (int64_t h = kvh * G; h < (kvh + 1) * G; ++h) {
      auto at = [&](int64_t pos) { return (b * N + pos) * ld + h * d; };
      std::fill(dq.begin(), dq.end(), 0.0);
      for (int64_t i = 0; i < N; ++i) {
        keys.clear();
        for (int l = 0; l < a.pattern.level_count(N); ++l) a.pattern.keys(l, a.head0 + h, i, N, keys);
        if (keys.empty()) continue;  // no key: O = 0, and nothing flows back
        const float* q = a.q + at(i);
        const float* g = ba.dout + at(i);
        s.assign(keys.size(), 0.0);
        double mx = -std::numeric_limits<double>::infinity();
        for (size_t t = 0; t < keys.size(); ++t) {
          const float* k = a.k + kv_at(keys[t]);
          for (int64_t c = 0; c < d; ++c) s[t] += static_cast<double>(q[c]) * k[c];
          s[t] *= a.scale;
          mx = std::max(mx, s[t]);
        }
        double z = 0;
        for (double x : s) z += std::exp(x - mx);
        const double lse = mx + std::log(z);
        std::fill(o.begin(), o.end(), 0.0);
        for (size_t t = 0; t < keys.size(); ++t)
          for (int64_t c = 0; c < d; ++c) o[c] += std::exp(s[t] - lse) * a.v[kv_at(keys[t]) + c];
        double D = 0;  // rowsum(dO ∘ O)
        for (int64_t c = 0; c < d; ++c) D += static_cast<double>(g[c]) * o[c];
        for (size_t t = 0; t < keys.size(); ++t) {
          const int64_t j = keys[t];
          const float* k = a.k + kv_at(j);
          const float* v = a.v + kv_at(j);
          const double p = std::exp(s[t] - lse);
          double dp = 0;
          for (int64_t c = 0; c < d; ++c) dp += static_cast<double>(g[c]) * v[c], dv[j * d + c] += p * g[c];
          const double ds = p * (dp - D);
          for (int64_t c = 0; c < d; ++c) dq[i * d + c] += a.scale * ds * k[c], dk[j * d + c] += a.scale * ds * q[c];
        }
      }
      for (int64_t i = 0; i < N; ++i)
        for (int64_t c = 0; c < d; ++c) ba.dq[at(i) + c] = static_cast<float>(dq[i * d + c]);
    }
    for (int64_t i = 0; i < N; ++i)
      for (int64_t c = 0; c < d; ++c) {
        ba.dk[kv_at(i) + c] = static_cast<float>(dk[i * d + c]);
        ba.dv[kv_at(i) + c] = static_cast<float>(dv[i * d + c]);
      }
  }
}

}  // namespace longattn
