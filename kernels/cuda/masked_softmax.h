#pragma once
// The middle step of `vanilla`: one thread block per score row, for a group of heads of one batch.
// Each row is masked by the pattern (a key's weight is the number of levels holding it, SPEC §1),
// soft-maxed, and written as probabilities in the input dtype for the P V GEMM; its LSE is stored.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/device_pattern.h"
#include "kernels/dtype.h"

namespace longattn::cuda {

struct MaskedSoftmaxParams {
  const float* s = nullptr;  // [heads][N][N] scaled scores of heads h_begin ..
  void* p = nullptr;         // [heads][N][ldp] probabilities in the dtype; may be s itself when fp32
  int64_t ldp = 0;           // elements between rows of p
  float* lse = nullptr;      // [B, H, N]
  int64_t N = 0, H = 0;
  int64_t b = 0, h_begin = 0, heads = 0;  // batch, first (local) head and head count of the group
  int64_t head0 = 0;                      // global index of local head 0 (dilated offsets)
  DevicePattern pattern;                  // resolved for N
};

void launch_masked_softmax(const MaskedSoftmaxParams& p, DType dtype, cudaStream_t stream);

}  // namespace longattn::cuda
