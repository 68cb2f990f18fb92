#pragma once
// Strided and fixed (Sparse Transformer) attention as disjoint dense pieces merged by LSE; the
// `flash` kernel runs these patterns this way (see sparse_cpu.cpp).
#include "kernels/attention.h"

namespace longattn {

void strided_attention(const AttentionArgs& a);
void fixed_attention(const AttentionArgs& a);

}  // namespace longattn
