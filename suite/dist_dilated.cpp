// dist-dilated (LongNet's distributed dilated attention, SPEC §3). Sequence-sharded Q, K, V. Per
// level, a segment inside this rank's shard is computed locally on strided views; a segment that
// spans several ranks (w > n, or a segment straddling a shard boundary) is computed by those ranks
// together: each sends the K/V rows the level keeps for every head to the segment's other ranks
// (one variable all-to-all: a pair of ranks shares at most one segment per level, so this is the
// all-gather within each segment), and each rank's kept queries attend to the gathered rows,
// causal by global position. Levels merge by (o, lse) as in SPEC §1.
// Communication per rank: 2 B d sum_levels sum_heads (kept rows of its multi-rank segments held by
// other ranks), independent of N and P for LongNet's geometric configurations.
#include <algorithm>
#include <limits>

#include "kernels/dilated_cpu.h"
#include "kernels/step.h"
#include "suite/method.h"

namespace longattn {
namespace {

// A segment of one level that spans ranks r0..r1, with each rank's kept index range per head.
struct SharedSegment {
  int64_t begin = 0;
  int r0 = 0, r1 = 0;
  std::vector<DilatedSegment> part;  // [(q - r0) * H + h]: rank q's kept range of head h
  std::vector<int64_t> offset;       // [b * H + h]: where head h's gathered K rows start (V follow)
};

struct Task {
  int64_t b, h;
  DilatedSegment seg;  // t0, t1: this rank's queries
  const float* k;
  const float* v;
  int64_t kv_stride, q_first;
};

}  // namespace

void dist_dilated(const MethodCall& c) {
  const Shape g = c.global;
  const int P = c.comm->size(), p = c.comm->rank();
  const int64_t n = c.shard(), my0 = p * n, my1 = my0 + n, d = g.d, row = g.H * d;
  AttentionArgs a = c.local_args(n);
  auto& lse_own = c.buffers->buf[0];
  auto& send = c.buffers->buf[1];
  auto& recv = c.buffers->buf[2];
  auto& gathered = c.buffers->buf[3];
  if (!a.lse) lse_own.resize(g.B * g.H * n), a.lse = lse_own.data();
  std::fill_n(a.o, g.B * n * row, 0.0f);
  std::fill_n(a.lse, g.B * g.H * n, -std::numeric_limits<float>::infinity());

  for (const DilatedLevel& lv : c.pattern.dilated_levels(g.N)) {
    std::vector<Task> tasks;
    std::vector<SharedSegment> shared;
    for (int64_t s0 = (my0 / lv.w) * lv.w; s0 < my1; s0 += lv.w) {
      const int64_t s1 = std::min(s0 + lv.w, g.N);
      const int r0 = static_cast<int>(s0 / n), r1 = static_cast<int>((s1 - 1) / n);
      if (r0 == r1) {  // inside this shard: strided views of the local tensors
        for (int64_t b = 0; b < g.B; ++b)
          for (int64_t h = 0; h < g.H; ++h) {
            const DilatedSegment seg = dilated_segment(lv, h, s0, g.N, my0, my1);
            if (seg.t0 == seg.t1) continue;
            const int64_t at = (b * n + seg.first - my0) * row + h * d;
            tasks.push_back({b, h, seg, c.k + at, c.v + at, lv.r * row, seg.first - my0});
          }
        continue;
      }
      SharedSegment sh{s0, r0, r1, {}, {}};
      for (int q = r0; q <= r1; ++q)
        for (int64_t h = 0; h < g.H; ++h) sh.part.push_back(dilated_segment(lv, h, s0, g.N, q * n, (q + 1) * n));
      shared.push_back(std::move(sh));
    }

    // The exchange: to each rank q sharing a segment, this rank's kept K then V rows, per (b, h).
    // Every rank knows every range, so all counts are computed locally, none are sent.
    std::vector<size_t> sc(P, 0), so(P, 0), rc(P, 0), ro(P, 0);
    auto rows_of = [&](const SharedSegment& s, int q, int64_t h) {
      const DilatedSegment& x = s.part[(q - s.r0) * g.H + h];
      return x.t1 - x.t0;
    };
    size_t gathered_size = 0;
    for (SharedSegment& s : shared) {
      for (int64_t b = 0; b < g.B; ++b)
        for (int64_t h = 0; h < g.H; ++h) {
          s.offset.push_back(static_cast<int64_t>(gathered_size));
          gathered_size += 2 * s.part[h].count * d;
        }
      for (int q = s.r0; q <= s.r1; ++q) {
        if (q == p) continue;
        for (int64_t h = 0; h < g.H; ++h) {
          sc[q] += 2 * g.B * rows_of(s, p, h) * d * sizeof(float);
          rc[q] += 2 * g.B * rows_of(s, q, h) * d * sizeof(float);
        }
      }
    }
    for (int q = 1; q < P; ++q) so[q] = so[q - 1] + sc[q - 1], ro[q] = ro[q - 1] + rc[q - 1];
    send.resize((so[P - 1] + sc[P - 1]) / sizeof(float));
    recv.resize((ro[P - 1] + rc[P - 1]) / sizeof(float));
    gathered.resize(gathered_size);

    // Pack this rank's kept rows: into the send blocks, and into its own place of `gathered`.
    for (SharedSegment& s : shared) {
      for (int q = s.r0; q <= s.r1; ++q) {
        const bool self = q == p;
        float* out = self ? nullptr : send.data() + so[q] / sizeof(float);
        for (int64_t b = 0; b < g.B; ++b)
          for (int64_t h = 0; h < g.H; ++h) {
            const DilatedSegment& mine = s.part[(p - s.r0) * g.H + h];
            const int64_t m = mine.t1 - mine.t0;
            float* kdst = self ? gathered.data() + s.offset[b * g.H + h] + mine.t0 * d : out;
            float* vdst = self ? kdst + mine.count * d : out + m * d;
            for (int64_t t = 0; t < m; ++t) {
              const int64_t at = (b * n + mine.first + (mine.t0 + t) * lv.r - my0) * row + h * d;
              std::copy_n(c.k + at, d, kdst + t * d);
              std::copy_n(c.v + at, d, vdst + t * d);
            }
            if (!self) out += 2 * m * d;
          }
      }
    }
    // Collective only where some segment of this level straddles a shard boundary (the same
    // answer on every rank, so either all call it or none do).
    bool any_shared = false;
    for (int k = 1; k < P; ++k) any_shared |= (k * n) % lv.w != 0;
    if (any_shared && P > 1) c.comm->all_to_all_v(send.data(), sc, so, recv.data(), rc, ro);
    for (SharedSegment& s : shared) {
      for (int q = s.r0; q <= s.r1; ++q) {
        if (q == p) continue;
        const float* in = recv.data() + ro[q] / sizeof(float);
        for (int64_t b = 0; b < g.B; ++b)
          for (int64_t h = 0; h < g.H; ++h) {
            const DilatedSegment& theirs = s.part[(q - s.r0) * g.H + h];
            const int64_t m = theirs.t1 - theirs.t0;
            float* kdst = gathered.data() + s.offset[b * g.H + h] + theirs.t0 * d;
            std::copy_n(in, m * d, kdst);
            std::copy_n(in + m * d, m * d, kdst + theirs.count * d);
            in += 2 * m * d;
          }
      }
      for (int64_t b = 0; b < g.B; ++b)
        for (int64_t h = 0; h < g.H; ++h) {
          const DilatedSegment& mine = s.part[(p - s.r0) * g.H + h];
          if (mine.t0 == mine.t1) continue;
          const float* kg = gathered.data() + s.offset[b * g.H + h];
          tasks.push_back({b, h, mine, kg, kg + mine.count * d, d, mine.first + mine.t0 * lv.r - my0});
        }
    }

    // One attention step per level: a query row belongs to one segment of a level, so the blocks
    // merge into disjoint rows. Inside a segment the kept rows attend densely (causal by kept index).
    AttentionStep step = c.step();
    step.mask = Pattern{};
    step.mask.causal = c.pattern.causal;
    for (const Task& t : tasks) {
      const int64_t at = (t.b * n + t.q_first) * row + t.h * d;
      step.blocks.push_back({c.q + at, lv.r * row, t.seg.t1 - t.seg.t0, t.seg.t0, t.k, t.v, t.kv_stride, t.seg.count, 0,
                             t.seg.count, t.h, a.o + at, lv.r * row, a.lse + (t.b * g.H + t.h) * n + t.q_first, lv.r});
    }
    attention_step(step);
  }
}

// SPEC §3, counted apart from the exchange above: per level and head, the kept rows of this rank's
// multi-rank segments that lie on other ranks; x 2 (K and V) x d x B.
uint64_t dist_dilated_bytes(const Pattern& p, const Shape& g, int P, int rank) {
  const int64_t n = g.N / P, my0 = rank * n, my1 = my0 + n;
  uint64_t rows = 0;
  for (const DilatedLevel& lv : p.dilated_levels(g.N))
    for (int64_t s0 = 0; s0 < g.N; s0 += lv.w) {
      const int64_t s1 = std::min(s0 + lv.w, g.N);
      const bool mine = s0 < my1 && s1 > my0, multi = s0 / n != (s1 - 1) / n;
      if (!mine || !multi) continue;
      for (int64_t h = 0; h < g.H; ++h)
        for (int64_t j = s0 + h % lv.r; j < s1; j += lv.r) rows += (j < my0 || j >= my1);
    }
  return rows * 2 * g.d * g.B * sizeof(float);
}

}  // namespace longattn
