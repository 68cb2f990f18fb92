#pragma once
// The backward pass's device kernels (backward.cu, SPEC §6), launched by cuda_backward
// (runtime.cpp). fp32 on the device: the inputs hold the dtype's values, as on the CPU.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/device_pattern.h"
#include "kernels/cuda/tile_attention.h"

namespace longattn::cuda {

struct BackwardParams {
  const float *q, *k, *v, *dout;  // [B, N, H, d], device memory
  const float *lse, *delta;       // [B, H, N]: the forward's (merged) LSE, rowsum(dO ∘ O)
  float *dq, *dk, *dv;            // [B, N, H, d], accumulated into
  TileView view;                  // the rows attended: the whole sequence, or one dilated level's
  DevicePattern mask;             // single-level, in the view's kept-index coordinates, head 0
  float scale;
};

// dQ, dK, dV += this view's share. d <= 128. Launches on `stream`; throws on a launch failure.
void launch_backward(const BackwardParams& p, cudaStream_t stream);
// delta[b, h, i] = sum_c dO[b, i, h, c] O[b, i, h, c].
void launch_row_deltas(const float* dout, const float* o, float* delta, int64_t B, int64_t N, int64_t H, int64_t d,
                       cudaStream_t stream);

}  // namespace longattn::cuda
