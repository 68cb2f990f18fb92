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
// Without AVX-512 a vf is two ymm registers, and GCC lowers some 16-lane operations (selects, the
// int conversion) through the stack: those run on 8-lane halves.
typedef float vf8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));
// (Through memcpy: GCC 12 lowers a 16-lane __builtin_shufflevector of two halves lane by lane.)
inline vf8 low(vf v) {
  vf8 h;
  std::memcpy(&h, &v, sizeof h);
  return h;
}
inline vf8 high(vf v) {
  vf8 h;
  std::memcpy(&h, reinterpret_cast<const char*>(&v) + sizeof h, sizeof h);
  return h;
}
inline vf join(vf8 a, vf8 b) {
  vf v;
  std::memcpy(&v, &a, sizeof a);
  std::memcpy(reinterpret_cast<char*>(&v) + sizeof a, &b, sizeof b);
  return v;
}

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store(float* p, vf v) { std::memcpy(p, &v, sizeof v); }
// The first n floats at p (n may be past 16 or below 1), zeros in the other lanes: one vector load
// when n >= 16, never a read past p + n.
inline vf load_first(const float* p, int64_t n) {
  if (n >= 16) return load(p);
  vf v{};
  if (n > 0) std::memcpy(&v, p, n * sizeof(float));
  return v;
}
// n floats from src to dst (not overlapping) as vector moves. For a head's row (d floats) this is
// inline; std::copy_n with a run-time length calls memmove, which cost as much as the row on a
// Zen 4 EPYC (fp32 strided(128) ran 16-30% faster once the packing loops stopped calling it).
inline void copy(const float* src, int64_t n, float* dst) {
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) store(dst + c, load(src + c));
  for (; c < n; ++c) dst[c] = src[c];
}
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
inline vf fast_max(vf a, vf b) {
#ifdef __AVX512F__
  return a > b ? a : b;
#else
  const vf8 al = low(a), ah = high(a), bl = low(b), bh = high(b);
  return join(al > bl ? al : bl, ah > bh ? ah : bh);
#endif
}
inline float fast_hmax(vf v) {
#ifdef __AVX512F__
  __m512 m = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0x4e));  // halves
  m = _mm512_max_ps(m, _mm512_shuffle_f32x4(m, m, 0xb1));         // quarters
  m = _mm512_max_ps(m, _mm512_permute_ps(m, 0x4e));
  m = _mm512_max_ps(m, _mm512_permute_ps(m, 0xb1));
  return _mm512_cvtss_f32(m);
#else
  vf8 m = low(v);
  const vf8 h = high(v);
  m = h > m ? h : m;
  vf8 t = __builtin_shufflevector(m, m, 4, 5, 6, 7, 0, 1, 2, 3);
  m = t > m ? t : m;
  t = __builtin_shufflevector(m, m, 2, 3, 0, 1, 6, 7, 4, 5);
  m = t > m ? t : m;
  t = __builtin_shufflevector(m, m, 1, 0, 3, 2, 5, 4, 7, 6);
  m = t > m ? t : m;
  return m[0];
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
// The Taylor polynomial of 2^f, f in [-0.5, 0.5], on any float vector type.
template <int Degree, class V>
inline V exp2_poly(V f) {
  static_assert(Degree == 4 || Degree == 6);
  V p = V{} + (Degree == 6 ? 1.5403530393381606e-4f : 9.6181291076284772e-3f);
  if constexpr (Degree == 6) {
    p = p * f + 1.3333558146428443e-3f;
    p = p * f + 9.6181291076284772e-3f;
  }
  p = p * f + 5.5504108664821580e-2f;
  p = p * f + 2.4022650695910071e-1f;
  p = p * f + 6.9314718055994531e-1f;
  return p * f + 1.0f;
}

#ifndef __AVX512F__
template <int Degree>
inline vf8 exp2_half(vf8 x) {
  const vf8 xc = x < -127.0f ? vf8{} - 127.0f : x;
  const vf8 n = (xc + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23 trick)
  const vi8 bits = (__builtin_convertvector(n, vi8) + 127) << 23;
  vf8 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const vf8 r = exp2_poly<Degree>(xc - n) * scale;
  return x < -126.0f ? vf8{} : r;
}
#endif

