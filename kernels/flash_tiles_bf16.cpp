// The bf16 tile path on AVX512-BF16 (AMD Zen 4, Intel Cooper Lake and Sapphire Rapids):
// VDPBF16PS multiplies 16 pairs of bf16 and adds both products to 16 fp32 lanes, twice the
// multiply-adds of an fp32 FMA. Each operand therefore holds pairs along the reduced axis:
//   Q K^T reduces over d:    q as (c, c+1) pairs, K as kt16[block][d/2][Bk][2];
//   P V   reduces over keys: P rows converted to bf16 (pairs j, j+1), V as v16[block][Bk/2][dp][2].
// Scores, softmax and O stay fp32. The functions carry their ISA as a target attribute, so the
// file builds on any x86 compiler and runs only where cpu_info() says it may.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "kernels/cpu.h"
#include "kernels/flash_tiles.h"
#include "kernels/simd.h"

namespace longattn {
namespace {

#define LONGATTN_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

LONGATTN_BF16_TARGET inline __m512 dot(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}
inline uint32_t pair_at(const uint16_t* p) {  // two consecutive bf16 as one 32-bit lane
  uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

// scores[R][Bk] = qscale * q16[R][dp] . K, 64 keys (4 vectors) per step of two head dims.
template <int R>
LONGATTN_BF16_TARGET inline void qk_strip(const uint16_t* q, int64_t dp, const uint16_t* kt, float qscale,
                                          float* s) {
  __m512 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int w = 0; w < 4; ++w) acc[r][w] = _mm512_setzero_ps();
  for (int64_t c2 = 0; c2 < dp / 2; ++c2) {
    const uint16_t* kp = kt + c2 * kFlashBk * 2;
    const __m512i k0 = _mm512_loadu_si512(kp), k1 = _mm512_loadu_si512(kp + 32), k2 = _mm512_loadu_si512(kp + 64),
                  k3 = _mm512_loadu_si512(kp + 96);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512i a = _mm512_set1_epi32(static_cast<int>(pair_at(q + r * dp + 2 * c2)));
      acc[r][0] = dot(acc[r][0], k0, a);
      acc[r][1] = dot(acc[r][1], k1, a);
      acc[r][2] = dot(acc[r][2], k2, a);
      acc[r][3] = dot(acc[r][3], k3, a);
    }
  }
  const __m512 sc = _mm512_set1_ps(qscale);
  for (int r = 0; r < R; ++r)
    for (int w = 0; w < 4; ++w) _mm512_storeu_ps(s + r * kFlashBk + 16 * w, _mm512_mul_ps(acc[r][w], sc));
}

// o[R][DV vectors] = alpha[r] * o[r] + p16[R][:] . V, one pair of keys per step: DV of the
// dp / 16 vectors of a row (o rows dp apart, V pair rows 2 dp).
template <int R, int DV>
LONGATTN_BF16_TARGET inline void pv_strip(const uint16_t* p, int64_t pairs, const uint16_t* v, float* o,
                                          const float* alpha, int64_t dp) {
  __m512 acc[R][DV];
  for (int r = 0; r < R; ++r) {
    const __m512 a = _mm512_set1_ps(alpha[r]);
    for (int c = 0; c < DV; ++c) acc[r][c] = _mm512_mul_ps(_mm512_loadu_ps(o + r * dp + 16 * c), a);
  }
  for (int64_t j2 = 0; j2 < pairs; ++j2) {
    __m512i vv[DV];
    for (int c = 0; c < DV; ++c) vv[c] = _mm512_loadu_si512(v + (j2 * dp + 16 * c) * 2);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512i b = _mm512_set1_epi32(static_cast<int>(pair_at(p + r * kFlashBk + 2 * j2)));
      for (int c = 0; c < DV; ++c) acc[r][c] = dot(acc[r][c], vv[c], b);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < DV; ++c) _mm512_storeu_ps(o + r * dp + 16 * c, acc[r][c]);
}

// Rows of more than 6 vectors in chunks of 4, 4 rows at a time (as the fp32 path: V is read half
// as often as with whole rows 2 at a time).
template <int DV>
LONGATTN_BF16_TARGET void pv_tile(const uint16_t* p, int64_t pairs, const uint16_t* v, float* o, const float* alpha) {
  constexpr int64_t dp = DV * 16;
  constexpr int C = DV <= 6 ? DV : 4, Rest = DV <= 6 ? 0 : DV % 4;
  constexpr int R = C <= 3 ? 8 : 4;
  static_assert(kFlashBq % R == 0);
  for (int64_t r = 0; r < kFlashBq; r += R) {
    int c = 0;
    for (; c + C <= DV; c += C) pv_strip<R, C>(p + r * kFlashBk, pairs, v + 32 * c, o + r * dp + 16 * c, alpha + r, dp);
    if constexpr (Rest > 0) pv_strip<R, Rest>(p + r * kFlashBk, pairs, v + 32 * c, o + r * dp + 16 * c, alpha + r, dp);
  }
}

using PvTile = void (*)(const uint16_t*, int64_t, const uint16_t*, float*, const float*);
template <int... DV>
constexpr PvTile pv_table_entry(int dv, std::integer_sequence<int, DV...>) {
  PvTile t = nullptr;
  ((dv == DV + 1 ? (t = &pv_tile<DV + 1>, 0) : 0), ...);
  return t;
}

float qk(FlashScratch& s, const PackedKV& kv, int64_t kb, const KeySpans*, float qscale, float* scores) {
  const int64_t dp = kv.dp;
  const float apply = qscale > 0 ? 1.0f : qscale;  // a positive scale is left to the softmax
  for (int64_t r = 0; r < kFlashBq; r += 4)
    qk_strip<4>(s.q16.data() + r * dp, dp, kv.kt16.data() + kb * dp * kFlashBk, apply, scores + r * kFlashBk);
  return qscale > 0 ? qscale : 1.0f;
}

// VDPBF16PS issues like an FMA (assumed, as cpu_info's FMA units are) and does two multiply-adds per lane.
double dpbf16_peak() { return 4.0 * 16 * cpu_info().fma_units(); }

bool has_avx512_bf16() { return cpu_info().avx512_bf16 && cpu_info().avx512bw && cpu_info().avx512vl; }

void pv(FlashScratch& s, const PackedKV& kv, int64_t kb, const KeySpans*, int64_t cols) {
  if (kv.v_nonfinite) return bf16_tiles::pv_nonfinite(s, kv, kb, cols);
  const int64_t dp = kv.dp;
  const PvTile tile =
      pv_table_entry(static_cast<int>(dp / 16), std::make_integer_sequence<int, kFlashMaxD / 16>{});
  tile(s.p16.data(), (cols + 1) / 2, kv.v16.data() + kb * kFlashBk * dp, s.o.data(), s.alpha.data());
}

}  // namespace

