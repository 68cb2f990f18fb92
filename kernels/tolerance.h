#pragma once
// SPEC §4's tolerances, in one place. Every output (the CPU and GPU kernels, the distributed
// methods, another program's through `longattn verify`) is held to them against the float64
// oracle run on the same inputs, rounded to the case's dtype.
#include <algorithm>

#include "kernels/dtype.h"

namespace longattn {

// LSE: this, absolute. fp32 accumulates in fp32; bf16 and fp16 round inputs and outputs (2^-8 and
// 2^-11 relative) with fp32 accumulation.
constexpr double lse_tolerance(DType t) { return t == DType::fp32 ? 1e-4 : 2e-2; }
// O: the same bound relative to the values, max(1, max |V|).
inline double o_tolerance(DType t, double max_abs_v) { return lse_tolerance(t) * std::max(1.0, max_abs_v); }
// dQ, dK, dV (SPEC §6), relative to max(1, max |dX_ref|). fp32: 1e-3, the sums of a gradient row run
// over every query or key of the pattern, in fp32. bf16 / fp16: the inputs (dO included) are rounded
// to the dtype and the gradients are rounded to it on output (2^-8 relative for bf16), the sums in
// fp32, so the forward's 2e-2 holds.
inline double grad_tolerance(DType t, double max_abs_ref) {
  return (t == DType::fp32 ? 1e-3 : 2e-2) * std::max(1.0, max_abs_ref);
}

}  // namespace longattn
