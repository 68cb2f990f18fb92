#pragma once
// The GPU kernels, callable from plain C++: no CUDA type crosses this header, so harness .cpp files
// include it and link `longattn_cuda` (which defines LONGATTN_HAVE_CUDA for them).
//
//   std::string why;
//   if (!cuda_available(&why)) { /* report `why`: no GPU or no driver; never a crash */ }
//   if (auto no = cuda_unsupported("flash", args.pattern, args.shape, GpuDType::bf16); !no.empty()) { ... }
//   CudaRunResult r = cuda_attention("flash", args, GpuDType::bf16, /*warmup=*/2, /*iterations=*/10);
//
// Kernels (one table answers both "can it run this?" and "run it"):
//   vanilla  cuBLAS Q K^T into an N x N fp32 buffer per head, a mask + softmax kernel, cuBLAS P V.
//            Every pattern (dilated levels count a key once per level), fp32 / bf16 / fp16, any d.
//   flash    tiled online softmax on tensor cores (WMMA 16x16x16, fp32 accumulation), skipping key
//            blocks the pattern leaves empty. Single-level patterns, bf16 / fp16, d in {64, 128}.
//   dilated  LongNet: per level, every segment's kept rows attended in place (strided rows, no
//            gather, no N x N buffer) by the flash tile kernel; levels merged by LSE (SPEC §1).
//            Dilated patterns, bf16 / fp16, d in {64, 128}; offsets use the global head head0 + h.
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cuda/gpu_dtype.h"

namespace longattn {

// True when a CUDA device can run our kernels; otherwise false and, if why_not is given, the
// reason ("no CUDA device: CUDA driver version is insufficient for CUDA runtime version").
bool cuda_available(std::string* why_not = nullptr);

// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, SM clock 1980 MHz, 79.1 GiB, CUDA driver 13.0,
// runtime 13.0"; empty when no device is available.
std::string cuda_device_description();

// The CUDA kernels by name, in the order `auto` would prefer them.
std::vector<std::string> cuda_kernel_names();

// Empty when `kernel` runs this pattern, shape and dtype here; otherwise why not. Pattern, shape
// and dtype are checked first (the answer does not depend on the machine), then the device
// (present, enough memory). cuda_attention dispatches with exactly this check.
std::string cuda_unsupported(const std::string& kernel, const Pattern& p, const Shape& s, GpuDType dtype);

struct CudaRunResult {
  std::vector<double> ms_samples;  // one per timed iteration, cudaEvent time on the device
};

// Uploads host fp32 Q, K, V (converted to dtype), runs `warmup` untimed and `iterations` timed
// launches of `kernel` on one device (cudaEvents around each), then downloads O (fp32,
// [B, N, H, d]) into host_args.o and, when host_args.lse is set, LSE (fp32, [B, H, N]). The output
// is that of the last iteration; at least one run always happens. Device memory is allocated and
// freed around the runs, never inside the timed region.
// Throws InputError when cuda_unsupported is non-empty, std::runtime_error on a CUDA failure.
CudaRunResult cuda_attention(const std::string& kernel, const AttentionArgs& host_args, GpuDType dtype, int warmup,
                             int iterations);

}  // namespace longattn
