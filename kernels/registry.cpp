#include "kernels/registry.h"

#include "kernels/cpu.h"
#include "kernels/dilated_cpu.h"
#include "kernels/flash_cpu.h"
#include "kernels/gqa.h"
#include "kernels/input_error.h"
#include "kernels/reference.h"
#include "kernels/vanilla_cpu.h"
#ifdef LONGATTN_HAVE_CUDA
#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/gpu_kernels.h"
#endif

namespace longattn {
namespace {

// CPU kernels run every dtype in fp32 containers; fp16 needs AVX512-FP16 (its conversions).
template <std::string (*Pattern_)(const Pattern&, const Shape&)>
std::string on_cpu(const Pattern& p, const Shape& s, DType t) {
  if (auto why = kv_heads_unsupported(s); !why.empty()) return why;
  if (t == DType::fp16 && !cpu_info().avx512_fp16)
    return "fp16 on device cpu needs AVX512-FP16, which this CPU (" + cpu_info().model.substr(0, 60) + ") lacks";
  return Pattern_(p, s);
}
std::string any_pattern(const Pattern&, const Shape&) { return {}; }

#ifdef LONGATTN_HAVE_CUDA
// A CUDA kernel's entry (gpu_kernels.h) as a row: the runtime uploads, runs and times it.
template <const cuda::GpuKernel* K, const char* Name>
std::string on_cuda(const Pattern& p, const Shape& s, DType t) {
  if (auto why = kv_heads_unsupported(s); !why.empty()) return why;
  return cuda_unsupported(*K, Name, p, s, t);
}
// GQA on the GPU: K and V expanded to H heads on the host before the upload (kernels/gqa.h).
template <const cuda::GpuKernel* K, const char* Name>
void cuda_run(const AttentionArgs& a) {
  run_with_kv_heads(a, [](const AttentionArgs& e) { cuda_attention(*K, Name, e, e.dtype, DeviceTiming{}); });
}
template <const cuda::GpuKernel* K, const char* Name>
std::vector<double> cuda_timed(const AttentionArgs& a, const DeviceTiming& t) {
  std::vector<double> ms;
  run_with_kv_heads(a, [&](const AttentionArgs& e) { ms = cuda_attention(*K, Name, e, e.dtype, t).ms_samples; });
  return ms;
}
void cuda_backward_run(const BackwardArgs& a) {
  backward_with_kv_heads(a, [](const BackwardArgs& e) { cuda_backward(e, DeviceTiming{}); });
}
std::vector<double> cuda_backward_timed(const BackwardArgs& a, const DeviceTiming& t) {
  std::vector<double> ms;
  backward_with_kv_heads(a, [&](const BackwardArgs& e) { ms = cuda_backward(e, t); });
  return ms;
}
constexpr char kDilated[] = "dilated", kFlash[] = "flash", kVanilla[] = "vanilla";
#define LONGATTN_CUDA_ROW(entry, name) on_cuda<&entry, name>, cuda_run<&entry, name>, cuda_timed<&entry, name>
#define LONGATTN_CUDA_BACKWARD cuda_backward_run, cuda_backward_timed
#endif

// Per device, fastest first: auto takes the first that supports the case.
const Kernel kKernels[] = {
    {"dilated", Device::cpu, "LongNet: per level, dense tiled attention on every segment's kept rows, levels merged",
     false, on_cpu<dilated_unsupported>, dilated_attention, nullptr, expanding_kv_backward<dilated_backward>, nullptr},
    {"flash", Device::cpu, "tiled online softmax, vectorised, skips key blocks the pattern leaves empty", false,
     on_cpu<flash_unsupported>, flash_attention, nullptr, expanding_kv_backward<flash_backward>, nullptr},
    {"vanilla", Device::cpu, "sgemm scores (N x N per head), mask, softmax, sgemm with V", false,
     on_cpu<any_pattern>, expanding_kv<vanilla_attention>, nullptr, expanding_kv_backward<vanilla_backward>, nullptr},
    {"reference", Device::cpu, "the double-precision oracle of SPEC §1, one row at a time", true,
     on_cpu<any_pattern>, reference_attention, nullptr, reference_backward, nullptr},
#ifdef LONGATTN_HAVE_CUDA
    {kDilated, Device::cuda, "LongNet on tensor cores: every level's kept rows read in place, levels merged",
     false, LONGATTN_CUDA_ROW(cuda::kDilatedCuda, kDilated), LONGATTN_CUDA_BACKWARD},
    {kFlash, Device::cuda, "tiled online softmax on tensor cores (WMMA), skips empty key blocks", false,
     LONGATTN_CUDA_ROW(cuda::kFlashCuda, kFlash), LONGATTN_CUDA_BACKWARD},
    {kVanilla, Device::cuda, "cuBLAS scores (N x N per head group), mask + softmax kernel, cuBLAS with V", false,
     LONGATTN_CUDA_ROW(cuda::kVanillaCuda, kVanilla), nullptr, nullptr},
#endif
};

}  // namespace

const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

Device parse_device(const std::string& name, const std::string& field) {
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") return Device::cuda;
  throw InputError(field + ": unknown device \"" + name.substr(0, 40) + "\"; use cpu or cuda");
}

std::span<const Kernel> kernels() { return kKernels; }

const Kernel* find_kernel(const std::string& name, Device device) {
  for (const Kernel& k : kKernels)
    if (k.device == device && name == k.name) return &k;
  return nullptr;
}

const Kernel& auto_kernel(const Pattern& p, const Shape& s, DType dtype, Device device) {
  std::string why;
  for (const Kernel& k : kKernels) {
    if (k.device != device || k.oracle) continue;
    const std::string no = k.unsupported(p, s, dtype);
    if (no.empty()) return k;
    why += std::string(why.empty() ? "" : "; ") + k.name + ": " + no;
  }
  throw InputError("no " + std::string(device_name(device)) + " kernel runs pattern " + p.name() + " in " +
                   dtype_name(dtype) + (why.empty() ? "" : " (" + why + ")"));
}

std::string kernel_names(Device device) {
  std::string out;
  for (const Kernel& k : kKernels)
    if (k.device == device) out += std::string(out.empty() ? "" : ", ") + k.name;
  return out;
}

}  // namespace longattn
