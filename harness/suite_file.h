#pragma once
// Suite files: which methods, patterns and shapes to time, and how. Axes expand as a product
// (Google Benchmark's ArgsProduct); `cases` adds explicit ones. The format: README.md, "Suites and results".
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/attention.h"

namespace longattn {

struct Case {
  std::string method;
  Pattern pattern;
  Shape shape;
  std::string dtype = "fp32";  // fp32 on cpu; bf16, fp16, fp32 on cuda
  std::string device = "cpu";  // cpu | cuda
  std::string pass = "forward";  // forward | backward | forward+backward (SPEC §6)
  int warmup = 1;
  int iterations = 3;
  bool verify = true;
  double budget_s = 60;  // per case; a case that would exceed it is skipped ("budget")
  float scale = 0;       // 0: 1/sqrt(d)
  uint64_t seed = 1;
  int ulysses = 0;       // dist-usp's Ulysses degree (0: its default); other methods leave it 0
  // cuda: "flush" (default) evicts the L2 cache before every timed iteration, as nvbench and
  // Triton's do_bench do, so inputs that fit in it are not timed hot; "warm" leaves it.
  std::string l2 = "flush";
  // Identity for comparisons across results files.
  std::string id(int world) const;
};

struct Suite {
  std::string name, description, path;
  nlohmann::json source;  // the file itself, recorded in the results
  std::vector<Case> cases;
};

// FLOPs of a pass over the forward's, as FlashAttention's benchmarks count them (SPEC §6): 1, 2.5,
// 3.5; 0 for an unknown pass.
double pass_factor(const std::string& pass);

// `name_or_path`: a file, or the name of a file in suite/ ("smoke"). `world` is the rank count
// (N_per_rank axes multiply by it). Throws InputError naming the field and the fix.
Suite load_suite(const std::string& name_or_path, int world);
// Where named suites live (the source tree's suite/).
std::string suite_dir();

}  // namespace longattn
