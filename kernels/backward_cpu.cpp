// flash_backward and dilated_backward (kernels/backward.h) on the CPU: FlashAttention-2's backward
// on 64 x 64 tiles, in two passes so that every output row has one writer and no atomics are
// needed: by key block (dK, dV gather over the queries that see the block) and by query block (dQ
// gathers over the keys). Each tile recomputes P = exp(s - LSE) from the forward's LSE, and
// dS = P ∘ (dP - D) with D = rowsum(dO ∘ O) computed once per row. Plain loops the compiler
// vectorises; the fast paths of the forward (tile paths, packed K/V) are not used yet.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "kernels/backward.h"
#include "kernels/dilated_cpu.h"

namespace longattn {
namespace {

constexpr int64_t kTile = 64;  // query rows and keys of a tile
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// One head's gradient problem, strided views as HeadProblem's (kernels/flash_cpu.h): query-side
// rows (Q, dO, dQ) q_stride apart, key-side rows (K, V, dK, dV) kv_stride apart, the forward's LSE
// and D = rowsum(dO ∘ O) per query row, lse_stride apart. dQ, dK and dV are accumulated into.
struct GradProblem {
  const float *q = nullptr, *dout = nullptr;
  float* dq = nullptr;
  int64_t q_stride = 0, nq = 0;
  const float *k = nullptr, *v = nullptr;
  float *dk = nullptr, *dv = nullptr;
  int64_t kv_stride = 0, nk = 0;
  const float *lse = nullptr, *delta = nullptr;
  int64_t lse_stride = 1;
  int64_t d = 0;
  float scale = 0;
  const Pattern* mask = nullptr;  // single-level, in its own coordinates
  int64_t q_pos0 = 0, k_pos0 = 0, mask_n = 0, mask_head = 0;
};

struct TileScratch {
  std::vector<float> kt, vt, p, ds;  // K and V of the tile transposed [d][kTile]; P and dS [kTile][kTile]
};

// P and dS of queries [i0, i0 + rows) x keys [j0, j0 + cols) into s.p and s.ds (zero where masked,
// past cols, or in rows that see no key). False when the mask leaves the tile empty.
bool tile_grads(const GradProblem& g, int64_t i0, int64_t rows, int64_t j0, int64_t cols, TileScratch& s) {
  const int64_t qpos = g.q_pos0 + i0, kpos = g.k_pos0 + j0, d = g.d;
  const BlockKind kind = g.mask->classify(qpos, qpos + rows, kpos, kpos + cols);
  if (kind == BlockKind::empty) return false;
  s.kt.assign(d * kTile, 0.0f), s.vt.assign(d * kTile, 0.0f);
  s.p.assign(kTile * kTile, 0.0f), s.ds.assign(kTile * kTile, 0.0f);
  for (int64_t j = 0; j < cols; ++j)
    for (int64_t c = 0; c < d; ++c) {
      s.kt[c * kTile + j] = g.k[(j0 + j) * g.kv_stride + c];
      s.vt[c * kTile + j] = g.v[(j0 + j) * g.kv_stride + c];
    }
  float srow[kTile], dprow[kTile];
  for (int64_t r = 0; r < rows; ++r) {
    const float lse = g.lse[(i0 + r) * g.lse_stride];
    if (lse == kNegInf) continue;  // the row sees no key at all
    const float* q = g.q + (i0 + r) * g.q_stride;
    const float* go = g.dout + (i0 + r) * g.q_stride;
    std::fill(srow, srow + kTile, 0.0f);
    std::fill(dprow, dprow + kTile, 0.0f);
    for (int64_t c = 0; c < d; ++c) {
      const float qc = q[c], gc = go[c];
      const float* kc = s.kt.data() + c * kTile;
      const float* vc = s.vt.data() + c * kTile;
      for (int64_t j = 0; j < kTile; ++j) srow[j] += qc * kc[j], dprow[j] += gc * vc[j];
    }
    const float delta = g.delta[(i0 + r) * g.lse_stride];
    float* p = s.p.data() + r * kTile;
    float* ds = s.ds.data() + r * kTile;
    for (int64_t j = 0; j < cols; ++j) {
      const bool keep = kind == BlockKind::full || g.mask->contains(0, g.mask_head, qpos + r, kpos + j, g.mask_n);
      p[j] = keep ? std::exp(g.scale * srow[j] - lse) : 0.0f;
      ds[j] = p[j] * (dprow[j] - delta);
    }
  }
  return true;
}

// Key block j0: dV += P^T dO and dK += scale dS^T Q over every query block.
void key_block(const GradProblem& g, int64_t j0, TileScratch& s) {
  const int64_t cols = std::min(kTile, g.nk - j0), d = g.d;
  for (int64_t i0 = 0; i0 < g.nq; i0 += kTile) {
    const int64_t rows = std::min(kTile, g.nq - i0);
    if (!tile_grads(g, i0, rows, j0, cols, s)) continue;
    for (int64_t j = 0; j < cols; ++j) {
      float* dv = g.dv + (j0 + j) * g.kv_stride;
      float* dk = g.dk + (j0 + j) * g.kv_stride;
      for (int64_t r = 0; r < rows; ++r) {
        const float p = s.p[r * kTile + j], ds = s.ds[r * kTile + j] * g.scale;
        if (p == 0.0f && ds == 0.0f) continue;
        const float* go = g.dout + (i0 + r) * g.q_stride;
        const float* q = g.q + (i0 + r) * g.q_stride;
        for (int64_t c = 0; c < d; ++c) dv[c] += p * go[c], dk[c] += ds * q[c];
      }
    }
  }
}

// Query block i0: dQ += scale dS K over every key block.
void query_block(const GradProblem& g, int64_t i0, TileScratch& s) {
  const int64_t rows = std::min(kTile, g.nq - i0), d = g.d;
  for (int64_t j0 = 0; j0 < g.nk; j0 += kTile) {
    const int64_t cols = std::min(kTile, g.nk - j0);
    if (!tile_grads(g, i0, rows, j0, cols, s)) continue;
    for (int64_t r = 0; r < rows; ++r) {
      float* dq = g.dq + (i0 + r) * g.q_stride;
      for (int64_t j = 0; j < cols; ++j) {
        const float ds = s.ds[r * kTile + j] * g.scale;
        if (ds == 0.0f) continue;
        const float* k = g.k + (j0 + j) * g.kv_stride;
        for (int64_t c = 0; c < d; ++c) dq[c] += ds * k[c];
      }
    }
  }
}

// Every problem of the list (they write disjoint rows), both passes, on `threads` threads.
void grad_problems(std::span<const GradProblem> problems, int threads) {
  std::vector<int64_t> kstart(problems.size() + 1, 0), qstart(problems.size() + 1, 0);
  for (size_t i = 0; i < problems.size(); ++i) {
    kstart[i + 1] = kstart[i] + (problems[i].nk + kTile - 1) / kTile;
    qstart[i + 1] = qstart[i] + (problems[i].nq + kTile - 1) / kTile;
  }
  auto owner = [](const std::vector<int64_t>& start, int64_t t) {
    return std::upper_bound(start.begin(), start.end(), t) - start.begin() - 1;
  };
#pragma omp parallel num_threads(threads)
  {
    TileScratch s;
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < kstart.back(); ++t) {
      const int64_t i = owner(kstart, t);
      key_block(problems[i], (t - kstart[i]) * kTile, s);
    }
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < qstart.back(); ++t) {
      const int64_t i = owner(qstart, t);
      query_block(problems[i], (t - qstart[i]) * kTile, s);
    }
  }
}

