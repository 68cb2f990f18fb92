#include "kernels/flash_cpu.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "kernels/flash_tiles.h"
#include "kernels/input_error.h"
#include "kernels/merge.h"
#include "kernels/simd.h"
#include "kernels/sparse_cpu.h"

namespace longattn {
namespace {

using simd::vf;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

thread_local std::vector<PackedKV> t_kept_kv;  // flash_problems' packed heads, the calling thread's

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Sets scores of key block [kpos, kpos + cols) that the mask leaves out of row r to -inf. Interval
// masks (full, local, block-diagonal; causal or not) keep one interval of keys per row: a vector
// compare. Others ask the pattern key by key.
void mask_block(const HeadProblem& p, int64_t qpos, int64_t kpos, int64_t cols, int64_t bk, float* scores) {
  int64_t lo = 0, hi = 0;
  if (p.mask->key_interval(qpos, p.mask_n, lo, hi)) {
    const simd::vf iota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    for (int64_t r = 0; r < kFlashBq; ++r, scores += bk) {
      p.mask->key_interval(qpos + r, p.mask_n, lo, hi);
      // Block-relative bounds, clamped into float's exact integer range.
      const float a = static_cast<float>(std::clamp<int64_t>(lo - kpos, -1, bk + 1));
      const float b = static_cast<float>(std::clamp<int64_t>(hi - kpos, -1, bk + 1));
      for (int64_t j = 0; j < bk; j += 16) {
        const vf jj = iota + static_cast<float>(j);
        simd::store(scores + j, (jj < a || jj > b) ? simd::splat(kNegInf) : simd::load(scores + j));
      }
    }
    return;
  }
  for (int64_t r = 0; r < kFlashBq; ++r, scores += bk)
    for (int64_t j = 0; j < cols; ++j)
      if (!p.mask->contains(0, p.mask_head, qpos + r, kpos + j, p.mask_n)) scores[j] = kNegInf;
}

// The spans of a partial block under an interval mask (full, local, block-diagonal): for each
// group of 16 rows, the union of its valid rows' key intervals, clamped to the block. False for
// other masks (every key is computed, then masked).
bool key_spans(const HeadProblem& p, int64_t qpos, int64_t rows, int64_t kpos, int64_t cols, KeySpans& out) {
  int64_t lo = 0, hi = 0;
  if (!p.mask->key_interval(qpos, p.mask_n, lo, hi)) return false;
  for (int64_t g = 0; g < kFlashBq / kSpanRows; ++g) {
    int64_t a = cols, b = 0;
    for (int64_t r = g * kSpanRows; r < std::min(rows, (g + 1) * kSpanRows); ++r) {
      p.mask->key_interval(qpos + r, p.mask_n, lo, hi);
      lo = std::max<int64_t>(lo - kpos, 0), hi = std::min<int64_t>(hi - kpos + 1, cols);
      if (lo < hi) a = std::min(a, lo), b = std::max(b, hi);
    }
    out.lo[g] = a < b ? a : 0;
    out.hi[g] = a < b ? b : 0;
  }
  return true;
}

// Keys [j0, j1) that query rows [q_begin, q_end) of p can see under an interval mask (full,
// local, block-diagonal): they move right with the row, so the first row's lowest key and the last
// row's highest bound them. False for other masks (and without one).
bool visible_keys(const HeadProblem& p, int64_t q_begin, int64_t q_end, int64_t& j0, int64_t& j1) {
  int64_t lo = 0, hi = 0, lo2 = 0, hi2 = 0;
  const int64_t r0 = std::max<int64_t>(p.q_pos0 + q_begin, 0), r1 = std::min(p.q_pos0 + q_end, p.mask_n) - 1;
  if (!p.mask || !p.mask->key_interval(0, p.mask_n, lo, hi)) return false;
  j0 = j1 = 0;
  if (r0 > r1) return true;  // no row inside the sequence: nothing visible
  p.mask->key_interval(r0, p.mask_n, lo, hi);
  p.mask->key_interval(r1, p.mask_n, lo2, hi2);
  j0 = std::clamp<int64_t>(lo - p.k_pos0, 0, p.nk);
  j1 = std::clamp<int64_t>(hi2 - p.k_pos0 + 1, j0, p.nk);
  return true;
}

}  // namespace

std::span<const TilePath> tile_paths() {
  static const TilePath paths[] = {kTileFp32, kTileBf16Amx, kTileBf16Avx512};  // preferred first
  return paths;
}

const TilePath* find_tile_path(const std::string& name) {
  for (const TilePath& t : tile_paths())
    if (name == t.name) return &t;
  return nullptr;
}

namespace {
std::atomic<const TilePath*> g_forced{nullptr};
}  // namespace

void force_tile_path(const TilePath* path) { g_forced = path; }

void force_tile_path_from_environment() {
  const char* e = std::getenv("LONGATTN_TILE_PATH");
  if (!e || !*e) return;
  const TilePath* f = find_tile_path(e);
  if (!f) {
    std::string names;
    for (const TilePath& p : tile_paths()) names += std::string(names.empty() ? "" : ", ") + p.name;
    throw InputError("LONGATTN_TILE_PATH: unknown tile path \"" + std::string(e).substr(0, 40) + "\"; use one of " + names);
  }
  if (!f->available())
    throw InputError("LONGATTN_TILE_PATH: " + std::string(f->name) + " needs " + f->needs + ", which this CPU lacks");
  g_forced = f;
}

const TilePath& select_tile_path(DType t) {
  // A forced fp32 path serves every dtype (the conversion path); a forced bf16 path serves bf16.
  if (const TilePath* f = g_forced.load(); f && (f->dtype == t || f->dtype == DType::fp32)) return *f;
  for (const TilePath& p : tile_paths())
    if (p.dtype == t && p.available()) return p;
  return kTileFp32;  // conversion: the dtype's values are exact in fp32
}

void pack_kv(const HeadProblem& p, PackedKV& out, const TilePath* path) {
  out.path = path ? path : &select_tile_path(p.dtype);
  out.nk = p.nk;
  out.dp = round_up(p.d, out.path->pad);
  out.bk = out.path->bk;
  out.blocks = (p.nk + out.bk - 1) / out.bk;
  out.path->pack(p, out);
  // x * 0 is 0 for finite x, NaN for inf and NaN: one vectorisable pass instead of isfinite calls.
  float acc[kFlashMaxD] = {};
  for (int64_t j = 0; j < p.nk; ++j)
    for (int64_t c = 0; c < p.d; ++c) acc[c] += p.v[j * p.kv_stride + c] * 0.0f;
  out.v_nonfinite = false;
  for (int64_t c = 0; c < p.d; ++c) out.v_nonfinite |= acc[c] != 0.0f;
}

void flash_rows(const HeadProblem& p, const PackedKV& kv, int64_t q_begin, int64_t q_end, FlashScratch& s) {
  const TilePath& path = *kv.path;
  const int64_t dp = kv.dp;
  const int64_t bk = kv.bk;
  const bool p_bf16 = path.p_bf16;
  s.s.resize(kFlashBq * bk);
  if (p_bf16) s.p16.resize(kFlashBq * bk);
  s.m.resize(kFlashBq);
  s.l.resize(kFlashBq * simd::kLanes);
  s.alpha.resize(kFlashBq);
  // Scores live in the log2 domain (scaled by scale * log2(e)); softmax uses exp2.
  const float qscale = p.scale * kLog2e;
  aligned_vector<float>& m_new = s.alpha;  // holds the new maxima until alpha replaces them
  float sc = 1;  // what the path left for the softmax to multiply scores by

  for (int64_t i0 = q_begin; i0 < q_end; i0 += kFlashBq) {
    const int64_t rows = std::min(kFlashBq, q_end - i0);
    path.load_q(p, i0, rows, dp, s);
    // The next tile's query and output rows, a head's rows pages apart: fetched while this one
    // computes (a narrow band computes a few key blocks per tile, too few to hide the misses).
    for (int64_t r = i0 + kFlashBq; r < std::min(q_end, i0 + 2 * kFlashBq); ++r) {
      prefetch_row(p.q, r, q_end, p.q_stride, p.d);
      prefetch_row(p.o, r, q_end, p.o_stride, p.d);
    }
    s.o.assign(kFlashBq * dp, 0.0f);
    std::fill(s.m.begin(), s.m.end(), kNegInf);
    std::fill(s.l.begin(), s.l.end(), 0.0f);
    const int64_t qpos = p.q_pos0 + i0;
    // Blocks outside the keys the tile's rows can see are not even classified (a narrow band
    // over a long sequence would otherwise ask about every block).
    int64_t kb_begin = 0, kb_end = kv.blocks, j_lo = 0, j_hi = 0;
    if (visible_keys(p, i0, i0 + rows, j_lo, j_hi)) kb_begin = j_lo / bk, kb_end = j_lo < j_hi ? (j_hi - 1) / bk + 1 : kb_begin;
    for (int64_t kb = kb_begin; kb < kb_end; ++kb) {
      const int64_t j0 = kb * bk, cols = std::min(bk, kv.nk - j0);
      const int64_t kpos = p.k_pos0 + j0;
      const BlockKind kind = p.mask ? p.mask->classify(qpos, qpos + rows, kpos, kpos + cols) : BlockKind::full;
      if (kind == BlockKind::empty) continue;
      KeySpans spans;
      const KeySpans* sp = kind == BlockKind::partial && key_spans(p, qpos, rows, kpos, cols, spans) ? &spans : nullptr;
      sc = path.qk(s, kv, kb, sp, qscale, s.s.data());
      if (kind == BlockKind::partial) mask_block(p, qpos, kpos, cols, bk, s.s.data());

      // Online softmax on scores that are still to be multiplied by sc > 0 (so maxima are taken
      // before scaling). First every row's new running max, then the rescale factors of all rows
      // as vectors, then probabilities, with row sums kept as 16 lanes (one reduction per tile).
      // Maxima drop NaN; a NaN score still reaches its row through exp2 and the sum, and the
      // one case where it would not (no other visible key) is caught below. Where the path
      // honours spans, a row's softmax covers only its group's span: [jb, je) in whole vectors.
      const bool skip = sp && path.honours_spans;
      auto jb = [&](int64_t r) { return skip ? sp->lo[r / kSpanRows] / 16 * 16 : 0; };
      auto je = [&](int64_t r) { return skip ? std::min(bk, (sp->hi[r / kSpanRows] + 15) / 16 * 16) : bk; };
      for (int64_t r = 0; r < kFlashBq; ++r) {
        float* srow = s.s.data() + r * bk;
        const int64_t b = jb(r), e = je(r);
        for (int64_t j = std::max(cols, b); j < e; ++j) srow[j] = kNegInf;
        m_new[r] = simd::max_nan(s.m[r], simd::row_max(srow + b, e - b));
      }
      for (int64_t r = 0; r < kFlashBq; r += 16) {
        const vf mn = simd::load(m_new.data() + r), mo = simd::load(s.m.data() + r);
        simd::store(s.m.data() + r, mn);
        // Rows with nothing visible yet (new max -inf) keep alpha 1: -inf - -inf is NaN.
        simd::store(s.alpha.data() + r, mn == kNegInf ? simd::splat(1.0f) : simd::exp2((mo - mn) * sc));
      }
      const vf scv = simd::splat(sc);
      for (int64_t r = 0; r < kFlashBq; ++r) {
        float* srow = s.s.data() + r * bk;
        const float mr = s.m[r];
        if (mr == kNegInf) {  // nothing visible yet in this row, unless a NaN the maxima dropped
          float* l = s.l.data() + r * simd::kLanes;
          for (int64_t j = jb(r); j < std::min(cols, je(r)); ++j)
            if (srow[j] != srow[j]) std::fill(l, l + simd::kLanes, srow[j]);
          std::fill(srow, srow + bk, 0.0f);
          if (p_bf16) std::fill(s.p16.data() + r * bk, s.p16.data() + (r + 1) * bk, 0);
          continue;
        }
        const vf mrs = simd::splat(mr * sc);
        vf sum{};
        if (p_bf16) {
          uint16_t* prow = s.p16.data() + r * bk;
          for (int64_t j = 0; j < bk; j += 16) {
            const vf e = simd::exp2<4>(simd::load(srow + j) * scv - mrs);
            simd::store_bf16(prow + j, e);
            sum += e;
          }
        } else {
          sum = simd::row_exp2(srow + jb(r), je(r) - jb(r), sc, mr * sc);
        }
        float* l = s.l.data() + r * simd::kLanes;
        simd::store(l, simd::load(l) * s.alpha[r] + sum);
      }
      path.pv(s, kv, kb, sp, cols);
    }

    for (int64_t r = 0; r < rows; ++r) {
      const float l = simd::hsum(simd::load(s.l.data() + r * simd::kLanes));
      const bool nan = l != l;  // a non-finite input reached this row: NaN in O and LSE, as in the oracle
      const float inv = nan ? l : l > 0 ? 1.0f / l : 0.0f;
      const float lse = nan ? l : l > 0 ? (s.m[r] * sc + std::log2(l)) * kLn2 : kNegInf;
      float* orow = p.o + (i0 + r) * p.o_stride;
      const float* part = s.o.data() + r * dp;
      if (!p.merge) {
        for (int64_t c = 0; c < p.d; ++c) orow[c] = part[c] * inv;
        if (p.lse) p.lse[(i0 + r) * p.lse_stride] = lse;
        continue;
      }
      float& lse_acc = p.lse[(i0 + r) * p.lse_stride];
      if (lse == kNegInf) continue;  // an empty part adds nothing
      const MergeWeights w = merge_weights(lse_acc, lse);  // kernels/merge.h
      const float wa = w.wa, wb = w.wb * inv;
      if (lse_acc == kNegInf) {
        for (int64_t c = 0; c < p.d; ++c) orow[c] = wb * part[c];
      } else {
        for (int64_t c = 0; c < p.d; ++c) orow[c] = wa * orow[c] + wb * part[c];
      }
      lse_acc = w.lse;
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

void flash_attention(const AttentionArgs& args) {
  AttentionArgs a = args;
  std::vector<float> own_lse;  // the rows' check below reads every LSE, asked for or not
  if (!a.lse) {
    own_lse.resize(a.shape.B * a.shape.H * a.shape.N);
    a.lse = own_lse.data();
  }
  // Strided and fixed patterns are not banded: as disjoint dense pieces they cost their pairs,
  // as masked blocks they would cost dense attention. (The internal block-diagonal `fixed` with
  // no summary columns is banded and runs here directly.)
  if (a.pattern.kind == PatternKind::strided) {
    strided_attention(a);
  } else if (a.pattern.kind == PatternKind::fixed && a.pattern.summary > 0) {
    fixed_attention(a);
  } else {
    flash_attention_at(a, a.k, a.v, a.shape.N, 0, 0, a.shape.N);
  }
  weightless_rows_to_nan(a);
}

void weightless_rows_to_nan(const AttentionArgs& a) {
  const Shape sh = a.shape;
  // A row has keys iff one level holds its own position: every single-level set holds it, and a
  // dilated level holds it iff the level keeps the row.
  std::vector<PatternLevel> levels;
  for (int l = 0; l < a.pattern.level_count(sh.N); ++l) levels.push_back(a.pattern.level(l, sh.N));
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t t = 0; t < sh.B * sh.H * sh.N; ++t) {
    if (a.lse[t] != kNegInf) continue;
    const int64_t b = t / (sh.H * sh.N), h = t / sh.N % sh.H, i = t % sh.N;
    if (std::none_of(levels.begin(), levels.end(), [&](const PatternLevel& lv) { return lv.contains(a.head0 + h, i, i, sh.N); }))
      continue;  // no key: empty, as it should be
    std::fill_n(a.o + (b * sh.N + i) * sh.H * sh.d + h * sh.d, sh.d, std::numeric_limits<float>::quiet_NaN());
    a.lse[t] = std::numeric_limits<float>::quiet_NaN();
  }
}

void flash_attention_at(const AttentionArgs& a, const float* k, const float* v, int64_t nk, int64_t q_pos0,
                        int64_t k_pos0, int64_t n_mask) {
  const Shape sh = a.shape;
  const int64_t row = sh.H * sh.d, kv_row = sh.kv_heads() * sh.d;  // stride between one head's tokens
  std::vector<HeadProblem> heads;
  heads.reserve(sh.B * sh.H);
  for (int64_t b = 0; b < sh.B; ++b)
    for (int64_t h = 0; h < sh.H; ++h) {
      HeadProblem p;
      p.q = a.q + b * sh.N * row + h * sh.d;
      p.o = a.o + b * sh.N * row + h * sh.d;
      p.k = k + b * nk * kv_row + h / sh.group() * sh.d;  // GQA: the group's KV head, read in place
      p.v = v + b * nk * kv_row + h / sh.group() * sh.d;
      p.q_stride = p.o_stride = row;
      p.kv_stride = kv_row;
      p.nq = sh.N;
      p.nk = nk;
      p.lse = a.lse ? a.lse + (b * sh.H + h) * sh.N : nullptr;
      p.d = sh.d;
      p.scale = a.scale;
      p.dtype = a.dtype;
      p.mask = &a.pattern;
      p.q_pos0 = q_pos0;
      p.k_pos0 = k_pos0;
      p.mask_n = n_mask;
      p.mask_head = a.head0 + h;
      heads.push_back(p);
    }
  flash_problems(heads, a.threads);
}

void release_kept_buffers() {
  t_kept_kv = {};
  release_strided_lanes();
}

void flash_problems(std::span<const HeadProblem> problems, int threads_wanted) {
  if (problems.empty()) return;
  const int threads = threads_wanted > 0 ? threads_wanted : omp_get_max_threads();
  const int64_t count = static_cast<int64_t>(problems.size());
  auto tiles_of = [](const HeadProblem& p) { return (p.nq + kFlashBq - 1) / kFlashBq; };

  // Many short problems (LongNet's segments), or more keys than packing all up front should hold:
  // one task each, packed by the thread that computes it, into its cache.
  double packed_bytes = 0;
  for (const HeadProblem& p : problems) packed_bytes += 8.0 * double(p.nk) * double(p.d);
  constexpr int64_t kShortTiles = 8;
  if ((count >= 4 * threads && tiles_of(problems[0]) <= kShortTiles) || packed_bytes > 256e6) {
#pragma omp parallel num_threads(threads)
    {
      PackedKV kv;
      FlashScratch scratch;
#pragma omp for schedule(dynamic)
      for (int64_t t = 0; t < count; ++t) {
        pack_kv(problems[t], kv);
        flash_rows(problems[t], kv, 0, problems[t].nq, scratch);
      }
    }
    return;
  }

  // Banded masks (a local window, a block diagonal) see few keys from a run of rows: each task
  // packs just the keys its rows see, right before its tiles read them from cache. Packing all of
  // a head up front costs as much as a narrow band's compute (a write and a read of K and V
  // through memory). Decided on the first problem: the list shares one mask geometry.
  constexpr int64_t kChunkTiles = 8;
  const HeadProblem& first = problems[0];
  const int64_t chunks = (tiles_of(first) + kChunkTiles - 1) / kChunkTiles;
  int64_t seen = 0;  // keys the chunks of a problem see, summed; -1: not an interval mask
  for (int64_t c = 0, j0 = 0, j1 = 0; c < chunks && seen >= 0; ++c)
    seen = visible_keys(first, c * kChunkTiles * kFlashBq, std::min(first.nq, (c + 1) * kChunkTiles * kFlashBq), j0, j1)
               ? seen + (j1 - j0)
               : -1;
  if (seen >= 0 && chunks > 1 && 3 * seen <= chunks * first.nk) {  // a third of the keys per chunk, or fewer
    // Chunk by chunk, every problem's chunk c before any chunk c + 1: the problems of a list are
    // mostly the heads of the same tokens, side by side in each token's row (H d floats), so the
    // threads work through one stretch of rows at a time, where problem by problem each head went
    // through every row of the sequence again. On a Zen 4 EPYC (2 threads, B=1, H=8, d=64; the two
    // orders alternated in one process, best of 30 each): local(127,0) +11% at N = 8K, +6% at 4K;
    // strided(128)+causal +5%.
    std::vector<std::pair<int64_t, int64_t>> order;  // (problem, chunk)
    bool more = true;
    for (int64_t c = 0; more; ++c) {
      more = false;
      for (int64_t i = 0; i < count; ++i)
        if (c * kChunkTiles < tiles_of(problems[i])) order.emplace_back(i, c), more = true;
    }
#pragma omp parallel num_threads(threads)
    {
      PackedKV kv;
      FlashScratch scratch;
#pragma omp for schedule(dynamic)
      for (int64_t t = 0; t < static_cast<int64_t>(order.size()); ++t) {
        HeadProblem p = problems[order[t].first];
        const int64_t q0 = order[t].second * kChunkTiles * kFlashBq, q1 = std::min(p.nq, q0 + kChunkTiles * kFlashBq);
        int64_t j0 = 0, j1 = 0;
        visible_keys(p, q0, q1, j0, j1);
        p.k += j0 * p.kv_stride, p.v += j0 * p.kv_stride, p.nk = j1 - j0, p.k_pos0 += j0;
        pack_kv(p, kv);
        flash_rows(p, kv, q0, q1, scratch);
      }
    }
    return;
  }

  // A few long problems: each packed once, then their query tiles shared out. Packed K and V are
  // kept by the calling thread across calls (until release_kept_buffers): a fresh allocation each
  // call would page-fault its way through tens of MB.
  if (static_cast<int64_t>(t_kept_kv.size()) < count) t_kept_kv.resize(count);
  std::vector<PackedKV>& packed = t_kept_kv;  // the caller's, also inside the parallel region
  std::vector<int64_t> start(count + 1, 0);
  for (int64_t i = 0; i < count; ++i) start[i + 1] = start[i] + tiles_of(problems[i]);
#pragma omp parallel num_threads(threads)
  {
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < count; ++i) pack_kv(problems[i], packed[i]);
    FlashScratch scratch;
    // Problem by problem, so a thread's next tile reads the K and V its last one left in its
    // cache; within a problem the last tiles first: with causal masks they are the longest.
#pragma omp for schedule(dynamic)
    for (int64_t t = 0; t < start[count]; ++t) {
      const int64_t i = std::upper_bound(start.begin(), start.end(), t) - start.begin() - 1;
      const int64_t q0 = (start[i + 1] - 1 - t) * kFlashBq;
      flash_rows(problems[i], packed[i], q0, std::min(problems[i].nq, q0 + kFlashBq), scratch);
    }
  }
}

}  // namespace longattn
