// Masked row softmax of `vanilla`: block (i, h) takes score row i of head h in two passes. The
// first reads the row once, keeping an online max and sum (each key's weight computed once, and
// cached in shared memory as a byte where the row fits: SPEC §1's weights are level counts <= 32);
// the second writes the probabilities. In place for fp32: each thread writes only the elements it
// read, after the block's last read of the row.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <stdexcept>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/masked_softmax.h"

namespace longattn::cuda {
namespace {

constexpr int kThreads = 256;
// Rows up to this many keys cache their weights in shared memory (one byte a key).
constexpr int64_t kCachedKeys = 96 * 1024;

__device__ __forceinline__ void store(float x, float* p) { *p = x; }
__device__ __forceinline__ void store(float x, __nv_bfloat16* p) { *p = __float2bfloat16_rn(x); }
__device__ __forceinline__ void store(float x, __half* p) { *p = __float2half_rn(x); }

// (max, sum) of two parts of a row: the sums rescaled to the larger max (an empty part: -inf, 0).
__device__ __forceinline__ void combine(float& m, float& l, float m2, float l2) {
  const float M = fmaxf(m, m2);
  if (M == -INFINITY) return;  // both empty
  l = l * expf(m - M) + l2 * expf(m2 - M);
  m = M;
}

// (max, sum) over the block; every thread gets the result.
__device__ void block_combine(float& m, float& l, float* shared /* [2 * kThreads / 32] */) {
  for (int o = 16; o > 0; o /= 2) combine(m, l, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, l, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) shared[2 * warp] = m, shared[2 * warp + 1] = l;
  __syncthreads();
  m = shared[0], l = shared[1];
  for (int w = 1; w < kThreads / 32; ++w) combine(m, l, shared[2 * w], shared[2 * w + 1]);
}

template <typename P, bool kCache>
__global__ void __launch_bounds__(kThreads) masked_softmax_kernel(const MaskedSoftmaxParams prm) {
  __shared__ float red[2 * kThreads / 32];
  extern __shared__ unsigned char weights[];  // kCache: each key's weight
  const int64_t N = prm.N, i = blockIdx.x, hl = blockIdx.y;
  const int64_t h = prm.h_begin + hl;
  const float* s = prm.s + (hl * N + i) * N;
  P* out = static_cast<P*>(prm.p) + (hl * N + i) * prm.ldp;
  const DevicePattern& pat = prm.pattern;
  const bool dense = pat.base.kind == PatternKind::full && !pat.base.causal;
  // SPEC §1: a key's weight is the number of levels whose set holds it.
  auto weight = [&](int64_t j) { return dense ? 1 : pat.multiplicity(prm.head0 + h, i, j, N); };

  float m = -INFINITY, l = 0.0f;  // this thread's keys: running max and sum of w exp(s - m)
  for (int64_t j = threadIdx.x; j < N; j += kThreads) {
    const int w = weight(j);
    if (kCache) weights[j] = static_cast<unsigned char>(w);
    const float x = s[j];
    if (w == 0 || x == -INFINITY) continue;  // adds nothing (a row of such keys stays empty, as before)
    if (x > m) {
      l = l * expf(m - x) + w;  // m = -inf: l is 0, and expf(-inf) = 0
      m = x;
    } else {
      l += w * expf(x - m);
    }
  }
  block_combine(m, l, red);  // its barrier also orders the weights' writes before their reads

  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int64_t j = threadIdx.x; j < N; j += kThreads) {
    const int w = kCache ? weights[j] : weight(j);
    store(w > 0 && l > 0.0f ? w * expf(s[j] - m) * inv : 0.0f, out + j);
  }
  if (threadIdx.x == 0) prm.lse[(prm.b * prm.H + h) * N + i] = l > 0.0f ? m + logf(l) : -INFINITY;
}

template <typename P>
void launch(const MaskedSoftmaxParams& p, dim3 grid, cudaStream_t stream) {
  if (p.N > kCachedKeys) {
    masked_softmax_kernel<P, false><<<grid, kThreads, 0, stream>>>(p);
    return;
  }
  // Once per instantiation, outside any timed launch: up to kCachedKeys bytes of dynamic shared memory.
  static const bool attribute_set = [] {
    LONGATTN_CUDA_CHECK(cudaFuncSetAttribute(masked_softmax_kernel<P, true>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, int(kCachedKeys)));
    return true;
  }();
  (void)attribute_set;
  masked_softmax_kernel<P, true><<<grid, kThreads, static_cast<size_t>(p.N), stream>>>(p);
}

}  // namespace

void launch_masked_softmax(const MaskedSoftmaxParams& p, DType dtype, cudaStream_t stream) {
  if (p.N == 0 || p.heads == 0) return;
  if (p.N > INT_MAX || p.heads > 65535) throw std::invalid_argument("masked softmax: grid too large");
  const dim3 grid(static_cast<unsigned>(p.N), static_cast<unsigned>(p.heads));
  switch (dtype) {
    case DType::fp32: launch<float>(p, grid, stream); break;
    case DType::bf16: launch<__nv_bfloat16>(p, grid, stream); break;
    case DType::fp16: launch<__half>(p, grid, stream); break;
  }
  LONGATTN_CUDA_CHECK_LAUNCH();
}

}  // namespace longattn::cuda
