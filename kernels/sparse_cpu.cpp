// Sparse Transformer patterns (strided, fixed) in the `flash` kernel, as disjoint pieces that are
// each dense or banded, attended with the flash tile code and merged by LSE (SPEC §1). Masking
// every partial block instead would cost as much as dense attention, since neither pattern is
// banded: here the work is proportional to the attended pairs.
//
//   strided(l) = band |i-j| < l                    (local(l-1, l-1), blocks outside skipped)
//              + same residue mod l, j < i - l + 1  (per residue class: a strided view, keys t' < t)
//              + same residue mod l, j > i + l - 1  (non-causal only: keys t' > t)
//   fixed(l,c) = own block                          (block-diagonal, off-diagonal blocks skipped)
//              + summary columns of earlier blocks  (gathered once per KV head; dense, no mask)
//              + summary columns of later blocks    (non-causal only)
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <limits>

#include "kernels/dilated_cpu.h"
#include "kernels/flash_cpu.h"
#include "kernels/simd.h"
#include "kernels/sparse_cpu.h"

namespace longattn {
namespace {

// Each thread's residue lanes are kept from call to call (until release_strided_lanes): fresh ones
// page-faulted their way through MBs of transposed Q, K and V every call (strided(128)+causal on a
// Zen 4 EPYC, 2 threads, B=1, H=8, d=64; kept and fresh alternated in one process, best of 30 each:
// +15% at N = 8K, +8% at 4K). A task's lanes hold 3 x heads x (N / l + 4) x d x 16 floats; past
// kMaxKeptLaneFloats (N = 64K at l = 128, 8 heads of d = 64) they are given back after the call.
thread_local StridedLanes t_lanes;
// Strides below this run their classes as dense tiles, every class of every head shared out at once
// (flash_problems), not in vector lanes. Measured on a Zen 4 EPYC (2 threads, B=1, H=8, d=64,
// causal; best of 5): tiles against lanes, N = 4K / 16K, 14 / 135 ms against 17 / 178 at l = 16,
// 11 / 90 against 12 / 114 at l = 32, 13 / 85 against 12 / 94 at l = 48; 2-20x faster below 16;
// equal at l = 128 and 512.
constexpr int64_t kMinLaneStride = 48;
constexpr size_t kMaxKeptLaneFloats = size_t{16} << 20;  // 64 MB a thread
std::atomic<int> g_lane_threads{0};                       // the largest team that has used t_lanes

// A view of queries against a view of keys (mask in its own coordinates, may be null) that merges
// its result into the output rows out_row0 + t * out_step of batch b, head h.
HeadProblem piece(const AttentionArgs& a, int64_t b, int64_t h, HeadProblem p, int64_t out_row0, int64_t out_step) {
  const Shape sh = a.shape;
  p.d = sh.d;
  p.scale = a.scale;
  p.dtype = a.dtype;
  p.o = a.o + (b * sh.N + out_row0) * sh.H * sh.d + h * sh.d;
  p.o_stride = out_step * sh.H * sh.d;
  p.lse = a.lse + (b * sh.H + h) * sh.N + out_row0;
  p.lse_stride = out_step;
  p.merge = true;
  return p;
}
void attend_piece(const AttentionArgs& a, int64_t b, int64_t h, const HeadProblem& p, int64_t out_row0,
                  int64_t out_step, DilatedScratch& s) {
  if (p.nq > 0 && p.nk > 0) flash_head(piece(a, b, h, p, out_row0, out_step), s.kv, s.flash);
}

// Residue class rho of strided(l) in batch b, head h (m = its rows): its keys before each query
// (`before`) or after it (`after`), K and V read in the group's KV head (GQA).
HeadProblem class_piece(const AttentionArgs& a, const StridedPieces& pieces, int64_t b, int64_t h, int64_t rho,
                        int64_t m, bool before) {
  const Shape sh = a.shape;
  const int64_t l = pieces.l, row = sh.H * sh.d, kv_row = sh.kv_heads() * sh.d;
  const int64_t at = (b * sh.N + rho) * kv_row + h / sh.group() * sh.d;
  HeadProblem p;
  p.q = a.q + (b * sh.N + rho) * row + h * sh.d;
  p.k = a.k + at;
  p.v = a.v + at;
  p.q_stride = l * row;
  p.kv_stride = l * kv_row;
  p.nq = p.nk = m;
  p.mask = before ? &pieces.before : &pieces.after;
  p.k_pos0 = before ? 1 : -1;  // query t and key t' of the class, keys shifted (strided_pieces)
  p.mask_n = before ? m + 1 : m;
  return piece(a, b, h, p, rho, l);
}

// Runs the first piece (banded, over the whole sequence) straight into o / lse; the other pieces
// merge into it.
void first_piece(const AttentionArgs& a, const Pattern& band) {
  AttentionArgs first = a;
  first.pattern = band;
  flash_attention_at(first, a.k, a.v, a.shape.N, 0, 0, a.shape.N);
}

}  // namespace

StridedPieces strided_pieces(const Pattern& p, int64_t N) {
  StridedPieces s;
  s.l = std::min(p.stride, std::max<int64_t>(N, 1));  // a stride of N or more: the band holds every key
  s.band.kind = PatternKind::local;
  s.band.causal = p.causal;
  s.band.left = s.l - 1;
  s.band.right = p.causal ? 0 : s.l - 1;
  // Query t and key t' of a class are positions rho + t l, rho + t' l. Keys t' < t: causal in
  // index space with keys shifted by one (position t' + 1 <= t). Keys t' > t: local(0, inf) with
  // keys shifted back by one (position t' - 1 >= t).
  s.before.causal = true;
  s.after.kind = PatternKind::local;
  s.after.left = 0;
  s.after.right = N;
  return s;
}

std::vector<int64_t> summary_starts(const Pattern& p, int64_t N) {
  const int64_t l = p.block, c = p.summary, blocks = (N + l - 1) / l;
  std::vector<int64_t> first(blocks + 1, 0);
  for (int64_t g = 0; g < blocks; ++g)
    first[g + 1] = first[g] + std::max<int64_t>(0, std::min(N, g * l + l) - (g * l + l - c));
  return first;
}

void strided_attention(const AttentionArgs& a) {
  const Shape sh = a.shape;
  const StridedPieces pieces = strided_pieces(a.pattern, sh.N);
  const int64_t l = pieces.l;
  first_piece(a, pieces.band);
  if (l >= sh.N) return;  // every key is in the band
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
  if (l < kMinLaneStride) {
    // Few classes, each long (stride 1: one class, every key): dense tiles over all of them, one
    // round per side (the sides write the same rows).
    for (const bool before : {true, false}) {
      if (!before && a.pattern.causal) break;
      std::vector<HeadProblem> classes;
      for (int64_t b = 0; b < sh.B; ++b)
        for (int64_t h = 0; h < sh.H; ++h)
          for (int64_t rho = 0; rho < l; ++rho)
            if (const int64_t m = (sh.N - rho + l - 1) / l; m >= 2) classes.push_back(class_piece(a, pieces, b, h, rho, m, before));
      flash_problems(classes, threads);
    }
    return;
  }
  for (int seen = g_lane_threads; seen < threads && !g_lane_threads.compare_exchange_weak(seen, threads);) {
  }  // g_lane_threads = max(g_lane_threads, threads)
  // Sixteen classes at a time in vector lanes, for a run of heads (tasks enough to keep every
  // thread busy); class by class where inputs are not finite.
  const int64_t groups = (l + kStridedLanes - 1) / kStridedLanes;
  const int64_t runs = std::min(sh.H, std::max<int64_t>(1, (4 * threads + sh.B * groups - 1) / (sh.B * groups)));
  const int64_t per_run = (sh.H + runs - 1) / runs;
#pragma omp parallel num_threads(threads)
  {
    StridedLanes& lanes = t_lanes;
    DilatedScratch s;
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < sh.B * groups * runs; ++task) {
      const int64_t b = task / (groups * runs), rho0 = task / runs % groups * kStridedLanes;
      const int64_t h0 = task % runs * per_run, h1 = std::min(sh.H, h0 + per_run);
      if (rho0 >= sh.N || h0 >= h1 || strided_residue_lanes(a, b, rho0, h0, h1, lanes)) continue;
      for (int64_t h = h0; h < h1; ++h)
        for (int64_t rho = rho0; rho < std::min({rho0 + kStridedLanes, l, sh.N}); ++rho) {
          const int64_t m = (sh.N - rho + l - 1) / l;
          if (m < 2) continue;
          flash_head(class_piece(a, pieces, b, h, rho, m, true), s.kv, s.flash);
          if (!a.pattern.causal) flash_head(class_piece(a, pieces, b, h, rho, m, false), s.kv, s.flash);
        }
    }
    if (lanes.q.capacity() + lanes.k.capacity() + lanes.v.capacity() > kMaxKeptLaneFloats) lanes = StridedLanes{};
  }
}