// Zeroes dQ, dK, dV and returns D = rowsum(dO ∘ O), [B, H, N].
std::vector<float> start_backward(const BackwardArgs& ba, int threads) {
  const AttentionArgs& a = ba.fwd;
  const Shape sh = a.shape;
  const int64_t ld = sh.H * sh.d;
  std::fill_n(ba.dq, sh.numel(), 0.0f);
  std::fill_n(ba.dk, sh.numel(), 0.0f);
  std::fill_n(ba.dv, sh.numel(), 0.0f);
  std::vector<float> delta(sh.B * sh.H * sh.N);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < sh.B * sh.H * sh.N; ++t) {
    const int64_t b = t / (sh.H * sh.N), h = (t / sh.N) % sh.H, i = t % sh.N;
    const int64_t at = (b * sh.N + i) * ld + h * sh.d;
    float acc = 0;
    for (int64_t c = 0; c < sh.d; ++c) acc += ba.dout[at + c] * a.o[at + c];
    delta[t] = acc;
  }
  return delta;
}

}  // namespace

void flash_backward(const BackwardArgs& ba) {
  const AttentionArgs& a = ba.fwd;
  const Shape sh = a.shape;
  const int64_t ld = sh.H * sh.d;
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
  const std::vector<float> delta = start_backward(ba, threads);
  std::vector<GradProblem> heads;
  for (int64_t b = 0; b < sh.B; ++b)
    for (int64_t h = 0; h < sh.H; ++h) {
      const int64_t at = b * sh.N * ld + h * sh.d, row = (b * sh.H + h) * sh.N;
      heads.push_back({a.q + at, ba.dout + at, ba.dq + at, ld, sh.N, a.k + at, a.v + at, ba.dk + at, ba.dv + at, ld,
                       sh.N, a.lse + row, delta.data() + row, 1, sh.d, a.scale, &a.pattern, 0, 0, sh.N, a.head0 + h});
    }
  grad_problems(heads, threads);
}

void dilated_backward(const BackwardArgs& ba) {
  const AttentionArgs& a = ba.fwd;
  const Shape sh = a.shape;
  const int64_t ld = sh.H * sh.d;
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
  const std::vector<float> delta = start_backward(ba, threads);
  // Inside a segment the kept rows attend densely (causal by kept index, as kept positions ascend).
  Pattern dense;
  dense.causal = a.pattern.causal;
  // Per level: P = exp(s - LSE) with the merged LSE is this level's share of the merged softmax,
  // so the levels' gradients add up. A query belongs to one segment per level: the segments of a
  // level write disjoint rows.
  for (const DilatedLevel& lv : a.pattern.dilated_levels(sh.N)) {
    std::vector<GradProblem> segments;
    const int64_t stride = std::min(lv.r, sh.N) * ld;  // r >= N keeps one row: the stride is never stepped
    for (int64_t b = 0; b < sh.B; ++b)
      for (int64_t h = 0; h < sh.H; ++h)
        for (const DilatedSegment& seg : dilated_segments(lv, a.head0 + h, 0, sh.N, sh.N)) {
          const int64_t at = (b * sh.N + seg.first) * ld + h * sh.d, row = (b * sh.H + h) * sh.N + seg.first;
          segments.push_back({a.q + at, ba.dout + at, ba.dq + at, stride, seg.count, a.k + at, a.v + at, ba.dk + at,
                              ba.dv + at, stride, seg.count, a.lse + row, delta.data() + row, std::min(lv.r, sh.N),
                              sh.d, a.scale, &dense, 0, 0, seg.count, 0});
        }
    grad_problems(segments, threads);
  }
}

}  // namespace longattn
