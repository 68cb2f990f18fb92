#pragma once
// Small element-wise kernels the runtime needs around the attention kernels.
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/dtype.h"

namespace longattn::cuda {

// dst[i] = src[i] rounded to nearest in dtype (bf16 / fp16; fp32 copies), i < n.
void launch_convert(const float* src, void* dst, int64_t n, DType dtype, cudaStream_t stream);
// dst[i] = value, i < n.
void launch_fill(float* dst, int64_t n, float value, cudaStream_t stream);

}  // namespace longattn::cuda
