#pragma once
// Sizes from outside (a .npy header, a suite file) multiply into element counts and byte counts.
// Every such product is checked here, once, where it enters: past the limit it is bad input
// (InputError naming the field), never a wrapped count that a later allocation trusts.
#include <cstdint>
#include <string>

#include "kernels/input_error.h"

namespace longattn {

// 2^50 elements (4 PiB of floats): far beyond any machine, far below int64 overflow in the
// kernels' index arithmetic ((b N + i) H + h) d on tensors of that size.
constexpr int64_t kMaxElements = int64_t{1} << 50;

// a * b, or InputError("<what>: ... too large") when the product passes `limit`.
inline int64_t checked_mul(int64_t a, int64_t b, const std::string& what, int64_t limit = kMaxElements) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r) || r > limit)
    throw InputError(what + ": sizes multiply past " + std::to_string(limit) + " elements; use smaller sizes");
  return r;
}

}  // namespace longattn
