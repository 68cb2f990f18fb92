// `flash` on the GPU: the tile kernel with the view that keeps every token (one segment of N
// tokens, rate 1), so kept indices are positions and the case's own pattern is the mask.
#include <climits>

#include "kernels/cuda/gpu_kernels.h"
#include "kernels/cuda/tile_attention.h"

namespace longattn::cuda {

std::string tile_unsupported(const std::string& name, const Shape& s, DType t) {
  if (t == DType::fp32) return name + " runs bf16/fp16 inputs on tensor cores (fp32: vanilla, or device cpu)";
  if (!tile_supports_d(s.d)) return name + " is built for head dims 64 and 128, got d = " + std::to_string(s.d);
  return {};
}

TileParams tile_params(const DeviceArgs& a, const DevicePattern& mask, bool merge) {
  TileParams p;
  p.q = a.q;
  p.k = a.k;
  p.v = a.v;
  p.o = a.o;
  p.lse = a.lse;
  p.mask = mask;
  p.scale = a.scale;
  p.merge = merge;
  return p;
}

namespace {

std::string flash_unsupported(const Pattern& p, const Shape& s, DType t) {
  if (p.kind == PatternKind::dilated) return "flash runs single-level patterns; dilated patterns run on `dilated`";
  if (TileView{s.B, s.H, s.N, s.d, s.N, 1, 0}.blocks() > INT_MAX) return "flash: more than 2^31 thread blocks";
  return tile_unsupported("flash", s, t);
}

void flash_cuda(const DeviceArgs& a, const GpuScratch&) {
  TileParams p = tile_params(a, a.pattern, /*merge=*/false);
  p.view = TileView{a.shape.B, a.shape.H, a.shape.N, a.shape.d, /*w=*/a.shape.N, /*r=*/1, a.head0};
  launch_tile_attention(p, a.dtype, a.stream);
}

}  // namespace

const GpuKernel kFlashCuda{flash_unsupported, nullptr, flash_cuda, false};

}  // namespace longattn::cuda
