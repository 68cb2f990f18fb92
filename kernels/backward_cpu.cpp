// flash_backward and dilated_backward (kernels/backward.h) on the CPU: FlashAttention-2's backward
// on tiles of 64 queries x 128 keys. A key block is packed once and visited by every query tile;
// each tile recomputes P = exp(s - LSE) from the forward's LSE and dS = P ∘ (dP - D), with
// D = rowsum(dO ∘ O) computed once per row, and feeds dQ, dK and dV from them (five register-
// blocked products a tile). Tasks own key blocks, so dK and dV rows have one writer; dQ rows too,
// or parts of dQ are summed at the end. No atomics.
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "kernels/backward.h"
#include "kernels/dilated_cpu.h"
#include "kernels/simd.h"
#include "kernels/sparse_cpu.h"

namespace longattn {
namespace {

constexpr int64_t kRows = 64;   // query rows of a tile
constexpr int64_t kKeys = 128;  // keys of a tile (a key block)
using simd::vf;
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

// ---------------------------------------------------------------------------- the products
// Every product of a tile is one shape: c[m][16-lane vectors] += sum_t a(m, t) b[t][vectors], with
// a(m, t) = a[m * ars + t * ats] broadcast and b's rows loaded as vectors. a may be read across
// (P^T, dS^T: ars = 1), so no operand is transposed for the products that need it.
#ifdef __AVX512F__
constexpr int kStripRows = 6, kStripVecs = 4;  // 24 accumulators + 4 loaded vectors of 32 zmm
#else
constexpr int kStripRows = 2, kStripVecs = 2;  // a 16-lane vf is two ymm: 8 + 4 of 16
#endif

template <bool Add, int R, int W>
void strip(const float* a, int64_t ars, int64_t ats, const float* b, int64_t bs, int64_t T, float* c, int64_t cs) {
  vf acc[R][W];
  for (int r = 0; r < R; ++r)
    for (int w = 0; w < W; ++w) acc[r][w] = Add ? simd::load(c + r * cs + 16 * w) : vf{};
  for (int64_t t = 0; t < T; ++t) {
    vf bv[W];
    for (int w = 0; w < W; ++w) bv[w] = simd::load(b + t * bs + 16 * w), simd::pin(bv[w]);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const vf x = simd::splat(a[r * ars + t * ats]);
      for (int w = 0; w < W; ++w) acc[r][w] += x * bv[w];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int w = 0; w < W; ++w) simd::store(c + r * cs + 16 * w, acc[r][w]);
}

using StripFn = void (*)(const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*, int64_t);
template <bool Add, int R, int... W>
constexpr std::array<StripFn, kStripVecs> strips_of(std::integer_sequence<int, W...>) {
  return {&strip<Add, R, W + 1>...};
}
template <bool Add, int... R>
constexpr std::array<std::array<StripFn, kStripVecs>, kStripRows> strip_table(std::integer_sequence<int, R...>) {
  return {strips_of<Add, R + 1>(std::make_integer_sequence<int, kStripVecs>{})...};
}
constexpr auto kStripsSet = strip_table<false>(std::make_integer_sequence<int, kStripRows>{});
constexpr auto kStripsAdd = strip_table<true>(std::make_integer_sequence<int, kStripRows>{});

// c[m][vecs x 16] (+)= a(m, t) b[t][vecs x 16] over m < M, t < T: added to c, or replacing it.
void product(bool add, const float* a, int64_t ars, int64_t ats, const float* b, int64_t bs, int64_t T, float* c,
             int64_t cs, int64_t M, int64_t vecs) {
  const auto& strips = add ? kStripsAdd : kStripsSet;
  for (int64_t m = 0; m < M; m += kStripRows)
    for (int64_t v = 0; v < vecs; v += kStripVecs)
      strips[std::min<int64_t>(kStripRows, M - m) - 1][std::min<int64_t>(kStripVecs, vecs - v) - 1](
          a + m * ars, ars, ats, b + 16 * v, bs, T, c + m * cs + 16 * v, cs);
}

// ------------------------------------------------------------------------------ the tiles
// A thread's tile buffers: a key block packed (K^T and V^T for the scores, K for dQ) with its dK
// and dV accumulators, a query tile packed (Q, dO) with its dQ part, and the tile's P and dS.
// Rows are dp = d rounded up to 16 floats, zero past d; key columns zero past the block's keys.
struct TileScratch {
  int64_t dp = 0;
  std::vector<float> kt, vt, kp, dk, dv;  // [d][kKeys] x 2, [kKeys][dp] x 3
  std::vector<float> qp, dop, dq;         // [kRows][dp]
  std::vector<float> p, ds;               // [kRows][kKeys]
  explicit TileScratch(int64_t d) : dp((d + 15) / 16 * 16) {
    for (auto* x : {&kt, &vt}) x->assign(d * kKeys, 0.0f);
    for (auto* x : {&kp, &dk, &dv}) x->assign(kKeys * dp, 0.0f);
    for (auto* x : {&qp, &dop, &dq}) x->assign(kRows * dp, 0.0f);
    for (auto* x : {&p, &ds}) x->assign(kRows * kKeys, 0.0f);
  }
};

// Keys [j0, j0 + cols) of g into s: K^T, V^T, K; dK and dV accumulators zeroed.
void load_keys(const GradProblem& g, int64_t j0, int64_t cols, TileScratch& s) {
  const int64_t d = g.d, dp = s.dp;
  std::fill(s.kt.begin(), s.kt.end(), 0.0f), std::fill(s.vt.begin(), s.vt.end(), 0.0f);
  std::fill(s.kp.begin(), s.kp.end(), 0.0f), std::fill(s.dk.begin(), s.dk.end(), 0.0f);
  std::fill(s.dv.begin(), s.dv.end(), 0.0f);
  for (int64_t c = 0; c < cols; ++c) {
    const float *k = g.k + (j0 + c) * g.kv_stride, *v = g.v + (j0 + c) * g.kv_stride;
    simd::copy(k, d, s.kp.data() + c * dp);
    for (int64_t t = 0; t < d; ++t) s.kt[t * kKeys + c] = k[t], s.vt[t * kKeys + c] = v[t];
  }
}

// dK += scale dK_acc and dV += dV_acc for the block's keys.
void store_keys(const GradProblem& g, int64_t j0, int64_t cols, const TileScratch& s) {
  for (int64_t c = 0; c < cols; ++c) {
    float *dk = g.dk + (j0 + c) * g.kv_stride, *dv = g.dv + (j0 + c) * g.kv_stride;
    for (int64_t t = 0; t < g.d; ++t) dk[t] += g.scale * s.dk[c * s.dp + t], dv[t] += s.dv[c * s.dp + t];
  }
}

// Query rows [i0, i0 + rows) against the keys in s: P and dS of the tile (zero where masked, past
// the keys, or in rows that see no key), then dV_acc += P^T dO, dK_acc += dS^T Q, and dQ (rows
// dq_stride apart) += scale dS K. False, and nothing done, when the mask leaves the tile empty.
bool tile(const GradProblem& g, int64_t i0, int64_t rows, int64_t j0, int64_t cols, float* dq, int64_t dq_stride,
          TileScratch& s) {
  const int64_t qpos = g.q_pos0 + i0, kpos = g.k_pos0 + j0, d = g.d, dp = s.dp;
  const BlockKind kind = g.mask->classify(qpos, qpos + rows, kpos, kpos + cols);
  if (kind == BlockKind::empty) return false;
  // Q and dO rows as whole vectors: in place when d is a multiple of 16, else copied with zeros
  // past d (loading a row whole would read past the end of the tensor).
  const float *q = g.q + i0 * g.q_stride, *dout = g.dout + i0 * g.q_stride;
  int64_t qs = g.q_stride;
  if (d != dp) {
    for (int64_t r = 0; r < rows; ++r) {
      simd::copy(q + r * g.q_stride, d, s.qp.data() + r * dp);
      simd::copy(dout + r * g.q_stride, d, s.dop.data() + r * dp);
    }
    q = s.qp.data(), dout = s.dop.data(), qs = dp;
  }
  const int64_t span = (cols + 15) / 16 * 16;  // whole vectors of keys
  // S = Q K^T (scaled below, in the exponent) and dP = dO V^T.
  product(false, q, qs, 1, s.kt.data(), kKeys, d, s.p.data(), kKeys, rows, span / 16);
  product(false, dout, qs, 1, s.vt.data(), kKeys, d, s.ds.data(), kKeys, rows, span / 16);
  const float mult = g.scale * kLog2e;
  for (int64_t r = 0; r < rows; ++r) {
    const float lse = g.lse[(i0 + r) * g.lse_stride];
    float* p = s.p.data() + r * kKeys;
    float* ds = s.ds.data() + r * kKeys;
    if (lse == kNegInf) {  // the row sees no key at all
      std::fill(p, p + span, 0.0f), std::fill(ds, ds + span, 0.0f);
      continue;
    }
    // P = exp(scale S - LSE) as exp2 on 16 lanes (the forward's polynomial), then the mask.
    const vf m = simd::splat(mult), sub = simd::splat(lse * kLog2e);
    for (int64_t j = 0; j < span; j += 16) simd::store(p + j, simd::exp2(simd::load(p + j) * m - sub));
    for (int64_t j = cols; j < span; ++j) p[j] = 0.0f;
    if (kind == BlockKind::partial) {
      int64_t lo, hi;  // interval masks (full, local, block-diagonal): one interval per row
      if (g.mask->key_interval(qpos + r, g.mask_n, lo, hi)) {
        for (int64_t j = 0; j < cols; ++j)
          if (kpos + j < lo || kpos + j > hi) p[j] = 0.0f;
      } else {
        for (int64_t j = 0; j < cols; ++j)
          if (!g.mask->contains(0, g.mask_head, qpos + r, kpos + j, g.mask_n)) p[j] = 0.0f;
      }
    }
    const vf delta = simd::splat(g.delta[(i0 + r) * g.lse_stride]);
    for (int64_t j = 0; j < span; j += 16)
      simd::store(ds + j, simd::load(p + j) * (simd::load(ds + j) - delta));  // dS = P (dP - D)
  }
  const int64_t vecs = dp / 16;
  product(true, s.p.data(), 1, kKeys, dout, qs, rows, s.dv.data(), dp, cols, vecs);  // dV += P^T dO
  product(true, s.ds.data(), 1, kKeys, q, qs, rows, s.dk.data(), dp, cols, vecs);    // dK += dS^T Q
  product(false, s.ds.data(), kKeys, 1, s.kp.data(), dp, cols, s.dq.data(), dp, rows, vecs);  // dS K
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < d; ++t) dq[(i0 + r) * dq_stride + t] += g.scale * s.dq[r * dp + t];
  return true;
}

// A task: key blocks [kb0, kb1) of a problem against all its queries. It owns those keys' dK and
// dV rows; its dQ goes to dq (the problem's own, when one task covers the problem, else a part
// summed afterwards: rows dq_stride apart).
struct GradTask {
  const GradProblem* g;
  int64_t kb0, kb1;
  float* dq;
  int64_t dq_stride;
};

void run_task(const GradTask& t, TileScratch& s) {
  const GradProblem& g = *t.g;
  for (int64_t kb = t.kb0; kb < t.kb1; ++kb) {
    const int64_t j0 = kb * kKeys, cols = std::min(kKeys, g.nk - j0);
    load_keys(g, j0, cols, s);
    bool any = false;
    for (int64_t i0 = 0; i0 < g.nq; i0 += kRows)
      any |= tile(g, i0, std::min(kRows, g.nq - i0), j0, cols, t.dq, t.dq_stride, s);
    if (any) store_keys(g, j0, cols, s);
  }
}

// Every problem of the list (they write disjoint rows) on `threads` threads, each tile's P and dS
// made once for dQ, dK and dV (five products a tile, as PyTorch's CPU flash backward does). With a
// problem for every thread, a problem is one task; with fewer, each problem's key blocks are split
// among tasks whose dQ parts are summed at the end (so every output row has one writer, no atomics).
void grad_problems(std::span<const GradProblem> problems, int threads) {
  if (problems.empty()) return;
  const int64_t n = static_cast<int64_t>(problems.size());
  const int64_t parts = n >= threads ? 1 : (2 * threads + n - 1) / n;
  std::vector<GradTask> tasks;
  std::vector<std::vector<std::vector<float>>> dq_parts(problems.size());
  for (const GradProblem& g : problems) {
    const int64_t blocks = (g.nk + kKeys - 1) / kKeys, split = std::min(parts, blocks);
    if (split <= 1) {
      tasks.push_back({&g, 0, blocks, g.dq, g.q_stride});
      continue;
    }
    auto& mine = dq_parts[&g - problems.data()];
    for (int64_t x = 0; x < split; ++x) {
      mine.emplace_back(g.nq * g.d, 0.0f);
      tasks.push_back({&g, blocks * x / split, blocks * (x + 1) / split, mine.back().data(), g.d});
    }
  }
  std::stable_sort(tasks.begin(), tasks.end(), [](const GradTask& a, const GradTask& b) {  // largest first
    return a.g->nq * (a.kb1 - a.kb0) > b.g->nq * (b.kb1 - b.kb0);
  });
  const int64_t d = problems[0].d;
#pragma omp parallel num_threads(threads)
  {
    TileScratch s(d);
#pragma omp for schedule(dynamic)
    for (size_t t = 0; t < tasks.size(); ++t) run_task(tasks[t], s);
    for (size_t i = 0; i < problems.size(); ++i) {
      if (dq_parts[i].empty()) continue;
      const GradProblem& g = problems[i];
#pragma omp for schedule(static)
      for (int64_t r = 0; r < g.nq; ++r)
        for (const std::vector<float>& part : dq_parts[i])
          for (int64_t t = 0; t < g.d; ++t) g.dq[r * g.q_stride + t] += part[r * g.d + t];
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

namespace {

// Every head's whole sequence as one problem under `mask`.
std::vector<GradProblem> head_problems(const BackwardArgs& ba, const float* delta, const Pattern& mask) {
  const AttentionArgs& a = ba.fwd;
  const Shape sh = a.shape;
  const int64_t ld = sh.H * sh.d;
  std::vector<GradProblem> heads;
  for (int64_t b = 0; b < sh.B; ++b)
    for (int64_t h = 0; h < sh.H; ++h) {
      const int64_t at = b * sh.N * ld + h * sh.d, row = (b * sh.H + h) * sh.N;
      heads.push_back({a.q + at, ba.dout + at, ba.dq + at, ld, sh.N, a.k + at, a.v + at, ba.dk + at, ba.dv + at, ld,
                       sh.N, a.lse + row, delta + row, 1, sh.d, a.scale, &mask, 0, 0, sh.N, a.head0 + h});
    }
  return heads;
}

// Strided and fixed patterns as the forward cuts them (kernels/sparse_cpu.cpp): disjoint pieces,
// each dense or banded, so the work is the attended pairs, not N^2 masked ones. The pieces of a
// pattern are disjoint sets of pairs, each P = exp(s - LSE) with the whole row's LSE: their
// gradients add. Pieces that share rows run in separate rounds (grad_problems wants disjoint rows).
void strided_backward(const BackwardArgs& ba, const float* delta, int threads) {
  const AttentionArgs& a = ba.fwd;
  const Shape sh = a.shape;
  const StridedPieces pieces = strided_pieces(a.pattern, sh.N);
  const int64_t l = pieces.l, row = sh.H * sh.d;
  grad_problems(head_problems(ba, delta, pieces.band), threads);
  if (l >= sh.N) return;  // every key is in the band (stride 1: one class holds every key)
  // Residue classes (rows rho + t l) write disjoint rows: each side's classes are one round.
  const Pattern &before = pieces.before, &after = pieces.after;
  for (const Pattern* side : {&before, &after}) {
    if (side == &after && a.pattern.causal) break;
    std::vector<GradProblem> classes;
    for (int64_t b = 0; b < sh.B; ++b)
      for (int64_t h = 0; h < sh.H; ++h)
        for (int64_t rho = 0; rho < l; ++rho) {
          const int64_t m = (sh.N - rho + l - 1) / l, at = (b * sh.N + rho) * row + h * sh.d;
          const int64_t lrow = (b * sh.H + h) * sh.N + rho;
          if (m < 2) continue;
          classes.push_back({a.q + at, ba.dout + at, ba.dq + at, l * row, m, a.k + at, a.v + at, ba.dk + at,
                             ba.dv + at, l * row, m, a.lse + lrow, delta + lrow, l, sh.d, a.scale, side, 0,
                             side == &before ? 1 : -1, side == &before ? m + 1 : m, 0});
        }
    grad_problems(classes, threads);
  }
}

void fixed_backward(const BackwardArgs& ba, const float* delta, int threads) {
  const AttentionArgs& a = ba.fwd;
  const Shape sh = a.shape;
  const int64_t l = a.pattern.block, c = a.pattern.summary, row = sh.H * sh.d, d = sh.d;
  Pattern own = a.pattern;  // each block to itself: block-diagonal
  own.summary = 0;
  grad_problems(head_problems(ba, delta, own), threads);
  const int64_t blocks = (sh.N + l - 1) / l;
  if (blocks < 2 || c == 0) return;
  // Block g's queries against the summary columns of the blocks before it (and, non-causal, after
  // it): those columns are gathered per head (as the forward does), their dK, dV gathered too and
  // added back at the end. Blocks share summary columns, so each block is its own round (every
  // head at once).
  const std::vector<int64_t> first = summary_starts(a.pattern, sh.N);
  const int64_t S = first[blocks];
  auto column = [&](int64_t g, int64_t t) { return g * l + l - c + t; };
  std::vector<float> ks(sh.B * sh.H * S * d), vs(ks.size()), dks(ks.size(), 0.0f), dvs(ks.size(), 0.0f);
  for (int64_t bh = 0; bh < sh.B * sh.H; ++bh)
    for (int64_t g = 0; g < blocks; ++g)
      for (int64_t t = 0; t < first[g + 1] - first[g]; ++t) {
        const int64_t at = (bh / sh.H * sh.N + column(g, t)) * row + bh % sh.H * d;
        simd::copy(a.k + at, d, ks.data() + (bh * S + first[g] + t) * d);
        simd::copy(a.v + at, d, vs.data() + (bh * S + first[g] + t) * d);
      }
  Pattern none;  // every pair of a piece is attended
  for (bool later : {false, true}) {
    if (later && a.pattern.causal) break;
    for (int64_t g = 0; g < blocks; ++g) {
      const int64_t k0 = later ? first[g + 1] : 0, nk = later ? S - first[g + 1] : first[g];
      if (nk == 0) continue;
      std::vector<GradProblem> heads;
      for (int64_t bh = 0; bh < sh.B * sh.H; ++bh) {
        const int64_t at = (bh / sh.H * sh.N + g * l) * row + bh % sh.H * d, lrow = bh * sh.N + g * l;
        const int64_t kat = (bh * S + k0) * d;
        heads.push_back({a.q + at, ba.dout + at, ba.dq + at, row, std::min(sh.N, g * l + l) - g * l, ks.data() + kat,
                         vs.data() + kat, dks.data() + kat, dvs.data() + kat, d, nk, a.lse + lrow, delta + lrow, 1, d,
                         a.scale, &none, 0, 0, sh.N, 0});
      }
      grad_problems(heads, threads);
    }
  }
  for (int64_t bh = 0; bh < sh.B * sh.H; ++bh)
    for (int64_t g = 0; g < blocks; ++g)
      for (int64_t t = 0; t < first[g + 1] - first[g]; ++t) {
        const int64_t at = (bh / sh.H * sh.N + column(g, t)) * row + bh % sh.H * d, s = (bh * S + first[g] + t) * d;
        for (int64_t x = 0; x < d; ++x) ba.dk[at + x] += dks[s + x], ba.dv[at + x] += dvs[s + x];
      }
}

}  // namespace

void flash_backward(const BackwardArgs& ba) {
  const AttentionArgs& a = ba.fwd;
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
  const std::vector<float> delta = start_backward(ba, threads);
  if (a.pattern.kind == PatternKind::strided) return strided_backward(ba, delta.data(), threads);
  if (a.pattern.kind == PatternKind::fixed && a.pattern.summary > 0) return fixed_backward(ba, delta.data(), threads);
  grad_problems(head_problems(ba, delta.data(), a.pattern), threads);
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
