#include "kernels/flash_cpu.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/simd.h"
#include "kernels/sparse_cpu.h"

namespace longattn {
namespace {

using simd::vf;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// s[R][Bk] = qp[R][dp] . kt[dp][Bk] for R query rows: R x 4 accumulators, 64 keys at a time.
template <int R>
inline void qk_strip(const float* qp, int64_t dp, const float* kt, float* s) {
  for (int64_t jc = 0; jc < kFlashBk; jc += 64) {
    vf acc[R][4] = {};
    const float* kp = kt + jc;
    for (int64_t c = 0; c < dp; ++c, kp += kFlashBk) {
      const vf k0 = simd::load(kp), k1 = simd::load(kp + 16), k2 = simd::load(kp + 32), k3 = simd::load(kp + 48);
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

// o[R][dp] = alpha[r] * o[r] + p[R][:nk] . v[nk][dp], DV = dp / 16 vectors per row.
template <int R, int DV>
inline void pv_strip(const float* p, int64_t nk, const float* v, float* o, const float* alpha) {
  constexpr int64_t dp = DV * 16;
  vf acc[R][DV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const vf a = simd::splat(alpha[r]);
    for (int c = 0; c < DV; ++c) acc[r][c] = simd::load(o + r * dp + 16 * c) * a;
  }
  for (int64_t j = 0; j < nk; ++j) {
    vf vv[DV];
    for (int c = 0; c < DV; ++c) vv[c] = simd::load(v + j * dp + 16 * c);
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
  // Rows per strip: as many as keep R x DV accumulators within ~24 of the 32 vector registers.
  constexpr int R = DV <= 3 ? 8 : DV <= 6 ? 4 : DV <= 8 ? 2 : 1;
  static_assert(kFlashBq % R == 0);
  for (int64_t r = 0; r < kFlashBq; r += R)
    pv_strip<R, DV>(p + r * kFlashBk, nk, v, o + r * DV * 16, alpha + r);
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

}  // namespace

void pack_kv(const HeadProblem& p, PackedKV& out) {
  out.nk = p.nk;
  out.dp = round_up(p.d, 16);
  out.blocks = (p.nk + kFlashBk - 1) / kFlashBk;
  const int64_t dp = out.dp, rows = out.blocks * kFlashBk;
  out.kt.assign(out.blocks * dp * kFlashBk, 0.0f);
  out.v.assign(rows * dp, 0.0f);
  for (int64_t j = 0; j < p.nk; ++j) {
    const float* kr = p.k + j * p.kv_stride;
    const float* vr = p.v + j * p.kv_stride;
    float* kt = out.kt.data() + (j / kFlashBk) * dp * kFlashBk + j % kFlashBk;
    for (int64_t c = 0; c < p.d; ++c) kt[c * kFlashBk] = kr[c];
    std::copy(vr, vr + p.d, out.v.data() + j * dp);
  }
  out.v_nonfinite = false;
  for (float x : out.v) out.v_nonfinite |= !std::isfinite(x);
}

void flash_rows(const HeadProblem& p, const PackedKV& kv, int64_t q_begin, int64_t q_end, FlashScratch& s) {
  const int64_t dp = kv.dp;
  const PvTile pv = pv_tile_for(dp);
  s.q.resize(kFlashBq * dp);
  s.s.resize(kFlashBq * kFlashBk);
  s.o.resize(kFlashBq * dp);
  s.m.resize(kFlashBq);
  s.l.resize(kFlashBq);
  s.alpha.resize(kFlashBq);
  // Scores live in the log2 domain: q is scaled by scale * log2(e) once, softmax uses exp2.
  const float qscale = p.scale * kLog2e;

  for (int64_t i0 = q_begin; i0 < q_end; i0 += kFlashBq) {
    const int64_t rows = std::min(kFlashBq, q_end - i0);
    std::fill(s.q.begin(), s.q.end(), 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      const float* qr = p.q + (i0 + r) * p.q_stride;
      for (int64_t c = 0; c < p.d; ++c) s.q[r * dp + c] = qr[c] * qscale;
    }
    std::fill(s.o.begin(), s.o.end(), 0.0f);
    std::fill(s.m.begin(), s.m.end(), kNegInf);
    std::fill(s.l.begin(), s.l.end(), 0.0f);
    const int64_t qpos = p.q_pos0 + i0;

    for (int64_t kb = 0; kb < kv.blocks; ++kb) {
      const int64_t j0 = kb * kFlashBk, cols = std::min(kFlashBk, kv.nk - j0);
      const int64_t kpos = p.k_pos0 + j0;
      const BlockKind kind = p.mask ? p.mask->classify(qpos, qpos + rows, kpos, kpos + cols) : BlockKind::full;
      if (kind == BlockKind::empty) continue;

      for (int64_t r = 0; r < kFlashBq; r += 4)
        qk_strip<4>(s.q.data() + r * dp, dp, kv.kt.data() + kb * dp * kFlashBk, s.s.data() + r * kFlashBk);

      // Online softmax, row by row: mask, new running max, rescale factor, probabilities.
      for (int64_t r = 0; r < kFlashBq; ++r) {
        float* srow = s.s.data() + r * kFlashBk;
        if (kind == BlockKind::partial)
          for (int64_t j = 0; j < cols; ++j)
            if (!p.mask->contains(0, p.mask_head, qpos + r, kpos + j, p.mask_n)) srow[j] = kNegInf;
        for (int64_t j = cols; j < kFlashBk; ++j) srow[j] = kNegInf;
        vf mx = simd::load(srow);
        for (int64_t j = 16; j < kFlashBk; j += 16) mx = simd::vmax(mx, simd::load(srow + j));
        const float m_new = simd::max_nan(s.m[r], simd::hmax(mx));
        if (m_new == kNegInf) {  // nothing visible yet in this row
          s.alpha[r] = 1.0f;
          std::fill(srow, srow + kFlashBk, 0.0f);
          continue;
        }
        s.alpha[r] = std::exp2(s.m[r] - m_new);
        vf sum{};
        for (int64_t j = 0; j < kFlashBk; j += 16) {
          const vf e = simd::exp2(simd::load(srow + j) - m_new);
          simd::store(srow + j, e);
          sum += e;
        }
        s.l[r] = s.l[r] * s.alpha[r] + simd::hsum(sum);
        s.m[r] = m_new;
      }
      if (kv.v_nonfinite) pv_nonfinite(s.s.data(), cols, kv.v.data() + j0 * dp, s.o.data(), s.alpha.data(), dp);
      else pv(s.s.data(), cols, kv.v.data() + j0 * dp, s.o.data(), s.alpha.data());
    }

    for (int64_t r = 0; r < rows; ++r) {
      const float l = s.l[r];
      const bool nan = l != l;  // a non-finite input reached this row: NaN in O and LSE, as in the oracle
      const float inv = nan ? l : l > 0 ? 1.0f / l : 0.0f;
      float* orow = p.o + (i0 + r) * p.o_stride;
      for (int64_t c = 0; c < p.d; ++c) orow[c] = s.o[r * dp + c] * inv;
      if (p.lse) p.lse[i0 + r] = nan ? l : l > 0 ? (s.m[r] + std::log2(l)) * kLn2 : kNegInf;
    }
  }
}

void flash_head(const HeadProblem& p, PackedKV& kv, FlashScratch& s) {
  pack_kv(p, kv);
  flash_rows(p, kv, 0, p.nq, s);
}

std::string flash_unsupported(const Pattern& p, const Shape& s) {
  if (p.kind == PatternKind::dilated) return "flash runs single-level patterns; dilated runs on the `dilated` kernel";
  if (s.d > kFlashMaxD) return "flash supports head dims up to " + std::to_string(kFlashMaxD);
  return {};
}

void flash_attention(const AttentionArgs& a) {
  // Strided and fixed patterns are not banded: as disjoint dense pieces they cost their pairs,
  // as masked blocks they would cost dense attention. (The internal block-diagonal `fixed` with
  // no summary columns is banded and runs here directly.)
  if (a.pattern.kind == PatternKind::strided) return strided_attention(a);
  if (a.pattern.kind == PatternKind::fixed && a.pattern.summary > 0) return fixed_attention(a);
  flash_attention_at(a, a.k, a.v, a.shape.N, 0, 0, a.shape.N);
}

void flash_attention_at(const AttentionArgs& a, const float* k, const float* v, int64_t nk, int64_t q_pos0,
                        int64_t k_pos0, int64_t n_mask) {
  const Shape sh = a.shape;
  const int64_t row = sh.H * sh.d;  // stride between consecutive tokens of one head
  auto head = [&](int64_t b, int64_t h) {
    HeadProblem p;
    p.q = a.q + b * sh.N * row + h * sh.d;
    p.o = a.o + b * sh.N * row + h * sh.d;
    p.k = k + b * nk * row + h * sh.d;
    p.v = v + b * nk * row + h * sh.d;
    p.q_stride = p.kv_stride = p.o_stride = row;
    p.nq = sh.N;
    p.nk = nk;
    p.lse = a.lse ? a.lse + (b * sh.H + h) * sh.N : nullptr;
    p.d = sh.d;
    p.scale = a.scale;
    p.mask = &a.pattern;
    p.q_pos0 = q_pos0;
    p.k_pos0 = k_pos0;
    p.mask_n = n_mask;
    p.mask_head = a.head0 + h;
    return p;
  };
  const int64_t heads = sh.B * sh.H, tiles = (sh.N + kFlashBq - 1) / kFlashBq;
  std::vector<PackedKV> packed(heads);
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(dynamic)
    for (int64_t bh = 0; bh < heads; ++bh) pack_kv(head(bh / sh.H, bh % sh.H), packed[bh]);
    FlashScratch scratch;
    // Reverse tile order first: with causal masks the last tiles are the longest.
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < heads * tiles; ++t) {
      const int64_t bh = t % heads, tile = tiles - 1 - t / heads;
      const int64_t q0 = tile * kFlashBq;
      flash_rows(head(bh / sh.H, bh % sh.H), packed[bh], q0, std::min(sh.N, q0 + kFlashBq), scratch);
    }
  }
}

}  // namespace longattn
