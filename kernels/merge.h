#pragma once
// The one merge of partial attention results (SPEC §1): two softmaxes over disjoint key sets,
// each summarised by its normalised output o and log-sum-exp lse, combine into the softmax over
// the union. Levels of a dilated pattern, key blocks, ring steps and ranks all merge this way, on
// the host (merge_row) and in the CUDA tile kernel's epilogue (merge_weights).
#include <math.h>

#include <cstdint>

#include "kernels/hd.h"

namespace longattn {

// merged o = wa * o_acc + wb * o_part, merged lse = lse. An empty side (lse = -inf) gets weight 0
// and the other weight 1. Stable: exp of non-positive numbers only, one of them exp(0) = 1.
struct MergeWeights {
  float wa, wb, lse;
};
LONGATTN_HD MergeWeights merge_weights(float lse_acc, float lse_part) {
  if (lse_part == -INFINITY) return {1.0f, 0.0f, lse_acc};
  if (lse_acc == -INFINITY) return {0.0f, 1.0f, lse_part};
  const float mx = fmaxf(lse_acc, lse_part);
  const float a = expf(lse_acc - mx), b = expf(lse_part - mx);
  return {a / (a + b), b / (a + b), mx + logf(a + b)};
}

// acc <- merge(acc, part) for one query row of d values. o_acc is only read when lse_acc is finite.
inline void merge_row(float* o_acc, float& lse_acc, const float* o_part, float lse_part, int64_t d) {
  if (lse_part == -INFINITY) return;  // empty partial: nothing to add
  const MergeWeights m = merge_weights(lse_acc, lse_part);
  if (lse_acc == -INFINITY) {
    for (int64_t c = 0; c < d; ++c) o_acc[c] = o_part[c];
  } else {
    for (int64_t c = 0; c < d; ++c) o_acc[c] = m.wa * o_acc[c] + m.wb * o_part[c];
  }
  lse_acc = m.lse;
}

}  // namespace longattn
