// `flash` on the GPU: the tile kernel with the view that keeps every token (one segment of N
// tokens, rate 1), so kept indices are positions and the case's own pattern is the mask.
#include <climits>
#include <utility>

#include "kernels/cuda/cuda_check.h"

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
  for (const ViewLaunch& l : flash_launches(s.B, s.N, s.H, s.d, p, 0))
    if (l.view.blocks() > INT_MAX) return "flash: more than 2^31 thread blocks";
  for (const SummaryView& v : summary_views(s.B, s.N, s.H, s.d, p))
    if (v.blocks() > INT_MAX) return "flash: more than 2^31 thread blocks";
  return tile_unsupported("flash", s, t);
}

// fixed's gathered summaries: K then V, [B, S, H, d] each, in the scratch.
size_t flash_scratch_bytes(const Pattern& p, const Shape& s, DType t) {
  if (p.kind != PatternKind::fixed) return 0;
  const std::vector<SummaryView> v = summary_views(s.B, s.N, s.H, s.d, p);
  return 2 * size_t(s.B * v[0].summary_count() * s.H * s.d) * dtype_bytes(t);
}

void gather_summaries(const DeviceArgs& a, const SummaryView& v, char* ks, char* vs) {
  for (const Copy2D& x : summary_gather(v, dtype_bytes(a.dtype)))
    for (auto [src, dst] : {std::pair{static_cast<const char*>(a.k), ks}, std::pair{static_cast<const char*>(a.v), vs}})
      LONGATTN_CUDA_CHECK(cudaMemcpy2DAsync(dst + x.dst, x.dst_pitch, src + x.src, x.src_pitch, x.width, x.rows,
                                            cudaMemcpyDeviceToDevice, a.stream));
}

void flash_cuda(const DeviceArgs& a, const GpuScratch& ws) {
  const Shape s = a.shape;
  for (const ViewLaunch& l : flash_launches(s.B, s.N, s.H, s.d, a.pattern.base, a.head0)) {
    DevicePattern mask;
    mask.base = l.mask;
    TileParams p = tile_params(a, mask, l.merge);
    p.view = l.view;
    launch_tile_attention(p, a.dtype, a.stream);
  }
  const std::vector<SummaryView> summaries = summary_views(s.B, s.N, s.H, s.d, a.pattern.base);
  if (summaries.empty()) return;
  char* ks = static_cast<char*>(ws.scratch);
  char* vs = ks + ws.bytes / 2;
  gather_summaries(a, summaries[0], ks, vs);
  for (const SummaryView& v : summaries) {
    SummaryParams p;
    p.q = a.q, p.ks = ks, p.vs = vs, p.o = a.o, p.lse = a.lse;
    p.view = v;
    p.mask.base.kind = PatternKind::full;  // unmasked: the view chose the keys
    p.scale = a.scale;
    launch_tile_summary(p, a.dtype, a.stream);
  }
}

}  // namespace

std::vector<ViewLaunch> flash_launches(int64_t B, int64_t N, int64_t H, int64_t d, const PatternParams& p,
                                       int64_t head0) {
  const TileView whole{B, H, N, d, /*w=*/N, /*r=*/1, head0};
  PatternLevel mask;
  static_cast<PatternParams&>(mask) = p;
  if (p.kind == PatternKind::fixed) {  // its own block first (then summary_views' launches)
    PatternLevel own;
    own.causal = p.causal;
    return {{TileView{B, H, N, d, /*w=*/p.block, /*r=*/1, head0}, own, false}};
  }
  if (p.kind != PatternKind::strided) return {{whole, mask, false}};
  // Masking strided's partial blocks would cost dense attention (no block is empty); its pieces
  // cost its pairs. The band |i - j| < l first, written:
  const int64_t l = p.stride;
  PatternLevel band;
  band.kind = PatternKind::local, band.causal = p.causal, band.left = l - 1, band.right = p.causal ? 0 : l - 1;
  std::vector<ViewLaunch> out = {{whole, band, false}};
  // then each residue class mod l (queries t of the class), merged: keys t' < t by a causal mask
  // with keys shifted one place, and without causal keys t' > t by local(0, N) shifted back one.
  TileView classes{B, H, N, d, N, l, 0};
  classes.classes = true;
  classes.key_shift = 1;
  PatternLevel before;
  before.kind = PatternKind::full, before.causal = true;
  out.push_back({classes, before, true});
  if (!p.causal) {
    classes.key_shift = -1;
    PatternLevel after;
    after.kind = PatternKind::local, after.left = 0, after.right = N;
    out.push_back({classes, after, true});
  }
  return out;
}

const GpuKernel kFlashCuda{flash_unsupported, flash_scratch_bytes, flash_cuda, false};

std::vector<Copy2D> summary_gather(const SummaryView& v, size_t elem) {
  const size_t row = size_t(v.H * v.d) * elem;
  const int64_t bl = v.fixed.block, c = v.fixed.summary, S = v.summary_count();
  std::vector<Copy2D> out;
  for (int64_t b = 0; b < v.B; ++b)
    for (int64_t o = bl - c; o < bl && o < v.N; ++o)  // summary position kb * bl + o -> row kb * c + o - (bl - c)
      out.push_back({(b * S + o - (bl - c)) * row, c * row, (b * v.N + o) * row, bl * row, row,
                     size_t((v.N - o + bl - 1) / bl)});
  return out;
}

std::vector<SummaryView> summary_views(int64_t B, int64_t N, int64_t H, int64_t d, const PatternParams& p) {
  if (p.kind != PatternKind::fixed) return {};
  SummaryView v{B, H, N, d, {}, false};
  static_cast<PatternParams&>(v.fixed) = p;
  std::vector<SummaryView> out = {v};
  if (!p.causal) out.push_back(v), out.back().after = true;
  return out;
}

}  // namespace longattn::cuda