namespace bf16_tiles {

// One row of d values as bf16 pairs: 32-bit words, (x[2c], x[2c+1]) in word c, zero past d.
void row_pairs(const float* x, int64_t d, int64_t dp, uint32_t* out) {
  uint16_t* h = reinterpret_cast<uint16_t*>(out);
  int64_t c = 0;
  for (; c + 16 <= d; c += 16) simd::store_bf16(h + c, simd::load(x + c));
  if (c < dp) {  // the tail, then zeros
    simd::store_bf16(h + c, simd::load_first(x + c, d - c));
    std::fill(h + c + 16, h + dp, 0);
  }
}

// Sixteen keys at a time, every word written once (padding and keys past nk as zeros): K's pair
// rows transposed 16 x 16 words (in registers where the build has AVX-512), V's pair rows
// interleaved by vector. (Word by word over a zeroed buffer, as before, bf16 local(127,0) ran
// 13-40% slower on a Zen 4 EPYC: bands pack keys for few products.)
LONGATTN_BF16_TARGET void pack(const HeadProblem& p, PackedKV& out) {
  const int64_t dp = out.dp, bk = out.bk, words = dp / 2, keys = out.blocks * bk;
  out.kt16.resize(keys * dp);
  out.v16.resize(keys * dp);
  uint32_t* kt = reinterpret_cast<uint32_t*>(out.kt16.data());  // [blocks][dp/2][bk] words
  uint32_t* vt = reinterpret_cast<uint32_t*>(out.v16.data());   // [blocks][bk/2][dp] words
  alignas(64) uint32_t k2[16][kFlashMaxD / 2 + 16], v2[16][kFlashMaxD / 2 + 16];
  alignas(64) float block[16 * 16];
  simd::vf rows[16];
  for (int64_t j0 = 0; j0 < keys; j0 += 16) {  // bk is a multiple of 16
    for (int64_t r = 0; r < 16; ++r) {
      const int64_t j = j0 + r;
      prefetch_row(p.k, j + kPackAhead, p.nk, p.kv_stride, p.d), prefetch_row(p.v, j + kPackAhead, p.nk, p.kv_stride, p.d);
      if (j < p.nk) {
        row_pairs(p.k + j * p.kv_stride, p.d, dp, k2[r]);
        row_pairs(p.v + j * p.kv_stride, p.d, dp, v2[r]);
      } else {
        std::fill(k2[r], k2[r] + words, 0u), std::fill(v2[r], v2[r] + words, 0u);
      }
    }
    uint32_t* kb = kt + (j0 / bk) * words * bk + j0 % bk;
    for (int64_t c0 = 0; c0 < words; c0 += 16) {
      const int64_t w = std::min<int64_t>(16, words - c0);
      for (int64_t r = 0; r < 16; ++r) std::memcpy(&rows[r], k2[r] + c0, sizeof rows[r]);  // words as float bits
      float* dst = reinterpret_cast<float*>(kb + c0 * bk);
      if (w == 16) {
        simd::transpose16(rows, dst, bk);
      } else {
        simd::transpose16(rows, block, 16);
        for (int64_t c = 0; c < w; ++c) std::memcpy(dst + c * bk, block + c * 16, 16 * sizeof(float));
      }
    }
    // Keys j, j + 1 interleaved per column: word c of the pair row is (v[j][c], v[j+1][c]).
    for (int64_t r = 0; r < 16; r += 2) {
      const uint16_t* h0 = reinterpret_cast<const uint16_t*>(v2[r]);
      const uint16_t* h1 = reinterpret_cast<const uint16_t*>(v2[r + 1]);
      uint32_t* vb = vt + ((j0 + r) / bk) * (bk / 2) * dp + ((j0 + r) % bk) / 2 * dp;
      for (int64_t c = 0; c < dp; c += 16) {  // dp is a multiple of 16
        typedef uint16_t u16x16 __attribute__((vector_size(32)));
        typedef uint32_t u32x16 __attribute__((vector_size(64)));
        u16x16 a, b;
        std::memcpy(&a, h0 + c, sizeof a), std::memcpy(&b, h1 + c, sizeof b);
        const u32x16 pair = __builtin_convertvector(a, u32x16) | __builtin_convertvector(b, u32x16) << 16;
        std::memcpy(vb + c, &pair, sizeof pair);
      }
    }
  }
}

void load_q(const HeadProblem& p, int64_t i0, int64_t rows, int64_t dp, FlashScratch& s) {
  s.q16.resize(kFlashBq * dp);
  for (int64_t r = 0; r < rows; ++r) {
    prefetch_row(p.q, i0 + r + kPackAhead, i0 + rows, p.q_stride, p.d);
    row_pairs(p.q + (i0 + r) * p.q_stride, p.d, dp, reinterpret_cast<uint32_t*>(s.q16.data() + r * dp));
  }
  std::fill(s.q16.begin() + rows * dp, s.q16.end(), 0);
}

// P V for a V holding NaN or inf (attend --allow-nonfinite): zero probabilities skipped, as in the
// fp32 path, so 0 x NaN never reaches a row whose set excludes that key.
void pv_nonfinite(FlashScratch& s, const PackedKV& kv, int64_t kb, int64_t cols) {
  const int64_t dp = kv.dp, bk = kv.bk;
  const uint16_t* vb = kv.v16.data() + kb * bk * dp;
  for (int64_t r = 0; r < kFlashBq; ++r) {
    float* orow = s.o.data() + r * dp;
    for (int64_t c = 0; c < dp; ++c) orow[c] *= s.alpha[r];
    for (int64_t j = 0; j < cols; ++j)
      if (const float pj = bf16_value(s.p16[r * bk + j]); pj != 0.0f)
        for (int64_t c = 0; c < dp; ++c) orow[c] += pj * bf16_value(vb[((j / 2) * dp + c) * 2 + j % 2]);
  }
}

}  // namespace bf16_tiles

const TilePath kTileBf16Avx512 = {"bf16-avx512bf16", DType::bf16, "avx512_bf16", 16, kFlashBk, true, false, has_avx512_bf16, dpbf16_peak,
                                  bf16_tiles::pack, bf16_tiles::load_q, qk, pv};

}  // namespace longattn
