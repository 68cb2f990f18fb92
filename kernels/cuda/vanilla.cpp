// `vanilla` on the GPU: multi-head attention the way a framework runs it unfused. For a group of
// heads of one batch at a time:
//   S = scale K Q^T    cuBLAS strided-batched GEMM over heads, fp32 out ([heads][N][N], row i = query i)
//   P = softmax(mask(S))   masked_softmax.cu, in the input dtype; LSE written
//   O = P V            cuBLAS strided-batched GEMM, fp32 out straight into O's head columns
// Heads are read in place: head h of [B, N, H, d] is a matrix with leading dimension H*d starting
// h*d elements in, so consecutive heads are `d` apart (the batch stride of the GEMMs).
// cuBLAS is column-major: a row-major R x C matrix with leading dimension ld is its C x R transpose.
#include <climits>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/gpu_kernels.h"
#include "kernels/cuda/masked_softmax.h"

namespace longattn::cuda {
namespace {

constexpr size_t kScoreBudget = size_t(2) << 30;  // bytes of scores a group of heads may take

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLAS ") + what + " failed: " + cublasGetStatusString(s));
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::fp32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::fp16: return CUDA_R_16F;
  }
  return CUDA_R_32F;
}

// Bytes one head needs: fp32 scores, plus 16-bit probabilities unless they overwrite the scores.
size_t bytes_per_head(const Shape& s, DType dtype) {
  const size_t nn = size_t(s.N) * size_t(s.N);
  return nn * sizeof(float) + (dtype == DType::fp32 ? 0 : nn * dtype_bytes(dtype));
}

std::string vanilla_unsupported(const Pattern& p, const Shape& s, DType) {
  if (s.N > INT_MAX || s.H * s.d > INT_MAX) return "vanilla: N and H*d must fit cuBLAS's 32-bit sizes";
  if (s.H > 65535) return "vanilla: more than 65535 heads";
  return device_pattern_unsupported(p, s.N);
}

size_t vanilla_scratch_bytes(const Pattern&, const Shape& s, DType dtype) {
  const size_t per_head = bytes_per_head(s, dtype);
  size_t heads = kScoreBudget / per_head;
  heads = heads < 1 ? 1 : heads > size_t(s.H) ? size_t(s.H) : heads;
  return heads * per_head;
}

void vanilla_cuda(const DeviceArgs& a, const GpuScratch& ws) {
  const Shape sh = a.shape;
  const int N = static_cast<int>(sh.N), d = static_cast<int>(sh.d), ld = static_cast<int>(sh.H * sh.d);
  const size_t per_head = bytes_per_head(sh, a.dtype);
  const int64_t group = static_cast<int64_t>(ws.bytes / per_head);
  if (group < 1) throw std::logic_error("vanilla: scratch smaller than one head");
  const cudaDataType_t in_type = cuda_type(a.dtype);
  const int64_t elem = dtype_bytes(a.dtype);
  const long long nn = static_cast<long long>(sh.N) * sh.N;

  float* scores = static_cast<float*>(ws.scratch);
  // fp32: probabilities overwrite the scores; bf16/fp16: their own buffer after the scores.
  void* probs = a.dtype == DType::fp32 ? ws.scratch : static_cast<void*>(scores + group * nn);
  check(cublasSetStream(ws.cublas, a.stream), "set stream");

  MaskedSoftmaxParams sp;
  sp.s = scores;
  sp.p = probs;
  sp.ldp = sh.N;
  sp.lse = a.lse;
  sp.N = sh.N;
  sp.H = sh.H;
  sp.head0 = a.head0;
  sp.pattern = a.pattern;

  const float one = 1.0f, zero = 0.0f;
  for (int64_t b = 0; b < sh.B; ++b) {
    for (int64_t h0 = 0; h0 < sh.H; h0 += group) {
      const int heads = static_cast<int>(group < sh.H - h0 ? group : sh.H - h0);
      const int64_t off = (b * sh.N * sh.H + h0) * sh.d;  // token 0 of head h0 of batch b, in elements
      const char* q = static_cast<const char*>(a.q) + off * elem;
      const char* k = static_cast<const char*>(a.k) + off * elem;
      const char* v = static_cast<const char*>(a.v) + off * elem;
      // S^T (col-major N x N, i.e. S row-major) = K (op T of the d x N col-major view) x Q^T (d x N).
      check(cublasGemmStridedBatchedEx(ws.cublas, CUBLAS_OP_T, CUBLAS_OP_N, N, N, d, &a.scale, k, in_type, ld, d, q,
                                       in_type, ld, d, &zero, scores, CUDA_R_32F, N, nn, heads, CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT),
            "Q K^T");
      sp.b = b;
      sp.h_begin = h0;
      sp.heads = heads;
      launch_masked_softmax(sp, a.dtype, a.stream);
      // O^T (col-major d x N, i.e. O row-major) = V^T (d x N) x P^T (N x N, i.e. P row-major).
      check(cublasGemmStridedBatchedEx(ws.cublas, CUBLAS_OP_N, CUBLAS_OP_N, d, N, N, &one, v, in_type, ld, d, probs,
                                       in_type, N, nn, &zero, a.o + off, CUDA_R_32F, ld, d, heads, CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT),
            "P V");
    }
  }
}

}  // namespace

const GpuKernel kVanillaCuda{vanilla_unsupported, vanilla_scratch_bytes, vanilla_cuda, true};

}  // namespace longattn::cuda
