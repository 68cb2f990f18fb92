// The `vanilla` kernel: multi-head attention the way a framework runs it without fusion. Per head:
// S = scale Q K^T with one threaded sgemm (N x N), mask, softmax in place, O = P V with a second
// sgemm writing straight into O. Heads are read in place through the leading dimension H*d.
// bf16: the same with OpenBLAS's sbgemm (bf16 operands, fp32 scores and output; its Cooperlake
// and Sapphire Rapids cores use AVX512-BF16) where the library has it: Q, K, V of the head and P
// are converted to bf16 arrays first. Without it (Debian's OpenBLAS is built without bf16), sgemm
// on the bf16 values, which fp32 holds exactly; P then stays fp32.
#include "kernels/vanilla_cpu.h"

#include <cblas.h>
#include <omp.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/backward.h"
#include "kernels/blas.h"

namespace longattn {
namespace {

// How many levels of the pattern hold key j for query i (SPEC §1: a key in two levels counts
// twice; 0: masked), one query row at a time.
struct RowWeights {
  const Pattern& pattern;
  int64_t n;
  bool dense = pattern.kind == PatternKind::full;
  int levels = pattern.level_count(n);
  int64_t last = 0;
  std::vector<float> weight;
  std::vector<int64_t> keys;
  RowWeights(const Pattern& p, int64_t n_) : pattern(p), n(n_) {}
  void row(int64_t head, int64_t i) {
    last = pattern.causal ? i : n - 1;
    if (dense) return;
    weight.assign(n, 0.0f);
    for (int l = 0; l < levels; ++l) {
      keys.clear();
      pattern.keys(l, head, i, n, keys);
      for (int64_t j : keys) weight[j] += 1.0f;
    }
  }
  float operator()(int64_t j) const { return dense ? (j <= last ? 1.0f : 0.0f) : weight[j]; }
};

}  // namespace

void vanilla_attention(const AttentionArgs& a) {
  const Shape sh = a.shape;
  const int64_t N = sh.N, ld = sh.H * sh.d;
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
  openblas_set_num_threads(threads);
  std::vector<float> scores(N * N);
  const SbgemmFn sbgemm = a.dtype == DType::bf16 ? blas_sbgemm() : nullptr;
  const bool bf16 = sbgemm != nullptr;
  std::vector<uint16_t> qb(bf16 ? N * sh.d : 0), kb(qb.size()), pb(bf16 ? N * N : 0);
  auto to_bf16 = [&](const float* x, uint16_t* out) {  // one head's [N, d] rows, ld apart
    for (int64_t j = 0; j < N; ++j)
      for (int64_t c = 0; c < sh.d; ++c) out[j * sh.d + c] = bf16_bits(x[j * ld + c]);
  };
  for (int64_t b = 0; b < sh.B; ++b) {
    for (int64_t h = 0; h < sh.H; ++h) {
      const int64_t off = b * N * ld + h * sh.d;
      if (bf16) {
        to_bf16(a.q + off, qb.data());
        to_bf16(a.k + off, kb.data());
        sbgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, sh.d, a.scale, qb.data(), sh.d, kb.data(), sh.d, 0.0f,
               scores.data(), N);
      } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, sh.d, a.scale, a.q + off, ld, a.k + off, ld, 0.0f,
                    scores.data(), N);
      }
#pragma omp parallel num_threads(threads)
      {
        RowWeights w(a.pattern, N);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < N; ++i) {
          float* s = scores.data() + i * N;
          w.row(a.head0 + h, i);
          float mx = -std::numeric_limits<float>::infinity();
          for (int64_t j = 0; j < N; ++j)
            if (w(j) > 0) mx = std::max(mx, s[j]);
          double sum = 0;
          for (int64_t j = 0; j < N; ++j) {
            const float wj = w(j);
            s[j] = wj > 0 ? wj * std::exp(s[j] - mx) : 0.0f;
            sum += s[j];
          }
          const bool nan = sum != sum;  // a non-finite input reached this row: NaN in O and LSE, as in the oracle
          const float inv = nan ? NAN : sum > 0 ? static_cast<float>(1.0 / sum) : 0.0f;
          for (int64_t j = 0; j < N; ++j) s[j] *= inv;
          if (a.lse)
            a.lse[(b * sh.H + h) * N + i] = nan       ? NAN
                                            : sum > 0 ? mx + static_cast<float>(std::log(sum))
                                                      : -std::numeric_limits<float>::infinity();
        }
      }
      bool v_finite = true;
      for (int64_t j = 0; j < N && v_finite; ++j)
        for (int64_t c = 0; c < sh.d; ++c) v_finite &= std::isfinite(a.v[off + j * ld + c]);
      if (v_finite && bf16) {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t i = 0; i < N * N; ++i) pb[i] = bf16_bits(scores[i]);
        to_bf16(a.v + off, kb.data());
        sbgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, sh.d, N, 1.0f, pb.data(), N, kb.data(), sh.d, 0.0f,
               a.o + off, ld);
      } else if (v_finite) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, sh.d, N, 1.0f, scores.data(), N, a.v + off, ld, 0.0f,
                    a.o + off, ld);
      } else {
        // V holds NaN or inf (--allow-nonfinite): 0 x NaN must not reach rows whose sets exclude
        // that key, so the product skips zero probabilities (slow; only that input takes it).
#pragma omp parallel for num_threads(threads)
        for (int64_t i = 0; i < N; ++i) {
          float* o = a.o + off + i * ld;
          std::fill(o, o + sh.d, 0.0f);
          for (int64_t j = 0; j < N; ++j)
            if (const float p = scores[i * N + j]; p != 0.0f)
              for (int64_t c = 0; c < sh.d; ++c) o[c] += p * a.v[off + j * ld + c];
        }
      }
    }
  }
}

