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

// The results' `error` object from reduced errors; `max_abs_v` sets the O tolerance (SPEC §4).
nlohmann::json error_report(const RowErrors& e, double max_abs_v, const std::string& dtype, bool has_lse,
                            double rows_checked);

}  // namespace longattn
