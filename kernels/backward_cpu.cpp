// flash_backward and dilated_backward (kernels/backward.h) on the CPU: FlashAttention-2's backward
// on 64 x 64 tiles, in two passes so that every output row has one writer and no atomics are
// needed: by key block (dK, dV gather over the queries that see the block) and by query block (dQ
// gathers over the keys). Each tile recomputes P = exp(s - LSE) from the forward's LSE, and
// dS = P ∘ (dP - D) with D = rowsum(dO ∘ O) computed once per row. The tile products are sgemm
// calls on strided views (the forward's tile paths and packed K/V are not used yet).
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "kernels/backward.h"
#include "kernels/dilated_cpu.h"
#include "kernels/simd.h"

namespace longattn {
namespace {

constexpr int64_t kTile = 64;  // query rows and keys of a tile
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;

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
  std::vector<float> p, ds;  // P, then dP and dS: [kTile][kTile], rows and cols of the tile
};

// P and dS of queries [i0, i0 + rows) x keys [j0, j0 + cols) into s.p and s.ds (zero where masked,
// past cols, or in rows that see no key). False when the mask leaves the tile empty. The products
// are sgemm calls: inside the parallel region OpenBLAS runs them on the calling thread.
bool tile_grads(const GradProblem& g, int64_t i0, int64_t rows, int64_t j0, int64_t cols, TileScratch& s) {
  const int64_t qpos = g.q_pos0 + i0, kpos = g.k_pos0 + j0, d = g.d;
  const BlockKind kind = g.mask->classify(qpos, qpos + rows, kpos, kpos + cols);
  if (kind == BlockKind::empty) return false;
  s.p.assign(kTile * kTile, 0.0f), s.ds.assign(kTile * kTile, 0.0f);
  // S = scale Q K^T and dP = dO V^T.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, d, g.scale, g.q + i0 * g.q_stride, g.q_stride,
              g.k + j0 * g.kv_stride, g.kv_stride, 0.0f, s.p.data(), kTile);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, d, 1.0f, g.dout + i0 * g.q_stride, g.q_stride,
              g.v + j0 * g.kv_stride, g.kv_stride, 0.0f, s.ds.data(), kTile);
  const simd::vf log2e = simd::splat(kLog2e);
  for (int64_t r = 0; r < rows; ++r) {
    const float lse = g.lse[(i0 + r) * g.lse_stride];
    float* p = s.p.data() + r * kTile;
    float* ds = s.ds.data() + r * kTile;
    if (lse == kNegInf) {  // the row sees no key at all
      std::fill(p, p + kTile, 0.0f), std::fill(ds, ds + kTile, 0.0f);
      continue;
    }
    // P = exp(S - LSE) as exp2 on 16 lanes (the forward's polynomial), then the mask.
    const simd::vf sub = simd::splat(lse * kLog2e);
    for (int64_t j = 0; j < kTile; j += 16) simd::store(p + j, simd::exp2(simd::load(p + j) * log2e - sub));
    for (int64_t j = cols; j < kTile; ++j) p[j] = 0.0f;
    if (kind == BlockKind::partial)
      for (int64_t j = 0; j < cols; ++j)
        if (!g.mask->contains(0, g.mask_head, qpos + r, kpos + j, g.mask_n)) p[j] = 0.0f;
    const simd::vf delta = simd::splat(g.delta[(i0 + r) * g.lse_stride]);
    for (int64_t j = 0; j < kTile; j += 16)
      simd::store(ds + j, simd::load(p + j) * (simd::load(ds + j) - delta));  // dS = P (dP - D)
  }
  return true;
}

// Key block j0: dV += P^T dO and dK += scale dS^T Q over every query block.
void key_block(const GradProblem& g, int64_t j0, TileScratch& s) {
  const int64_t cols = std::min(kTile, g.nk - j0);
  for (int64_t i0 = 0; i0 < g.nq; i0 += kTile) {
    const int64_t rows = std::min(kTile, g.nq - i0);
    if (!tile_grads(g, i0, rows, j0, cols, s)) continue;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, g.d, rows, 1.0f, s.p.data(), kTile,
                g.dout + i0 * g.q_stride, g.q_stride, 1.0f, g.dv + j0 * g.kv_stride, g.kv_stride);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, g.d, rows, g.scale, s.ds.data(), kTile,
                g.q + i0 * g.q_stride, g.q_stride, 1.0f, g.dk + j0 * g.kv_stride, g.kv_stride);
  }
}

// Query block i0: dQ += scale dS K over every key block.
void query_block(const GradProblem& g, int64_t i0, TileScratch& s) {
  const int64_t rows = std::min(kTile, g.nq - i0);
  for (int64_t j0 = 0; j0 < g.nk; j0 += kTile) {
    const int64_t cols = std::min(kTile, g.nk - j0);
    if (!tile_grads(g, i0, rows, j0, cols, s)) continue;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, g.d, cols, g.scale, s.ds.data(), kTile,
                g.k + j0 * g.kv_stride, g.kv_stride, 1.0f, g.dq + i0 * g.q_stride, g.q_stride);
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
  const Shape sh = ba.fwd.shape;
  std::fill_n(ba.dq, sh.numel(), 0.0f);
  std::fill_n(ba.dk, sh.numel(), 0.0f);
  std::fill_n(ba.dv, sh.numel(), 0.0f);
  std::vector<float> delta(sh.B * sh.H * sh.N);
  row_deltas(ba.dout, ba.fwd.o, sh.B, sh.N, sh.H, sh.d, delta.data(), threads);
  return delta;
}

}  // namespace

void row_deltas(const float* dout, const float* o, int64_t B, int64_t rows, int64_t H, int64_t d, float* delta,
                int threads) {
#pragma omp parallel for num_threads(threads > 0 ? threads : omp_get_max_threads()) schedule(static)
  for (int64_t t = 0; t < B * H * rows; ++t) {
    const int64_t b = t / (H * rows), h = (t / rows) % H, i = t % rows;
    const int64_t at = ((b * rows + i) * H + h) * d;
    float acc = 0;
    for (int64_t c = 0; c < d; ++c) acc += dout[at + c] * o[at + c];
    delta[t] = acc;
  }
}

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

void step_backward_cpu(std::span<const StepGradBlock> blocks, int64_t d, float scale, DType, const Pattern& mask,
                       int threads_wanted) {
  std::vector<GradProblem> problems;
  for (const StepGradBlock& b : blocks) {
    const StepBlock& f = b.fwd;
    if (f.nq == 0 || f.nk == 0) continue;
    problems.push_back({static_cast<const float*>(f.q), b.dout, b.dq, f.q_stride, f.nq, static_cast<const float*>(f.k),
                        static_cast<const float*>(f.v), b.dk, b.dv, f.kv_stride, f.nk, f.lse, b.delta, f.lse_stride, d,
                        scale, &mask, f.q_pos0, f.k_pos0, f.n_mask, f.head});
  }
  grad_problems(problems, threads_wanted > 0 ? threads_wanted : omp_get_max_threads());
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