void release_strided_lanes() {
  // libgomp gives a team the threads of its pool in order: a team as large as any that ran strided
  // reaches every thread that holds lanes.
  const int threads = std::max(1, g_lane_threads.load());
#pragma omp parallel num_threads(threads)
  t_lanes = StridedLanes{};
}

void fixed_attention(const AttentionArgs& a) {
  const Shape sh = a.shape;
  const int64_t l = a.pattern.block, c = a.pattern.summary, row = sh.H * sh.d, d = sh.d;
  const int64_t Hkv = sh.kv_heads(), kv_row = Hkv * d, G = sh.group();
  Pattern own = a.pattern;  // the same blocks without summary columns: block-diagonal
  own.summary = 0;
  first_piece(a, own);
  const int64_t blocks = (sh.N + l - 1) / l;
  if (blocks < 2) return;  // no other block to summarise

  // Summary rows of every block, gathered per (batch, KV head): block g's start at first[g].
  const std::vector<int64_t> first = summary_starts(a.pattern, sh.N);
  const int64_t S = first[blocks];
  std::vector<float> ks(sh.B * Hkv * S * d), vs(ks.size());
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t bk = 0; bk < sh.B * Hkv; ++bk) {
    const int64_t b = bk / Hkv, hk = bk % Hkv;
    for (int64_t g = 0; g < blocks; ++g)
      for (int64_t t = 0; t < first[g + 1] - first[g]; ++t) {
        const int64_t j = g * l + l - c + t;
        simd::copy(a.k + (b * sh.N + j) * kv_row + hk * d, d, ks.data() + (bk * S + first[g] + t) * d);
        simd::copy(a.v + (b * sh.N + j) * kv_row + hk * d, d, vs.data() + (bk * S + first[g] + t) * d);
      }
  }
