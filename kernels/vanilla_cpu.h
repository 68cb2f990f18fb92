#pragma once
// Unfused multi-head attention (two sgemms and a softmax over N x N scores): the baseline every
// speedup is quoted against.
#include "kernels/attention.h"

namespace longattn {

void vanilla_attention(const AttentionArgs& a);

}  // namespace longattn
