#pragma once
// The backward pass (SPEC §6): dQ, dK, dV given dO, recomputed from (Q, K, V, O, LSE) as
// FlashAttention-2 does. Every kernel with a backward takes this; the oracle computes it in float64.
#include <cstdint>

#include <span>

#include "kernels/attention.h"
#include "kernels/step_block.h"

namespace longattn {

struct BackwardArgs {
  // The forward's case and tensors: q, k, v, its output o and lse (both required: the fused
  // kernels recompute probabilities from LSE, and D = rowsum(dO ∘ O) from O), pattern, scale,
  // head0, threads, dtype. The oracle recomputes O and LSE itself and reads neither.
  AttentionArgs fwd;
  const float* dout = nullptr;  // [B, N, H, d]
  float* dq = nullptr;          // [B, N, H, d], written
  float* dk = nullptr;
  float* dv = nullptr;
};

// The float64 oracle (SPEC §6 literally, one query row at a time; a key in two levels counts twice).
void reference_backward(const BackwardArgs& a);
// vanilla: per head, P (N x N) materialised from Q K^T and LSE, five sgemms.
void vanilla_backward(const BackwardArgs& a);
// flash: 64 x 64 tiles, blocks the pattern leaves empty skipped; dK, dV by key block, then dQ by
// query block (two passes, no atomics: each output row has one writer).
void flash_backward(const BackwardArgs& a);
// dilated: per level, every segment's kept rows as a flash backward, with the merged LSE (each
// level's gradient is weighted by its share of the merged softmax).
void dilated_backward(const BackwardArgs& a);
// D = rowsum(dO ∘ O) of [B, rows, H, d] tensors, into delta [B, H, rows] (SPEC §6).
void row_deltas(const float* dout, const float* o, int64_t B, int64_t rows, int64_t H, int64_t d, float* delta,
                int threads = 0);
// The CPU's attention_step_backward (kernels/step.h): every block as a tile problem, on `threads`.
void step_backward_cpu(std::span<const StepGradBlock> blocks, int64_t d, float scale, DType dtype, const Pattern& mask,
                       int threads);

}  // namespace longattn
