#pragma once
// The GPU kernels, callable from plain C++: no CUDA type crosses this header, so harness .cpp files
// include it and link `longattn_cuda` (which defines LONGATTN_HAVE_CUDA for them).
//
// The kernels themselves are rows of the one kernel table (kernels/registry.h, device cuda), which
// calls these with each kernel's entry (gpu_kernels.h).
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/backward.h"
#include "kernels/dtype.h"
#include "kernels/registry.h"

namespace longattn {
namespace cuda {
struct GpuKernel;
}

// True when a CUDA device can run our kernels; otherwise false and, if why_not is given, the
// reason ("no CUDA device: CUDA driver version is insufficient for CUDA runtime version").
bool cuda_available(std::string* why_not = nullptr);

// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, SM clock 1980 MHz, 79.1 GiB, CUDA driver 13.0,
// runtime 13.0"; empty when no device is available.
std::string cuda_device_description();

// Empty when kernel k (called `name` in messages) runs this pattern, shape and dtype here; otherwise
// why not. Pattern, shape and dtype are checked first (the answer does not depend on the machine),
// then the device (present, enough memory). cuda_attention dispatches with exactly this check.
std::string cuda_unsupported(const cuda::GpuKernel& k, const char* name, const Pattern& p, const Shape& s,
                             DType dtype);

struct CudaRunResult {
  std::vector<double> ms_samples;  // one per timed iteration, cudaEvent time on the device
};

// Uploads host fp32 Q, K, V (converted to dtype), runs kernel k on one device as `timing` says
// (cudaEvents around each timed launch, L2 flushed before it unless timing.flush_l2 is false), then
// downloads O (fp32, [B, N, H, d]) into host_args.o and, when host_args.lse is set, LSE (fp32,
// [B, H, N]). The output is that of the last run; at least one run always happens. Device memory is
// allocated and freed around the runs, never inside the timed region.
// Throws InputError when cuda_unsupported is non-empty, std::runtime_error on a CUDA failure.
CudaRunResult cuda_attention(const cuda::GpuKernel& k, const char* name, const AttentionArgs& host_args, DType dtype,
                             const DeviceTiming& timing);

// The backward pass of `flash` and `dilated` on the device (kernels/cuda/backward.cu, SPEC §6):
// uploads the forward's Q, K, V, O, LSE and dO (host fp32 holding the dtype's values), runs the
// passes `timing` asks for (one cudaEvent time in ms each; at least one pass runs), downloads dQ,
// dK, dV. Throws InputError when cuda_backward_unsupported is non-empty or no
// device is present, std::runtime_error on a CUDA failure.
std::vector<double> cuda_backward(const BackwardArgs& a, const DeviceTiming& timing);
std::string cuda_backward_unsupported(const Pattern& p, const Shape& s);  // d <= 128, levels <= 32

}  // namespace longattn
