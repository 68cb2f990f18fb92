#pragma once
// The attention step (kernels/step.h) on a CUDA device: plain C++, no CUDA type in this header.
#include "kernels/step.h"

namespace longattn::cuda {

// The step's blocks as the tile kernel's jobs, cut into 64-query tiles, one launch on step.stream;
// returns when the accumulators hold the result. Buffers are device memory.
void attention_step_cuda(const AttentionStep& step);

}  // namespace longattn::cuda
