// The public face of the CUDA kernels (cuda_attention.h): is there a device, what is it, the one
// table that answers both "supported?" and "run it", and the timed run with its uploads and
// downloads (all outside the timed region).
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <climits>
#include <cstdio>

#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gpu_kernels.h"
#include "kernels/cuda/tile_attention.h"
#include "kernels/input_error.h"

namespace longattn {
namespace {

using namespace cuda;

// ---- what each kernel supports (static: pattern, shape, dtype) ----

std::string tile_unsupported(const std::string& name, const Shape& s, GpuDType t) {
  if (t == GpuDType::fp32) return name + " runs bf16/fp16 inputs on tensor cores; fp32 runs on `vanilla`";
  if (!tile_supports_d(s.d)) return name + " is built for head dims 64 and 128, got d = " + std::to_string(s.d);
  return {};
}

std::string flash_gpu_unsupported(const Pattern& p, const Shape& s, GpuDType t) {
  if (p.kind == PatternKind::dilated) return "flash runs single-level patterns; dilated patterns run on `dilated`";
  if (TileView{s.B, s.H, s.N, s.d, s.N, 1, 0}.blocks() > INT_MAX) return "flash: more than 2^31 thread blocks";
  return tile_unsupported("flash", s, t);
}

std::string dilated_gpu_unsupported(const Pattern& p, const Shape& s, GpuDType t) {
  if (p.kind != PatternKind::dilated) return "the dilated kernel runs dilated patterns only";
  if (std::string why = tile_unsupported("dilated", s, t); !why.empty()) return why;
  if (const char* why = device_pattern_unsupported(p, s.N); *why) return why;
  for (const DilatedLevel& lv : p.dilated_levels(s.N))
    if (TileView{s.B, s.H, s.N, s.d, lv.w, lv.r, 0}.blocks() > INT_MAX)
      return "dilated: level (" + std::to_string(lv.w) + ", " + std::to_string(lv.r) +
             ") needs more than 2^31 thread blocks";
  return {};
}

std::string vanilla_gpu_unsupported(const Pattern& p, const Shape& s, GpuDType) {
  if (s.N > INT_MAX || s.H * s.d > INT_MAX) return "vanilla: N and H*d must fit cuBLAS's 32-bit sizes";
  if (s.H > 65535) return "vanilla: more than 65535 heads";
  return device_pattern_unsupported(p, s.N);
}

size_t no_workspace(const Shape&, GpuDType) { return 0; }

struct GpuKernel {
  const char* name;
  std::string (*unsupported)(const Pattern&, const Shape&, GpuDType);
  size_t (*workspace_bytes)(const Shape&, GpuDType);
  void (*run)(const DeviceArgs&, const Workspace&);
  bool uses_cublas;
};

// Ordered as `auto` would prefer them: the specialised kernel first.
const GpuKernel kGpuKernels[] = {
    {"dilated", dilated_gpu_unsupported, no_workspace, dilated_cuda, false},
    {"flash", flash_gpu_unsupported, no_workspace, flash_cuda, false},
    {"vanilla", vanilla_gpu_unsupported, vanilla_workspace_bytes, vanilla_cuda, true},
};

const GpuKernel* find_gpu_kernel(const std::string& name) {
  for (const GpuKernel& k : kGpuKernels)
    if (name == k.name) return &k;
  return nullptr;
}

// Device bytes one run holds: inputs, fp32 staging for the conversion, O, LSE, workspace.
size_t device_bytes(const GpuKernel& k, const Shape& s, GpuDType t) {
  const size_t n = s.numel();
  return 3 * n * gpu_dtype_bytes(t) + (t == GpuDType::fp32 ? 0 : n * sizeof(float)) + n * sizeof(float) +
         size_t(s.B * s.H * s.N) * sizeof(float) + k.workspace_bytes(s, t);
}

std::string gib(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", double(bytes) / double(size_t(1) << 30));
  return buf;
}

// ---- RAII for the handles of one run ----

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { LONGATTN_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s); }
};