template <int Degree = 6>
inline vf exp2(vf x) {
#ifdef __AVX512F__
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const vf p = exp2_poly<Degree>(x - vf(n));
  const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.0f), _CMP_NLT_UQ);  // x >= -126 or NaN
  return _mm512_maskz_scalef_ps(keep, p, n);
#else
  return join(exp2_half<Degree>(low(x)), exp2_half<Degree>(high(x)));
#endif
}

// The softmax's row loops, n a multiple of 16. row_max: the largest of p[0, n), NaN dropped
// (-inf for n = 0). row_exp2: p[j] = 2^(p[j] scale - sub), and their sums as 16 lanes. Without
// AVX-512 both run on 8-lane vectors: GCC spills 16-lane selects and conversions there.
inline float row_max(const float* p, int64_t n) {
#ifdef __AVX512F__
  vf mx = splat(-__builtin_inff());
  for (int64_t j = 0; j < n; j += 16) mx = fast_max(mx, load(p + j));
  return fast_hmax(mx);
#else
  vf8 a = vf8{} - __builtin_inff(), b = a;
  for (int64_t j = 0; j < n; j += 16) {
    vf8 x, y;
    std::memcpy(&x, p + j, sizeof x);
    std::memcpy(&y, p + j + 8, sizeof y);
    a = x > a ? x : a;
    b = y > b ? y : b;
  }
  return fast_hmax(join(a, b));
#endif
}
template <int Degree = 6>
inline vf row_exp2(float* p, int64_t n, float scale, float sub) {
#ifdef __AVX512F__
  const vf sc = splat(scale), sb = splat(sub);
  vf sum{};
  for (int64_t j = 0; j < n; j += 16) {
    const vf e = exp2<Degree>(load(p + j) * sc - sb);
    store(p + j, e);
    sum += e;
  }
  return sum;
#else
  const vf8 sc = vf8{} + scale, sb = vf8{} + sub;
  vf8 s0{}, s1{};
  for (int64_t j = 0; j < n; j += 16) {
    vf8 x, y;
    std::memcpy(&x, p + j, sizeof x);
    std::memcpy(&y, p + j + 8, sizeof y);
    x = exp2_half<Degree>(x * sc - sb);
    y = exp2_half<Degree>(y * sc - sb);
    std::memcpy(p + j, &x, sizeof x);
    std::memcpy(p + j + 8, &y, sizeof y);
    s0 += x;
    s1 += y;
  }
  return join(s0, s1);
#endif
}

// A 16 x 16 block transposed: out[c * stride + lane] = rows[lane][c].
inline void transpose16(const vf* rows, float* out, int64_t stride) {
#ifdef __AVX512F__
  __m512 a[16], b[16];
  for (int i = 0; i < 16; i += 2)
    a[i] = _mm512_unpacklo_ps(rows[i], rows[i + 1]), a[i + 1] = _mm512_unpackhi_ps(rows[i], rows[i + 1]);
  // b[4j + m]: in 128-bit lane k, column 4k + m of rows 4j .. 4j + 3.
  for (int j = 0; j < 16; j += 4) {
    const __m512d a0 = _mm512_castps_pd(a[j]), a1 = _mm512_castps_pd(a[j + 1]);
    const __m512d a2 = _mm512_castps_pd(a[j + 2]), a3 = _mm512_castps_pd(a[j + 3]);
    b[j] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2)), b[j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    b[j + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3)), b[j + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  for (int m = 0; m < 4; ++m) {
    const __m512 c0 = _mm512_shuffle_f32x4(b[m], b[4 + m], 0x88), c1 = _mm512_shuffle_f32x4(b[m], b[4 + m], 0xdd);
    const __m512 c2 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], 0x88), c3 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], 0xdd);
    _mm512_storeu_ps(out + (0 + m) * stride, _mm512_shuffle_f32x4(c0, c2, 0x88));
    _mm512_storeu_ps(out + (4 + m) * stride, _mm512_shuffle_f32x4(c1, c3, 0x88));
    _mm512_storeu_ps(out + (8 + m) * stride, _mm512_shuffle_f32x4(c0, c2, 0xdd));
    _mm512_storeu_ps(out + (12 + m) * stride, _mm512_shuffle_f32x4(c1, c3, 0xdd));
  }
#else
  for (int c = 0; c < 16; ++c)
    for (int lane = 0; lane < 16; ++lane) out[c * stride + lane] = rows[lane][c];
#endif
}

}  // namespace longattn::simd

#pragma GCC diagnostic pop
