#include "kernels/gqa.h"

#include <omp.h>

#include <algorithm>

namespace longattn {

std::string kv_heads_unsupported(const Shape& s) {
  if (s.H_kv < 0 || (s.H_kv > 0 && s.H % s.H_kv != 0))
    return "shape: H_kv = " + std::to_string(s.H_kv) + " does not divide H = " + std::to_string(s.H) +
           "; choose H_kv a divisor of H (1: multi-query, H: multi-head)";
  return {};
}

std::vector<float> expand_kv_heads(const float* kv, const Shape& s, int threads) {
  const int64_t G = s.group(), hk = s.kv_heads(), d = s.d;
  std::vector<float> out(s.numel());
#pragma omp parallel for schedule(static) num_threads(threads > 0 ? threads : omp_get_max_threads())
  for (int64_t t = 0; t < s.B * s.N; ++t)
    for (int64_t g = 0; g < hk; ++g)
      for (int64_t j = 0; j < G; ++j) std::copy_n(kv + (t * hk + g) * d, d, out.data() + ((t * hk + g) * G + j) * d);
  return out;
}

void sum_kv_groups(const float* expanded, const Shape& s, float* kv, int threads) {
  const int64_t G = s.group(), hk = s.kv_heads(), d = s.d;
#pragma omp parallel for schedule(static) num_threads(threads > 0 ? threads : omp_get_max_threads())
  for (int64_t t = 0; t < s.B * s.N; ++t)
    for (int64_t g = 0; g < hk; ++g) {
      float* out = kv + (t * hk + g) * d;
      const float* in = expanded + (t * hk + g) * G * d;
      std::copy_n(in, d, out);
      for (int64_t j = 1; j < G; ++j)
        for (int64_t c = 0; c < d; ++c) out[c] += in[j * d + c];
    }
}

void run_with_kv_heads(const AttentionArgs& a, const std::function<void(const AttentionArgs&)>& run) {
  if (!a.shape.grouped()) return run(a);
  const std::vector<float> k = expand_kv_heads(a.k, a.shape, a.threads), v = expand_kv_heads(a.v, a.shape, a.threads);
  AttentionArgs e = a;
  e.shape.H_kv = 0, e.k = k.data(), e.v = v.data();
  run(e);
}

void backward_with_kv_heads(const BackwardArgs& a, const std::function<void(const BackwardArgs&)>& backward) {
  const Shape s = a.fwd.shape;
  if (!s.grouped()) return backward(a);
  const std::vector<float> k = expand_kv_heads(a.fwd.k, s, a.fwd.threads), v = expand_kv_heads(a.fwd.v, s, a.fwd.threads);
  std::vector<float> dk(s.numel()), dv(s.numel());
  BackwardArgs e = a;
  e.fwd.shape.H_kv = 0, e.fwd.k = k.data(), e.fwd.v = v.data(), e.dk = dk.data(), e.dv = dv.data();
  backward(e);
  sum_kv_groups(dk.data(), s, a.dk, a.fwd.threads);
  sum_kv_groups(dv.data(), s, a.dv, a.fwd.threads);
}

}  // namespace longattn