struct Event {
  cudaEvent_t e = nullptr;
  Event() { LONGATTN_CUDA_CHECK(cudaEventCreate(&e)); }
  ~Event() { cudaEventDestroy(e); }
};

struct Cublas {
  cublasHandle_t h = nullptr;
  explicit Cublas(bool needed) {
    if (!needed) return;
    const cublasStatus_t st = cublasCreate(&h);
    if (st != CUBLAS_STATUS_SUCCESS)
      throw std::runtime_error(std::string("cublasCreate: ") + cublasGetStatusString(st));
  }
  ~Cublas() {
    if (h) cublasDestroy(h);
  }
};

// The NVIDIA driver's own version string ("580.65.06") from NVML, loaded only if present, so a
// machine without a driver still loads this library.
std::string nvml_driver_version() {
  void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return {};
  using Init = int (*)();
  using Version = int (*)(char*, unsigned);
  auto init = reinterpret_cast<Init>(dlsym(lib, "nvmlInit_v2"));
  auto version = reinterpret_cast<Version>(dlsym(lib, "nvmlSystemGetDriverVersion"));
  auto shutdown = reinterpret_cast<Init>(dlsym(lib, "nvmlShutdown"));
  std::string out;
  if (init && version && shutdown && init() == 0) {
    char buf[96] = {};
    if (version(buf, sizeof buf) == 0) out = buf;
    shutdown();
  }
  dlclose(lib);
  return out;
}

std::string cuda_version(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }

}  // namespace

bool cuda_available(std::string* why_not) {
  static const std::string reason = [] {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      cudaGetLastError();  // clear it: the next caller should see its own errors only
      return std::string("no CUDA device: ") + cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")";
    }
    if (count == 0) return std::string("no CUDA device: the driver reports none");
    int dev = 0, major = 0, minor = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    if (major < 8)
      return "CUDA device " + std::to_string(dev) + " has compute capability " + std::to_string(major) + "." +
             std::to_string(minor) + "; the kernels need 8.0 (Ampere) or newer";
    return std::string();
  }();
  if (why_not) *why_not = reason;
  return reason.empty();
}

std::string cuda_device_description() {
  if (!cuda_available()) return {};
  int dev = 0, khz = 0, driver = 0, runtime = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&prop, dev) != cudaSuccess) return {};
  cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev);
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  const std::string nvml = nvml_driver_version();
  return std::string(prop.name) + ", sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
         std::to_string(prop.multiProcessorCount) + " SMs, max SM clock " + std::to_string(khz / 1000) + " MHz, " +
         gib(prop.totalGlobalMem) + ", driver " + (nvml.empty() ? "" : nvml + " ") + "(CUDA " +
         cuda_version(driver) + "), runtime " + cuda_version(runtime);
}

std::vector<std::string> cuda_kernel_names() {
  std::vector<std::string> out;
  for (const GpuKernel& k : kGpuKernels) out.push_back(k.name);
  return out;
}

std::string cuda_unsupported(const std::string& kernel, const Pattern& p, const Shape& s, GpuDType dtype) {
  const GpuKernel* k = find_gpu_kernel(kernel);
  if (!k) return "unknown CUDA kernel \"" + kernel + "\"; the CUDA kernels are dilated, flash and vanilla";
  if (s.B < 1 || s.N < 1 || s.H < 1 || s.d < 1) return "every size of the shape must be positive";
  if (std::string why = k->unsupported(p, s, dtype); !why.empty()) return why;
  std::string why;
  if (!cuda_available(&why)) return why;
  size_t free = 0, total = 0;
  if (const cudaError_t e = cudaMemGetInfo(&free, &total); e != cudaSuccess)
    return std::string("cannot query device memory: ") + cudaGetErrorString(e);
  if (const size_t need = device_bytes(*k, s, dtype); need > free)
    return std::string(k->name) + " needs " + gib(need) + " of device memory for this case; " + gib(free) + " of " +
           gib(total) + " is free";
  return {};
}

