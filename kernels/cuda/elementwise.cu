// Element-wise kernels: dtype conversion on upload and fills (dilated starts from O = 0, LSE = -inf).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"

namespace longattn::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65536;  // grid-stride beyond this

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < kMaxBlocks ? b : kMaxBlocks);
}

__device__ __forceinline__ void store(float x, float* p) { *p = x; }
__device__ __forceinline__ void store(float x, __nv_bfloat16* p) { *p = __float2bfloat16_rn(x); }
__device__ __forceinline__ void store(float x, __half* p) { *p = __float2half_rn(x); }

template <typename T>
__global__ void convert_kernel(const float* __restrict__ src, T* __restrict__ dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    store(src[i], dst + i);
}

__global__ void fill_kernel(float* dst, int64_t n, float value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = value;
}

}  // namespace

void launch_convert(const float* src, void* dst, int64_t n, DType dtype, cudaStream_t stream) {
  if (n == 0) return;
  switch (dtype) {
    case DType::fp32:
      convert_kernel<<<blocks_for(n), kThreads, 0, stream>>>(src, static_cast<float*>(dst), n);
      break;
    case DType::bf16:
      convert_kernel<<<blocks_for(n), kThreads, 0, stream>>>(src, static_cast<__nv_bfloat16*>(dst), n);
      break;
    case DType::fp16:
      convert_kernel<<<blocks_for(n), kThreads, 0, stream>>>(src, static_cast<__half*>(dst), n);
      break;
  }
  LONGATTN_CUDA_CHECK_LAUNCH();
}

void launch_fill(float* dst, int64_t n, float value, cudaStream_t stream) {
  if (n == 0) return;
  fill_kernel<<<blocks_for(n), kThreads, 0, stream>>>(dst, n, value);
  LONGATTN_CUDA_CHECK_LAUNCH();
}

}  // namespace longattn::cuda
