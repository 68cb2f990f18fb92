// The backward pass on the GPU (SPEC §6) for `flash` and `dilated`, FlashAttention-2's algorithm
// in its plainest form: fp32 on CUDA cores, one thread block per 32 keys of a view (tile_attention.h:
// a segment's kept rows read in place), walking the query tiles that can see them:
//
//   S = Q K^T, dP = dO V^T (32 x 32, shared) -> P = exp(scale S - LSE), dS = P (dP - D)
//   -> dV += P^T dO, dK += dS^T Q (registers, this block's keys) ; dQ += scale dS K (atomicAdd)
//
// D = rowsum(dO ∘ O) is one small kernel first. flash is one view (w = N, r = 1) under the case's
// mask; dilated is one view per level (w, r) under a dense (causal) mask with the merged LSE, so
// each level adds its share, as backward_cpu.cpp does. dK and dV rows have one writer per launch
// (levels run one after another on the stream); dQ rows are summed over key blocks by atomics.
// The inputs are the dtype's values in fp32, as on the CPU: no tensor cores yet.
#include <cuda_runtime_api.h>

#include <climits>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/backward.h"
#include "kernels/cuda/cuda_check.h"

namespace longattn {
namespace cuda {
namespace {

constexpr int kKeys = 32;     // keys of a thread block
constexpr int kQueries = 32;  // query rows of an inner tile
constexpr int kThreads = 256;
constexpr int kGroup = kThreads / kKeys;  // threads sharing a key row (or a query row) of dK, dV (dQ)
static_assert(kKeys == kQueries && (kKeys * kQueries) % kThreads == 0);

// Block `block`: keys [j0, j0 + kKeys) of segment g of head h of batch b, in kept indices.
struct KeyJob {
  int64_t at = 0, stride = 0, lse_at = 0, count = 0, j0 = 0;
  bool valid = false;
};

__device__ KeyJob key_job(const TileView& v, int64_t block) {
  KeyJob job;
  const int64_t tiles = (v.kept_max() + kKeys - 1) / kKeys, segs = v.segments();
  const int64_t tile = block % tiles, g = (block / tiles) % segs;
  const int64_t h = (block / (tiles * segs)) % v.H, b = block / (tiles * segs * v.H);
  const int64_t begin = g * v.w, end = begin + v.w < v.N ? begin + v.w : v.N;
  const int64_t first = begin + (v.head0 + h) % v.r;
  job.count = first < end ? (end - first + v.r - 1) / v.r : 0;
  job.j0 = tile * kKeys;
  job.valid = job.j0 < job.count;
  job.at = (b * v.N + first) * v.H * v.d + h * v.d;
  job.stride = v.r * v.H * v.d;
  job.lse_at = (b * v.H + h) * v.N + first;
  return job;
}

// rows x Dp floats of shared memory (row stride Dp + 1: no bank conflicts down a column) from
// kept rows t0 .. of a tensor; zeros past `valid` rows and past d columns.
template <int Dp>
__device__ void load_rows(float* dst, const float* src, const KeyJob& job, int64_t t0, int rows, int valid, int d) {
  for (int e = threadIdx.x; e < rows * Dp; e += kThreads) {
    const int r = e / Dp, c = e % Dp;
    dst[r * (Dp + 1) + c] = r < valid && c < d ? src[job.at + (t0 + r) * job.stride + c] : 0.0f;
  }
}

template <int Dp>
__global__ void __launch_bounds__(kThreads) backward_kernel(const BackwardParams p) {
  extern __shared__ float sm[];
  constexpr int ld = Dp + 1, ldp = kKeys + 1;
  float* ks = sm;                   // [kKeys][ld]
  float* vs = ks + kKeys * ld;      // [kKeys][ld]
  float* qs = vs + kKeys * ld;      // [kQueries][ld]
  float* dos = qs + kQueries * ld;  // [kQueries][ld]
  float* ps = dos + kQueries * ld;  // [kQueries][ldp]: P
  float* dss = ps + kQueries * ldp; // [kQueries][ldp]: dS
  float* row_lse = dss + kQueries * ldp;
  float* row_delta = row_lse + kQueries;

  const KeyJob job = key_job(p.view, blockIdx.x);
  if (!job.valid) return;
  const int d = static_cast<int>(p.view.d);
  const int k_valid = static_cast<int>(job.count - job.j0 < kKeys ? job.count - job.j0 : kKeys);
  load_rows<Dp>(ks, p.k, job, job.j0, kKeys, k_valid, d);
  load_rows<Dp>(vs, p.v, job, job.j0, kKeys, k_valid, d);

  // This thread's share of dK and dV: key row tid / kGroup, columns (tid % kGroup) + kGroup u;
  // of dQ per query tile: query row tid / kGroup, the same columns.
  const int mine = threadIdx.x / kGroup, col0 = threadIdx.x % kGroup;
  float dk_acc[Dp / kGroup] = {}, dv_acc[Dp / kGroup] = {};

  for (int64_t i0 = 0; i0 < job.count; i0 += kQueries) {
    const int q_valid = static_cast<int>(job.count - i0 < kQueries ? job.count - i0 : kQueries);
    const BlockKind kind = p.mask.classify(i0, i0 + q_valid, job.j0, job.j0 + k_valid);
    if (kind == BlockKind::empty) continue;  // the same answer for the whole block
    __syncthreads();                         // the previous tile's Q, dO, P, dS are read
    load_rows<Dp>(qs, p.q, job, i0, kQueries, q_valid, d);
    load_rows<Dp>(dos, p.dout, job, i0, kQueries, q_valid, d);
    if (threadIdx.x < kQueries) {
      const bool in = threadIdx.x < q_valid;
      row_lse[threadIdx.x] = in ? p.lse[job.lse_at + (i0 + threadIdx.x) * p.view.r] : -INFINITY;
      row_delta[threadIdx.x] = in ? p.delta[job.lse_at + (i0 + threadIdx.x) * p.view.r] : 0.0f;
    }
    __syncthreads();

    // P and dS: (query i, key j) pairs, kThreads at a time, consecutive threads along keys.
    for (int e = threadIdx.x; e < kQueries * kKeys; e += kThreads) {
      const int i = e / kKeys, j = e % kKeys;
      float s = 0.0f, dp = 0.0f;
#pragma unroll 8
      for (int c = 0; c < Dp; ++c) s += qs[i * ld + c] * ks[j * ld + c], dp += dos[i * ld + c] * vs[j * ld + c];
      const float lse = row_lse[i];
      const bool keep = i < q_valid && j < k_valid && lse != -INFINITY &&
                        (kind == BlockKind::full || p.mask.contains(0, 0, i0 + i, job.j0 + j, job.count));
      const float pv = keep ? expf(p.scale * s - lse) : 0.0f;
      ps[i * ldp + j] = pv;
      dss[i * ldp + j] = pv * (dp - row_delta[i]);
    }
    __syncthreads();

#pragma unroll
    for (int u = 0; u < Dp / kGroup; ++u) {
      const int c = col0 + kGroup * u;
      float dv = 0.0f, dk = 0.0f, dq = 0.0f;
      for (int i = 0; i < kQueries; ++i)
        dv += ps[i * ldp + mine] * dos[i * ld + c], dk += dss[i * ldp + mine] * qs[i * ld + c];
      for (int j = 0; j < kKeys; ++j) dq += dss[mine * ldp + j] * ks[j * ld + c];
      dv_acc[u] += dv, dk_acc[u] += dk;
      if (mine < q_valid && c < d) atomicAdd(p.dq + job.at + (i0 + mine) * job.stride + c, p.scale * dq);
    }
  }
  if (mine >= k_valid) return;
  float* dk = p.dk + job.at + (job.j0 + mine) * job.stride;
  float* dv = p.dv + job.at + (job.j0 + mine) * job.stride;
#pragma unroll
  for (int u = 0; u < Dp / kGroup; ++u) {
    const int c = col0 + kGroup * u;
    if (c < d) dk[c] += p.scale * dk_acc[u], dv[c] += dv_acc[u];
  }
}

// delta[b, h, i] = sum_c dO[b, i, h, c] O[b, i, h, c]: one thread a row.
__global__ void row_deltas_kernel(const float* dout, const float* o, float* delta, int64_t B, int64_t N, int64_t H,
                                  int64_t d) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= B * H * N) return;
  const int64_t b = t / (H * N), h = (t / N) % H, i = t % N;
  const int64_t at = ((b * N + i) * H + h) * d;
  float acc = 0.0f;
  for (int64_t c = 0; c < d; ++c) acc += dout[at + c] * o[at + c];
  delta[t] = acc;
}

template <int Dp>
void launch_view(const BackwardParams& p, cudaStream_t stream) {
  const int64_t blocks = p.view.B * p.view.H * p.view.segments() * ((p.view.kept_max() + kKeys - 1) / kKeys);
  if (blocks == 0) return;
  if (blocks > INT_MAX) throw std::runtime_error("backward: " + std::to_string(blocks) + " thread blocks exceed the grid");
  const int smem = static_cast<int>(sizeof(float) * (2 * kKeys * (Dp + 1) + 2 * kQueries * (Dp + 1) +
                                                     2 * kQueries * (kKeys + 1) + 2 * kQueries));
  static const bool attribute_set = [smem] {  // once per instantiation, outside timed regions
    LONGATTN_CUDA_CHECK(cudaFuncSetAttribute(backward_kernel<Dp>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    return true;
  }();
  (void)attribute_set;
  backward_kernel<Dp><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(p);
  LONGATTN_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_backward(const BackwardParams& p, cudaStream_t stream) {
  if (p.view.d > 128) throw std::invalid_argument("backward: built for head dims up to 128");
  if (p.view.d <= 64) return launch_view<64>(p, stream);
  return launch_view<128>(p, stream);
}

void launch_row_deltas(const float* dout, const float* o, float* delta, int64_t B, int64_t N, int64_t H, int64_t d,
                       cudaStream_t stream) {
  const int64_t rows = B * H * N, threads = 256;
  if (rows == 0) return;
  row_deltas_kernel<<<static_cast<unsigned>((rows + threads - 1) / threads), threads, 0, stream>>>(dout, o, delta, B, N,
                                                                                                    H, d);
  LONGATTN_CUDA_CHECK_LAUNCH();
}

}  // namespace cuda

}  // namespace longattn
