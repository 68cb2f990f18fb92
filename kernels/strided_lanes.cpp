// The residue classes of strided(l) with one class per vector lane. In class rho, query t and key
// t' sit at rows rho + t l and rho + t' l: for 16 consecutive classes, the rows of one t are 16
// consecutive tokens. With Q, K and V transposed to [t][c][16 classes], attention inside every
// class is vertical vector arithmetic (scores, softmax and P V lane by lane), the classes' few rows
// no longer leave tiles empty, and each class's softmax is the lane's own. Blocked 4 queries x 4
// keys (Q K^T) and 4 queries x 4 head-dim vectors (P V) as the flash tiles are.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/flash_cpu.h"
#include "kernels/flash_tiles.h"
#include "kernels/merge.h"
#include "kernels/simd.h"
#include "kernels/sparse_cpu.h"

namespace longattn {
namespace {

using simd::vf;
constexpr int64_t L = kStridedLanes;
constexpr int64_t kQueries = 4;  // queries per block (register blocking)
constexpr int64_t kKeys = 4;     // keys per Q K^T strip
constexpr int64_t kChunk = 64;   // keys per online-softmax step
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Q K^T of queries [t0, t0 + kQueries) against keys [k0, k0 + kKeys), every lane at once.
inline void qk_strip(const float* q, const float* k, int64_t d, float* s) {
  vf acc[kQueries][kKeys] = {};
  for (int64_t c = 0; c < d; ++c) {
    vf kv[kKeys];
    for (int64_t b = 0; b < kKeys; ++b) kv[b] = simd::load(k + (b * d + c) * L), simd::pin(kv[b]);
#pragma GCC unroll 4
    for (int64_t a = 0; a < kQueries; ++a) {
      const vf qv = simd::load(q + (a * d + c) * L);
      for (int64_t b = 0; b < kKeys; ++b) acc[a][b] += qv * kv[b];
    }
  }
  for (int64_t a = 0; a < kQueries; ++a)
    for (int64_t b = 0; b < kKeys; ++b) simd::store(s + (a * kChunk + b) * L, acc[a][b]);
}

// o[a][c0..c0+C) = alpha[a] o[a][..] + sum_j p[a][j] v[j][..] over n keys.
// The first chunk starts from zero (o holds nothing yet).
template <int C>
inline void pv_strip(const float* p, int64_t n, const float* v, int64_t d, const vf* alpha, float* o, bool first) {
  vf acc[kQueries][C];
  for (int64_t a = 0; a < kQueries; ++a)
    for (int c = 0; c < C; ++c) acc[a][c] = first ? vf{} : simd::load(o + (a * d + c) * L) * alpha[a];
  for (int64_t j = 0; j < n; ++j) {
    vf vv[C];
    for (int c = 0; c < C; ++c) vv[c] = simd::load(v + (j * d + c) * L), simd::pin(vv[c]);
#pragma GCC unroll 4
    for (int64_t a = 0; a < kQueries; ++a) {
      const vf pa = simd::load(p + (a * kChunk + j) * L);
      for (int c = 0; c < C; ++c) acc[a][c] += pa * vv[c];
    }
  }
  for (int64_t a = 0; a < kQueries; ++a)
    for (int c = 0; c < C; ++c) simd::store(o + (a * d + c) * L, acc[a][c]);
}

// Tokens rho0 + lane + t l of heads [h0, h1) into [head][t][c][lane], times mul. A slab's 16
// tokens are consecutive, their heads side by side: one contiguous read per slab, 16 x 16 blocks
// transposed in registers. Lanes past the sequence or past the group's classes are zero, and so
// are kQueries slabs past the last. False if a value is NaN or inf.
bool transpose_in(const float* x, int64_t row, int64_t n, int64_t l, int64_t rho0, int64_t lanes, int64_t slabs,
                  int64_t d, int64_t h0, int64_t h1, float mul, aligned_vector<float>& out) {
  const int64_t per_head = (slabs + kQueries) * d * L;
  out.resize((h1 - h0) * per_head);
  vf finite{}, rows[L];
  alignas(64) float block[L * L];
  for (int64_t h = 0; h < h1 - h0; ++h)
    std::fill(out.begin() + h * per_head + slabs * d * L, out.begin() + (h + 1) * per_head, 0.0f);
  for (int64_t t = 0; t < slabs; ++t) {
    const int64_t valid = std::min(lanes, n - (t * l + rho0));  // lanes holding a token of the group
    const float* first = x + (t * l + rho0) * row + h0 * d;
    // The next slab is l tokens on, pages away: fetch it while this one is transposed.
    for (int64_t lane = 0; lane < lanes; ++lane)
      prefetch_row(x + h0 * d, (t + 1) * l + rho0 + lane, n, row, (h1 - h0) * d);
    for (int64_t h = 0; h < h1 - h0; ++h)
      for (int64_t c0 = 0; c0 < d; c0 += 16) {
        const int64_t w = std::min<int64_t>(16, d - c0);
        for (int64_t lane = 0; lane < L; ++lane) {
          rows[lane] = lane < valid ? simd::load_first(first + lane * row + h * d + c0, w) : vf{};
          finite += rows[lane] * 0.0f;  // x * 0: NaN for NaN and inf
        }
        float* dst = out.data() + h * per_head + t * d * L + c0 * L;
        if (w == 16) {
          simd::transpose16(rows, dst, L);
          if (mul != 1.0f)
            for (int64_t c = 0; c < 16; ++c) simd::store(dst + c * L, simd::load(dst + c * L) * mul);
        } else {
          simd::transpose16(rows, block, L);
          for (int64_t c = 0; c < w; ++c) simd::store(dst + c * L, simd::load(block + c * L) * mul);
        }
      }
  }
  for (int64_t lane = 0; lane < L; ++lane)
    if (finite[lane] != 0.0f) return false;
  return true;
}

// Attention over the residue keys in one head, from its transposed Q, K, V: the normalised
// outputs replace Q in wq ([t][c][lane]), the LSE go to lse ([t][lane]).
void residue_head(const AttentionArgs& a, int64_t slabs, const vf& last_bias, float* wq, const float* wk, const float* wv,
                  float* lse, StridedLanes& w) {
  const int64_t d = a.shape.d;
  const bool causal = a.pattern.causal;
  for (int64_t t0 = 0; t0 < slabs; t0 += kQueries) {
    // Keys t' < t (causal), or every t' != t (t' = t is the band's).
    const int64_t k_end = causal ? std::min(slabs, t0 + kQueries - 1) : slabs;
    vf m[kQueries], lsum[kQueries];
    for (int64_t q = 0; q < kQueries; ++q) m[q] = simd::splat(kNegInf), lsum[q] = vf{};
    for (int64_t k0 = 0; k0 < k_end; k0 += kChunk) {  // at least one chunk: k_end >= 1
      const int64_t kc = std::min(kChunk, k_end - k0);
      for (int64_t j = 0; j < kc; j += kKeys)
        qk_strip(wq + t0 * d * L, wk + (k0 + j) * d * L, d, w.s.data() + j * L);
      vf alpha[kQueries];
      for (int64_t q = 0; q < kQueries; ++q) {
        float* s = w.s.data() + q * kChunk * L;
        const int64_t t = t0 + q;
        vf mx = m[q];
        for (int64_t j = 0; j < kc; ++j) {
          const int64_t tk = k0 + j;
          vf x = simd::load(s + j * L);
          if (causal ? tk >= t : tk == t) x = simd::splat(kNegInf);
          if (tk == slabs - 1) x += last_bias;
          simd::store(s + j * L, x);
          mx = simd::vmax(mx, x);
        }
        // Lanes with nothing visible yet keep max -inf: alpha 1 and probabilities 0, not NaN.
        const vf none = mx == kNegInf ? simd::splat(1.0f) : vf{};
        const vf base = none != 0 ? vf{} : mx;
        alpha[q] = none != 0 ? none : simd::exp2(m[q] - base);
        vf sum{};
        for (int64_t j = 0; j < kc; ++j) {
          const vf e = simd::exp2(simd::load(s + j * L) - base);
          simd::store(s + j * L, e);
          sum += e;
        }
        lsum[q] = lsum[q] * alpha[q] + sum;
        m[q] = mx;
      }
      const float* v = wv + k0 * d * L;
      int64_t c = 0;
      for (; c + 4 <= d; c += 4) pv_strip<4>(w.s.data(), kc, v + c * L, d, alpha, w.o.data() + c * L, k0 == 0);
      for (; c < d; ++c) pv_strip<1>(w.s.data(), kc, v + c * L, d, alpha, w.o.data() + c * L, k0 == 0);
    }
    // Normalised outputs over the block's queries (no longer needed) and their LSE: merged into
    // the band's rows once every head is done.
    for (int64_t q = 0; q < kQueries && t0 + q < slabs; ++q) {
      const vf inv = lsum[q] > 0 ? 1.0f / lsum[q] : vf{};
      for (int64_t c = 0; c < d; ++c) simd::store(wq + ((t0 + q) * d + c) * L, simd::load(w.o.data() + (q * d + c) * L) * inv);
      for (int64_t lane = 0; lane < L; ++lane)
        lse[(t0 + q) * L + lane] = m[q][lane] == kNegInf ? kNegInf : (m[q][lane] + std::log2(lsum[q][lane])) * 0.6931471805599453f;
    }
  }
}

}  // namespace

bool strided_residue_lanes(const AttentionArgs& a, int64_t b, int64_t rho0, int64_t h0, int64_t h1, StridedLanes& w) {
  const Shape sh = a.shape;
  const int64_t l = a.pattern.stride, d = sh.d, row = sh.H * d, kv_row = sh.kv_heads() * d, n = sh.N;
  const int64_t lanes = std::min(L, l - rho0), slabs = (n - rho0 + l - 1) / l, per_head = (slabs + kQueries) * d * L;
  const int64_t G = sh.group(), g0 = h0 / G, g1 = (h1 - 1) / G + 1;  // the KV heads of heads [h0, h1) (GQA)
  const float* q = a.q + b * n * row;
  const float qscale = a.scale * 1.4426950408889634f;  // scores in the log2 domain
  if (!transpose_in(q, row, n, l, rho0, lanes, slabs, d, h0, h1, qscale, w.q) ||
      !transpose_in(a.k + b * n * kv_row, kv_row, n, l, rho0, lanes, slabs, d, g0, g1, 1.0f, w.k) ||
      !transpose_in(a.v + b * n * kv_row, kv_row, n, l, rho0, lanes, slabs, d, g0, g1, 1.0f, w.v))
    return false;
  w.s.resize(kQueries * kChunk * L);
  w.o.resize(kQueries * d * L);
  w.row.resize(L * d);
  // Keys of the last slab past the sequence: -inf (other slabs are whole).
  vf last_bias{};
  for (int64_t lane = 0; lane < L; ++lane)
    if ((slabs - 1) * l + rho0 + lane >= n) last_bias[lane] = kNegInf;
  w.lse.resize((h1 - h0) * slabs * L);
  for (int64_t h = h0; h < h1; ++h)
    residue_head(a, slabs, last_bias, w.q.data() + (h - h0) * per_head, w.k.data() + (h / G - g0) * per_head,
                 w.v.data() + (h / G - g0) * per_head, w.lse.data() + (h - h0) * slabs * L, w);
  // Into the band's rows: a slab's outputs of one head transposed back to 16 token rows (16 x 16
  // blocks in registers where d is a multiple of 16, else lane by lane), then merged row by row.
  for (int64_t t = 0; t < slabs; ++t)
    for (int64_t h = h0; h < h1; ++h) {
      const float* o = w.q.data() + (h - h0) * per_head + t * d * L;
      if (d % 16 == 0) {
        vf dims[L];
        for (int64_t c0 = 0; c0 < d; c0 += 16) {
          for (int64_t c = 0; c < 16; ++c) dims[c] = simd::load(o + (c0 + c) * L);
          simd::transpose16(dims, w.row.data() + c0, d);  // row of lane r at w.row + r d
        }
      } else {
        for (int64_t lane = 0; lane < L; ++lane)
          for (int64_t c = 0; c < d; ++c) w.row[lane * d + c] = o[c * L + lane];
      }
      for (int64_t lane = 0; lane < lanes; ++lane) {
        const int64_t i = t * l + rho0 + lane;
        if (i >= n) break;
        const float part = w.lse[((h - h0) * slabs + t) * L + lane];
        if (part == kNegInf) continue;  // no residue key
        merge_row(a.o + (b * n + i) * row + h * d, a.lse[(b * sh.H + h) * n + i], w.row.data() + lane * d, part, d);
      }
    }
  return true;
}

}  // namespace longattn
