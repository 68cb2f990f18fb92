#include "kernels/dtype.h"

#include "kernels/input_error.h"

namespace longattn {

DType parse_dtype(const std::string& name, const std::string& field) {
  if (name == "fp32") return DType::fp32;
  if (name == "bf16") return DType::bf16;
  if (name == "fp16") return DType::fp16;
  throw InputError(field + ": unknown dtype \"" + name.substr(0, 40) + "\"; use fp32, bf16 or fp16");
}

float round_to(DType t, float x) {
  if (t == DType::bf16) return bf16_value(bf16_bits(x));
  if (t == DType::fp16) return static_cast<float>(static_cast<_Float16>(x));
  return x;
}

void round_all(DType t, float* x, int64_t n) {
  if (t == DType::fp32) return;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) x[i] = round_to(t, x[i]);
}

}  // namespace longattn
