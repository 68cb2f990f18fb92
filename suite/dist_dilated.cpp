// dist-dilated (LongNet's distributed dilated attention, SPEC §3). Sequence-sharded Q, K, V. Per
// level, a segment inside this rank's shard is computed locally on strided views; a segment that
// spans several ranks (w > n, or a segment straddling a shard boundary) is computed by those ranks
// together: each sends the K/V rows the level keeps for every head to the segment's other ranks
// (one variable all-to-all: a pair of ranks shares at most one segment per level, so this is the
// all-gather within each segment), and each rank's kept queries attend to the gathered rows,
// causal by global position. Levels merge by (o, lse) as in SPEC §1.
// Communication per rank: 2 B d sum_levels sum_units (kept rows of its multi-rank segments held by
// other ranks), independent of N and P for LongNet's geometric configurations. A unit is a KV head
// with one offset: with GQA, query heads of a group whose offsets h mod r agree read the same kept
// K/V rows, which travel once (kv_units).
#include <algorithm>
#include <limits>

#include "kernels/backward.h"
#include "kernels/dilated_cpu.h"
#include "kernels/step.h"
#include "suite/method.h"

namespace longattn {
namespace {

// For each query head h, the head whose kept K/V rows it reads at level lv: the first of its GQA
// group with the same offset h mod r (itself without GQA). Heads with unit[h] == h are the units.
std::vector<int64_t> kv_units(const Shape& g, const DilatedLevel& lv) {
  const int64_t G = g.group();
  std::vector<int64_t> unit(g.H);
  for (int64_t h = 0; h < g.H; ++h) {
    unit[h] = h;
    for (int64_t first = h / G * G; first < h; ++first)
      if (first % lv.r == h % lv.r) {
        unit[h] = first;
        break;
      }
  }
  return unit;
}

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
  bool local;  // K, V rows in this rank's shard (else in the gathered buffer)
};

// One level on this rank: the tasks (a segment's kept queries of one batch and head, and where its
// kept K/V rows are), after the exchange that gathers the rows of multi-rank segments.
struct Level {
  std::vector<Task> tasks;
  std::vector<SharedSegment> shared;
  std::vector<size_t> sc, so, rc, ro;  // the all-to-all's counts and offsets in bytes (send, receive)
  bool exchange = false;               // some segment straddles a shard boundary (alike on every rank)
};

// Plans level lv and gathers its multi-rank segments' kept K/V rows into `gathered` (send and recv
// are the exchange's buffers).
Level gather_level(const MethodCall& c, const DilatedLevel& lv, FloatBuffer& send, FloatBuffer& recv,
                   FloatBuffer& gathered) {
  const Shape g = c.global;
  const int P = c.comm->size(), p = c.comm->rank();
  const int64_t n = c.shard(), my0 = p * n, my1 = my0 + n, d = g.d, kv_row = g.kv_heads() * d, G = g.group();
  const std::vector<int64_t> unit = kv_units(g, lv);
  const Place at = c.place();
  auto kv_at = [&](int64_t b, int64_t pos, int64_t h) { return (b * n + pos - my0) * kv_row + h / G * d; };
  Level L;
  std::vector<Task>& tasks = L.tasks;
  std::vector<SharedSegment>& shared = L.shared;
  for (int64_t s0 = (my0 / lv.w) * lv.w; s0 < my1; s0 += lv.w) {
    const int64_t s1 = std::min(s0 + lv.w, g.N);
    const int r0 = static_cast<int>(s0 / n), r1 = static_cast<int>((s1 - 1) / n);
    if (r0 == r1) {  // inside this shard: strided views of the local tensors
      for (int64_t b = 0; b < g.B; ++b)
        for (int64_t h = 0; h < g.H; ++h) {
          const DilatedSegment seg = dilated_segment(lv, h, s0, g.N, my0, my1);
          if (seg.t0 == seg.t1) continue;
          const int64_t kv = kv_at(b, seg.first, h);
          tasks.push_back({b, h, seg, c.k + kv, c.v + kv, lv.r * kv_row, seg.first - my0, true});
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
  std::vector<size_t>&sc = L.sc, &so = L.so, &rc = L.rc, &ro = L.ro;
  sc.assign(P, 0), so.assign(P, 0), rc.assign(P, 0), ro.assign(P, 0);
  auto rows_of = [&](const SharedSegment& s, int q, int64_t h) {
    const DilatedSegment& x = s.part[(q - s.r0) * g.H + h];
    return x.t1 - x.t0;
  };
  size_t gathered_size = 0;
  for (SharedSegment& s : shared) {
    for (int64_t b = 0; b < g.B; ++b)
      for (int64_t h = 0; h < g.H; ++h) {
        s.offset.push_back(static_cast<int64_t>(gathered_size));
        if (unit[h] == h) gathered_size += 2 * s.part[h].count * d;
      }
    for (int q = s.r0; q <= s.r1; ++q) {
      if (q == p) continue;
      for (int64_t h = 0; h < g.H; ++h) {
        if (unit[h] != h) continue;
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
          if (unit[h] != h) continue;
          const DilatedSegment& mine = s.part[(p - s.r0) * g.H + h];
          const int64_t m = mine.t1 - mine.t0;
          float* kdst = self ? gathered.data() + s.offset[b * g.H + h] + mine.t0 * d : out;
          float* vdst = self ? kdst + mine.count * d : out + m * d;
          const int64_t from = kv_at(b, mine.first + mine.t0 * lv.r, h);  // kept rows, r apart
          copy_rows(at, kdst, d, c.k + from, lv.r * kv_row, d, m);
          copy_rows(at, vdst, d, c.v + from, lv.r * kv_row, d, m);
          if (!self) out += 2 * m * d;
        }
    }
  }
  // Collective only where some segment of this level straddles a shard boundary (the same
  // answer on every rank, so either all call it or none do).
  for (int k = 1; k < P; ++k) L.exchange |= (k * n) % lv.w != 0;
  if (L.exchange && P > 1) c.comm->all_to_all_v(send.data(), sc, so, recv.data(), rc, ro);
  for (SharedSegment& s : shared) {
    for (int q = s.r0; q <= s.r1; ++q) {
      if (q == p) continue;
      const float* in = recv.data() + ro[q] / sizeof(float);
      for (int64_t b = 0; b < g.B; ++b)
        for (int64_t h = 0; h < g.H; ++h) {
          if (unit[h] != h) continue;
          const DilatedSegment& theirs = s.part[(q - s.r0) * g.H + h];
          const int64_t m = theirs.t1 - theirs.t0;
          float* kdst = gathered.data() + s.offset[b * g.H + h] + theirs.t0 * d;
          copy_floats(at, kdst, in, m * d);
          copy_floats(at, kdst + theirs.count * d, in + m * d, m * d);
          in += 2 * m * d;
        }
    }
    for (int64_t b = 0; b < g.B; ++b)
      for (int64_t h = 0; h < g.H; ++h) {
        const DilatedSegment& mine = s.part[(p - s.r0) * g.H + h];
        if (mine.t0 == mine.t1) continue;
        const float* kg = gathered.data() + s.offset[b * g.H + unit[h]];  // the rows its unit gathered
        tasks.push_back({b, h, mine, kg, kg + mine.count * d, d, mine.first + mine.t0 * lv.r - my0, false});
      }
  }
  return L;
}

// A task as an attention step's block: its kept queries (rows r apart) against its segment's kept
// keys, causal by kept index; o and lse as the method's output rows.
StepBlock task_block(const MethodCall& c, const DilatedLevel& lv, const Task& t, float* o, float* lse) {
  const Shape g = c.global;
  const int64_t n = c.shard(), row = g.H * g.d, at = (t.b * n + t.q_first) * row + t.h * g.d;
  return {c.q + at, lv.r * row, t.seg.t1 - t.seg.t0, t.seg.t0, t.k, t.v, t.kv_stride, t.seg.count, 0,
          t.seg.count, t.h, o + at, lv.r * row, lse + (t.b * g.H + t.h) * n + t.q_first, lv.r};
}

AttentionStep level_step(const MethodCall& c) {
  // Inside a segment the kept rows attend densely (causal by kept index, as kept positions ascend).
  AttentionStep step = c.step();
  step.mask = Pattern{};
  step.mask.causal = c.pattern.causal;
  return step;
}

}  // namespace

void dist_dilated(const MethodCall& c) {
  const Shape g = c.global;
  const int64_t n = c.shard(), row = g.H * g.d;
  AttentionArgs a = c.local_args(n);
  auto& lse_own = c.buffers->buf[0];
  if (!a.lse) lse_own.resize(g.B * g.H * n), a.lse = lse_own.data();
  fill_floats(c.place(), a.o, g.B * n * row, 0.0f);
  fill_floats(c.place(), a.lse, g.B * g.H * n, -std::numeric_limits<float>::infinity());
  for (const DilatedLevel& lv : c.pattern.dilated_levels(g.N)) {
    const Level L = gather_level(c, lv, c.buffers->buf[1], c.buffers->buf[2], c.buffers->buf[3]);
    // One attention step per level: a query row belongs to one segment of a level, so the blocks
    // merge into disjoint rows.
    AttentionStep step = level_step(c);
    for (const Task& t : L.tasks) step.blocks.push_back(task_block(c, lv, t, a.o, a.lse));
    attention_step(step);
  }
}

// Backward (SPEC §6): per level, the exchange again (the kept K/V rows of multi-rank segments), each
// task's gradients through the attention step's backward, dK and dV of gathered rows into a
// buffer laid out as the gathered ones; then the exchange reversed hands each rank the parts of its
// own rows (the sparsified dK, dV reduce-scattered back), added into its dK, dV.
// Communication per rank: twice the forward's.
void dist_dilated_backward(const MethodCall& c, const float* dout, float* dq, float* dk, float* dv) {
  const Shape g = c.global;
  const int P = c.comm->size(), p = c.comm->rank();
  const int64_t n = c.shard(), my0 = p * n, d = g.d, row = g.H * d, kv_row = g.kv_heads() * d, G = g.group();
  float* lse = c.lse ? c.lse : c.buffers->buf[0].data();
  auto& send = c.buffers->buf[1];
  auto& recv = c.buffers->buf[2];
  auto& gathered = c.buffers->buf[3];
  auto& dgathered = c.buffers->buf[4];
  auto& delta = c.buffers->buf[5];
  delta.resize(g.B * g.H * n);
  row_deltas(dout, c.o, g.B, n, g.H, d, delta.data(), c.threads);
  std::fill_n(dq, g.B * n * row, 0.0f), std::fill_n(dk, g.B * n * kv_row, 0.0f), std::fill_n(dv, g.B * n * kv_row, 0.0f);
  for (const DilatedLevel& lv : c.pattern.dilated_levels(g.N)) {
    Level L = gather_level(c, lv, send, recv, gathered);
    const std::vector<int64_t> unit = kv_units(g, lv);
    dgathered.assign(gathered.size(), 0.0f);
    std::vector<StepGradBlock> blocks;
    // One call per member of a GQA group: the heads of a call read distinct KV heads, so no two
    // blocks share dK, dV rows.
    for (int64_t j = 0; j < G; ++j) {
      blocks.clear();
      for (const Task& t : L.tasks) {
        if (t.h % G != j) continue;
        StepGradBlock blk;
        blk.fwd = task_block(c, lv, t, nullptr, lse);
        const int64_t at = (t.b * n + t.q_first) * row + t.h * d;
        blk.dout = dout + at, blk.dq = dq + at;
        blk.delta = delta.data() + (t.b * g.H + t.h) * n + t.q_first;
        // K/V rows local (strided in the shard) or gathered: the gradients' rows lie alike.
        blk.dk = t.local ? dk + (t.k - c.k) : dgathered.data() + (t.k - gathered.data());
        blk.dv = t.local ? dv + (t.v - c.v) : dgathered.data() + (t.v - gathered.data());
        blocks.push_back(blk);
      }
      attention_step_backward(level_step(c), blocks);
    }
    if (L.shared.empty() && !L.exchange) continue;
    // Reversed: to each rank q, the gradients of q's kept rows, laid out as q sent them; from each
    // q, this rank's rows' parts, laid out as this rank sent them.
    for (SharedSegment& s : L.shared)
      for (int q = s.r0; q <= s.r1; ++q) {
        if (q == p) continue;
        float* out = recv.data() + L.ro[q] / sizeof(float);
        for (int64_t b = 0; b < g.B; ++b)
          for (int64_t h = 0; h < g.H; ++h) {
            if (unit[h] != h) continue;
            const DilatedSegment& theirs = s.part[(q - s.r0) * g.H + h];
            const int64_t m = theirs.t1 - theirs.t0;
            const float* ksrc = dgathered.data() + s.offset[b * g.H + h] + theirs.t0 * d;
            std::copy_n(ksrc, m * d, out);
            std::copy_n(ksrc + theirs.count * d, m * d, out + m * d);
            out += 2 * m * d;
          }
      }
    if (L.exchange && P > 1) c.comm->all_to_all_v(recv.data(), L.rc, L.ro, send.data(), L.sc, L.so);
    auto add_rows = [&](const float* kin, const float* vin, const DilatedSegment& mine, int64_t b, int64_t h) {
      for (int64_t t = 0; t < mine.t1 - mine.t0; ++t) {
        const int64_t at = (b * n + mine.first + (mine.t0 + t) * lv.r - my0) * kv_row + h / G * d;
        for (int64_t x = 0; x < d; ++x) dk[at + x] += kin[t * d + x], dv[at + x] += vin[t * d + x];
      }
    };
    for (SharedSegment& s : L.shared)
      for (int q = s.r0; q <= s.r1; ++q) {
        const float* in = q == p ? nullptr : send.data() + L.so[q] / sizeof(float);
        for (int64_t b = 0; b < g.B; ++b)
          for (int64_t h = 0; h < g.H; ++h) {
            if (unit[h] != h) continue;
            const DilatedSegment& mine = s.part[(p - s.r0) * g.H + h];
            const int64_t m = mine.t1 - mine.t0;
            if (q == p) {  // this rank's own part of its rows, in place in dgathered
              const float* kin = dgathered.data() + s.offset[b * g.H + h] + mine.t0 * d;
              add_rows(kin, kin + mine.count * d, mine, b, h);
            } else {
              add_rows(in, in + m * d, mine, b, h);
              in += 2 * m * d;
            }
          }
      }
  }
}

// SPEC §3, counted apart from the exchange above: per level and unit (kv_units), the kept rows of this rank's
// multi-rank segments that lie on other ranks; x 2 (K and V) x d x B.
uint64_t dist_dilated_bytes(const Pattern& p, const Shape& g, int P, int rank, int) {
  const int64_t n = g.N / P, my0 = rank * n, my1 = my0 + n;
  uint64_t rows = 0;
  for (const DilatedLevel& lv : p.dilated_levels(g.N)) {
    const std::vector<int64_t> unit = kv_units(g, lv);
    for (int64_t s0 = 0; s0 < g.N; s0 += lv.w) {
      const int64_t s1 = std::min(s0 + lv.w, g.N);
      const bool mine = s0 < my1 && s1 > my0, multi = s0 / n != (s1 - 1) / n;
      if (!mine || !multi) continue;
      for (int64_t h = 0; h < g.H; ++h)
        if (unit[h] == h)
          for (int64_t j = s0 + h % lv.r; j < s1; j += lv.r) rows += (j < my0 || j >= my1);
    }
  }
  return rows * 2 * g.d * g.B * sizeof(float);
}

}  // namespace longattn