void vanilla_backward(const BackwardArgs& ba) {
  const AttentionArgs& a = ba.fwd;
  const Shape sh = a.shape;
  const int64_t N = sh.N, d = sh.d, ld = sh.H * d;
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
  openblas_set_num_threads(threads);
  std::vector<float> p(N * N), ds(N * N);
  for (int64_t b = 0; b < sh.B; ++b)
    for (int64_t h = 0; h < sh.H; ++h) {
      const int64_t off = b * N * ld + h * d;
      const float* lse = a.lse + (b * sh.H + h) * N;
      // P = W ∘ exp(scale Q K^T - LSE), W the level count of each pair (0: masked); dP = dO V^T.
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, d, a.scale, a.q + off, ld, a.k + off, ld, 0.0f,
                  p.data(), N);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, N, d, 1.0f, ba.dout + off, ld, a.v + off, ld, 0.0f,
                  ds.data(), N);
#pragma omp parallel num_threads(threads)
      {
        RowWeights w(a.pattern, N);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < N; ++i) {
          w.row(a.head0 + h, i);
          float delta = 0;  // D = rowsum(dO ∘ O)
          for (int64_t c = 0; c < d; ++c) delta += ba.dout[off + i * ld + c] * a.o[off + i * ld + c];
          float* pr = p.data() + i * N;
          float* dsr = ds.data() + i * N;
          for (int64_t j = 0; j < N; ++j) {
            const float wj = w(j);
            pr[j] = wj > 0 && lse[i] != -std::numeric_limits<float>::infinity() ? wj * std::exp(pr[j] - lse[i]) : 0.0f;
            dsr[j] = pr[j] * (dsr[j] - delta);  // dS = P ∘ (dP - D)
          }
        }
      }
      // dV = P^T dO, dQ = scale dS K, dK = scale dS^T Q.
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, d, N, 1.0f, p.data(), N, ba.dout + off, ld, 0.0f,
                  ba.dv + off, ld);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, d, N, a.scale, ds.data(), N, a.k + off, ld, 0.0f,
                  ba.dq + off, ld);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, d, N, a.scale, ds.data(), N, a.q + off, ld, 0.0f,
                  ba.dk + off, ld);
    }
}

}  // namespace longattn
