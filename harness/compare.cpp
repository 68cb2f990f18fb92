#include "harness/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "harness/json_input.h"
#include "harness/stats.h"
#include "kernels/input_error.h"

namespace longattn {
namespace {

using nlohmann::json;

json load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path.substr(0, 100) + ": cannot open results file");
  json j = parse_json_input(in, path.substr(0, 100));
  if (!j.is_object() || !j.contains("schema_version") || !j.contains("cases") || !j["cases"].is_array() ||
      !j.contains("context"))
    throw InputError(path + ": not a longattn results file (needs schema_version, context, cases)");
  if (j["schema_version"] != 1)
    throw InputError(path + ": schema_version " + j["schema_version"].dump() + " is not supported (expected 1)");
  return j;
}

// What makes timings comparable: the CPU, how many, and the BLAS core vanilla and the
// calibration ran on. Files written before the context named the BLAS say "unknown".
std::string machine(const json& r) {
  const json& c = r["context"];
  std::string core = "unknown";
  if (c.contains("blas") && c["blas"].is_object() && c["blas"].contains("core") && c["blas"]["core"].is_string())
    core = c["blas"]["core"].get<std::string>();
  const std::string cpu = c.contains("cpu_model") && c["cpu_model"].is_string() ? c["cpu_model"].get<std::string>() : "unknown";
  const std::string cores = c.contains("cores") && c["cores"].is_number_integer() ? std::to_string(c["cores"].get<int64_t>()) : "?";
  return "CPU " + cpu.substr(0, 100) + " (" + cores + " cores), BLAS core " + core.substr(0, 40);
}

// Shape key of a case without its method: a method's time over vanilla's is taken per shape.
std::string shape_key(const json& c) {
  return c["pattern_name"].get<std::string>() + " " + std::to_string(c["B"].get<int64_t>()) + " " +
         std::to_string(c["N"].get<int64_t>()) + " " + std::to_string(c["H"].get<int64_t>()) + " " +
         c.value("H_kv", c["H"]).dump() + " " +  // GQA: K and V heads (older files: H)
         std::to_string(c["d"].get<int64_t>()) + " " + c["dtype"].get<std::string>() + " " +
         c["device"].get<std::string>();
}

// Normalised samples of every ok case, by name.
std::map<std::string, std::vector<double>> normalised(const json& r, const std::string& metric,
                                                      const std::string& path) {
  std::map<std::string, std::vector<double>> out;
  std::map<std::string, double> vanilla;
  for (const json& c : r["cases"])
    if (c["status"] == "ok" && c["method"] == "vanilla") vanilla[shape_key(c)] = c["time_ms"]["median"].get<double>();
  const double sgemm = r["context"].value("sgemm_gflops_per_rank", 0.0);
  if (metric == "vs-sgemm" && sgemm <= 0) throw InputError(path + ": context has no sgemm_gflops_per_rank");
  for (const json& c : r["cases"]) {
    if (c["status"] != "ok") continue;
    std::vector<double> s = c["samples_ms"].get<std::vector<double>>();
    if (metric == "vs-sgemm") {
      for (double& x : s) x *= sgemm;
    } else if (metric == "vs-vanilla") {
      const auto it = vanilla.find(shape_key(c));
      if (it == vanilla.end() || c["method"] == "vanilla") continue;  // nothing to normalise by
      for (double& x : s) x /= it->second;
    } else if (metric != "time") {
      throw InputError("--metric: unknown metric \"" + metric + "\"; use time, vs-sgemm or vs-vanilla");
    }
    out[c["name"].get<std::string>()] = s;
  }
  return out;
}

// P(U <= u) under H0 for sample sizes n, m without ties: count rank arrangements by dynamic
// programming over (items placed, U so far).
double exact_cdf(int n, int m, double u) {
  // f[i][j][k]: arrangements of i a's and j b's with statistic k (number of (a, b) pairs with a > b).
  std::vector<std::vector<std::vector<double>>> f(
      n + 1, std::vector<std::vector<double>>(m + 1, std::vector<double>(n * m + 1, 0.0)));
  f[0][0][0] = 1;
  for (int i = 0; i <= n; ++i)
    for (int j = 0; j <= m; ++j)
      for (int k = 0; k <= n * m; ++k) {
        if (f[i][j][k] == 0) continue;
        if (i < n) f[i + 1][j][k + j] += f[i][j][k];  // an a above the j b.s placed so far
        if (j < m) f[i][j + 1][k] += f[i][j][k];
      }
  double total = 0, below = 0;
  for (int k = 0; k <= n * m; ++k) {
    total += f[n][m][k];
    if (k <= u + 1e-9) below += f[n][m][k];
  }
  return below / total;
}

}  // namespace