CudaRunResult cuda_attention(const std::string& kernel, const AttentionArgs& host_args, GpuDType dtype, int warmup,
                             int iterations) {
  const Shape sh = host_args.shape;
  if (std::string why = cuda_unsupported(kernel, host_args.pattern, sh, dtype); !why.empty())
    throw InputError("CUDA kernel " + kernel + " (" + gpu_dtype_name(dtype) + "), pattern " +
                     host_args.pattern.name() + ": " + why);
  const GpuKernel& k = *find_gpu_kernel(kernel);
  const size_t n = sh.numel(), n_lse = size_t(sh.B * sh.H * sh.N), elem = gpu_dtype_bytes(dtype);

  Stream stream;
  DeviceBuffer q(n * elem), kk(n * elem), v(n * elem), o(n * sizeof(float)), lse(n_lse * sizeof(float));
  DeviceBuffer workspace(k.workspace_bytes(sh, dtype));
  {  // upload, converting through an fp32 staging buffer
    DeviceBuffer staging(dtype == GpuDType::fp32 ? 0 : n * sizeof(float));
    for (auto [dst, src] : {std::pair{&q, host_args.q}, std::pair{&kk, host_args.k}, std::pair{&v, host_args.v}}) {
      if (dtype == GpuDType::fp32) {
        LONGATTN_CUDA_CHECK(cudaMemcpyAsync(dst->get(), src, n * sizeof(float), cudaMemcpyHostToDevice, stream.s));
      } else {
        LONGATTN_CUDA_CHECK(
            cudaMemcpyAsync(staging.get(), src, n * sizeof(float), cudaMemcpyHostToDevice, stream.s));
        launch_convert(staging.get<float>(), dst->get(), int64_t(n), dtype, stream.s);
      }
    }
    LONGATTN_CUDA_CHECK(cudaStreamSynchronize(stream.s));  // before staging is freed
  }
  Cublas cublas(k.uses_cublas);

  DeviceArgs a;
  a.shape = sh;
  a.dtype = dtype;
  a.q = q.get();
  a.k = kk.get();
  a.v = v.get();
  a.o = o.get<float>();
  a.lse = lse.get<float>();
  a.pattern = device_pattern(host_args.pattern, sh.N);
  a.scale = host_args.scale;
  a.head0 = host_args.head0;
  a.stream = stream.s;
  const Workspace ws{workspace.get(), workspace.bytes(), cublas.h};

  for (int i = 0; i < warmup; ++i) k.run(a, ws);
  if (warmup <= 0 && iterations <= 0) k.run(a, ws);  // the output must come from somewhere
  LONGATTN_CUDA_CHECK(cudaStreamSynchronize(stream.s));

  CudaRunResult result;
  Event start, stop;
  for (int i = 0; i < iterations; ++i) {
    LONGATTN_CUDA_CHECK(cudaEventRecord(start.e, stream.s));
    k.run(a, ws);
    LONGATTN_CUDA_CHECK(cudaEventRecord(stop.e, stream.s));
    LONGATTN_CUDA_CHECK(cudaEventSynchronize(stop.e));
    float ms = 0;
    LONGATTN_CUDA_CHECK(cudaEventElapsedTime(&ms, start.e, stop.e));
    result.ms_samples.push_back(ms);
  }

  LONGATTN_CUDA_CHECK(cudaMemcpyAsync(host_args.o, o.get(), n * sizeof(float), cudaMemcpyDeviceToHost, stream.s));
  if (host_args.lse)
    LONGATTN_CUDA_CHECK(
        cudaMemcpyAsync(host_args.lse, lse.get(), n_lse * sizeof(float), cudaMemcpyDeviceToHost, stream.s));
  LONGATTN_CUDA_CHECK(cudaStreamSynchronize(stream.s));
  return result;
}

}  // namespace longattn
