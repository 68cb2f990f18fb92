#pragma once
// Shared by the tests: deterministic N(0,1) inputs, the oracle's answer, and SPEC §4's measures.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/attention.h"
#include "kernels/memory.h"
#include "kernels/reference.h"
#include "kernels/step.h"
#include "kernels/tolerance.h"

namespace longattn::test {

struct Problem {
  Shape shape;
  std::vector<float> q, k, v;
  Problem(Shape s, uint64_t seed) : shape(s), q(s.numel()), k(s.kv_numel()), v(s.kv_numel()) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto* t : {&q, &k, &v})
      for (float& x : *t) x = nd(rng);
  }
  AttentionArgs args(const Pattern& p, std::vector<float>& o, std::vector<float>& lse) const {
    o.assign(shape.numel(), std::nanf(""));
    lse.assign(shape.B * shape.H * shape.N, std::nanf(""));
    AttentionArgs a;
    a.shape = shape;
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.o = o.data();
    a.lse = lse.data();
    a.pattern = p;
    a.scale = default_scale(shape.d);
    return a;
  }
};

struct Errors {
  double o = 0, lse = 0;  // max abs differences; inf where one side is non-finite and the other not
};

inline Errors compare(const std::vector<float>& o, const std::vector<float>& lse, const std::vector<float>& o_ref,
                      const std::vector<float>& lse_ref) {
  Errors e;
  for (size_t i = 0; i < o.size(); ++i) {
    const double d = std::isfinite(o[i]) ? std::abs(double(o[i]) - o_ref[i]) : INFINITY;
    e.o = std::max(e.o, d);
  }
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(lse_ref[i]) && lse[i] == lse_ref[i]) continue;  // both -inf: empty set
    const double d = std::isfinite(lse[i]) ? std::abs(double(lse[i]) - lse_ref[i]) : INFINITY;
    e.lse = std::max(e.lse, d);
  }
  return e;
}

// Each pattern as spelled, then again with "causal": true.
inline std::vector<Pattern> with_and_without_causal(std::vector<nlohmann::json> specs) {
  std::vector<Pattern> out;
  for (auto s : specs) {
    out.push_back(parse_pattern(s));
    s["causal"] = true;
    out.push_back(parse_pattern(s));
  }
  return out;
}

// max |x - ref|, infinite where x is not finite.
inline double max_abs_diff(const std::vector<float>& x, const std::vector<float>& ref) {
  double err = 0;
  for (size_t i = 0; i < x.size(); ++i) err = std::max(err, std::isfinite(x[i]) ? std::abs(double(x[i]) - ref[i]) : INFINITY);
  return err;
}

inline double max_abs(const std::vector<float>& x) {
  double m = 0;
  for (float v : x) m = std::max(m, double(std::abs(v)));
  return m;
}

// The attention of a whole [B, N, H, d] problem against its keys [k0, k1), as one attention step:
// per batch and head, queries [0, q_cut) and [q_cut, N) are two blocks (each at its positions), so
// the blocks of a step and several steps over a split of the keys are both exercised. q, k, v are
// the tensors' bases (host or device memory, `elem` bytes per element); o, lse the accumulators.
inline AttentionStep split_step(const Shape& s, const Pattern& p, const void* q, const void* k, const void* v,
                                size_t elem, float* o, float* lse, int64_t k0, int64_t k1, int64_t q_cut) {
  AttentionStep step;
  step.d = s.d, step.scale = default_scale(s.d), step.mask = p;
  const int64_t row = s.H * s.d;
  auto at = [elem](const void* base, int64_t i) { return static_cast<const char*>(base) + i * int64_t(elem); };
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (auto [i0, i1] : {std::pair{int64_t{0}, q_cut}, std::pair{q_cut, s.N}}) {
        const int64_t qa = (b * s.N + i0) * row + h * s.d, ka = (b * s.N + k0) * row + h * s.d;
        step.blocks.push_back({at(q, qa), row, i1 - i0, i0, at(k, ka), at(v, ka), row, k1 - k0, k0, s.N, h, o + qa, row,
                               lse + (b * s.H + h) * s.N + i0, 1});
      }
  return step;
}

// SPEC §4 (kernels/tolerance.h) for fp32 outputs against the double-precision oracle.
inline double o_tolerance_fp32(const std::vector<float>& v) { return o_tolerance(DType::fp32, max_abs(v)); }
constexpr double kLseToleranceFp32 = lse_tolerance(DType::fp32);

// kernels/memory.h's moves on one place, in a script whose answer is memory_script_expected: the
// same on every device (tests/test_kernels.cpp on the CPU, tests/test_cuda.cpp on a GPU).
inline std::vector<float> memory_script(const Place& at) {
  FloatBuffer a(at.device), b(at.device);
  a.resize(10);
  const std::vector<float> ten = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  upload(at, a.data(), ten.data(), 10);
  a.resize(14);  // keeps the ten, zeroes four more
  b.resize(20);
  fill_floats(at, b.data(), 20, -1.0f);
  copy_rows(at, b.data() + 1, 5, a.data(), 4, 3, 3);   // b[1 + 5r + i] = a[4r + i], r, i < 3
  copy_floats(at, b.data() + 16, a.data() + 10, 4);    // the zeroed four
  swap(a, b);
  std::vector<float> out(a.size());
  download(at, out.data(), a.data(), out.size());
  return out;
}
inline const std::vector<float> memory_script_expected = {-1, 0, 1, 2, -1, -1, 4, 5, 6, -1,
                                                          -1, 8, 9, 0, -1, -1, 0, 0, 0, 0};

}  // namespace longattn::test
