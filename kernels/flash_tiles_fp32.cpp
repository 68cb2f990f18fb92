// The fp32 tile path: register-blocked strips on 16-lane vectors (one AVX-512 register, or two
// AVX2 ones), K transposed per block so a strip of 64 keys is four vector loads per head dim.
// Also the conversion path for bf16 and fp16 where the CPU lacks their instructions: their
// values are exact in fp32, so these tiles compute them without rounding.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "kernels/cpu.h"
#include "kernels/flash_tiles.h"
#include "kernels/simd.h"

namespace longattn {
namespace {

using simd::vf;

// Register blocking, sized for AVX-512's 32 zmm registers (a 16-lane vf is one of them):
// a strip's accumulators plus the vectors it loads fit. AVX2 builds take their own strips below.
constexpr int kQkRows = 4, kQkVecs = 4;   // Q K^T: 4 rows x 4 key vectors = 16 zmm + 4 K
constexpr int kPvWhole = 6, kPvChunk = 4;  // P V: rows of up to 6 vectors whole, else 4 at a time
template <int C>
constexpr int kPvRows = C <= 3 ? 8 : 4;    // 8 x 3 or 4 x 4..6 accumulators

#ifdef __AVX512F__
// s[R][16 W keys] = qp[R][dp] . kt[dp][16 W keys] for R query rows (q was scaled when loaded):
// R x W accumulators; kt and s point at the first of the W key vectors (rows kFlashBk apart).
template <int R, int W>
inline void qk_strip(const float* qp, int64_t dp, const float* kt, float* s) {
  vf acc[R][W] = {};
  const float* kp = kt;
  for (int64_t c = 0; c < dp; ++c, kp += kFlashBk) {
    vf k[W];
    for (int w = 0; w < W; ++w) k[w] = simd::load(kp + 16 * w), simd::pin(k[w]);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const vf a = simd::splat(qp[r * dp + c]);
      for (int w = 0; w < W; ++w) acc[r][w] += a * k[w];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    for (int w = 0; w < W; ++w) simd::store(s + r * kFlashBk + 16 * w, acc[r][w]);
}

#else
// AVX2 has 16 ymm registers, and a 16-lane vf is two of them: GCC spills the strips above. These
// take 8-lane vectors, R = 4 rows by up to 3 of them: 12 accumulators (more than the 8 that the
// FMA units' two ports times their four cycles of latency need), the 3 vectors loaded and a
// broadcast fill the 16 registers.
typedef float v8 __attribute__((vector_size(32)));
inline v8 load8(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store8(float* p, v8 v) { std::memcpy(p, &v, sizeof v); }
inline v8 splat8(float x) { return v8{x, x, x, x, x, x, x, x}; }
constexpr int kAvx2Vecs = 3;

template <int R, int C>
inline void qk_part(const float* qp, int64_t dp, const float* kt, float* s) {
  v8 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < C; ++u) acc[r][u] = v8{};
  const float* kp = kt;
  for (int64_t c = 0; c < dp; ++c, kp += kFlashBk) {
    v8 k[C];
    for (int u = 0; u < C; ++u) k[u] = load8(kp + 8 * u);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const v8 a = splat8(qp[r * dp + c]);
      for (int u = 0; u < C; ++u) acc[r][u] += a * k[u];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int u = 0; u < C; ++u) store8(s + r * kFlashBk + 8 * u, acc[r][u]);
}

template <int R, int W>
inline void qk_strip(const float* qp, int64_t dp, const float* kt, float* s) {
  constexpr int n = 2 * W;  // 8-lane vectors of keys
  int u = 0;
  for (; u + kAvx2Vecs <= n; u += kAvx2Vecs) qk_part<R, kAvx2Vecs>(qp, dp, kt + 8 * u, s + 8 * u);
  if (n - u == 2) qk_part<R, 2>(qp, dp, kt + 8 * u, s + 8 * u);
  if (n - u == 1) qk_part<R, 1>(qp, dp, kt + 8 * u, s + 8 * u);
}
#endif

// Rows [r0, r0 + 16) of the tile against key vectors [v0, v1) of the block.
inline void qk_group(const float* q, int64_t dp, const float* kt, float* scores, int64_t r0, int64_t v0, int64_t v1) {
  static_assert(kFlashBk == 64 && kSpanRows % kQkRows == 0, "qk_group dispatches 1 to 4 key vectors");
  for (int64_t r = r0; r < r0 + kSpanRows; r += kQkRows)
    for (int64_t v = v0; v < v1; v += kQkVecs) {
      const float* qp = q + r * dp;
      const float* k = kt + 16 * v;
      float* s = scores + r * kFlashBk + 16 * v;
      switch (std::min<int64_t>(kQkVecs, v1 - v)) {
        case 4: qk_strip<kQkRows, 4>(qp, dp, k, s); break;
        case 3: qk_strip<kQkRows, 3>(qp, dp, k, s); break;
        case 2: qk_strip<kQkRows, 2>(qp, dp, k, s); break;
        default: qk_strip<kQkRows, 1>(qp, dp, k, s); break;
      }
    }
}

#ifdef __AVX512F__
// o[R][DV vectors] = alpha[r] * o[r] + p[R][:nk] . v[nk][DV vectors]: DV of the dp / 16 vectors
// of a row (o and v rows are dp apart).
template <int R, int DV>
inline void pv_strip(const float* p, int64_t nk, const float* v, float* o, const float* alpha, int64_t dp) {
  vf acc[R][DV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const vf a = simd::splat(alpha[r]);
    for (int c = 0; c < DV; ++c) acc[r][c] = simd::load(o + r * dp + 16 * c) * a;
  }
  for (int64_t j = 0; j < nk; ++j) {
    vf vv[DV];
    for (int c = 0; c < DV; ++c) vv[c] = simd::load(v + j * dp + 16 * c), simd::pin(vv[c]);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const vf b = simd::splat(p[r * kFlashBk + j]);
      for (int c = 0; c < DV; ++c) acc[r][c] += b * vv[c];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < DV; ++c) simd::store(o + r * dp + 16 * c, acc[r][c]);
}

#else
// AVX2: 4 rows x up to 3 8-lane column vectors (12 accumulators) at a time.
template <int C>
inline void pv_part(const float* p, int64_t nk, const float* v, float* o, const float* alpha, int64_t dp) {
  v8 acc[4][C];
  for (int r = 0; r < 4; ++r) {
    const v8 a = splat8(alpha[r]);
    for (int u = 0; u < C; ++u) acc[r][u] = load8(o + r * dp + 8 * u) * a;
  }
  for (int64_t j = 0; j < nk; ++j) {
    v8 vv[C];
    for (int u = 0; u < C; ++u) vv[u] = load8(v + j * dp + 8 * u);
#pragma GCC unroll 4
    for (int r = 0; r < 4; ++r) {
      const v8 b = splat8(p[r * kFlashBk + j]);
      for (int u = 0; u < C; ++u) acc[r][u] += b * vv[u];
    }
  }
  for (int r = 0; r < 4; ++r)
    for (int u = 0; u < C; ++u) store8(o + r * dp + 8 * u, acc[r][u]);
}

template <int R, int DV>
inline void pv_strip(const float* p, int64_t nk, const float* v, float* o, const float* alpha, int64_t dp) {
  static_assert(R % 4 == 0);
  constexpr int n = 2 * DV;  // 8-lane vectors of a row's DV
  for (int r0 = 0; r0 < R; r0 += 4) {
    const float* pr = p + r0 * kFlashBk;
    float* orow = o + r0 * dp;
    int u = 0;
    for (; u + kAvx2Vecs <= n; u += kAvx2Vecs) pv_part<kAvx2Vecs>(pr, nk, v + 8 * u, orow + 8 * u, alpha + r0, dp);
    if (n - u == 2) pv_part<2>(pr, nk, v + 8 * u, orow + 8 * u, alpha + r0, dp);
    if (n - u == 1) pv_part<1>(pr, nk, v + 8 * u, orow + 8 * u, alpha + r0, dp);
  }
}
#endif

// Rows [r0, r0 + 16) of o, keys [j0, j1) of the block (P is zero outside them).
template <int DV>
void pv_group(const float* p, int64_t j0, int64_t j1, const float* v, float* o, const float* alpha, int64_t r0) {
  // Rows wider than kPvWhole vectors go in column chunks (and a rest): on AVX-512, 4 rows x 4
  // vectors of accumulators load each V vector once per 4 rows. (Whole rows 2 at a time, the
  // alternative at d = 128, read V twice as often, from L2 once K, V and O outgrow L1.)
  constexpr int64_t dp = DV * 16;
  constexpr int C = DV <= kPvWhole ? DV : kPvChunk, Rest = DV <= kPvWhole ? 0 : DV % kPvChunk;
  constexpr int R = kPvRows<C>;
  static_assert(kSpanRows % R == 0);
  const int64_t nk = j1 - j0;
  p += j0;
  v += j0 * dp;
  for (int64_t r = r0; r < r0 + kSpanRows; r += R) {
    int c = 0;
    for (; c + C <= DV; c += C)
      pv_strip<R, C>(p + r * kFlashBk, nk, v + 16 * c, o + r * dp + 16 * c, alpha + r, dp);
    if constexpr (Rest > 0) pv_strip<R, Rest>(p + r * kFlashBk, nk, v + 16 * c, o + r * dp + 16 * c, alpha + r, dp);
  }
}

using PvGroup = void (*)(const float*, int64_t, int64_t, const float*, float*, const float*, int64_t);
template <int... DV>
constexpr PvGroup pv_table_entry(int dv, std::integer_sequence<int, DV...>) {
  PvGroup t = nullptr;
  ((dv == DV + 1 ? (t = &pv_group<DV + 1>, 0) : 0), ...);
  return t;
}
PvGroup pv_group_for(int64_t dp) {
  return pv_table_entry(static_cast<int>(dp / 16), std::make_integer_sequence<int, kFlashMaxD / 16>{});
}

// P V for a V that holds NaN or inf: keys outside a row's set have p = 0, and 0 x NaN must not
// reach that row (the oracle never reads them), so zero probabilities are skipped, and so are the
// keys outside a group's span, whose probabilities the softmax did not write. Slow; only inputs
// passed with --allow-nonfinite take it.
void pv_nonfinite(const float* p, const KeySpans* spans, int64_t nk, const float* v, float* o, const float* alpha,
                  int64_t dp) {
  for (int64_t r = 0; r < kFlashBq; ++r) {
    float* orow = o + r * dp;
    for (int64_t c = 0; c < dp; ++c) orow[c] *= alpha[r];
    const int64_t j0 = spans ? spans->lo[r / kSpanRows] : 0, j1 = spans ? std::min(spans->hi[r / kSpanRows], nk) : nk;
    for (int64_t j = j0; j < j1; ++j)
      if (const float pj = p[r * kFlashBk + j]; pj != 0.0f)
        for (int64_t c = 0; c < dp; ++c) orow[c] += pj * v[j * dp + c];
  }
}

void pack(const HeadProblem& p, PackedKV& out) {
  const int64_t dp = out.dp, d = p.d, bk = kFlashBk;
  // Every element is written below, padding included: no zeroing pass over the whole buffer.
  out.kt.resize(out.blocks * dp * bk);
  out.v.resize(out.blocks * bk * dp);
  vf rows[16];
  for (int64_t j0 = 0; j0 < out.blocks * bk; j0 += 16) {
    // 16 keys: V rows copied (zero past d, and past nk), K rows transposed 16 dims at a time.
    for (int64_t r = 0; r < 16; ++r) {
      prefetch_row(p.k, j0 + r + kPackAhead, p.nk, p.kv_stride, d);
      prefetch_row(p.v, j0 + r + kPackAhead, p.nk, p.kv_stride, d);
      float* v = out.v.data() + (j0 + r) * dp;
      const bool key = j0 + r < p.nk;
      if (key) simd::copy(p.v + (j0 + r) * p.kv_stride, d, v);
      std::fill(v + (key ? d : 0), v + dp, 0.0f);
    }
    float* kt = out.kt.data() + (j0 / bk) * dp * bk + j0 % bk;
    for (int64_t c0 = 0; c0 < dp; c0 += 16) {
      const int64_t w = std::min<int64_t>(16, d - c0);
      for (int64_t r = 0; r < 16; ++r) rows[r] = j0 + r < p.nk ? simd::load_first(p.k + (j0 + r) * p.kv_stride + c0, w) : vf{};
      simd::transpose16(rows, kt + c0 * bk, bk);
    }
  }
}

// Scores live in the log2 domain: q is scaled by scale * log2(e) here, once per tile.
void load_q(const HeadProblem& p, int64_t i0, int64_t rows, int64_t dp, FlashScratch& s) {
  const float qscale = p.scale * 1.4426950408889634f;
  s.q.assign(kFlashBq * dp, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    prefetch_row(p.q, i0 + r + kPackAhead, i0 + rows, p.q_stride, p.d);
    const float* qr = p.q + (i0 + r) * p.q_stride;
    for (int64_t c = 0; c < p.d; ++c) s.q[r * dp + c] = qr[c] * qscale;
  }
}

float qk(FlashScratch& s, const PackedKV& kv, int64_t kb, const KeySpans* spans, float /*qscale: applied in load_q*/,
         float* scores) {
  const int64_t dp = kv.dp;
  const float* kt = kv.kt.data() + kb * dp * kFlashBk;
  for (int64_t g = 0; g < kFlashBq / kSpanRows; ++g) {
    const int64_t v0 = spans ? spans->lo[g] / 16 : 0, v1 = spans ? (spans->hi[g] + 15) / 16 : kFlashBk / 16;
    qk_group(s.q.data(), dp, kt, scores, g * kSpanRows, v0, v1);
  }
  return 1.0f;
}

void pv(FlashScratch& s, const PackedKV& kv, int64_t kb, const KeySpans* spans, int64_t cols) {
  const float* v = kv.v.data() + kb * kFlashBk * kv.dp;
  if (kv.v_nonfinite) return pv_nonfinite(s.s.data(), spans, cols, v, s.o.data(), s.alpha.data(), kv.dp);
  const PvGroup group = pv_group_for(kv.dp);
  for (int64_t g = 0; g < kFlashBq / kSpanRows; ++g) {
    const int64_t j0 = spans ? spans->lo[g] : 0, j1 = spans ? std::min(spans->hi[g], cols) : cols;
    group(s.s.data(), j0, std::max(j0, j1), v, s.o.data(), s.alpha.data(), g * kSpanRows);
  }
}

bool always() { return true; }
double fma_peak() { return 2.0 * cpu_info().fp32_lanes() * cpu_info().fma_units(); }

}  // namespace

#ifdef __AVX512F__
#define LONGATTN_FP32_TILES "fp32-avx512"
#else
#define LONGATTN_FP32_TILES "fp32-avx2"
#endif
const TilePath kTileFp32 = {LONGATTN_FP32_TILES, DType::fp32, "nothing", 16, kFlashBk, false, true, always, fma_peak, pack, load_q, qk, pv};

}  // namespace longattn
