// longattn: the benchmark suite's one program. Subcommands: attend, run, list, compare, verify, reach; plot,
// model and model-chart run its Python parts (harness/paths.h says where they are found).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>

#include "comm/communicator.h"
#include "harness/attend.h"
#include "harness/compare.h"
#include "harness/paths.h"
#include "harness/run.h"
#include "harness/suite_file.h"
#include "kernels/blas.h"
#ifdef LONGATTN_HAVE_CUDA
#include "kernels/cuda/cuda_attention.h"
#endif
#include "kernels/input_error.h"
#include "kernels/reach.h"
#include "kernels/registry.h"
#include "suite/method.h"

using namespace longattn;

namespace {

const char* const kPatternExamples[] = {
    R"({"kind": "full"})", R"({"kind": "local", "left": 256, "right": 0})", R"({"kind": "strided", "stride": 128})",
    R"({"kind": "fixed", "block": 128, "summary": 8})", R"({"kind": "dilated", "levels": [[2048, 1], [4096, 2]]})",
    R"({"kind": "dilated", "levels": "longnet"})"};

std::vector<std::string> suite_names() {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(suite_dir()))
    if (e.path().extension() == ".json") names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The same lists as JSON, for scripts (plots, the model, CI) that must not keep their own.
int list_json() {
  nlohmann::json j;
  j["methods"] = nlohmann::json::array();
  for (const Method& m : methods())
    j["methods"].push_back({{"name", m.name}, {"summary", m.summary}, {"layout", layout_name(m.layout)},
                            {"distributed", m.layout != Layout::single}, {"returns_lse", m.returns_lse},
                            {"microbenchmark", m.microbenchmark}, {"dense_cost", m.dense_cost},
                            {"exchange", m.exchange == CommOp::count_ ? nullptr : nlohmann::json(op_name(m.exchange))}});
  j["kernels"] = nlohmann::json::array();
  for (const Kernel& k : kernels())
    j["kernels"].push_back({{"name", k.name}, {"device", device_name(k.device)}, {"summary", k.summary}, {"oracle", k.oracle}});
  j["patterns"] = nlohmann::json::array();
  for (const char* p : kPatternExamples) j["patterns"].push_back(nlohmann::json::parse(p));
  j["suites"] = suite_names();
  std::printf("%s\n", j.dump(2).c_str());
  return 0;
}

struct ReachOptions {
  std::string pattern;
  int64_t n = 0, layers = 64, heads = 1;
  bool json = false;
};

// `longattn reach`: in-degrees, tokens reached from token 0 per stacked layer, and the layers
// until token N-1 depends on token 0 (kernels/reach.h).
int print_reach(const ReachOptions& o) {
  if (o.n < 1 || o.n > (int64_t{1} << 20)) throw InputError("--n: give a sequence length 1..1048576");
  const Pattern p = load_pattern(o.pattern);
  const Reach r = reach(p, o.n, o.heads, o.layers);
  std::vector<int64_t> deg = r.in_degree;
  std::sort(deg.begin(), deg.end());
  double mean = 0;
  for (int64_t x : deg) mean += double(x) / double(deg.size());
  const nlohmann::json last = r.layers_to_last >= 0 ? nlohmann::json(r.layers_to_last) : nlohmann::json(nullptr);
  if (o.json) {
    nlohmann::json j = {{"pattern", to_json(p)}, {"pattern_name", p.name()}, {"n", o.n}, {"heads", o.heads},
                        {"in_degree", {{"min", deg.front()}, {"median", deg[deg.size() / 2]}, {"max", deg.back()},
                                       {"mean", mean}}},
                        {"in_degree_per_token", r.in_degree}, {"reached", r.reached}, {"layers_to_last", last},
                        {"max_layers", o.layers}};
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%s, N = %lld, heads 0..%lld (a token depends on another when any of these heads attends it)\n",
              p.name().c_str(), static_cast<long long>(o.n), static_cast<long long>(o.heads - 1));
  std::printf("in-degree (distinct keys per token): min %lld, median %lld, mean %.1f, max %lld\n",
              static_cast<long long>(deg.front()), static_cast<long long>(deg[deg.size() / 2]), mean,
              static_cast<long long>(deg.back()));
  if (o.n <= 64) {
    std::printf("per token:");
    for (int64_t x : r.in_degree) std::printf(" %lld", static_cast<long long>(x));
    std::printf("\n");
  }
  std::printf("tokens depending on token 0 after L layers (residual paths kept):\n");
  for (size_t l = 0; l < r.reached.size(); ++l)
    std::printf("  L = %zu: %lld\n", l + 1, static_cast<long long>(r.reached[l]));
  if (r.layers_to_last >= 0)
    std::printf("token N-1 depends on token 0 after %lld layer(s)\n", static_cast<long long>(r.layers_to_last));
  else
    std::printf("token N-1 does not depend on token 0 within %lld layer(s)%s\n", static_cast<long long>(o.layers),
                r.reached.size() < size_t(o.layers) ? " (nothing more is reached: it never will)" : "");
  return 0;
}

int list_everything() {
  std::printf("Methods (longattn run; attend takes them too):\n");
  for (const Method& m : methods()) std::printf("  %-13s %s\n", m.name, m.summary);
  std::printf("\nKernels (longattn attend --method; auto picks the fastest that supports the pattern):\n");
  for (const Kernel& k : kernels()) std::printf("  %-13s %-4s  %s\n", k.name, device_name(k.device), k.summary);
  std::printf("\nPatterns (SPEC §5; \"causal\": true on any):\n");
  for (const char* p : kPatternExamples) std::printf("  %s\n", p);
  std::printf("\nSuites (%s):\n", suite_dir().c_str());
  for (const auto& n : suite_names()) std::printf("  %s\n", n.c_str());
  return 0;
}

std::string joined(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) s += (i ? " " : "") + std::string(argv[i]);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  ensure_blas_core(argv);  // may restart the program with OpenBLAS on the CPU's proper core
  const std::string command_line = joined(argc, argv);
  CLI::App app{"longattn: long-sequence attention benchmarks, verified against an oracle"};
  app.require_subcommand(1);

