// The public face of the CUDA kernels (cuda_attention.h): is there a device, what is it, the one
// table that answers both "supported?" and "run it", and the timed run with its uploads and
// downloads (all outside the timed region).
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "kernels/cuda/backward.h"
#include "kernels/cuda/cuda_attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gpu_kernels.h"
#include "kernels/cuda/tile_attention.h"
#include "kernels/input_error.h"

namespace longattn {
namespace {

using namespace cuda;

// Device bytes one run holds: inputs, fp32 staging for the conversion, O, LSE, scratch.
size_t device_bytes(const GpuKernel& k, const Pattern& p, const Shape& s, DType t) {
  const size_t n = s.numel();
  return 3 * n * dtype_bytes(t) + (t == DType::fp32 ? 0 : n * sizeof(float)) + n * sizeof(float) +
         size_t(s.B * s.H * s.N) * sizeof(float) + (k.scratch_bytes ? k.scratch_bytes(p, s, t) : 0);
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

// Overwrites the device's L2 cache before a timed run (nvbench's and Triton's do_bench's way): a
// memset of twice its size, queued on the run's stream before the start event.
struct L2Flush {
  DeviceBuffer buf;
  explicit L2Flush(bool wanted) {
    if (!wanted) return;
    int dev = 0, l2 = 0;
    LONGATTN_CUDA_CHECK(cudaGetDevice(&dev));
    LONGATTN_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
    buf = DeviceBuffer(2 * size_t(l2 > 0 ? l2 : 64 << 20));
  }
  void run(cudaStream_t s) const {
    if (buf.bytes()) LONGATTN_CUDA_CHECK(cudaMemsetAsync(buf.get(), 0, buf.bytes(), s));
  }
};

// Runs `once` on `stream` as `t` says: warm-up runs, then timed runs with a cudaEvent pair around
// each (the L2 flush before the first event); returns each timed run's milliseconds.
template <typename Once>
std::vector<double> time_runs(cudaStream_t stream, const DeviceTiming& t, Once once) {
  const L2Flush flush(t.flush_l2 && t.iterations > 0);  // allocated here, outside every timed region
  for (int i = 0; i < t.warmup; ++i) once();
  if (t.warmup <= 0 && t.iterations <= 0) once();  // the output must come from somewhere
  LONGATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<double> samples;
  Event start, stop;
  for (int i = 0; i < t.iterations; ++i) {
    flush.run(stream);
    LONGATTN_CUDA_CHECK(cudaEventRecord(start.e, stream));
    once();
    LONGATTN_CUDA_CHECK(cudaEventRecord(stop.e, stream));
    LONGATTN_CUDA_CHECK(cudaEventSynchronize(stop.e));
    float ms = 0;
    LONGATTN_CUDA_CHECK(cudaEventElapsedTime(&ms, start.e, stop.e));
    samples.push_back(ms);
  }
  return samples;
}

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
    // One device per rank on a multi-GPU node: the launcher's local rank picks it (Open MPI, Slurm),
    // else device 0; without this every rank of a node opens its context on device 0.
    int dev = 0;
    for (const char* var : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK"})
      if (const char* v = std::getenv(var); v && *v) {
        dev = std::atoi(v) % count;
        break;
      }
    if (const cudaError_t s = cudaSetDevice(dev); s != cudaSuccess)
      return "cannot select CUDA device " + std::to_string(dev) + ": " + cudaGetErrorString(s);
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
      return "cannot read the compute capability of CUDA device " + std::to_string(dev);
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

std::string cuda_unsupported(const cuda::GpuKernel& k, const char* name, const Pattern& p, const Shape& s,
                             DType dtype) {
  if (s.B < 1 || s.N < 1 || s.H < 1 || s.d < 1) return "every size of the shape must be positive";
  if (std::string why = k.unsupported(p, s, dtype); !why.empty()) return why;
  std::string why;
  if (!cuda_available(&why)) return why;
  size_t free = 0, total = 0;
  if (const cudaError_t e = cudaMemGetInfo(&free, &total); e != cudaSuccess)
    return std::string("cannot query device memory: ") + cudaGetErrorString(e);
  if (const size_t need = device_bytes(k, p, s, dtype); need > free)
    return std::string(name) + " needs " + gib(need) + " of device memory for this case; " + gib(free) + " of " +
           gib(total) + " is free";
  return {};
}

CudaRunResult cuda_attention(const cuda::GpuKernel& k, const char* name, const AttentionArgs& host_args, DType dtype,
                             const DeviceTiming& timing) {
  const Shape sh = host_args.shape;
  if (std::string why = cuda_unsupported(k, name, host_args.pattern, sh, dtype); !why.empty())
    throw InputError(std::string("CUDA kernel ") + name + " (" + dtype_name(dtype) + "), pattern " +
                     host_args.pattern.name() + ": " + why);
  const size_t n = sh.numel(), n_lse = size_t(sh.B * sh.H * sh.N), elem = dtype_bytes(dtype);

  Stream stream;
  DeviceBuffer q(n * elem), kk(n * elem), v(n * elem), o(n * sizeof(float)), lse(n_lse * sizeof(float));
  DeviceBuffer scratch(k.scratch_bytes ? k.scratch_bytes(host_args.pattern, sh, dtype) : 0);
  {  // upload, converting through an fp32 staging buffer
    DeviceBuffer staging(dtype == DType::fp32 ? 0 : n * sizeof(float));
    for (auto [dst, src] : {std::pair{&q, host_args.q}, std::pair{&kk, host_args.k}, std::pair{&v, host_args.v}}) {
      if (dtype == DType::fp32) {
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
  const GpuScratch ws{scratch.get(), scratch.bytes(), cublas.h};

  CudaRunResult result;
  result.ms_samples = time_runs(stream.s, timing, [&] { k.run(a, ws); });

  LONGATTN_CUDA_CHECK(cudaMemcpyAsync(host_args.o, o.get(), n * sizeof(float), cudaMemcpyDeviceToHost, stream.s));
  if (host_args.lse)
    LONGATTN_CUDA_CHECK(
        cudaMemcpyAsync(host_args.lse, lse.get(), n_lse * sizeof(float), cudaMemcpyDeviceToHost, stream.s));
  LONGATTN_CUDA_CHECK(cudaStreamSynchronize(stream.s));
  return result;
}

std::string cuda_backward_unsupported(const Pattern& p, const Shape& s) {
  if (s.d > 128) return "the CUDA backward is built for head dims up to 128, got d = " + std::to_string(s.d);
  if (const char* why = device_pattern_unsupported(p, s.N); *why) return why;
  return {};
}

std::vector<double> cuda_backward(const BackwardArgs& ba, const DeviceTiming& timing) {
  using namespace cuda;
  const AttentionArgs& a = ba.fwd;
  const Shape sh = a.shape;
  std::string why = cuda_backward_unsupported(a.pattern, sh);
  if (why.empty()) cuda_available(&why);
  if (!why.empty()) throw InputError("CUDA backward, pattern " + a.pattern.name() + ": " + why);
  const size_t n = sh.numel(), n_rows = size_t(sh.B * sh.H * sh.N), bytes = n * sizeof(float);

  Stream st;
  const cudaStream_t stream = st.s;
  DeviceBuffer q(bytes), k(bytes), v(bytes), o(bytes), dout(bytes), dq(bytes), dk(bytes), dv(bytes);
  DeviceBuffer lse(n_rows * sizeof(float)), delta(n_rows * sizeof(float));
  for (auto [dst, src] : {std::pair{&q, a.q}, std::pair{&k, a.k}, std::pair{&v, a.v}, std::pair{&o, static_cast<const float*>(a.o)},
                          std::pair{&dout, ba.dout}})
    LONGATTN_CUDA_CHECK(cudaMemcpyAsync(dst->get(), src, bytes, cudaMemcpyHostToDevice, stream));
  LONGATTN_CUDA_CHECK(cudaMemcpyAsync(lse.get(), a.lse, n_rows * sizeof(float), cudaMemcpyHostToDevice, stream));

  // The views: flash's whole sequence under its mask, or each dilated level's under a dense one.
  BackwardParams p{q.get<float>(), k.get<float>(), v.get<float>(), dout.get<float>(), lse.get<float>(),
                   delta.get<float>(), dq.get<float>(), dk.get<float>(), dv.get<float>(), {}, {}, a.scale};
  std::vector<BackwardParams> views;
  if (a.pattern.kind == PatternKind::dilated) {
    Pattern dense;
    dense.causal = a.pattern.causal;
    p.mask = device_pattern(dense, sh.N);
    for (const DilatedLevel& lv : a.pattern.dilated_levels(sh.N)) {
      p.view = TileView{sh.B, sh.H, sh.N, sh.d, lv.w, lv.r, a.head0};
      views.push_back(p);
    }
  } else {
    p.mask = device_pattern(a.pattern, sh.N);
    p.view = TileView{sh.B, sh.H, sh.N, sh.d, sh.N, 1, a.head0};
    views.push_back(p);
  }
  auto once = [&] {
    for (DeviceBuffer* g : {&dq, &dk, &dv}) LONGATTN_CUDA_CHECK(cudaMemsetAsync(g->get(), 0, bytes, stream));
    launch_row_deltas(dout.get<float>(), o.get<float>(), delta.get<float>(), sh.B, sh.N, sh.H, sh.d, stream);
    for (const BackwardParams& view : views) launch_backward(view, stream);
  };
  const std::vector<double> samples = time_runs(stream, timing, once);
  for (auto [dst, src] : {std::pair{ba.dq, &dq}, std::pair{ba.dk, &dk}, std::pair{ba.dv, &dv}})
    LONGATTN_CUDA_CHECK(cudaMemcpyAsync(dst, src->get(), bytes, cudaMemcpyDeviceToHost, stream));
  LONGATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
  return samples;
}

}  // namespace longattn
