// attention_step on each device. CPU: every block is a HeadProblem merged into its accumulators,
// all of them scheduled by flash_problems (kernels/flash_cpu.h). CUDA: kernels/cuda/step_cuda.cpp.
#include "kernels/step.h"

#include <limits>

#include "kernels/backward.h"
#include "kernels/dilated_cpu.h"
#include "kernels/memory.h"
#include "kernels/flash_cpu.h"
#include "kernels/input_error.h"
#ifdef LONGATTN_HAVE_CUDA
#include "kernels/cuda/gpu_kernels.h"
#include "kernels/cuda/step_cuda.h"
#endif

namespace longattn {
namespace {

void attention_step_cpu(const AttentionStep& step) {
  std::vector<HeadProblem> problems;
  problems.reserve(step.blocks.size());
  for (const StepBlock& b : step.blocks) {
    if (b.nq == 0 || b.nk == 0) continue;  // nothing to add
    HeadProblem p;
    p.q = static_cast<const float*>(b.q), p.q_stride = b.q_stride, p.nq = b.nq;
    p.k = static_cast<const float*>(b.k), p.v = static_cast<const float*>(b.v), p.kv_stride = b.kv_stride, p.nk = b.nk;
    p.o = b.o, p.o_stride = b.o_stride, p.lse = b.lse, p.lse_stride = b.lse_stride, p.merge = true;
    p.d = step.d, p.scale = step.scale, p.dtype = step.dtype;
    p.mask = &step.mask, p.q_pos0 = b.q_pos0, p.k_pos0 = b.k_pos0, p.mask_n = b.n_mask, p.mask_head = b.head;
    problems.push_back(p);
  }
  flash_problems(problems, step.threads);
}

}  // namespace

void attention_step_backward(const AttentionStep& step, std::span<const StepGradBlock> blocks) {
  if (step.mask.kind == PatternKind::dilated)
    throw InputError("an attention step takes a single-level mask; run dilated levels one step each");
  if (step.device != Device::cpu)
    throw InputError("the attention step's backward runs on device cpu only so far");
  step_backward_cpu(blocks, step.d, step.scale, step.dtype, step.mask, step.threads);
}

std::string attention_step_unsupported(Device device, DType dtype, int64_t d) {
  if (device == Device::cpu) return {};
#ifdef LONGATTN_HAVE_CUDA
  Shape s;
  s.d = d;
  return cuda::tile_unsupported("an attention step on cuda", s, dtype);
#else
  (void)dtype, (void)d;
  return "an attention step on device cuda needs a build with CUDA";
#endif
}

void attention_by_steps(const AttentionArgs& a, const AttentionStep& like) {
  const Shape s = a.shape;
  const int64_t row = s.H * s.d, kv_row = s.kv_heads() * s.d, G = s.group();
  const Place at{like.device, like.stream, like.threads};
  fill_floats(at, a.o, size_t(s.numel()), 0.0f);
  fill_floats(at, a.lse, size_t(s.B * s.H * s.N), -std::numeric_limits<float>::infinity());
  AttentionStep step = like;
  step.d = s.d, step.scale = a.scale, step.dtype = a.dtype;
  auto block = [&](int64_t b, int64_t h, int64_t first, int64_t stride, int64_t count) {
    const int64_t q_at = (b * s.N + first) * row + h * s.d, kv_at = (b * s.N + first) * kv_row + h / G * s.d;
    return StepBlock{a.q + q_at, stride * row, count, 0, a.k + kv_at, a.v + kv_at, stride * kv_row, count, 0, count,
                     a.head0 + h, a.o + q_at, stride * row, a.lse + (b * s.H + h) * s.N + first, stride};
  };
  if (a.pattern.kind != PatternKind::dilated) {
    step.mask = a.pattern;
    step.blocks.clear();
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.H; ++h) step.blocks.push_back(block(b, h, 0, 1, s.N));
    return attention_step(step);
  }
  step.mask = Pattern{};  // inside a segment the kept rows attend densely, causal by kept index
  step.mask.causal = a.pattern.causal;
  for (const DilatedLevel& lv : a.pattern.dilated_levels(s.N)) {  // a query is in one segment per level
    step.blocks.clear();
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.H; ++h)
        for (const DilatedSegment& seg : dilated_segments(lv, a.head0 + h, 0, s.N, s.N))
          step.blocks.push_back(block(b, h, seg.first, lv.r, seg.count));
    attention_step(step);
  }
}

void attention_step(const AttentionStep& step) {
  if (step.mask.kind == PatternKind::dilated)
    throw InputError("an attention step takes a single-level mask; run dilated levels one step each");
  if (std::string why = attention_step_unsupported(step.device, step.dtype, step.d); !why.empty()) throw InputError(why);
  switch (step.device) {
    case Device::cpu: return attention_step_cpu(step);
    case Device::cuda:
#ifdef LONGATTN_HAVE_CUDA
      return cuda::attention_step_cuda(step);
#else
      throw InputError("an attention step on device cuda needs a build with CUDA");
#endif
  }
}

}  // namespace longattn
