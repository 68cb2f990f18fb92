// The `dilated` kernel (LongNet): per level, every segment's kept rows form a dense sub-problem.
// Kept rows are r apart, so each sub-problem is a strided view of Q, K, V (no gather copy); its
// (o, lse) lands in per-thread scratch and is merged into the output (SPEC §1). Memory O(N d).
#include "kernels/dilated_cpu.h"

#include <omp.h>

#include <algorithm>
#include <limits>

#include "kernels/flash_cpu.h"

namespace longattn {

DilatedSegment dilated_segment(const DilatedLevel& lv, int64_t h, int64_t seg_begin, int64_t n, int64_t lo,
                               int64_t hi) {
  DilatedSegment s{seg_begin, std::min(seg_begin + lv.w, n), seg_begin + h % lv.r, 0, 0, 0};
  if (s.first >= s.end) return s;
  s.count = (s.end - s.first + lv.r - 1) / lv.r;
  auto kept_below = [&](int64_t x) {  // kept indices t with first + t r < x
    return std::clamp<int64_t>((x - s.first + lv.r - 1) / lv.r, 0, s.count);
  };
  s.t0 = lo <= s.first ? 0 : kept_below(lo);
  s.t1 = hi <= s.first ? 0 : kept_below(hi);
  s.t0 = std::min(s.t0, s.t1);
  return s;
}

std::vector<DilatedSegment> dilated_segments(const DilatedLevel& lv, int64_t h, int64_t begin, int64_t end,
                                             int64_t n) {
  std::vector<DilatedSegment> out;
  for (int64_t g0 = (begin / lv.w) * lv.w; g0 < end; g0 += lv.w) {
    const DilatedSegment s = dilated_segment(lv, h, g0, n, begin, end);
    if (s.t0 < s.t1) out.push_back(s);
  }
  return out;
}

namespace {

// Queries t in [seg.t0, seg.t0 + q_count) of a segment attend to all its kept rows and are merged
// into a.o / a.lse. Local row of query t0 is q_first (rows r apart); the segment's kept K/V rows
// are at k_rows / v_rows, kv_stride apart. a.lse must be set.
void attend_segment(const AttentionArgs& a, int64_t b, int64_t h, const DilatedLevel& lv, const DilatedSegment& seg,
                    const float* k_rows, const float* v_rows, int64_t kv_stride, int64_t q_first, int64_t q_count,
                    DilatedScratch& s) {
  const Shape sh = a.shape;
  const int64_t row = sh.H * sh.d;
  // Query t of the segment (global position first + t*r) is local row q_first + t*r of this tensor;
  // its (o, lse) merges straight into the output rows, r rows apart.
  HeadProblem p;
  p.q = a.q + (b * sh.N + q_first) * row + h * sh.d;
  p.q_stride = lv.r * row;
  p.nq = q_count;
  p.k = k_rows;
  p.v = v_rows;
  p.kv_stride = kv_stride;
  p.nk = seg.count;
  p.d = sh.d;
  p.scale = a.scale;
  p.dtype = a.dtype;
  p.o = a.o + (b * sh.N + q_first) * row + h * sh.d;
  p.o_stride = lv.r * row;
  p.lse = a.lse + (b * sh.H + h) * sh.N + q_first;
  p.lse_stride = lv.r;
  p.merge = true;
  // Causal by global position is causal by kept index, since kept positions ascend.
  s.mask = Pattern{};
  s.mask.causal = a.pattern.causal;
  p.mask = &s.mask;
  p.q_pos0 = seg.t0;
  p.mask_n = seg.count;
  flash_head(p, s.kv, s.flash);
}

}  // namespace

void dilated_attention(const AttentionArgs& args) {
  const Shape sh = args.shape;
  AttentionArgs a = args;
  std::vector<float> own_lse;  // levels merge through the lse, so keep one even if the caller did not ask
  if (!a.lse) {
    own_lse.resize(sh.B * sh.H * sh.N);
    a.lse = own_lse.data();
  }
  std::fill(a.o, a.o + sh.numel(), 0.0f);
  std::fill(a.lse, a.lse + sh.B * sh.H * sh.N, -std::numeric_limits<float>::infinity());
  const int64_t kv_row = sh.kv_heads() * sh.d;  // GQA: query head h reads KV head h / group in place
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
  for (const DilatedLevel& lv : a.pattern.dilated_levels(sh.N)) {
    const int64_t segs = (sh.N + lv.w - 1) / lv.w;
    // One task per (batch, head, segment); a query row belongs to one segment per level, so the
    // merges of one level never race.
#pragma omp parallel num_threads(threads)
    {
      DilatedScratch s;
#pragma omp for schedule(dynamic)
      for (int64_t t = 0; t < sh.B * sh.H * segs; ++t) {
        const int64_t b = t / (sh.H * segs), h = (t / segs) % sh.H, g = t % segs;
        for (const DilatedSegment& seg : dilated_segments(lv, a.head0 + h, g * lv.w, (g + 1) * lv.w, sh.N)) {
          const float* k_rows = a.k + (b * sh.N + seg.first) * kv_row + h / sh.group() * sh.d;
          const float* v_rows = a.v + (b * sh.N + seg.first) * kv_row + h / sh.group() * sh.d;
          // r >= N keeps at most one row per segment: the stride is then never stepped.
          attend_segment(a, b, h, lv, seg, k_rows, v_rows, std::min(lv.r, sh.N) * kv_row, seg.first, seg.count, s);
        }
      }
    }
  }
  weightless_rows_to_nan(a);
}

std::string dilated_unsupported(const Pattern& p, const Shape& s) {
  if (p.kind != PatternKind::dilated) return "the dilated kernel runs dilated patterns only";
  if (s.d > kFlashMaxD) return "dilated supports head dims up to " + std::to_string(kFlashMaxD);
  return {};
}

}  // namespace longattn