  AttendOptions at;
  auto* attend_cmd = app.add_subcommand("attend", "one attention from .npy inputs to .npy outputs");
  attend_cmd->add_option("--q", at.q, "queries [B, N, H, d], float32 or float64 .npy")->required();
  attend_cmd->add_option("--k", at.k, "keys [B, N, H_kv, d]; H_kv dividing H (GQA; 1: multi-query)")->required();
  attend_cmd->add_option("--v", at.v, "values [B, N, H_kv, d], K's shape")->required();
  attend_cmd->add_option("--pattern", at.pattern, "pattern as inline JSON or a file (SPEC §5)")->required();
  attend_cmd->add_option("--method", at.method, "reference, vanilla, flash, dilated, auto, or a dist-* method");
  attend_cmd->add_option("--device", at.device, "cpu (default) or cuda: where the kernel runs (dist-* methods: cpu)");
  attend_cmd->add_option("--out", at.out, "output O [B, N, H, d], float32 .npy")->required();
  attend_cmd->add_option("--lse", at.lse, "output LSE [B, H, N], float32 .npy");
  attend_cmd->add_option("--dout", at.dout, "backward pass: dO [B, N, H, d], the gradient of the loss w.r.t. O (SPEC §6)");
  attend_cmd->add_option("--dq", at.dq, "backward pass: output dQ [B, N, H, d] (needs --dout)");
  attend_cmd->add_option("--dk", at.dk, "backward pass: output dK [B, N, H_kv, d] (needs --dout)");
  attend_cmd->add_option("--dv", at.dv, "backward pass: output dV [B, N, H_kv, d] (needs --dout)");
  attend_cmd->add_option("--ulysses", at.ulysses,
                         "dist-usp's Ulysses degree U, dividing the rank count (ring degree P/U); default: the "
                         "largest dividing both P and H_kv");
  auto* scale_opt = attend_cmd->add_option("--scale", at.scale, "score scale, positive and finite (default 1/sqrt(d))");
  attend_cmd->add_option("--threads", at.threads, "threads, 1..1024 (default: all)")->check(CLI::Range(1, 1024));
  attend_cmd->add_flag("--allow-nonfinite", at.allow_nonfinite,
                       "let NaN and inf in Q, K, V through: they reach the O and LSE of the rows they touch");

