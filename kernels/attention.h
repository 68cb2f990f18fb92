#pragma once
// AttentionArgs: what every single-device kernel takes. Kernels read the inputs and write the
// outputs they are handed; they never allocate them.
#include <cstdint>
#include <string>

#include "kernels/dtype.h"
#include "kernels/pattern.h"

namespace longattn {

// Grouped-query attention (SPEC §1): K and V may have H_kv heads, H_kv dividing H; query head h reads
// KV head h / (H / H_kv). H_kv = 0 means H (multi-head attention); H_kv = 1 is multi-query attention.
struct Shape {
  int64_t B = 1, N = 1, H = 1, d = 1;
  int64_t H_kv = 0;
  int64_t numel() const { return B * N * H * d; }  // of Q or O: [B, N, H, d]
  int64_t kv_heads() const { return H_kv > 0 ? H_kv : H; }
  int64_t group() const { return H / kv_heads(); }  // query heads per KV head
  bool grouped() const { return kv_heads() != H; }
  int64_t kv_numel() const { return B * N * kv_heads() * d; }  // of K or V: [B, N, H_kv, d]
  Shape kv_shape() const { return {B, N, kv_heads(), d}; }     // K and V as tensors of their own
};

// Empty when H_kv fits H, else the "shape:" reason naming the field and the fix.
std::string kv_heads_unsupported(const Shape& s);

struct AttentionArgs {
  Shape shape;
  const float* q = nullptr;  // [B, N, H, d]
  const float* k = nullptr;  // [B, N, H_kv, d]
  const float* v = nullptr;  // [B, N, H_kv, d]
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
