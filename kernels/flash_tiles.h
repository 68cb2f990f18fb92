#pragma once
// Tile paths: the two products of a flash tile (S = Q K^T and O = alpha O + P V) for one dtype on
// one ISA. flash_rows owns the online softmax between them and calls a path through this table;
// a path owns the layout of its packed K/V and query tile. One row per path, one selector
// (select_tile_path) that the kernels, the tests, the benchmarks and the results context share.
#include <cstdint>
#include <span>
#include <string>

#include "kernels/dtype.h"
#include "kernels/flash_cpu.h"

namespace longattn {

struct TilePath {
  const char* name;   // "fp32-avx512", "bf16-avx512bf16", ... as recorded in the results context
  DType dtype;        // the dtype whose inputs it reads
  const char* needs;  // the CPU feature it needs, for the reason a test skips
  int64_t pad;        // head dims padded to a multiple of this (PackedKV::dp)
  int64_t bk;         // keys per block: scores and probabilities are kFlashBq x bk
  bool p_bf16;        // reads the probabilities as bf16 (FlashScratch::p16), not fp32 (::s)
  bool honours_spans; // qk and pv touch only KeySpans' keys (so the softmax may skip the rest)
  bool (*available)();  // this CPU runs it
  // Its peak per core and cycle (multiply-adds count two): the yardstick of `% of peak` figures.
  double (*peak_flops_per_cycle)();
  // K and V of p into kv (zero-padded to kv.dp = d rounded up to pad, kv.blocks key blocks).
  void (*pack)(const HeadProblem& p, PackedKV& kv);
  // Query rows [i0, i0 + rows) of p into the tile s (rows past `rows` zero).
  void (*load_q)(const HeadProblem& p, int64_t i0, int64_t rows, int64_t dp, FlashScratch& s);
  // scores[kFlashBq][bk] = Q K_kb^T of key block kb, and the factor sc > 0 still to apply:
  // the log2-domain scores are scores x sc, and Q K^T x qscale. (A path returns qscale and leaves
  // the multiply to the softmax's FMAs, or applies it and returns 1.)
  // With spans, a row's scores outside its group's span may be left unwritten (the mask covers them).
  float (*qk)(FlashScratch& s, const PackedKV& kv, int64_t kb, const KeySpans* spans, float qscale, float* scores);
  // o[kFlashBq][dp] = alpha[r] * o[r] + P[r][:cols] V_kb, P = the probabilities in s.s.
  // With spans, P is zero outside each group's span.
  void (*pv)(FlashScratch& s, const PackedKV& kv, int64_t kb, const KeySpans* spans, int64_t cols);
};

std::span<const TilePath> tile_paths();
const TilePath* find_tile_path(const std::string& name);  // null if unknown
// The path for dtype t on this CPU: the first native one this CPU runs, else fp32 tiles on the
// dtype's values (exact in fp32).
const TilePath& select_tile_path(DType t);
// Forces `path` (null: back to the choice above) for every later selection. A forced fp32 path
// serves every dtype (the conversion path); a forced bf16 path serves bf16 only.
void force_tile_path(const TilePath* path);
// LONGATTN_TILE_PATH=NAME forces that path (benchmarks, comparisons). Throws InputError for an
// unknown name or a path this CPU cannot run.
void force_tile_path_from_environment();

// Rows of one head lie a token apart (its other heads between them), often a page or more, and the
// hardware prefetcher does not cross pages: packing asks for the rows kPackAhead ahead itself.
// On a Zen 4 EPYC, 48 rows ahead first measured faster than 16 (local(512,0) 126-134 -> 137-152
// GFLOP/s, strided(128) +5-15%, alternating harness runs, banded tasks head by head). Since the
// banded tasks run chunk by chunk across heads, 0, 16 and 48 rows ahead measure within 2% of each
// other there (local(127,0), local(511,0), strided(128); N = 4K, 8K; best of 30 in one process).
// Kept for CPUs where it was not measured.
constexpr int64_t kPackAhead = 48;
inline void prefetch_row(const float* base, int64_t row, int64_t rows, int64_t stride, int64_t d) {
  if (row < rows)
    for (int64_t c = 0; c < d; c += 16) __builtin_prefetch(base + row * stride + c);
}

// The paths, one translation unit each (built with their ISA's flags, run only where available).
extern const TilePath kTileFp32;
extern const TilePath kTileBf16Avx512;
extern const TilePath kTileBf16Amx;

// What the bf16 paths share: VDPBF16PS and AMX read the same VNNI pair layouts (PackedKV::kt16,
// v16; FlashScratch::q16, p16).
namespace bf16_tiles {
void pack(const HeadProblem& p, PackedKV& out);
void load_q(const HeadProblem& p, int64_t i0, int64_t rows, int64_t dp, FlashScratch& s);
void pv_nonfinite(FlashScratch& s, const PackedKV& kv, int64_t kb, int64_t cols);  // V with NaN or inf
}  // namespace bf16_tiles

}  // namespace longattn