#pragma omp parallel num_threads(threads)
  {
    DilatedScratch s;
#pragma omp for schedule(dynamic)
    for (int64_t task = 0; task < sh.B * sh.H * blocks; ++task) {
      const int64_t bh = task / blocks, b = bh / sh.H, h = bh % sh.H, g = task % blocks;
      const int64_t bk = b * Hkv + h / G;  // GQA: the summaries of the group's KV head
      const int64_t i0 = g * l, rows = std::min(sh.N, i0 + l) - i0;
      HeadProblem p;
      p.q = a.q + (b * sh.N + i0) * row + h * d;
      p.q_stride = row;
      p.nq = rows;
      p.kv_stride = d;
      // Earlier blocks' summaries: all before the query (causal or not), no mask.
      p.k = ks.data() + bk * S * d;
      p.v = vs.data() + bk * S * d;
      p.nk = first[g];
      attend_piece(a, b, h, p, i0, 1, s);
      if (!a.pattern.causal) {  // later blocks' summaries
        p.k = ks.data() + (bk * S + first[g + 1]) * d;
        p.v = vs.data() + (bk * S + first[g + 1]) * d;
        p.nk = S - first[g + 1];
        attend_piece(a, b, h, p, i0, 1, s);
      }
    }
  }
}

}  // namespace longattn