  RunOptions ro;
  auto* run_cmd = app.add_subcommand("run", "time and verify every case of a suite; write a results JSON");
  run_cmd->add_option("suite", ro.suite, "suite file, or a name from suite/ (longattn list)")->required();
  run_cmd->add_option("--out", ro.out, "results file (default results/<suite>.json)");
  run_cmd->add_flag("--quiet", ro.quiet, "no progress lines or table");
  run_cmd->add_option("--threads", ro.threads, "threads per rank, 1..1024 (default: cores / ranks on the node)")
      ->check(CLI::Range(1, 1024));
  run_cmd->add_flag("--plan", ro.plan, "print the expanded cases as JSON and run nothing (scripts/peers.sh reads it)");

  VerifyOptions vo;
  auto* verify_cmd = app.add_subcommand("verify", "check another program's output against the oracle (SPEC §4); prints the error as JSON");
  verify_cmd->add_option("--q", vo.q, "queries [B, N, H, d] .npy")->required();
  verify_cmd->add_option("--k", vo.k, "keys [B, N, H, d]")->required();
  verify_cmd->add_option("--v", vo.v, "values [B, N, H, d]")->required();
  verify_cmd->add_option("--o", vo.o, "the output to check [B, N, H, d]")->required();
  verify_cmd->add_option("--lse", vo.lse, "its LSE [B, H, N] (optional)");
  verify_cmd->add_option("--pattern", vo.pattern, "pattern as inline JSON or a file (SPEC §5)")->required();
  auto* verify_scale_opt = verify_cmd->add_option("--scale", vo.scale, "score scale, positive and finite (default 1/sqrt(d))");
  verify_cmd->add_option("--dtype", vo.dtype, "the tolerance: fp32 (default), bf16 or fp16");
  verify_cmd->add_option("--dout", vo.dout, "with --dq, --dk, --dv: the gradients to check, given this dO (SPEC §6)");
  verify_cmd->add_option("--dq", vo.dq, "dQ [B, N, H, d] to check");
  verify_cmd->add_option("--dk", vo.dk, "dK to check");
  verify_cmd->add_option("--dv", vo.dv, "dV to check");
  verify_cmd->add_option("--seed", vo.seed, "which rows are sampled when B·H·N > 4096 (default 1)");

  ReachOptions rea;
  auto* reach_cmd = app.add_subcommand("reach", "how tokens connect through stacked layers of a pattern (LongNet's O(log N) claim)");
  reach_cmd->add_option("pattern", rea.pattern, "pattern as inline JSON or a file (SPEC §5)")->required();
  reach_cmd->add_option("--n", rea.n, "sequence length, 1..1048576")->required();
  reach_cmd->add_option("--layers", rea.layers, "layers to stack at most, 1..4096 (default 64)")->check(CLI::Range(1, 4096));
  reach_cmd->add_option("--heads", rea.heads, "heads 0..H-1 whose union links tokens (dilated offsets; default 1)")
      ->check(CLI::Range(1, 4096));
  reach_cmd->add_flag("--json", rea.json, "as JSON, with every token's in-degree");

  auto* list_cmd = app.add_subcommand("list", "methods, kernels, patterns and suites");
  bool list_as_json = false;
  list_cmd->add_flag("--json", list_as_json, "as JSON: every method (with its layout), every kernel on every device");

  CompareOptions co;
  auto* compare_cmd = app.add_subcommand("compare", "regression gate: compare two results files");
  compare_cmd->add_option("base", co.base, "baseline results JSON (several: comma-separated, samples pooled per case)")->required();
  compare_cmd->add_option("new", co.candidate, "new results JSON (several: comma-separated)")->required();
  compare_cmd->add_option("--threshold", co.threshold_pct, "slowdown (percent) that counts as a regression");
  compare_cmd->add_option("--alpha", co.alpha, "significance level of the Mann-Whitney U test");
  compare_cmd->add_option("--metric", co.metric, "time | vs-vanilla | vs-sgemm (default time)");
  compare_cmd->add_flag("--cross-machine", co.cross_machine,
                        "compare files from different machines (CPU, cores or BLAS core differ); refused otherwise");

  std::vector<std::string> plot_inputs;
  std::string plot_out = "plots";
  auto* plot_cmd = app.add_subcommand("plot", "charts from results files (PNG and SVG)");
  plot_cmd->add_option("results", plot_inputs, "results JSON files")->required();
  plot_cmd->add_option("--out", plot_out, "output directory");

