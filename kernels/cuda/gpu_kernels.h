#pragma once
// The CUDA kernels as the runtime sees them: device tensors in, device tensors out, no allocation,
// no synchronisation. Each kernel's file defines its GpuKernel entry; kernels/registry.cpp names
// them in the one kernel table, and runtime.cpp owns memory and timing.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/attention.h"
#include "kernels/cuda/device_pattern.h"
#include "kernels/cuda/tile_attention.h"
#include "kernels/dtype.h"

namespace longattn::cuda {

struct DeviceArgs {
  Shape shape;
  DType dtype = DType::bf16;
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

// Device memory and handles a kernel may use, sized by its scratch_bytes().
struct GpuScratch {
  void* scratch = nullptr;
  size_t bytes = 0;
  cublasHandle_t cublas = nullptr;  // bound to DeviceArgs::stream
};

// One CUDA kernel: what it supports (pattern, shape, dtype: the same answer on every machine), the
// device memory it needs beside its inputs and outputs, and the launch.
struct GpuKernel {
  std::string (*unsupported)(const Pattern&, const Shape&, DType);
  size_t (*scratch_bytes)(const Pattern&, const Shape&, DType);  // null: none
  void (*run)(const DeviceArgs&, const GpuScratch&);
  bool uses_cublas;
};

// vanilla: scores of a group of heads at a time, N x N fp32 (+ N x N probabilities in bf16/fp16).
extern const GpuKernel kVanillaCuda;
// flash: the tile kernel over the whole sequence (w = N, r = 1).
extern const GpuKernel kFlashCuda;
// dilated: O = 0, LSE = -inf, then the tile kernel per level (w, r), merging into O and LSE.
extern const GpuKernel kDilatedCuda;

// Shared by the tile kernels' entries: tensor cores take bf16/fp16, and the tile is built for 64/128.
std::string tile_unsupported(const std::string& name, const Shape& s, DType t);
// The tile kernel's launch over a's tensors with the given mask; the caller sets the view.
TileParams tile_params(const DeviceArgs& a, const DevicePattern& mask, bool merge);

}  // namespace longattn::cuda
