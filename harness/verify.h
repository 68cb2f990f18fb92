#pragma once
// Verification against the double-precision oracle (SPEC §4), shared by `run` (every case, on the
// rows each rank holds) and `verify` (outputs another program wrote, e.g. the PyTorch peers):
// which rows are checked, how a row's error is measured, and the tolerances.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/attention.h"

namespace longattn {

struct SampleRow {
  int64_t b, h, i;
};
// Every row when B·H·N <= 4096, else a fixed sample of 256 drawn from `seed`.
std::vector<SampleRow> sample_rows(const Shape& g, uint64_t seed);

struct RowErrors {
  double o = 0, lse = 0;
};
// Max errors over `rows` against the oracle `ref` (global K, V, pattern, scale). For each row the
// callbacks give its query, the output to check and its LSE (lse may be null: not checked).
struct RowAccess {
  std::function<const float*(const SampleRow&)> q, o;
  std::function<const float*(const SampleRow&)> lse;
};
RowErrors check_rows(const AttentionArgs& ref, const std::vector<SampleRow>& rows, const RowAccess& at);

// The backward pass (SPEC §6) on sampled rows: dQ at the rows' queries, dK and dV at the rows'
// positions as keys, summed in float64 over every query that sees the key, from Q, K, V, dO and the
// forward's O and LSE (fwd.o, fwd.lse: their own check is the forward's). All tensors whole,
// [B, N, H, d] (LSE [B, H, N]). max_ref: the largest |reference| met, which sets the tolerance.
struct GradErrors {
  double dq = 0, dk = 0, dv = 0, max_ref = 0;
};
GradErrors check_grad_rows(const AttentionArgs& fwd, const float* dout, const float* dq, const float* dk,
                           const float* dv, const std::vector<SampleRow>& rows);

// The results' `error` object from reduced errors; `max_abs_v` sets the O tolerance (SPEC §4); with
// `grads`, also the gradients' (SPEC §6).
nlohmann::json error_report(const RowErrors& e, double max_abs_v, const std::string& dtype, bool has_lse,
                            double rows_checked, const GradErrors* grads = nullptr);

}  // namespace longattn