  auto* model_cmd = app.add_subcommand("model", "performance model: predict, --calibrate, --validate (harness/model)");
  model_cmd->allow_extras();
  model_cmd->prefix_command();
  model_cmd->set_help_flag();  // -h / --help go to the model, which lists its real options
  auto* calibrate_cmd = app.add_subcommand("calibrate", "measure this machine for the model and write its machine file (harness/model/calibrate_run.py)");
  calibrate_cmd->allow_extras();
  calibrate_cmd->prefix_command();
  calibrate_cmd->set_help_flag();
  auto* chart_cmd = app.add_subcommand("model-chart", "charts of the model's predictions (plots/model_chart.py)");
  chart_cmd->allow_extras();
  chart_cmd->prefix_command();
  chart_cmd->set_help_flag();
  auto* reach_chart_cmd = app.add_subcommand("reach-chart", "layers until the last token depends on the first, against N (plots/reach_chart.py)");
  reach_chart_cmd->allow_extras();
  reach_chart_cmd->prefix_command();
  reach_chart_cmd->set_help_flag();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  at.scale_given = scale_opt->count() > 0;
  vo.scale_given = verify_scale_opt->count() > 0;

  try {
    if (list_cmd->parsed()) return list_as_json ? list_json() : list_everything();
    if (compare_cmd->parsed()) return compare_results(co);
    if (verify_cmd->parsed()) return verify_outputs(vo);
    if (reach_cmd->parsed()) return print_reach(rea);
    // plot, model and model-chart are Python (Debian's matplotlib, numpy); arguments pass through
    // unchanged. The scripts find the program (LONGATTN_PROGRAM: their method lists come from
    // `list --json`) and the model package (harness/ on PYTHONPATH) through the environment.
    auto python = [](std::vector<std::string> words, const std::vector<std::string>& args) {
      const char* py_path = std::getenv("PYTHONPATH");
      setenv("LONGATTN_PROGRAM", program_path().c_str(), 1);
      setenv("PYTHONPATH", (data_dir() + "/harness" + (py_path && *py_path ? std::string(":") + py_path : "")).c_str(), 1);
      words.insert(words.begin(), python_executable());
      words.insert(words.end(), args.begin(), args.end());
      std::string cmd;
      for (const auto& w : words) {  // each word single-quoted for the shell
        cmd += cmd.empty() ? "'" : " '";
        for (char ch : w) cmd += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
        cmd += "'";
      }
      const int rc = std::system(cmd.c_str());
      return WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
    };
    if (plot_cmd->parsed()) {
      std::vector<std::string> args = {"--out", plot_out};
      args.insert(args.end(), plot_inputs.begin(), plot_inputs.end());
      return python({data_dir() + "/plots/plot.py"}, args);
    }
    if (model_cmd->parsed()) return python({"-m", "model"}, model_cmd->remaining());
    if (calibrate_cmd->parsed()) return python({"-m", "model.calibrate_run"}, calibrate_cmd->remaining());
    if (chart_cmd->parsed()) return python({data_dir() + "/plots/model_chart.py"}, chart_cmd->remaining());
    if (reach_chart_cmd->parsed()) return python({data_dir() + "/plots/reach_chart.py"}, reach_chart_cmd->remaining());
  } catch (const InputError& e) {
    std::fprintf(stderr, "longattn: error: %s\n", e.what());
    return 2;
  } catch (const nlohmann::json::exception& e) {  // a results file of the wrong shape
    std::fprintf(stderr, "longattn: error: not a longattn results file: %.200s\n", e.what());
    return 2;
  }

  // attend and run may span ranks.
  auto comm = make_world_communicator(&argc, &argv);
  int code = 0;
  try {
    if (attend_cmd->parsed()) attend(*comm, at);
    if (run_cmd->parsed()) {
      ro.command_line = command_line;
      code = run_suite(*comm, ro);
    }
  } catch (const InputError& e) {
    // Every rank reads the same input and fails the same way: rank 0 says it, all exit 2.
    if (comm->rank() == 0) std::fprintf(stderr, "longattn: error: %s\n", e.what());
    code = 2;
  } catch (const std::exception& e) {
    comm->abort(std::string("failed: ") + e.what(), 3);
  }
  comm.reset();  // MPI_Finalize
  return code;
}
