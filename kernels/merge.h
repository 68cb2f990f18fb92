#pragma once
// The one merge of partial attention results (SPEC §1): two softmaxes over disjoint key sets,
// each summarised by its normalised output o and log-sum-exp lse, combine into the softmax over
// the union. Levels of a dilated pattern, key blocks, ring steps and ranks all merge this way.
#include <cmath>
#include <cstdint>
#include <limits>

namespace longattn {

// acc <- merge(acc, part) for one query row of d values. Stable: only exp of non-positive numbers.
inline void merge_row(float* o_acc, float& lse_acc, const float* o_part, float lse_part, int64_t d) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  if (lse_part == kNegInf) return;  // empty partial: nothing to add
  if (lse_acc == kNegInf) {
    for (int64_t c = 0; c < d; ++c) o_acc[c] = o_part[c];
    lse_acc = lse_part;
    return;
  }
  const float mx = std::max(lse_acc, lse_part);
  const float a = std::exp(lse_acc - mx), b = std::exp(lse_part - mx);  // one of them is 1
  const float wa = a / (a + b), wb = b / (a + b);
  for (int64_t c = 0; c < d; ++c) o_acc[c] = wa * o_acc[c] + wb * o_part[c];
  lse_acc = mx + std::log(a + b);
}

}  // namespace longattn
