#pragma once
// The element type Q, K and V take on the GPU. Outputs (O, LSE) and accumulation are fp32 always.
// Kept apart from cuda_attention.h so that .cu files can name it without parsing the Pattern header.
namespace longattn {

enum class GpuDType { fp32, bf16, fp16 };

inline const char* gpu_dtype_name(GpuDType t) {
  switch (t) {
    case GpuDType::fp32: return "fp32";
    case GpuDType::bf16: return "bf16";
    case GpuDType::fp16: return "fp16";
  }
  return "?";
}

inline int gpu_dtype_bytes(GpuDType t) { return t == GpuDType::fp32 ? 4 : 2; }

}  // namespace longattn
