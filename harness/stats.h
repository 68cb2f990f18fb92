#pragma once
// Summary statistics of per-iteration samples (all in the samples' unit).
#include <algorithm>
#include <cmath>
#include <vector>

#include <nlohmann/json.hpp>

namespace longattn {

struct Stats {
  double min = 0, median = 0, mean = 0, max = 0, stddev = 0;
};

inline Stats summarize(std::vector<double> x) {
  Stats s;
  if (x.empty()) return s;
  std::sort(x.begin(), x.end());
  const size_t n = x.size();
  s.min = x.front();
  s.max = x.back();
  s.median = n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
  for (double v : x) s.mean += v / n;
  for (double v : x) s.stddev += (v - s.mean) * (v - s.mean);
  s.stddev = n > 1 ? std::sqrt(s.stddev / (n - 1)) : 0.0;
  return s;
}

inline nlohmann::json to_json(const Stats& s) {
  return {{"min", s.min}, {"median", s.median}, {"mean", s.mean}, {"max", s.max}, {"stddev", s.stddev}};
}

}  // namespace longattn
