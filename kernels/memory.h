#pragma once
// Float buffers, and the moves the distributed methods make between them, on the device where
// their communicator's data lives: host memory (self, MPI) or a CUDA device (NCCL), where every
// move is queued on the communicator's compute stream, in order with its exchanges. One code path
// for both: a method tested on the CPU runs unchanged on a GPU.
#include <cstddef>
#include <vector>

#include "kernels/registry.h"

namespace longattn {

// Where a move runs: the device, and on cuda the cudaStream_t it is queued on (null: the default).
struct Place {
  Device device = Device::cpu;
  void* stream = nullptr;
  int threads = 0;  // cpu: threads for large moves (0: OpenMP's default)
};

// dst[i] = src[i] for i < n. Throws InputError on cuda in a build without CUDA.
void copy_floats(const Place& at, float* dst, const float* src, size_t n);
// `rows` rows of `width` floats, strides in floats: dst[r * dst_stride + i] = src[r * src_stride + i].
void copy_rows(const Place& at, float* dst, size_t dst_stride, const float* src, size_t src_stride, size_t width,
               size_t rows);
// dst[i] = value for i < n.
void fill_floats(const Place& at, float* dst, size_t n, float value);
// Between host memory and the place's (cpu: plain copies); return when the copy is done.
void upload(const Place& at, float* dst, const float* host, size_t n);
void download(const Place& at, float* host, const float* src, size_t n);

// Milliseconds of the work a place runs between start() and stop_ms(): the host clock on the CPU,
// a pair of CUDA events on the place's stream on a GPU (stop_ms() waits for the second).
class PlaceTimer {
 public:
  explicit PlaceTimer(const Place& at);
  ~PlaceTimer();
  PlaceTimer(const PlaceTimer&) = delete;
  PlaceTimer& operator=(const PlaceTimer&) = delete;
  void start();
  double stop_ms();

 private:
  Place at_;
  void* events_[2] = {};  // cudaEvent_t
  double t0_ = 0;         // host clock, seconds
};

// Bytes to overwrite before a timed run so that its inputs are not read from cache: twice the GPU's
// L2 on cuda (as nvbench and Triton's do_bench flush it); 0 on the CPU, whose runs are not flushed.
size_t cache_flush_bytes(const Place& at);

// A growable float array on one device. resize() keeps the contents up to the old size; what it
// adds is zeroed on the host (std::vector) and, on a GPU, where it allocates, while a GPU buffer
// resized within its capacity keeps what it held there (no wait, no memset: methods write what they
// read, and may resize a buffer per phase of a call). It reallocates only to grow, so a method's
// buffers are allocated in its first (warm-up) call and never inside a timed one.
class FloatBuffer {
 public:
  explicit FloatBuffer(Device device = Device::cpu) : device_(device) {}
  FloatBuffer(FloatBuffer&& o) noexcept { swap(o); }
  FloatBuffer& operator=(FloatBuffer&& o) noexcept {
    swap(o);
    return *this;
  }
  FloatBuffer(const FloatBuffer&) = delete;
  FloatBuffer& operator=(const FloatBuffer&) = delete;
  ~FloatBuffer();

  void resize(size_t n);
  void assign(size_t n, float value) {  // resize, then every element = value (cuda: on the default stream)
    resize(n);
    fill_floats({device_, nullptr}, data(), n, value);
  }
  // Host buffers only (the CPU paths that read elements one by one).
  float& operator[](size_t i) { return host_[i]; }
  const float& operator[](size_t i) const { return host_[i]; }
  float* data() { return device_ == Device::cpu ? host_.data() : dev_; }
  const float* data() const { return device_ == Device::cpu ? host_.data() : dev_; }
  size_t size() const { return n_; }
  Device device() const { return device_; }
  void swap(FloatBuffer& o) noexcept {
    std::swap(device_, o.device_), host_.swap(o.host_), std::swap(dev_, o.dev_), std::swap(n_, o.n_),
        std::swap(capacity_, o.capacity_);
  }
  friend void swap(FloatBuffer& a, FloatBuffer& b) noexcept { a.swap(b); }

 private:
  Device device_ = Device::cpu;
  std::vector<float> host_;  // cpu
  float* dev_ = nullptr;     // cuda
  size_t n_ = 0, capacity_ = 0;
};

}  // namespace longattn
