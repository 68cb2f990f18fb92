#pragma once
// AttentionArgs: what every single-device kernel takes. Kernels read the inputs and write the
// outputs they are handed; they never allocate them.
#include <cstdint>

#include "kernels/dtype.h"
#include "kernels/pattern.h"

namespace longattn {

struct Shape {
  int64_t B = 1, N = 1, H = 1, d = 1;
  int64_t numel() const { return B * N * H * d; }  // of Q, K, V or O: [B, N, H, d]
};

struct AttentionArgs {
  Shape shape;
  const float* q = nullptr;  // [B, N, H, d]
  const float* k = nullptr;  // [B, N, H, d]
  const float* v = nullptr;  // [B, N, H, d]
  float* o = nullptr;        // [B, N, H, d]
  float* lse = nullptr;      // [B, H, N], natural log; may be null
  Pattern pattern;
  float scale = 0;           // score scale; 1/sqrt(d) unless the case sets it
  int64_t head0 = 0;         // global index of head 0 (dilated offsets are h mod r of the global h)
  int threads = 0;           // 0: every core OpenMP offers
  DType dtype = DType::fp32; // the inputs' values are of this type (kernels/dtype.h); O is rounded by the caller
};

inline float default_scale(int64_t d) { return 1.0f / __builtin_sqrtf(static_cast<float>(d)); }

}  // namespace longattn
