#pragma once
// Grouped-query attention (SPEC §1) for kernels that index K and V by query head: they run on K
// and V expanded to H heads (a copy of 2 B N H d floats, as PyTorch's math path does), and their
// dK, dV are summed over each group of H / H_kv query heads. Kernels that read the KV heads in
// place (the oracle, flash's banded path, dilated's forward, the attention step) take no copy.
#include <functional>
#include <vector>

#include "kernels/attention.h"
#include "kernels/backward.h"

namespace longattn {

// [B, N, H_kv, d] -> [B, N, H, d]: KV head g repeated for query heads g G .. g G + G - 1.
std::vector<float> expand_kv_heads(const float* kv, const Shape& s, int threads = 0);
// [B, N, H, d] -> [B, N, H_kv, d]: each group's G heads summed (the gradient of the expansion).
void sum_kv_groups(const float* expanded, const Shape& s, float* kv, int threads = 0);

// run(a) on a case whose K and V have H_kv heads, through the expansion when a.shape.grouped().
void run_with_kv_heads(const AttentionArgs& a, const std::function<void(const AttentionArgs&)>& run);
void backward_with_kv_heads(const BackwardArgs& a, const std::function<void(const BackwardArgs&)>& backward);

// As kernel-table entries (kernels/registry.h).
template <void (*Run)(const AttentionArgs&)>
void expanding_kv(const AttentionArgs& a) { run_with_kv_heads(a, Run); }
template <void (*Backward)(const BackwardArgs&)>
void expanding_kv_backward(const BackwardArgs& a) { backward_with_kv_heads(a, Backward); }

}  // namespace longattn
