#pragma once
// 16-lane float vectors as GCC vector extensions: one AVX-512 register where the build targets
// AVX-512, two AVX2 registers otherwise. The compiler picks the instructions (LONGATTN_NATIVE
// builds with -march=native), the source stays one.
#include <cstdint>
#include <cstring>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized (_mm512_undefined_ps) once inlined here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace longattn::simd {

constexpr int kLanes = 16;
typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
// Every lane x. (Not `vf{} + x`: 0 + x is not x for x = -0, so GCC emits an add before the
// broadcast, on the critical path of every FMA that uses it.)
inline vf splat(float x) { return vf{x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
// Maxima that keep NaN (a NaN score must reach the row's O and LSE, as in the oracle; a plain
// a > b ? a : b drops it whenever it is the second operand).
inline vf vmax(vf a, vf b) { return ((a > b) | (a != a)) ? a : b; }
inline float max_nan(float a, float b) { return (a != a || a > b) ? a : b; }  // b NaN: b

// Holds v in a register. A vector loaded once and used by several FMAs is otherwise folded into
// each of them as a memory operand: R loads per vector instead of one, and the loads, not the
// FMAs, bound the loop (seen in qk_strip on Zen 4, where a 512-bit load takes both load ports).
inline void pin(vf& v) {
#ifdef __AVX512F__
  asm("" : "+v"(v));
#else
  (void)v;
#endif
}

inline float hmax(vf v) {
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = max_nan(m, v[i]);
  return m;
}
// Maxima where NaN need not survive (the caller detects NaN another way): one instruction each.
inline vf fast_max(vf a, vf b) { return a > b ? a : b; }
inline float fast_hmax(vf v) {
#ifdef __AVX512F__
  __m512 m = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0x4e));  // halves
  m = _mm512_max_ps(m, _mm512_shuffle_f32x4(m, m, 0xb1));         // quarters
  m = _mm512_max_ps(m, _mm512_permute_ps(m, 0x4e));
  m = _mm512_max_ps(m, _mm512_permute_ps(m, 0xb1));
  return _mm512_cvtss_f32(m);
#else
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = v[i] > m ? v[i] : m;
  return m;
#endif
}
inline float hsum(vf v) {
  float s = 0;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

// x rounded to bf16 (nearest even; NaN stays NaN), 16 values to p.
inline void store_bf16(uint16_t* p, vf x) {
#ifdef __AVX512BF16__
  const __m256bh h = _mm512_cvtneps_pbh(x);
  std::memcpy(p, &h, 32);
#else
  vi u;
  std::memcpy(&u, &x, sizeof u);
  const vi nan = (u & 0x7fffffff) > 0x7f800000;
  const vi r = (u + 0x7fff + ((u >> 16) & 1)) >> 16;
  const vi b = nan ? ((u >> 16) | 0x40) : r;
  for (int i = 0; i < kLanes; ++i) p[i] = static_cast<uint16_t>(b[i]);
#endif
}

// 2^x for x <= 0 (scores minus their running max); exactly 0 below -126 (no denormals, which
// would cost the FMAs that read them microcode assists), NaN for NaN. Taylor series of 2^f on f in
// [-0.5, 0.5] after splitting off the nearest integer n; VSCALEFPS applies 2^n where there is
// AVX-512. Degree 6: relative error ~2e-7 (fp32). Degree 4: ~5e-5, for probabilities that are
// rounded to bf16 (2^-9) anyway.
template <int Degree = 6>
inline vf exp2(vf x) {
  static_assert(Degree == 4 || Degree == 6);
#ifdef __AVX512F__
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const vf f = x - vf(n);
#else
  const vf xc = x < -127.0f ? splat(-127.0f) : x;
  const vf n = (xc + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23 trick)
  const vf f = xc - n;                             // f in [-0.5, 0.5]
#endif
  vf p;
  if constexpr (Degree == 6) {
    p = splat(1.5403530393381606e-4f);
    p = p * f + 1.3333558146428443e-3f;
    p = p * f + 9.6181291076284772e-3f;
  } else {
    p = splat(9.6181291076284772e-3f);
  }
  p = p * f + 5.5504108664821580e-2f;
  p = p * f + 2.4022650695910071e-1f;
  p = p * f + 6.9314718055994531e-1f;
  p = p * f + 1.0f;
#ifdef __AVX512F__
  const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);  // x >= -126 or NaN
  return _mm512_maskz_scalef_ps(keep, p, n);
#else
  const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  vf scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const vf r = p * scale;
  return x < -126.0f ? vf{} : r;
#endif
}

}  // namespace longattn::simd

#pragma GCC diagnostic pop
