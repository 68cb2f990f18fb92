#pragma once
// The element types a case can run in, and bf16 rounding on the CPU. CPU tensors of every dtype
// are held in fp32 containers: a bf16 or fp16 case first rounds its inputs to the dtype, so each
// element is exactly a value of that type, and the kernel rounds its output the same way. The
// tile code reads those values as the dtype (bf16 pairs for VDPBF16PS), accumulates in fp32.
#include <cstdint>
#include <cstring>
#include <string>

namespace longattn {

enum class DType { fp32, bf16, fp16 };

inline const char* dtype_name(DType t) { return t == DType::bf16 ? "bf16" : t == DType::fp16 ? "fp16" : "fp32"; }
// Bytes per element where the type is stored natively (GPU buffers); CPU tensors are fp32 containers.
inline int dtype_bytes(DType t) { return t == DType::fp32 ? 4 : 2; }
// Throws InputError naming `field` for an unknown name.
DType parse_dtype(const std::string& name, const std::string& field);

// bf16 bits of x, rounded to nearest even; NaN stays a (quiet) NaN.
inline uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_value(uint16_t b) {
  const uint32_t u = uint32_t{b} << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
// x rounded to the nearest value of t (fp16: IEEE binary16, through the compiler's _Float16).
float round_to(DType t, float x);
// Every element of x[0, n) rounded to t, in place (no-op for fp32).
void round_all(DType t, float* x, int64_t n);

}  // namespace longattn
