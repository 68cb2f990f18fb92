// kernels/memory.h on each device: the host's std::copy / std::fill, CUDA's async copies (2-D for
// strided rows) and fill kernel on the place's stream.
#include "kernels/memory.h"

#include <omp.h>

#include <algorithm>
#include <chrono>

#include "kernels/input_error.h"
#ifdef LONGATTN_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#endif

namespace longattn {
namespace {

#ifdef LONGATTN_HAVE_CUDA
cudaStream_t stream_of(const Place& at) { return static_cast<cudaStream_t>(at.stream); }
#else
[[noreturn]] void no_cuda() { throw InputError("device cuda needs a build with CUDA"); }
#endif

// Host moves of this many floats or more share the threads (a memory-bound copy runs faster on
// several cores); smaller ones stay on the calling thread.
constexpr size_t kParallelFloats = size_t{1} << 16;
constexpr size_t kChunk = size_t{1} << 14;  // a contiguous move's share, in floats

int threads_of(const Place& at) { return at.threads > 0 ? at.threads : omp_get_max_threads(); }

template <class Row>
void host_rows(const Place& at, size_t rows, size_t width, Row row) {
  const bool parallel = rows > 1 && rows * width >= kParallelFloats;
#pragma omp parallel for num_threads(threads_of(at)) if (parallel) schedule(static)
  for (size_t r = 0; r < rows; ++r) row(r);
}

}  // namespace

void copy_floats(const Place& at, float* dst, const float* src, size_t n) {
  if (n == 0 || dst == src) return;
  if (at.device == Device::cpu)
    return host_rows(at, (n + kChunk - 1) / kChunk, kChunk, [&](size_t c) {
      std::copy_n(src + c * kChunk, std::min(kChunk, n - c * kChunk), dst + c * kChunk);
    });
#ifdef LONGATTN_HAVE_CUDA
  LONGATTN_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, stream_of(at)));
#else
  no_cuda();
#endif
}

void copy_rows(const Place& at, float* dst, size_t dst_stride, const float* src, size_t src_stride, size_t width,
               size_t rows) {
  if (width == 0 || rows == 0) return;
  if (at.device == Device::cpu)
    return host_rows(at, rows, width, [&](size_t r) { std::copy_n(src + r * src_stride, width, dst + r * dst_stride); });
#ifdef LONGATTN_HAVE_CUDA
  LONGATTN_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_stride * sizeof(float), src, src_stride * sizeof(float),
                                        width * sizeof(float), rows, cudaMemcpyDeviceToDevice, stream_of(at)));
#else
  no_cuda();
#endif
}

void fill_floats(const Place& at, float* dst, size_t n, float value) {
  if (n == 0) return;
  if (at.device == Device::cpu)
    return host_rows(at, (n + kChunk - 1) / kChunk, kChunk,
                     [&](size_t c) { std::fill_n(dst + c * kChunk, std::min(kChunk, n - c * kChunk), value); });
#ifdef LONGATTN_HAVE_CUDA
  cuda::launch_fill(dst, static_cast<int64_t>(n), value, stream_of(at));
#else
  no_cuda();
#endif
}

// Between the host and a place: a plain copy on the CPU; on a GPU an async copy on the place's
// stream, waited for.
static void transfer(const Place& at, float* dst, const float* src, size_t n, bool to_device) {
  if (n == 0) return;
  if (at.device == Device::cpu) return void(std::copy_n(src, n, dst));
#ifdef LONGATTN_HAVE_CUDA
  LONGATTN_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                                      stream_of(at)));
  LONGATTN_CUDA_CHECK(cudaStreamSynchronize(stream_of(at)));
#else
  (void)to_device;
  no_cuda();
#endif
}

void upload(const Place& at, float* dst, const float* host, size_t n) { transfer(at, dst, host, n, true); }
void download(const Place& at, float* host, const float* src, size_t n) { transfer(at, host, src, n, false); }

PlaceTimer::PlaceTimer(const Place& at) : at_(at) {
  if (at.device == Device::cpu) return;
#ifdef LONGATTN_HAVE_CUDA
  for (void*& e : events_) LONGATTN_CUDA_CHECK(cudaEventCreate(reinterpret_cast<cudaEvent_t*>(&e)));
#else
  no_cuda();
#endif
}

PlaceTimer::~PlaceTimer() {
#ifdef LONGATTN_HAVE_CUDA
  for (void* e : events_)
    if (e) cudaEventDestroy(static_cast<cudaEvent_t>(e));
#endif
}

static double host_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void PlaceTimer::start() {
  if (at_.device == Device::cpu) return void(t0_ = host_seconds());
#ifdef LONGATTN_HAVE_CUDA
  LONGATTN_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(events_[0]), stream_of(at_)));
#endif
}

double PlaceTimer::stop_ms() {
  if (at_.device == Device::cpu) return (host_seconds() - t0_) * 1e3;
  float ms = 0;
#ifdef LONGATTN_HAVE_CUDA
  const auto start = static_cast<cudaEvent_t>(events_[0]), stop = static_cast<cudaEvent_t>(events_[1]);
  LONGATTN_CUDA_CHECK(cudaEventRecord(stop, stream_of(at_)));
  LONGATTN_CUDA_CHECK(cudaEventSynchronize(stop));
  LONGATTN_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
#endif
  return ms;
}

size_t cache_flush_bytes(const Place& at) {
  if (at.device == Device::cpu) return 0;
#ifdef LONGATTN_HAVE_CUDA
  int dev = 0, l2 = 0;
  LONGATTN_CUDA_CHECK(cudaGetDevice(&dev));
  LONGATTN_CUDA_CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  return 2 * size_t(l2 > 0 ? l2 : 64 << 20);
#else
  no_cuda();
#endif
}

FloatBuffer::~FloatBuffer() {
#ifdef LONGATTN_HAVE_CUDA
  if (dev_) cudaFree(dev_);  // no throw from a destructor
#endif
}

void FloatBuffer::resize(size_t n) {
  if (device_ == Device::cpu) {
    host_.resize(n);
    n_ = n;
    return;
  }
#ifdef LONGATTN_HAVE_CUDA
  if (n <= capacity_) {  // no allocation, no wait: a method may resize a buffer per phase of a call
    n_ = n;
    return;
  }
  // Growing waits for every stream (work queued on the compute stream may still use the buffer),
  // then copies what was there and zeroes the rest: slow, and done in warm-up calls only.
  LONGATTN_CUDA_CHECK(cudaDeviceSynchronize());
  float* grown = nullptr;
  LONGATTN_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&grown), n * sizeof(float)));
  if (n_) LONGATTN_CUDA_CHECK(cudaMemcpy(grown, dev_, n_ * sizeof(float), cudaMemcpyDeviceToDevice));
  LONGATTN_CUDA_CHECK(cudaMemset(grown + n_, 0, (n - n_) * sizeof(float)));
  if (dev_) cudaFree(dev_);
  dev_ = grown, capacity_ = n, n_ = n;
#else
  no_cuda();
#endif
}

}  // namespace longattn
