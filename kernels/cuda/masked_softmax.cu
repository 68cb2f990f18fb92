// Masked row softmax of `vanilla`: block (i, h) reads score row i of head h three times (max,
// sum, write), which keeps it correct for any N without a shared-memory row. In place for fp32:
// every thread writes only the elements it read, after the block's last read of others.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <climits>
#include <stdexcept>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/masked_softmax.h"

namespace longattn::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ void store(float x, float* p) { *p = x; }
__device__ __forceinline__ void store(float x, __nv_bfloat16* p) { *p = __float2bfloat16_rn(x); }
__device__ __forceinline__ void store(float x, __half* p) { *p = __float2half_rn(x); }

// Reduce x over the block with op; every thread gets the result.
template <typename Op>
__device__ float block_reduce(float x, Op op, float* shared /* [kThreads / 32] */) {
  for (int o = 16; o > 0; o /= 2) x = op(x, __shfl_xor_sync(0xffffffffu, x, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // shared may still be read by a previous reduction
  if (lane == 0) shared[warp] = x;
  __syncthreads();
  x = shared[0];
  for (int w = 1; w < kThreads / 32; ++w) x = op(x, shared[w]);
  return x;
}

template <typename P>
__global__ void __launch_bounds__(kThreads) masked_softmax_kernel(const MaskedSoftmaxParams prm) {
  __shared__ float red[kThreads / 32];
  const int64_t N = prm.N, i = blockIdx.x, hl = blockIdx.y;
  const int64_t h = prm.h_begin + hl;
  const float* s = prm.s + (hl * N + i) * N;
  P* out = static_cast<P*>(prm.p) + (hl * N + i) * prm.ldp;
  const DevicePattern& pat = prm.pattern;
  const bool dense = pat.base.kind == PatternKind::full && !pat.base.causal;
  // SPEC §1: a key's weight is the number of levels whose set holds it.
  auto weight = [&](int64_t j) { return dense ? 1.0f : static_cast<float>(pat.multiplicity(prm.head0 + h, i, j, N)); };

  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < N; j += kThreads)
    if (weight(j) > 0.0f) mx = fmaxf(mx, s[j]);
  mx = block_reduce(mx, [](float a, float b) { return fmaxf(a, b); }, red);

  float sum = 0.0f;
  if (mx != -INFINITY)
    for (int64_t j = threadIdx.x; j < N; j += kThreads) {
      const float w = weight(j);
      if (w > 0.0f) sum += w * expf(s[j] - mx);
    }
  sum = block_reduce(sum, [](float a, float b) { return a + b; }, red);

  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int64_t j = threadIdx.x; j < N; j += kThreads) {
    const float w = weight(j);
    store(w > 0.0f ? w * expf(s[j] - mx) * inv : 0.0f, out + j);
  }
  if (threadIdx.x == 0) prm.lse[(prm.b * prm.H + h) * N + i] = sum > 0.0f ? mx + logf(sum) : -INFINITY;
}

}  // namespace

void launch_masked_softmax(const MaskedSoftmaxParams& p, DType dtype, cudaStream_t stream) {
  if (p.N == 0 || p.heads == 0) return;
  if (p.N > INT_MAX || p.heads > 65535) throw std::invalid_argument("masked softmax: grid too large");
  const dim3 grid(static_cast<unsigned>(p.N), static_cast<unsigned>(p.heads));
  switch (dtype) {
    case DType::fp32: masked_softmax_kernel<float><<<grid, kThreads, 0, stream>>>(p); break;
    case DType::bf16: masked_softmax_kernel<__nv_bfloat16><<<grid, kThreads, 0, stream>>>(p); break;
    case DType::fp16: masked_softmax_kernel<__half><<<grid, kThreads, 0, stream>>>(p); break;
  }
  LONGATTN_CUDA_CHECK_LAUNCH();
}

}  // namespace longattn::cuda
