// The fp32 tile path: register-blocked strips on 16-lane vectors (one AVX-512 register, or two
// AVX2 ones), K transposed per block so a strip of 64 keys is four vector loads per head dim.
// Also the conversion path for bf16 and fp16 where the CPU lacks their instructions: their
// values are exact in fp32, so these tiles compute them without rounding.
#include <algorithm>
#include <cmath>
#include <utility>

#include "kernels/cpu.h"
#include "kernels/flash_tiles.h"
#include "kernels/simd.h"

namespace longattn {
namespace {

using simd::vf;

// s[R][Bk] = qscale-free qp[R][dp] . kt[dp][Bk] for R query rows: R x 4 accumulators, 64 keys
// at a time (q was scaled when loaded).
template <int R>
inline void qk_strip(const float* qp, int64_t dp, const float* kt, float* s) {
  for (int64_t jc = 0; jc < kFlashBk; jc += 64) {
    vf acc[R][4] = {};
    const float* kp = kt + jc;
    for (int64_t c = 0; c < dp; ++c, kp += kFlashBk) {
      vf k0 = simd::load(kp), k1 = simd::load(kp + 16), k2 = simd::load(kp + 32), k3 = simd::load(kp + 48);
      simd::pin(k0), simd::pin(k1), simd::pin(k2), simd::pin(k3);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const vf a = simd::splat(qp[r * dp + c]);
        acc[r][0] += a * k0;
        acc[r][1] += a * k1;
        acc[r][2] += a * k2;
        acc[r][3] += a * k3;
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
      for (int q = 0; q < 4; ++q) simd::store(s + r * kFlashBk + jc + 16 * q, acc[r][q]);
  }
}

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

template <int DV>
void pv_tile(const float* p, int64_t nk, const float* v, float* o, const float* alpha) {
  // Rows wider than 4 vectors go in column chunks of 4 (and a rest): 4 rows x 4 vectors of
  // accumulators load each V vector once per 4 rows. (Whole rows 2 at a time, the alternative,
  // read V twice as often, from L2 once d = 128 pushes a block's K, V and O out of L1.)
  constexpr int64_t dp = DV * 16;
  constexpr int C = DV <= 6 ? DV : 4, Rest = DV <= 6 ? 0 : DV % 4;
  constexpr int R = C <= 3 ? 8 : 4;
  static_assert(kFlashBq % R == 0);
  for (int64_t r = 0; r < kFlashBq; r += R) {
    int c = 0;
    for (; c + C <= DV; c += C)
      pv_strip<R, C>(p + r * kFlashBk, nk, v + 16 * c, o + r * dp + 16 * c, alpha + r, dp);
    if constexpr (Rest > 0) pv_strip<R, Rest>(p + r * kFlashBk, nk, v + 16 * c, o + r * dp + 16 * c, alpha + r, dp);
  }
}

using PvTile = void (*)(const float*, int64_t, const float*, float*, const float*);
template <int... DV>
constexpr PvTile pv_table_entry(int dv, std::integer_sequence<int, DV...>) {
  PvTile t = nullptr;
  ((dv == DV + 1 ? (t = &pv_tile<DV + 1>, 0) : 0), ...);
  return t;
}
PvTile pv_tile_for(int64_t dp) {
  return pv_table_entry(static_cast<int>(dp / 16), std::make_integer_sequence<int, kFlashMaxD / 16>{});
}

// P V for a V that holds NaN or inf: keys outside a row's set have p = 0, and 0 x NaN must not
// reach that row (the oracle never reads them), so zero probabilities are skipped. Slow; only
// inputs passed with --allow-nonfinite take it.
void pv_nonfinite(const float* p, int64_t nk, const float* v, float* o, const float* alpha, int64_t dp) {
  for (int64_t r = 0; r < kFlashBq; ++r) {
    float* orow = o + r * dp;
    for (int64_t c = 0; c < dp; ++c) orow[c] *= alpha[r];
    for (int64_t j = 0; j < nk; ++j)
      if (const float pj = p[r * kFlashBk + j]; pj != 0.0f)
        for (int64_t c = 0; c < dp; ++c) orow[c] += pj * v[j * dp + c];
  }
}

void pack(const HeadProblem& p, PackedKV& out) {
  const int64_t dp = out.dp;
  out.kt.assign(out.blocks * dp * kFlashBk, 0.0f);
  out.v.assign(out.blocks * kFlashBk * dp, 0.0f);
  for (int64_t j = 0; j < p.nk; ++j) {
    const float* kr = p.k + j * p.kv_stride;
    const float* vr = p.v + j * p.kv_stride;
    float* kt = out.kt.data() + (j / kFlashBk) * dp * kFlashBk + j % kFlashBk;
    for (int64_t c = 0; c < p.d; ++c) kt[c * kFlashBk] = kr[c];
    std::copy(vr, vr + p.d, out.v.data() + j * dp);
  }
}

// Scores live in the log2 domain: q is scaled by scale * log2(e) here, once per tile.
void load_q(const HeadProblem& p, int64_t i0, int64_t rows, int64_t dp, FlashScratch& s) {
  const float qscale = p.scale * 1.4426950408889634f;
  s.q.assign(kFlashBq * dp, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* qr = p.q + (i0 + r) * p.q_stride;
    for (int64_t c = 0; c < p.d; ++c) s.q[r * dp + c] = qr[c] * qscale;
  }
}

float qk(FlashScratch& s, const PackedKV& kv, int64_t kb, float /*qscale: applied in load_q*/, float* scores) {
  const int64_t dp = kv.dp;
  for (int64_t r = 0; r < kFlashBq; r += 4)
    qk_strip<4>(s.q.data() + r * dp, dp, kv.kt.data() + kb * dp * kFlashBk, scores + r * kFlashBk);
  return 1.0f;
}

void pv(FlashScratch& s, const PackedKV& kv, int64_t kb, int64_t cols) {
  const float* v = kv.v.data() + kb * kFlashBk * kv.dp;
  if (kv.v_nonfinite) pv_nonfinite(s.s.data(), cols, v, s.o.data(), s.alpha.data(), kv.dp);
  else pv_tile_for(kv.dp)(s.s.data(), cols, v, s.o.data(), s.alpha.data());
}

bool always() { return true; }
double fma_peak() { return 2.0 * cpu_info().fp32_lanes() * cpu_info().fma_units(); }

}  // namespace

#ifdef __AVX512F__
#define LONGATTN_FP32_TILES "fp32-avx512"
#else
#define LONGATTN_FP32_TILES "fp32-avx2"
#endif
const TilePath kTileFp32 = {LONGATTN_FP32_TILES, DType::fp32, "nothing", 16, kFlashBk, false, always, fma_peak, pack, load_q, qk, pv};

}  // namespace longattn
