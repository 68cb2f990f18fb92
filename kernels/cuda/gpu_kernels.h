#pragma once
// The CUDA kernels as the runtime sees them: device tensors in, device tensors out, no allocation,
// no synchronisation. runtime.cpp owns memory, timing and the table that names them.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/attention.h"
#include "kernels/cuda/device_pattern.h"
#include "kernels/cuda/gpu_dtype.h"

namespace longattn::cuda {

struct DeviceArgs {
  Shape shape;
  GpuDType dtype = GpuDType::bf16;
  const void* q = nullptr;  // [B, N, H, d] in dtype
  const void* k = nullptr;
  const void* v = nullptr;
  float* o = nullptr;       // [B, N, H, d]
  float* lse = nullptr;     // [B, H, N]; never null
  DevicePattern pattern;    // resolved for shape.N
  float scale = 0;
  int64_t head0 = 0;
  cudaStream_t stream = nullptr;
};

// Device memory and handles a kernel may use, sized by its workspace_bytes().
struct Workspace {
  void* scratch = nullptr;
  size_t bytes = 0;
  cublasHandle_t cublas = nullptr;  // bound to DeviceArgs::stream
};

// vanilla: scores of a group of heads at a time, N x N fp32 (+ N x N probabilities in bf16/fp16).
size_t vanilla_workspace_bytes(const Shape& s, GpuDType dtype);
void vanilla_cuda(const DeviceArgs& a, const Workspace& ws);

// flash: the tile kernel over the whole sequence (w = N, r = 1).
void flash_cuda(const DeviceArgs& a, const Workspace& ws);

// dilated: O = 0, LSE = -inf, then the tile kernel per level (w, r), merging into O and LSE.
void dilated_cuda(const DeviceArgs& a, const Workspace& ws);

}  // namespace longattn::cuda
