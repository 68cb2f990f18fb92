#pragma once
// The tile kernel that `flash` and `dilated` share: attention of 64-query tiles to 64-key blocks
// with an online softmax on tensor cores, over a *view* of the sequence. A view cuts every
// sequence into segments of w tokens and keeps every r-th token of each, starting at the head's
// offset (head0 + h) mod r: with w = N, r = 1 it is the whole sequence (flash); with a LongNet
// level (w, r) it is that level's kept rows, read in place r rows apart (dilated). Inside a
// segment, query and key positions are kept indices 0 .. count-1, and the mask is a single-level
// pattern in those coordinates.
#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

#include "kernels/cuda/device_pattern.h"
#include "kernels/step_block.h"
#include "kernels/dtype.h"

namespace longattn::cuda {

constexpr int64_t kTileQ = 64;  // query rows per thread block (4 warps x 16)
constexpr int64_t kTileK = 64;  // keys per block of the inner loop

struct TileView {
  int64_t B = 1, H = 1, N = 1;  // batch, heads, tokens per sequence
  int64_t d = 64;               // head dim; a token's row is H*d elements
  int64_t w = 1, r = 1;         // segment length and dilation rate
  int64_t head0 = 0;            // global index of head 0: offsets are (head0 + h) mod r
  // Residue classes instead of segments (strided's pieces): segment g, g < r, is the whole
  // sequence's positions g, g + r, ... for every head (w and head0 unused).
  bool classes = false;
  // Key t' of a segment sits at mask position t' + key_shift (queries at t): +1 with a causal mask
  // keeps keys t' < t, -1 with local(0, N) keys t' > t. The mask's length is count + max(shift, 0).
  int64_t key_shift = 0;
  LONGATTN_HD int64_t segments() const { return classes ? r : (N + w - 1) / w; }
  // Most kept rows any segment has: ceil(min(w, N) / r); query tiles per segment cover them.
  LONGATTN_HD int64_t kept_max() const { return ((classes || w >= N ? N : w) + r - 1) / r; }
  LONGATTN_HD int64_t tiles() const { return (kept_max() + kTileQ - 1) / kTileQ; }
  LONGATTN_HD int64_t blocks() const { return B * H * segments() * tiles(); }
};

// What thread block `block` computes: kept queries [t0, min(t0 + kTileQ, count)) of segment g of
// head h of batch b, whose kept positions are first + t*r, t in [0, count).
struct TileTask {
  int64_t b = 0, h = 0, first = 0, count = 0, t0 = 0;
  bool valid = false;  // false: this block of the grid has nothing to do (a short segment)
};

LONGATTN_HD TileTask tile_task(const TileView& v, int64_t block) {
  TileTask t;
  const int64_t tiles = v.tiles(), segs = v.segments();
  const int64_t tile = block % tiles;
  const int64_t g = (block / tiles) % segs;
  t.h = (block / (tiles * segs)) % v.H;
  t.b = block / (tiles * segs * v.H);
  const int64_t begin = v.classes ? 0 : g * v.w, end = v.classes || begin + v.w >= v.N ? v.N : begin + v.w;
  t.first = v.classes ? g : begin + (v.head0 + t.h) % v.r;
  t.count = t.first < end ? (end - t.first + v.r - 1) / v.r : 0;
  t.t0 = tile * kTileQ;
  t.valid = t.t0 < t.count;
  return t;
}

// The job of thread block `block` of a view launch over tensors of element type Elem ([B, N, H, d];
// o, lse fp32): the kept queries [t0, t0 + kTileQ) of one segment of one head against the segment's
// kept keys, rows r apart in place (no gather), positions in kept indices (keys shifted by
// key_shift), the mask's head 0 (a view's mask is never dilated). False: a segment shorter than the
// longest leaves this block nothing to do. Host code (tests) decodes launches with it too.
template <typename Elem>
LONGATTN_HD bool view_job(const TileView& view, const Elem* q, const Elem* k, const Elem* v, float* o, float* lse,
                          int64_t block, StepBlock& j, int64_t& t0) {
  const TileTask task = tile_task(view, block);
  if (!task.valid) return false;
  const int64_t token = view.H * view.d;
  const int64_t at = (task.b * view.N + task.first) * token + task.h * view.d;
  j.q = q + at;
  j.k = k + at;
  j.v = v + at;
  j.q_stride = j.kv_stride = view.r * token;
  j.nq = j.nk = task.count;
  j.q_pos0 = j.head = 0;
  j.k_pos0 = view.key_shift;
  j.n_mask = task.count + (view.key_shift > 0 ? view.key_shift : 0);
  j.o = o + at;
  j.o_stride = view.r * token;
  j.lse = lse + (task.b * view.H + task.h) * view.N + task.first;
  j.lse_stride = view.r;
  t0 = task.t0;
  return true;
}

struct TileParams {
  const void* q = nullptr;  // [B, N, H, d] of the element type
  const void* k = nullptr;
  const void* v = nullptr;
  float* o = nullptr;    // [B, N, H, d]
  float* lse = nullptr;  // [B, H, N], natural log; never null
  TileView view;
  DevicePattern mask;  // single-level, in kept-index coordinates, sequence length = count
  float scale = 0;     // score scale (natural units)
  bool merge = false;  // false: write o, lse; true: merge into them (SPEC §1; o, lse initialised)
};

// What one thread block attends, whichever way the launch was described: a view's segment, or a
// step's block (kernels/step_block.h; its pointers in device memory: a view's of the launch's dtype,
// a step's fp32 containers of its values).
using TileJob = StepBlock;

// An attention step on the device: thread block i computes query rows [tiles[i].t0, + kTileQ) of
// jobs[tiles[i].job]. Jobs write disjoint rows; their accumulators are merged into (SPEC §1).
struct TileRef {
  int64_t job = 0, t0 = 0;
};
struct StepTileParams {
  const TileJob* jobs = nullptr;   // device memory
  const TileRef* tiles = nullptr;  // device memory, one per thread block
  int64_t tile_count = 0;
  DevicePattern mask;  // single-level
  float scale = 0;
  bool merge = true;
};

// fixed(block, c)'s summary columns outside each query block, gathered in position order into
// [B, S, H, d] K and V (S = summary_count(); summary position j lands at row summary_before(j)).
// Thread blocks take 64 queries of one block of one head against the summaries of the blocks
// before theirs (or, with `after`, after theirs), unmasked: its own block's are the block piece's.
struct SummaryView {
  int64_t B = 1, H = 1, N = 1, d = 64;
  PatternLevel fixed;  // kind fixed: block, summary
  bool after = false;
  LONGATTN_HD int64_t query_blocks() const { return (N + fixed.block - 1) / fixed.block; }
  LONGATTN_HD int64_t summary_count() const { return fixed.summary_before(N); }
  LONGATTN_HD int64_t tiles() const { return (fixed.block + kTileQ - 1) / kTileQ; }
  LONGATTN_HD int64_t blocks() const { return B * H * query_blocks() * tiles(); }
};

// The job of thread block `block` of a summary launch (queries of element type Elem in [B, N, H, d],
// gathered ks, vs in [B, S, H, d]), as view_job's; positions are plain indices (an unmasked launch).
template <typename Elem>
LONGATTN_HD bool summary_job(const SummaryView& v, const Elem* q, const Elem* ks, const Elem* vs, float* o, float* lse,
                             int64_t block, StepBlock& j, int64_t& t0) {
  const int64_t tiles = v.tiles(), nb = v.query_blocks(), S = v.summary_count(), bl = v.fixed.block;
  const int64_t qb = (block / tiles) % nb, h = (block / (tiles * nb)) % v.H, b = block / (tiles * nb * v.H);
  const int64_t i0 = qb * bl, i1 = i0 + bl < v.N ? i0 + bl : v.N;
  t0 = (block % tiles) * kTileQ;
  const int64_t k0 = v.after ? v.fixed.summary_before(i1) : 0, k1 = v.after ? S : v.fixed.summary_before(i0);
  if (t0 >= i1 - i0 || k0 >= k1) return false;
  const int64_t row = v.H * v.d;
  j.q = q + (b * v.N + i0) * row + h * v.d;
  j.k = ks + (b * S + k0) * row + h * v.d;
  j.v = vs + (b * S + k0) * row + h * v.d;
  j.q_stride = j.kv_stride = j.o_stride = row;
  j.nq = i1 - i0;
  j.nk = k1 - k0;
  j.q_pos0 = j.k_pos0 = j.head = 0;
  j.n_mask = j.nq > j.nk ? j.nq : j.nk;
  j.o = o + (b * v.N + i0) * row + h * v.d;
  j.lse = lse + (b * v.H + h) * v.N + i0;
  j.lse_stride = 1;
  return true;
}
struct SummaryParams {
  const void* q = nullptr;  // [B, N, H, d] of the element type
  const void* ks = nullptr;  // [B, S, H, d], gathered
  const void* vs = nullptr;
  float* o = nullptr;
  float* lse = nullptr;
  SummaryView view;
  DevicePattern mask;  // full, not causal
  float scale = 0;
  bool merge = true;
};

// One launch of the tile kernel over a view: its single-level mask, and whether it merges into O
// and LSE (false: writes them).
struct ViewLaunch {
  TileView view;
  PatternLevel mask;
  bool merge = false;
};
// `flash`'s launches for a single-level pattern on [B, N, H, d] (kernels/cuda/flash.cpp): one over
// the whole sequence under the pattern itself, or, for strided(l), its disjoint dense pieces as
// the CPU runs them (kernels/sparse_cpu.cpp): the band |i - j| < l, then each residue class mod l
// with its keys before the query (and, without causal, after it). Host tests run the same list.
std::vector<ViewLaunch> flash_launches(int64_t B, int64_t N, int64_t H, int64_t d, const PatternParams& p,
                                       int64_t head0);

// fixed's summary launches (before; after too without causal), to run after flash_launches'.
std::vector<SummaryView> summary_views(int64_t B, int64_t N, int64_t H, int64_t d, const PatternParams& p);
// A copy of `rows` rows of `width` bytes: dst + r * dst_pitch <- src + r * src_pitch (byte offsets
// from the two tensors' starts).
struct Copy2D {
  size_t dst, dst_pitch, src, src_pitch, width, rows;
};
// The gather of a summary view's K (or V) rows of `elem`-byte elements: per batch and summary
// column o, every block's row o, block rows apart, to rows kb * c + o - (block - c).
std::vector<Copy2D> summary_gather(const SummaryView& v, size_t elem);

// Head dims the tile kernel is built for.
inline bool tile_supports_d(int64_t d) { return d == 64 || d == 128; }

// Launch on `stream`; dtype bf16 or fp16, view.d 64 or 128. Throws on a launch failure.
void launch_tile_attention(const TileParams& p, DType dtype, cudaStream_t stream);
// The same kernel over a step's tiles; head dim d (64 or 128).
void launch_tile_step(const StepTileParams& p, int64_t d, DType dtype, cudaStream_t stream);
// The same kernel over fixed's gathered summaries.
void launch_tile_summary(const SummaryParams& p, DType dtype, cudaStream_t stream);

}  // namespace longattn::cuda
