// `dilated` (LongNet) on the GPU. Level (w, r) keeps, in each segment of w tokens, every r-th
// token from the head's offset (head0 + h) mod r; the tile kernel reads those rows in place, r
// rows apart, and attends each segment's kept queries to its kept keys (causal by kept index,
// which is causal by position since kept positions ascend). Each level merges its (o, lse) into
// O and LSE (SPEC §1); a query belongs to one segment per level, so merges never race. Memory:
// O and LSE only, whatever N.
#include <climits>
#include <cmath>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gpu_kernels.h"
#include "kernels/cuda/tile_attention.h"

namespace longattn::cuda {
namespace {

std::string dilated_unsupported(const Pattern& p, const Shape& s, DType t) {
  if (p.kind != PatternKind::dilated) return "the dilated kernel runs dilated patterns only";
  if (std::string why = tile_unsupported("dilated", s, t); !why.empty()) return why;
  if (const char* why = device_pattern_unsupported(p, s.N); *why) return why;
  for (const DilatedLevel& lv : p.dilated_levels(s.N))
    if (TileView{s.B, s.H, s.N, s.d, lv.w, lv.r, 0}.blocks() > INT_MAX)
      return "dilated: level (" + std::to_string(lv.w) + ", " + std::to_string(lv.r) +
             ") needs more than 2^31 thread blocks";
  return {};
}

void dilated_cuda(const DeviceArgs& a, const GpuScratch&) {
  const Shape sh = a.shape;
  LONGATTN_CUDA_CHECK(cudaMemsetAsync(a.o, 0, sh.numel() * sizeof(float), a.stream));
  launch_fill(a.lse, sh.B * sh.H * sh.N, -INFINITY, a.stream);  // every level empty so far

  DevicePattern dense;  // inside a segment, the kept rows attend densely
  dense.base.causal = a.pattern.base.causal;
  TileParams p = tile_params(a, dense, /*merge=*/true);
  for (int l = 0; l < a.pattern.levels; ++l) {
    p.view = TileView{sh.B, sh.H, sh.N, sh.d, a.pattern.w[l], a.pattern.r[l], a.head0};
    launch_tile_attention(p, a.dtype, a.stream);
  }
}

}  // namespace

const GpuKernel kDilatedCuda{dilated_unsupported, nullptr, dilated_cuda, false};

}  // namespace longattn::cuda
