#pragma once
// Tiled online-softmax attention of one head on the CPU: the building block that the `flash` and
// `dilated` kernels, ring steps and LongNet segments all call. Never forms an N x N buffer.
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <vector>

#include "kernels/attention.h"
#include "kernels/dtype.h"

namespace longattn {

constexpr int64_t kFlashBq = 64;  // query rows per tile
constexpr int64_t kFlashBk = 64;  // keys per block of the AVX-512 paths (AMX takes more: TilePath::bk)
constexpr int64_t kFlashMaxD = 256;

// One head's problem on strided rows. Rows of q, k, v, o are `*_stride` floats apart, so a head of
// a [B, N, H, d] tensor, or every r-th row of it (a dilated level), is a view, not a copy.
struct HeadProblem {
  const float* q = nullptr;
  int64_t q_stride = 0, nq = 0;
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t kv_stride = 0, nk = 0;
  float* o = nullptr;  // normalised output rows
  int64_t o_stride = 0;
  float* lse = nullptr;  // lse[i * lse_stride] for query row i (natural log); may be null unless merge
  int64_t lse_stride = 1;
  // false: write o and lse. true: merge this (o, lse) into them (SPEC §1), as levels, ring steps and
  // segments do; o and lse hold a result already (o = 0, lse = -inf when empty).
  bool merge = false;
  int64_t d = 0;
  float scale = 0;
  DType dtype = DType::fp32;  // the values' type: picks the tile path (select_tile_path)
  // The mask: single-level `mask` in its own coordinates, query row i at position q_pos0 + i and
  // key row j at k_pos0 + j, sequence length mask_n, head mask_head.
  const Pattern* mask = nullptr;
  int64_t q_pos0 = 0, k_pos0 = 0, mask_n = 0, mask_head = 0;
};

struct TilePath;

// The keys each 16-row group of a tile may see in one key block: [lo, hi), block-relative, a
// superset of every row's visible keys. Partial blocks of banded masks (causal diagonals, local
// bands, block diagonals) pass them, and the paths skip the keys a whole group masks out.
constexpr int64_t kSpanRows = 16;
struct KeySpans {
  int64_t lo[kFlashBq / kSpanRows], hi[kFlashBq / kSpanRows];
};

// Vectors on 64-byte boundaries: a 512-bit load that straddles two cache lines costs two.
template <class T>
struct CacheAligned {
  using value_type = T;
  CacheAligned() = default;
  template <class U>
  CacheAligned(const CacheAligned<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{64})); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const CacheAligned<U>&) const { return true; }
};
template <class T>
using aligned_vector = std::vector<T, CacheAligned<T>>;

// K and V of one head, packed per key block in the layout of a tile path, zero-padded to
// dp = d rounded up to the path's pad (16 lanes, or 32 for AMX tiles).
struct PackedKV {
  const TilePath* path = nullptr;  // the path that packed it
  int64_t nk = 0, dp = 0, bk = 0, blocks = 0;  // bk keys per block (the path's)
  aligned_vector<float> kt;       // fp32: [blocks][dp][bk]
  aligned_vector<float> v;        // fp32: [blocks * bk][dp]
  aligned_vector<uint16_t> kt16;  // bf16: [blocks][dp/2][bk][2]
  aligned_vector<uint16_t> v16;   // bf16: [blocks][bk/2][dp][2]
  bool v_nonfinite = false;    // V holds NaN or inf (attend --allow-nonfinite)
};

// Per-thread working memory, reused across calls.
struct FlashScratch {
  aligned_vector<float> q, s, o, m, l, alpha;  // l: 16 lanes per row, summed at the end of the tile
  aligned_vector<uint16_t> q16, p16;
};

// Packs with the tile path of p.dtype (select_tile_path), or with `path` when given.
void pack_kv(const HeadProblem& p, PackedKV& out, const TilePath* path = nullptr);
// Attend query rows [q_begin, q_end) of p to all of its keys (packed in kv).
void flash_rows(const HeadProblem& p, const PackedKV& kv, int64_t q_begin, int64_t q_end, FlashScratch& s);
// pack_kv then flash_rows over every query row, on the calling thread.
void flash_head(const HeadProblem& p, PackedKV& kv, FlashScratch& s);

// Every problem of a list, on `threads` threads (0: all). Problems write disjoint output rows and
// share one mask geometry; the schedule follows the list: a few long problems (the heads of a
// sequence) are packed once and cut into query tiles, banded masks into runs of tiles packing only
// the keys they see, and many short ones (LongNet segments) run one per task.
void flash_problems(std::span<const HeadProblem> problems, int threads);
// Gives back the buffers the CPU kernels keep from call to call (flash's packed heads, strided's
// lanes), so that what one case holds is not counted in the next one's peak memory.
void release_kept_buffers();

// The `flash` kernel: every head of args, threads over batch x head x query tile.
void flash_attention(const AttentionArgs& args);
// Rows that have keys yet end with LSE -inf: every key scored -inf (an inf in Q or K, let through
// by --allow-nonfinite). The online softmax leaves them empty, like rows without keys; the oracle's
// softmax makes them NaN (max -inf, exp(-inf + inf)), and so does this, for O and LSE. The kernels
// call it once on their whole output (a piece's -inf row may still get weight from another piece).
void weightless_rows_to_nan(const AttentionArgs& a);
// The same with keys from elsewhere: queries of `a` (a.shape.N rows, at global positions q_pos0 + i)
// attend to nk keys k, v ([B, nk, H, d], at k_pos0 + j), masked by a.pattern in a sequence of n_mask
// tokens. (The distributed methods go through the attention step, kernels/step.h, which runs the
// same schedule over blocks: flash_problems.)
void flash_attention_at(const AttentionArgs& a, const float* k, const float* v, int64_t nk, int64_t q_pos0,
                        int64_t k_pos0, int64_t n_mask);
std::string flash_unsupported(const Pattern& p, const Shape& s);

}  // namespace longattn
