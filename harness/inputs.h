#pragma once
// Deterministic N(0, 1) inputs. Element e of tensor t (0 = Q, 1 = K, 2 = V, 3 = dO) under a seed is a pure
// function of (seed, t, e), so every rank makes exactly its own slice, and the verifier can make
// any row again, with no communication and no input files.
#include <cstdint>

#include "kernels/attention.h"

namespace longattn {

enum InputTensor { kQ = 0, kK = 1, kV = 2, kDO = 3 };  // kDO: dO, the backward pass's input

// Rows [pos0, pos0 + rows) of batch b of tensor t of the global shape g, as [rows, H, d].
void generate_rows(InputTensor t, uint64_t seed, const Shape& g, int64_t b, int64_t pos0, int64_t rows, float* out);
// Tokens [pos0, pos0 + rows) of every batch: [B, rows, H, d].
void generate_slice(InputTensor t, uint64_t seed, const Shape& g, int64_t pos0, int64_t rows, float* out);

}  // namespace longattn
