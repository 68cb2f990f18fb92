#pragma once
// `longattn compare BASE NEW`: the regression gate. A case regressed when its normalised time grew
// beyond the threshold AND the per-iteration samples say so with statistical evidence (one-sided
// Mann-Whitney U test), so a noisy machine's jitter does not fail CI but a real slowdown does.
#include <string>
#include <vector>

namespace longattn {

struct CompareOptions {
  std::string base, candidate;
  double threshold_pct = 25;
  double alpha = 0.05;
  // time: raw milliseconds (the default: both files come from one machine). vs-sgemm: time x the run's sgemm GFLOP/s calibration (a machine twice
  // as slow doubles both). vs-vanilla: time / vanilla's time for the same shape in the same file.
  // Two files compare only when measured on the same kind of machine (CPU model, cores, BLAS core);
  // a figure from another machine says nothing about a regression. --cross-machine overrides.
  std::string metric = "time";
  bool cross_machine = false;
};

// One-sided p-value that samples `b` are stochastically larger than `a` (exact for small samples,
// normal approximation with tie correction otherwise).
double mann_whitney_greater(const std::vector<double>& a, const std::vector<double>& b);

// Prints a Markdown table; returns 0 (no regression), 1 (some regression); throws InputError.
int compare_results(const CompareOptions& opt);

}  // namespace longattn
