// The tile kernel of tile_attention.h. A thread block takes 64 kept queries of one segment of one
// head (4 warps x 16 rows) and walks the segment's keys in blocks of 64, skipping blocks the mask
// leaves empty. Per key block, each warp runs the online softmax step:
//
//   S = Q K^T (WMMA, fp32) -> shared -> mask, row max, p = exp2(S log2e scale - m) -> P (bf16/fp16)
//   -> P V (WMMA, fp32) -> shared -> O_acc = alpha O_acc + P V (O_acc in registers)
//
// WMMA fragments have an unspecified register layout, so S and P V go through shared memory and
// every element-wise step addresses shared memory in plain row-major terms: two lanes per query
// row, lane (row, half) owning the columns 2c + half. Nothing here depends on a fragment layout.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <climits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/tile_attention.h"
#include "kernels/merge.h"

namespace longattn::cuda {
namespace {

using namespace nvcuda;

constexpr int kTileRows = static_cast<int>(kTileQ);
constexpr int kTileKeys = static_cast<int>(kTileK);
constexpr int kWarpRows = 16;  // query rows per warp: the WMMA tile height
constexpr int kWarps = kTileRows / kWarpRows;
constexpr int kThreads = kWarps * 32;
constexpr int kFrag = 16;  // WMMA m = n = k
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
static_assert(kTileRows % kWarpRows == 0 && kTileKeys % (2 * 32) == 0 && kTileKeys % kFrag == 0);

// Shared memory of one block. Every row is a multiple of 16 bytes and every WMMA pointer a multiple
// of 32 bytes (checked below); the padding staggers rows across banks.
template <typename T, int D>
struct Smem {
  static constexpr int kPad = 8;                             // elements of T
  static constexpr int ldt = D + kPad;                       // Q, K, V rows
  static constexpr int ldp = kTileKeys + kPad;                      // P rows
  static constexpr int ldf = (D > kTileKeys ? D : kTileKeys) + 4;          // fp32 rows: S (16 x 64), then P V (16 x D)
  T q[kTileRows * ldt];                      // [query][dim]
  T k[kTileKeys * ldt];                      // [key][dim]
  T v[kTileKeys * ldt];                      // [key][dim]
  T p[kWarps][kWarpRows * ldp];       // per warp: [row][key]
  float f[kWarps][kWarpRows * ldf];   // per warp: S, then P V
  static_assert((kWarpRows * ldt * sizeof(T)) % 32 == 0 && (kWarpRows * ldp * sizeof(T)) % 32 == 0 &&
                (kWarpRows * ldf * sizeof(float)) % 32 == 0 && (kTileRows * ldt * sizeof(T)) % 32 == 0);
};

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
template <>
__device__ __forceinline__ __half from_float(float x) { return __float2half_rn(x); }

// Eight elements of T (16 bytes) from global memory of type Src: a plain 16-byte load when Src is
// T; two 16-byte float loads rounded to T when Src is float (the attention step's fp32 containers,
// which hold values of T exactly, so the rounding changes nothing).
template <typename T, typename Src>
__device__ __forceinline__ uint4 load8(const Src* src) {
  if constexpr (sizeof(Src) == sizeof(T)) {
    return *reinterpret_cast<const uint4*>(src);
  } else {
    const float4 a = reinterpret_cast<const float4*>(src)[0], b = reinterpret_cast<const float4*>(src)[1];
    uint4 x;
    T* t = reinterpret_cast<T*>(&x);
    t[0] = from_float<T>(a.x), t[1] = from_float<T>(a.y), t[2] = from_float<T>(a.z), t[3] = from_float<T>(a.w);
    t[4] = from_float<T>(b.x), t[5] = from_float<T>(b.y), t[6] = from_float<T>(b.z), t[7] = from_float<T>(b.w);
    return x;
  }
}

// dst[row][0, D) <- src[row * stride + (0, D)] for row < valid; zeros for valid <= row < rows
// (padding keys must be finite: P = 0 there, and 0 * NaN would poison P V). 16-byte stores.
template <typename T, int D, typename Src>
__device__ __forceinline__ void load_rows(T* dst, int ld, const Src* src, int64_t stride, int rows, int valid) {
  constexpr int kVec = 16 / sizeof(T);
  constexpr int kPerRow = D / kVec;
  for (int c = threadIdx.x; c < rows * kPerRow; c += kThreads) {
    const int row = c / kPerRow, col = (c % kPerRow) * kVec;
    uint4 x = make_uint4(0, 0, 0, 0);
    if (row < valid) x = load8<T>(src + row * stride + col);
    *reinterpret_cast<uint4*>(dst + row * ld + col) = x;
  }
}

// The job of thread block `block` of a view launch (view_job, tile_attention.h).
template <typename T>
__device__ __forceinline__ bool tile_job(const TileParams& p, int64_t block, TileJob& j, int64_t& t0) {
  return view_job(p.view, static_cast<const T*>(p.q), static_cast<const T*>(p.k), static_cast<const T*>(p.v), p.o,
                  p.lse, block, j, t0);
}

// The job of thread block `block` of a summary launch (summary_job, tile_attention.h).
template <typename T>
__device__ __forceinline__ bool tile_job(const SummaryParams& p, int64_t block, TileJob& j, int64_t& t0) {
  return summary_job(p.view, static_cast<const T*>(p.q), static_cast<const T*>(p.ks), static_cast<const T*>(p.vs), p.o,
                     p.lse, block, j, t0);
}

// The job of thread block `block` of a step launch: read from the tile table.
template <typename T>
__device__ __forceinline__ bool tile_job(const StepTileParams& p, int64_t block, TileJob& j, int64_t& t0) {
  const TileRef ref = p.tiles[block];
  j = p.jobs[ref.job];
  t0 = ref.t0;
  return true;
}

// Src: the element type Q, K and V are stored in (T for views; float for attention steps).
template <typename T, int D, typename Params, typename Src>
__global__ void __launch_bounds__(kThreads) tile_attention_kernel(const Params p) {
  using S = Smem<T, D>;
  using FragA = wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, T, wmma::row_major>;
  using FragKt = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, T, wmma::col_major>;  // K^T from K rows
  using FragV = wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, T, wmma::row_major>;
  using FragAcc = wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float>;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  S& sm = *reinterpret_cast<S*>(smem_raw);

  TileJob job;
  int64_t t0 = 0;
  if (!tile_job<T>(p, blockIdx.x, job, t0)) return;  // the whole block: nothing to do
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int row = lane / 2, half = lane % 2;  // this lane's row in the warp, and its column parity

  const Src* q = static_cast<const Src*>(job.q);
  const Src* k = static_cast<const Src*>(job.k);
  const Src* v = static_cast<const Src*>(job.v);
  const int q_valid = static_cast<int>(job.nq - t0 < kTileRows ? job.nq - t0 : kTileRows);
  const int64_t q_end = t0 + q_valid;

  load_rows<T, D>(sm.q, S::ldt, q + t0 * job.q_stride, job.q_stride, kTileRows, q_valid);
  __syncthreads();
  FragA qf[D / kFrag];  // this warp's 16 query rows, kept in registers for every key block
#pragma unroll
  for (int kk = 0; kk < D / kFrag; ++kk)
    wmma::load_matrix_sync(qf[kk], sm.q + warp * kWarpRows * S::ldt + kk * kFrag, S::ldt);

  float* f = sm.f[warp];
  T* pw = sm.p[warp];
  const float* frow = f + row * S::ldf;
  T* prow = pw + row * S::ldp;
  const int64_t qi = t0 + warp * kWarpRows + row;  // this lane's query row of the job
  const float scale_log2 = p.scale * kLog2e;       // scores in log2 units: exp2 instead of exp
  float m = -INFINITY, l = 0.0f;                   // running max (log2 units) and sum of the row
  float o_acc[D / 2];                              // columns 2c + half of the row, unnormalised
#pragma unroll
  for (int c = 0; c < D / 2; ++c) o_acc[c] = 0.0f;

  // No key outside [keys_begin, keys_end) can be attended (local windows, causal): in the mask's
  // coordinates, then as the job's key rows.
  int64_t keys_begin = 0, keys_end = 0;
  p.mask.key_range(job.q_pos0 + t0, job.q_pos0 + q_end, job.n_mask, &keys_begin, &keys_end);
  keys_begin = keys_begin - job.k_pos0 > 0 ? keys_begin - job.k_pos0 : 0;
  keys_end = keys_end - job.k_pos0 < job.nk ? keys_end - job.k_pos0 : job.nk;
  for (int64_t key0 = keys_begin / kTileKeys * kTileKeys; key0 < keys_end; key0 += kTileKeys) {
    const int k_valid = static_cast<int>(job.nk - key0 < kTileKeys ? job.nk - key0 : kTileKeys);
    const int64_t kpos = job.k_pos0 + key0;
    const BlockKind kind = p.mask.classify(job.q_pos0 + t0, job.q_pos0 + q_end, kpos, kpos + k_valid);
    if (kind == BlockKind::empty) continue;  // the same answer for the whole block
    __syncthreads();                           // every warp is done with the previous K, V
    load_rows<T, D>(sm.k, S::ldt, k + key0 * job.kv_stride, job.kv_stride, kTileKeys, k_valid);
    load_rows<T, D>(sm.v, S::ldt, v + key0 * job.kv_stride, job.kv_stride, kTileKeys, k_valid);
    __syncthreads();

    // S = Q K^T: this warp's 16 rows x 64 keys, fp32, into its scratch.
#pragma unroll
    for (int j = 0; j < kTileKeys / kFrag; ++j) {
      FragAcc s;
      wmma::fill_fragment(s, 0.0f);
#pragma unroll
      for (int kk = 0; kk < D / kFrag; ++kk) {
        FragKt kt;
        wmma::load_matrix_sync(kt, sm.k + j * kFrag * S::ldt + kk * kFrag, S::ldt);
        wmma::mma_sync(s, qf[kk], kt, s);
      }
      wmma::store_matrix_sync(f + j * kFrag, s, S::ldf, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax over this lane's 32 keys (2c + half); its partner lane holds the rest.
    float x[kTileKeys / 2];
    float mx = m;
#pragma unroll
    for (int c = 0; c < kTileKeys / 2; ++c) {
      const int j = 2 * c + half;
      const bool keep = j < k_valid && (kind == BlockKind::full ||
                                        p.mask.contains(0, job.head, job.q_pos0 + qi, kpos + j, job.n_mask));
      x[c] = keep ? frow[j] * scale_log2 : -INFINITY;
      mx = fmaxf(mx, x[c]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_use = mx == -INFINITY ? 0.0f : mx;  // nothing kept yet: p = 0, never exp2(-inf + inf)
    const float alpha = exp2f(m - m_use);             // rescales what was accumulated; 0 when m = -inf
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < kTileKeys / 2; ++c) {
      const float e = exp2f(x[c] - m_use);
      sum += e;
      prow[2 * c + half] = from_float<T>(e);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    l = l * alpha + sum;
    m = mx;
    __syncwarp();  // P written, S read: the scratch is free for P V

    // P V: 16 rows x D, fp32, into the scratch.
#pragma unroll
    for (int n = 0; n < D / kFrag; ++n) {
      FragAcc acc;
      wmma::fill_fragment(acc, 0.0f);
#pragma unroll
      for (int kk = 0; kk < kTileKeys / kFrag; ++kk) {
        FragA pa;
        FragV vb;
        wmma::load_matrix_sync(pa, pw + kk * kFrag, S::ldp);
        wmma::load_matrix_sync(vb, sm.v + kk * kFrag * S::ldt + n * kFrag, S::ldt);
        wmma::mma_sync(acc, pa, vb, acc);
      }
      wmma::store_matrix_sync(f + n * kFrag, acc, S::ldf, wmma::mem_row_major);
    }
    __syncwarp();
#pragma unroll
    for (int c = 0; c < D / 2; ++c) o_acc[c] = o_acc[c] * alpha + frow[2 * c + half];
    __syncwarp();  // P V read before the next S lands in the scratch
  }

  // Epilogue: normalise, then write (flash) or merge into the accumulators (dilated levels, steps).
  const bool mine = qi < job.nq;
  float* o_row = job.o + qi * job.o_stride;
  float* lse_at = job.lse + qi * job.lse_stride;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  const float lse_part = l > 0.0f ? (m + log2f(l)) * kLn2 : -INFINITY;
  if (!p.merge) {
    if (mine) {
#pragma unroll
      for (int c = 0; c < D / 2; ++c) o_row[2 * c + half] = o_acc[c] * inv;
      if (half == 0) *lse_at = lse_part;
    }
    return;
  }
  const float lse_acc = mine ? *lse_at : -INFINITY;
  __syncwarp();  // both lanes of the row have read its lse before one of them rewrites it
  if (!mine || lse_part == -INFINITY) return;  // an empty part adds nothing
  const MergeWeights w = merge_weights(lse_acc, lse_part);  // kernels/merge.h, as on the host
  const float wa = w.wa, wb = w.wb * inv;
#pragma unroll
  for (int c = 0; c < D / 2; ++c) o_row[2 * c + half] = wa * o_row[2 * c + half] + wb * o_acc[c];
  if (half == 0) *lse_at = w.lse;
}

template <typename T, int D, typename Params, typename Src>
void launch(const Params& p, int64_t blocks, cudaStream_t stream) {
  if (blocks == 0) return;
  if (blocks > INT_MAX)
    throw std::runtime_error("tile attention: " + std::to_string(blocks) + " thread blocks exceed the grid limit");
  const int smem = static_cast<int>(sizeof(Smem<T, D>));
  // Once per instantiation (and process: one device each), not per launch: the attribute call
  // would otherwise sit inside every event-timed region.
  static const bool attribute_set = [smem] {
    LONGATTN_CUDA_CHECK(
        cudaFuncSetAttribute(tile_attention_kernel<T, D, Params, Src>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    return true;
  }();
  (void)attribute_set;
  tile_attention_kernel<T, D, Params, Src><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(p);
  LONGATTN_CUDA_CHECK_LAUNCH();
}

// The one place where the runtime dtype and head dim become template parameters. Views read their
// inputs in the dtype; steps read fp32 containers of its values (StepBlock, as on the CPU).
template <typename Params>
void dispatch(const Params& p, int64_t blocks, int64_t d, DType dtype, cudaStream_t stream) {
  constexpr bool kStep = std::is_same_v<Params, StepTileParams>;
  using Bf16Src = std::conditional_t<kStep, float, __nv_bfloat16>;
  using Fp16Src = std::conditional_t<kStep, float, __half>;
  if (dtype == DType::bf16 && d == 64) return launch<__nv_bfloat16, 64, Params, Bf16Src>(p, blocks, stream);
  if (dtype == DType::bf16 && d == 128) return launch<__nv_bfloat16, 128, Params, Bf16Src>(p, blocks, stream);
  if (dtype == DType::fp16 && d == 64) return launch<__half, 64, Params, Fp16Src>(p, blocks, stream);
  if (dtype == DType::fp16 && d == 128) return launch<__half, 128, Params, Fp16Src>(p, blocks, stream);
  throw std::invalid_argument(std::string("tile attention is built for bf16/fp16 and d in {64, 128}, got ") +
                              dtype_name(dtype) + " d=" + std::to_string(d));
}

}  // namespace

void launch_tile_attention(const TileParams& p, DType dtype, cudaStream_t stream) {
  dispatch(p, p.view.blocks(), p.view.d, dtype, stream);
}

void launch_tile_step(const StepTileParams& p, int64_t d, DType dtype, cudaStream_t stream) {
  dispatch(p, p.tile_count, d, dtype, stream);
}

void launch_tile_summary(const SummaryParams& p, DType dtype, cudaStream_t stream) {
  dispatch(p, p.view.blocks(), p.view.d, dtype, stream);
}

}  // namespace longattn::cuda
