// Harness pieces without MPI: suite files (good and bad), statistics, the Mann-Whitney test the
// regression gate relies on, .npy round trips and the deterministic input generator.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "harness/compare.h"
#include "harness/inputs.h"
#include "harness/npy.h"
#include "harness/stats.h"
#include "harness/suite_file.h"
#include "kernels/input_error.h"

using namespace longattn;

namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / ("longattn-test-" + name);
  std::ofstream(path) << text;
  return path.string();
}

std::string error_of(const std::string& suite_text, int world = 1) {
  try {
    load_suite(write_temp("bad.json", suite_text), world);
  } catch (const InputError& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST(SuiteFile, AxesExpandAsAProductAndCasesInherit) {
  const std::string path = write_temp("good.json", R"({
    "name": "t", "methods": ["flash", "vanilla"], "patterns": [{"kind": "full"}, {"kind": "full", "causal": true}],
    "B": 1, "H": [2, 4], "N": [64, 128, 256], "d": 16, "iterations": 7, "warmup": 0,
    "cases": [{"method": "dist-ring", "N_per_rank": 100, "iterations": 2}]
  })");
  const Suite s = load_suite(path, 2);
  ASSERT_EQ(s.cases.size(), 2u * 2 * 2 * 3 + 1 * 2 * 2);  // explicit case keeps the patterns and H axes
  EXPECT_EQ(s.name, "t");
  EXPECT_EQ(s.cases[0].iterations, 7);
  EXPECT_EQ(s.cases[0].warmup, 0);
  const Case& last = s.cases.back();
  EXPECT_EQ(last.method, "dist-ring");
  EXPECT_EQ(last.shape.N, 200);  // N_per_rank x world
  EXPECT_EQ(last.iterations, 2);
  EXPECT_EQ(last.warmup, 0);
}

TEST(SuiteFile, PassIsAnAxisAndCountsBackwardFlops) {
  const Suite s = load_suite(write_temp("pass.json", R"({"name": "p", "method": "flash", "pattern": {"kind": "full"},
    "B": 1, "H": 2, "N": 64, "d": 16, "pass": ["forward", "backward", "forward+backward"]})"), 1);
  ASSERT_EQ(s.cases.size(), 3u);
  EXPECT_EQ(s.cases[0].pass, "forward");
  EXPECT_EQ(s.cases[2].pass, "forward+backward");
  EXPECT_EQ(s.cases[0].id(1).find("backward"), std::string::npos);  // forward ids as before
  EXPECT_NE(s.cases[1].id(1).find(" backward"), std::string::npos);
  EXPECT_EQ(pass_factor("forward"), 1.0);
  EXPECT_EQ(pass_factor("backward"), 2.5);  // SPEC §6, as FlashAttention's benchmarks count it
  EXPECT_EQ(pass_factor("forward+backward"), 3.5);
}

TEST(SuiteFile, DistUspCaseNamesCarryTheDegreeItRunsWith) {
  // H_kv = 2 on 4 ranks: the default degree is gcd(4, 2) = 2, the same case as an explicit 2.
  const Suite s = load_suite(write_temp("usp.json", R"({"name": "u", "methods": ["dist-usp", "dist-ring"],
    "pattern": {"kind": "full"}, "B": 1, "H": 8, "H_kv": 2, "N": 64, "d": 16,
    "cases": [{"method": "dist-usp", "ulysses": [2, 4]}]})"), 4);
  ASSERT_EQ(s.cases.size(), 4u);  // dist-usp with its default, dist-ring, dist-usp with 2 and 4
  EXPECT_EQ(s.cases[0].ulysses, 0);
  EXPECT_EQ(s.cases[0].id(4), s.cases[2].id(4));
  EXPECT_NE(s.cases[0].id(4).find(" P=4 u=2"), std::string::npos);
  EXPECT_NE(s.cases[3].id(4).find(" P=4 u=4"), std::string::npos);
  EXPECT_EQ(s.cases[1].id(4).find(" u="), std::string::npos);  // the other methods have no degree
}

TEST(SuiteFile, L2IsFlushedUnlessTheSuiteKeepsItWarm) {
  const Suite s = load_suite(write_temp("l2.json", R"({"name": "l", "method": "flash", "pattern": {"kind": "full"},
    "B": 1, "H": 2, "N": 64, "d": 16, "device": ["cuda", "cpu"], "cases": [{"l2": "warm"}]})"), 1);
  ASSERT_EQ(s.cases.size(), 4u);  // the top level's two devices, then the case's
  EXPECT_EQ(s.cases[0].l2, "flush");  // the default
  EXPECT_EQ(s.cases[2].l2, "warm");
  EXPECT_EQ(s.cases[0].id(1).find("l2"), std::string::npos);
  EXPECT_NE(s.cases[2].id(1).find(" l2=warm"), std::string::npos);  // a different measurement, a different case
  EXPECT_EQ(s.cases[3].id(1).find("l2"), std::string::npos);        // the CPU has no L2 switch
}

TEST(SuiteFile, NamedSuitesInTheTreeAllLoad) {
  for (const auto& e : std::filesystem::directory_iterator(suite_dir())) {
    if (e.path().extension() != ".json") continue;
    SCOPED_TRACE(e.path().string());
    for (int world : {1, 2, 4}) EXPECT_FALSE(load_suite(e.path().stem().string(), world).cases.empty());
  }
}

TEST(SuiteFile, BadFilesNameTheField) {
  const std::string ok = R"("methods": ["flash"], "patterns": [{"kind": "full"}], "B": 1, "H": 2, "d": 16)";
  EXPECT_NE(error_of("{" + ok + "}").find("N: missing"), std::string::npos);
  EXPECT_NE(error_of("{" + ok + R"(, "N": [64, -1]})").find("N[1]: must be a positive integer"), std::string::npos);
  EXPECT_NE(error_of("{" + ok + R"(, "N": 64, "iterations": 0})").find("iterations: must be an integer from 1 to 100000"),
            std::string::npos);
  EXPECT_NE(error_of("{" + ok + R"(, "N": 64, "device": "tpu"})").find("device: unknown device \"tpu\""),
            std::string::npos);
  EXPECT_NE(error_of("{" + ok + R"(, "N": 64, "l2": "cold"})").find("l2: must be \"flush\""), std::string::npos);
  EXPECT_NE(error_of("{" + ok + R"(, "N": 64, "N_per_rank": 64})").find("give either N or N_per_rank"),
            std::string::npos);
  EXPECT_NE(error_of("{" + ok + R"(, "N": 64, "cases": [{"pattern": {"kind": "local"}}]})").find("cases[0].pattern.left: missing"),
            std::string::npos);
  EXPECT_NE(error_of("{" + ok + R"(, "N": 64, "pass": ["forward", "sideways"]})").find("pass: unknown pass \"sideways\""),
            std::string::npos);
  EXPECT_NE(error_of("[1, 2]").find("a suite is a JSON object"), std::string::npos);
  EXPECT_NE(error_of("{\"methods\": ").find("malformed JSON"), std::string::npos);
}

TEST(Stats, SummaryOfKnownSamples) {
  const Stats s = summarize({4, 1, 3, 2});
  EXPECT_EQ(s.min, 1);
  EXPECT_EQ(s.max, 4);
  EXPECT_EQ(s.median, 2.5);
  EXPECT_EQ(s.mean, 2.5);
  EXPECT_NEAR(s.stddev, 1.2909944, 1e-6);
}

TEST(MannWhitney, ExactAndApproximatePValues) {
  // Perfect separation with 3 vs 3 samples: 1 arrangement in C(6,3) = 20.
  EXPECT_NEAR(mann_whitney_greater({1, 2, 3}, {4, 5, 6}), 0.05, 1e-12);
  EXPECT_NEAR(mann_whitney_greater({4, 5, 6}, {1, 2, 3}), 1.0, 1e-12);
  // 5 vs 5: 1 / C(10,5) = 1/252.
  EXPECT_NEAR(mann_whitney_greater({1, 2, 3, 4, 5}, {6, 7, 8, 9, 10}), 1.0 / 252, 1e-12);
  // Interleaved samples are not evidence.
  EXPECT_GT(mann_whitney_greater({1, 3, 5, 7, 9}, {2, 4, 6, 8, 10}), 0.2);
  // Large samples with ties use the normal approximation and still separate clear shifts.
  std::vector<double> a(40, 1.0), b(40, 2.0);
  EXPECT_LT(mann_whitney_greater(a, b), 1e-6);
  EXPECT_GT(mann_whitney_greater(a, a), 0.4);
}

TEST(Npy, RoundTripAndAtomicWrite) {
  const auto path = (std::filesystem::temp_directory_path() / "longattn-test.npy").string();
  const std::vector<float> x = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  write_npy(path, {1, 3, 1, 2}, x.data());
  const NpyArray a = read_npy(path);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{1, 3, 1, 2}));
  EXPECT_EQ(a.data, x);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp." + std::to_string(getpid())));
  EXPECT_THROW(write_npy("/nonexistent-dir/x.npy", {1}, x.data()), InputError);
}

TEST(Inputs, AnySliceEqualsTheSameRowsOfTheWhole) {
  const Shape g{2, 30, 3, 5};
  std::vector<float> whole(g.numel()), part(2 * 7 * 3 * 5);
  generate_slice(kK, 9, g, 0, g.N, whole.data());
  generate_slice(kK, 9, g, 11, 7, part.data());
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t e = 0; e < 7 * 15; ++e) ASSERT_EQ(part[b * 105 + e], whole[(b * 30 + 11) * 15 + e]);
  double mean = 0, var = 0;
  for (float x : whole) mean += x / whole.size();
  for (float x : whole) var += (x - mean) * (x - mean) / whole.size();
  EXPECT_NEAR(mean, 0.0, 0.1);
  EXPECT_NEAR(var, 1.0, 0.15);
  std::vector<float> q(g.numel());
  generate_slice(kQ, 9, g, 0, g.N, q.data());
  EXPECT_NE(q[0], whole[0]);  // tensors differ
}