double mann_whitney_greater(const std::vector<double>& a, const std::vector<double>& b) {
  const int n = static_cast<int>(a.size()), m = static_cast<int>(b.size());
  if (n == 0 || m == 0) return 1.0;
  // U_a = #(a > b) + 0.5 #(a == b): small U_a means b tends to be larger.
  double u = 0;
  bool ties = false;
  for (double x : a)
    for (double y : b) {
      if (x > y) u += 1;
      else if (x == y) u += 0.5, ties = true;
    }
  if (!ties && n * m <= 400) return exact_cdf(n, m, u);
  // Normal approximation with tie correction.
  std::vector<double> all(a);
  all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end());
  double tie_term = 0;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    while (j < all.size() && all[j] == all[i]) ++j;
    const double t = static_cast<double>(j - i);
    tie_term += t * t * t - t;
    i = j;
  }
  const double N = n + m;
  const double mu = n * m / 2.0;
  const double sigma = std::sqrt(n * m / 12.0 * ((N + 1) - tie_term / (N * (N - 1))));
  if (sigma == 0) return 1.0;
  const double z = (u + 0.5 - mu) / sigma;  // continuity correction
  return 0.5 * std::erfc(-z / std::sqrt(2.0));
}

int compare_results(const CompareOptions& opt) {
  if (opt.threshold_pct <= 0) throw InputError("--threshold: must be a positive percentage");
  if (opt.alpha <= 0 || opt.alpha >= 1) throw InputError("--alpha: must be in (0, 1)");
  // Each side is one file or several (comma-separated: rounds of one program, pooled per case).
  struct Side {
    std::map<std::string, std::vector<double>> samples;
    std::string machine;
  };
  auto read_side = [&](const std::string& list) {
    Side side;
    std::stringstream ss(list);
    for (std::string path; std::getline(ss, path, ',');) {
      if (path.empty()) throw InputError("compare: empty file name in \"" + list.substr(0, 100) + "\"");
      const json r = load(path);
      const std::string m = machine(r);
      if (!side.machine.empty() && m != side.machine && !opt.cross_machine)
        throw InputError("the files of one side come from different machines: " + path.substr(0, 100) + " from " + m + "; the first from " +
                         side.machine + ". Pass --cross-machine to pool them anyway");
      side.machine = m;
      for (auto& [name, s] : normalised(r, opt.metric, path)) {
        auto& all = side.samples[name];
        all.insert(all.end(), s.begin(), s.end());
      }
    }
    return side;
  };
  const Side base = read_side(opt.base), cand = read_side(opt.candidate);
  if (base.machine != cand.machine && !opt.cross_machine)
    throw InputError("the files come from different machines: " + opt.base.substr(0, 200) + " from " + base.machine + "; " +
                     opt.candidate.substr(0, 200) + " from " + cand.machine +
                     ". Timings from two machines do not show a regression: run both programs on one machine "
                     "(scripts/gate.sh BASE_PROGRAM NEW_PROGRAM does), or pass --cross-machine to compare anyway");
  const auto& bs = base.samples;
  const auto& cs = cand.samples;
  std::printf("Metric: %s; a regression is a change above +%.1f%% with one-sided Mann-Whitney p < %.3g.\n\n",
              opt.metric.c_str(), opt.threshold_pct, opt.alpha);
  std::printf("| case | base | new | change | p | verdict |\n|---|---:|---:|---:|---:|---|\n");
  int regressions = 0;
  std::vector<std::string> only_base, only_new;
  for (const auto& [name, b] : bs) {
    const auto it = cs.find(name);
    if (it == cs.end()) {
      only_base.push_back(name);
      continue;
    }
    const std::vector<double>& n = it->second;
    const double mb = summarize(b).median, mn = summarize(n).median;
    const double change = 100.0 * (mn / mb - 1.0);
    const double p_slower = mann_whitney_greater(b, n), p_faster = mann_whitney_greater(n, b);
    const char* verdict = "same";
    double p = std::min(p_slower, p_faster);
    if (change > opt.threshold_pct && p_slower < opt.alpha) verdict = "REGRESSION", p = p_slower, ++regressions;
    else if (change < -opt.threshold_pct && p_faster < opt.alpha) verdict = "faster", p = p_faster;
    else if (std::abs(change) > opt.threshold_pct) verdict = "noise (not significant)";
    std::printf("| %s | %.4g | %.4g | %+.1f%% | %.3g | %s |\n", name.c_str(), mb, mn, change, p, verdict);
  }
  for (const auto& [name, s] : cs)
    if (!bs.count(name)) only_new.push_back(name);
  if (!only_base.empty() || !only_new.empty()) std::printf("\n");
  for (const auto& n : only_base) std::printf("- only in %s: %s\n", opt.base.c_str(), n.c_str());
  for (const auto& n : only_new) std::printf("- only in %s: %s\n", opt.candidate.c_str(), n.c_str());
  std::printf("\n%d regression%s.\n", regressions, regressions == 1 ? "" : "s");
  return regressions ? 1 : 0;
}

}  // namespace longattn
