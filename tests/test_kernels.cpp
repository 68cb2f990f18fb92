// Every CPU kernel x every pattern it supports x awkward shapes, against the oracle (SPEC §4, fp32:
// O within 1e-4 max(1, max|V|), LSE within 1e-4).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <tuple>

#include "kernels/flash_cpu.h"
#include "kernels/input_error.h"
#include "kernels/merge.h"
#include "kernels/registry.h"
#include "tests/check.h"

using namespace longattn;
using nlohmann::json;

namespace {

std::vector<Pattern> patterns() {
  return test::with_and_without_causal({
      {{"kind", "full"}},
      {{"kind", "local"}, {"left", 5}, {"right", 3}},
      {{"kind", "local"}, {"left", 70}, {"right", 0}},
      {{"kind", "strided"}, {"stride", 1}},   // one residue class: every key (full attention)
      {{"kind", "strided"}, {"stride", 4}},   // classes as dense tiles
      {{"kind", "strided"}, {"stride", 50}},  // classes in vector lanes, a last group of 2
      {{"kind", "strided"}, {"stride", 70}},
      {{"kind", "fixed"}, {"block", 8}, {"summary", 2}},
      {{"kind", "fixed"}, {"block", 100}, {"summary", 7}},
      {{"kind", "dilated"}, {"levels", {{8, 1}, {16, 2}}}},
      {{"kind", "dilated"}, {"levels", {{8, 2}, {40, 4}, {1000, 3}}}},  // w > N; unkept queries
      {{"kind", "dilated"}, {"levels", {{16, 3}}}},                       // most queries see nothing
      {{"kind", "dilated"}, {"levels", "longnet"}},
  });
}

// A kernel's output x (O or LSE) against the oracle's on inputs that are not all finite: NaN or
// inf in exactly the oracle's elements, the others within tol. Returns how many are not finite.
int64_t expect_nonfinite_as_oracle(const std::vector<float>& x, const std::vector<float>& ref, double tol) {
  int64_t nonfinite = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(std::isfinite(x[i]), std::isfinite(ref[i])) << "element " << i;
    if (std::isfinite(ref[i])) {
      EXPECT_NEAR(x[i], ref[i], tol) << "element " << i;
    }
    nonfinite += !std::isfinite(ref[i]);
  }
  return nonfinite;
}

// The flash kernel on p against the oracle, at SPEC §4's fp32 tolerances.
void expect_flash_matches_oracle(const test::Problem& prob, const Pattern& p) {
  std::vector<float> o_ref, lse_ref, o, lse;
  reference_attention(prob.args(p, o_ref, lse_ref));
  find_kernel("flash")->run(prob.args(p, o, lse));
  const test::Errors e = test::compare(o, lse, o_ref, lse_ref);
  EXPECT_LE(e.o, test::o_tolerance_fp32(prob.v));
  EXPECT_LE(e.lse, test::kLseToleranceFp32);
}

// N = 1; N not a multiple of 64 (the flash blocks) nor of the segments; odd and large head dims;
// one head and twelve (dilated offsets wrap around r).
const Shape kShapes[] = {
    {1, 1, 1, 16}, {1, 67, 12, 64}, {2, 130, 3, 80}, {1, 200, 1, 128}, {1, 45, 5, 17}, {1, 129, 2, 3},
};

}  // namespace

TEST(Kernels, EveryKernelMatchesTheOracle) {
  for (const Shape& s : kShapes) {
    const test::Problem prob(s, 1234 + s.N * 7 + s.d);
    for (const Pattern& p : patterns()) {
      std::vector<float> o_ref, lse_ref;
      reference_attention(prob.args(p, o_ref, lse_ref));
      for (const Kernel& k : kernels()) {
        if (k.device != Device::cpu || !k.unsupported(p, s, DType::fp32).empty()) continue;
        SCOPED_TRACE(std::string(k.name) + " " + p.name() + " B=" + std::to_string(s.B) + " N=" +
                     std::to_string(s.N) + " H=" + std::to_string(s.H) + " d=" + std::to_string(s.d));
        std::vector<float> o, lse;
        k.run(prob.args(p, o, lse));
        const test::Errors e = test::compare(o, lse, o_ref, lse_ref);
        EXPECT_LE(e.o, test::o_tolerance_fp32(prob.v));
        EXPECT_LE(e.lse, test::kLseToleranceFp32);
      }
    }
  }
}

// strided's residue classes with more than one 64-key softmax step (N / stride > 64): as dense
// tiles (stride 3), and 16 to a vector (strided_lanes.cpp; stride 51: a last group of 3 classes, a
// last slab that is partial).
TEST(Kernels, StridedWithLongResidueClasses) {
  for (const auto& [s, stride] : {std::pair{Shape{1, 400, 2, 20}, 3}, std::pair{Shape{1, 3500, 2, 20}, 51}}) {
    const test::Problem prob(s, 4321);
    for (const Pattern& p : test::with_and_without_causal({{{"kind", "strided"}, {"stride", stride}}})) {
      SCOPED_TRACE(p.name());
      expect_flash_matches_oracle(prob, p);
    }
  }
}

TEST(Kernels, SparsePiecesReadGroupedKeysInPlaceEvenWhenNotFinite) {
  // strided and fixed read a query head's KV head in place (GQA), in their vector lanes and, where
  // an input is NaN or inf, class by class: the same rows as the oracle's go non-finite, the others
  // match it. One thread too: strided's lane tasks (stride 48) then take runs of three heads, across
  // two KV heads. (Also fp32 P V on a non-finite V, which once read probabilities outside a group's
  // keys.)
  const Shape s{1, 67, 6, 16, 3};
  test::Problem clean(s, 99), prob(s, 99);
  prob.k[(20 * s.H_kv + 1) * s.d + 3] = std::nanf("");                          // token 20, KV head 1
  prob.v[(33 * s.H_kv + 0) * s.d + 5] = std::numeric_limits<float>::infinity();  // token 33, KV head 0
  const auto patterns = test::with_and_without_causal({{{"kind", "strided"}, {"stride", 3}},
                                                       {{"kind", "strided"}, {"stride", 48}},
                                                       {{"kind", "fixed"}, {"block", 16}, {"summary", 3}}});
  for (const Pattern& p : patterns)
    for (const test::Problem* in : {&clean, &prob})
      for (int threads : {1, 0}) {
        SCOPED_TRACE(p.name() + (in == &prob ? " non-finite" : "") + " threads=" + std::to_string(threads));
        std::vector<float> o, lse, o_ref, lse_ref;
        AttentionArgs a = in->args(p, o, lse);
        a.threads = threads;
        find_kernel("flash")->run(a);
        reference_attention(in->args(p, o_ref, lse_ref));
        const int64_t bad = expect_nonfinite_as_oracle(o, o_ref, 1e-5);
        if (in == &prob) {
          EXPECT_GT(bad, 0);                                   // the non-finite inputs reached some rows
          EXPECT_LT(bad, static_cast<int64_t>(o.size()) / 2);  // and only those that see them
        }
      }
}

TEST(Kernels, KeptBuffersServeTheNextShapeAndSurviveRelease) {
  // strided's lanes and flash's packed heads are kept from call to call: a larger shape, a smaller
  // one, and one after release_kept_buffers each match the oracle (nothing stale is read).
  const Pattern strided = parse_pattern(json{{"kind", "strided"}, {"stride", 48}, {"causal", true}});
  const Pattern full = parse_pattern(json{{"kind", "full"}});
  int step = 0;
  for (const Shape& s : {Shape{1, 700, 3, 17}, Shape{2, 333, 2, 64}, Shape{1, 700, 3, 17}}) {
    if (step++ == 2) release_kept_buffers();
    const test::Problem prob(s, 77 + s.N);
    for (const Pattern& p : {strided, full}) {
      SCOPED_TRACE(p.name() + " N=" + std::to_string(s.N));
      expect_flash_matches_oracle(prob, p);
    }
  }
}

TEST(Kernels, AutoPicksTheSpecialisedKernel) {
  const Shape s{1, 64, 2, 64};
  EXPECT_STREQ(auto_kernel(parse_pattern(json{{"kind", "dilated"}, {"levels", "longnet"}}), s).name, "dilated");
  EXPECT_STREQ(auto_kernel(parse_pattern(json{{"kind", "local"}, {"left", 4}, {"right", 0}}), s).name, "flash");
  EXPECT_STREQ(auto_kernel(parse_pattern(json{{"kind", "full"}}), Shape{1, 64, 2, 512}).name, "vanilla");
}

TEST(Kernels, BackwardMatchesTheOracle) {
  // SPEC §6: dQ, dK, dV of every CPU kernel with a backward, from its own forward's O and LSE,
  // against the float64 oracle's gradients, on awkward shapes: N off the 64-row tile, d = 17 and 3,
  // one head, causal, local, strided, fixed, dilated levels leaving rows empty.
  int ran = 0;
  for (const Shape& s : {Shape{2, 67, 3, 17}, Shape{1, 130, 1, 64}, Shape{1, 40, 2, 3}}) {
    const test::Problem prob(s, 991 + s.N);
    const test::Problem grad(s, 5 + s.N);  // its q is dO
    for (const Pattern& p : test::with_and_without_causal(
             {{{"kind", "full"}},
              {{"kind", "local"}, {"left", 5}, {"right", 3}},
              {{"kind", "strided"}, {"stride", 1}},
              {{"kind", "strided"}, {"stride", 7}},
              {{"kind", "fixed"}, {"block", 16}, {"summary", 2}},
              {{"kind", "dilated"}, {"levels", {{8, 1}, {16, 2}}}},
              {{"kind", "dilated"}, {"levels", {{16, 3}}}}})) {  // most rows of a segment see nothing
      std::vector<float> o, lse, dq_ref(s.numel()), dk_ref(s.numel()), dv_ref(s.numel());
      BackwardArgs ref{prob.args(p, o, lse), grad.q.data(), dq_ref.data(), dk_ref.data(), dv_ref.data()};
      reference_backward(ref);
      const double bound = grad_tolerance(DType::fp32, std::max({test::max_abs(dq_ref), test::max_abs(dk_ref),
                                                                  test::max_abs(dv_ref)}));
      for (const Kernel& k : kernels()) {
        if (k.device != Device::cpu || k.oracle || !k.backward || !k.unsupported(p, s, DType::fp32).empty()) continue;
        SCOPED_TRACE(std::string(k.name) + " " + p.name() + " B=" + std::to_string(s.B) + " N=" +
                     std::to_string(s.N) + " H=" + std::to_string(s.H) + " d=" + std::to_string(s.d));
        std::vector<float> ko, klse, dq(s.numel(), NAN), dk(s.numel(), NAN), dv(s.numel(), NAN);
        const AttentionArgs fwd = prob.args(p, ko, klse);
        k.run(fwd);
        k.backward({fwd, grad.q.data(), dq.data(), dk.data(), dv.data()});
        for (auto [x, r, name] : {std::tuple{&dq, &dq_ref, "dQ"}, std::tuple{&dk, &dk_ref, "dK"}, std::tuple{&dv, &dv_ref, "dV"}})
          EXPECT_LE(test::max_abs_diff(*x, *r), bound) << name;
        ++ran;
      }
    }
  }
  EXPECT_GE(ran, 3 * 14 * 2);  // flash and vanilla on the single-level patterns, dilated and vanilla on dilated ones
}

TEST(Kernels, GroupedQueryAttentionMatchesTheOracle) {
  // GQA and MQA (SPEC §1): query head h reads KV head h / (H / H_kv). The oracle is checked first
  // against the multi-head oracle on K and V repeated per group here (its dK, dV summed over each
  // group); then every CPU kernel, forward and backward, against the GQA oracle: awkward N and d,
  // dilated rates whose head offsets differ inside a group.
  int ran = 0;
  for (const Shape& s : {Shape{1, 67, 8, 17, 1}, Shape{2, 130, 8, 16, 2}, Shape{1, 40, 6, 3, 3}}) {
    const test::Problem prob(s, 17 + s.N);
    const test::Problem grad(s, 3 + s.N);  // its q is dO
    Shape mha = s;
    mha.H_kv = 0;
    test::Problem wide(mha, 1);  // prob's Q, with K and V repeated per group
    wide.q = prob.q;
    for (int64_t t = 0; t < s.B * s.N; ++t)
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t c = 0; c < s.d; ++c) {
          wide.k[(t * s.H + h) * s.d + c] = prob.k[(t * s.H_kv + h / s.group()) * s.d + c];
          wide.v[(t * s.H + h) * s.d + c] = prob.v[(t * s.H_kv + h / s.group()) * s.d + c];
        }
    for (const Pattern& p : test::with_and_without_causal({{{"kind", "full"}},
                                                           {{"kind", "local"}, {"left", 5}, {"right", 3}},
                                                           {{"kind", "strided"}, {"stride", 7}},
                                                           {{"kind", "strided"}, {"stride", 48}},
                                                           {{"kind", "fixed"}, {"block", 16}, {"summary", 2}},
                                                           {{"kind", "dilated"}, {"levels", {{8, 1}, {16, 3}}}}})) {
      SCOPED_TRACE(p.name() + " B=" + std::to_string(s.B) + " N=" + std::to_string(s.N) + " H=" + std::to_string(s.H) +
                   " H_kv=" + std::to_string(s.H_kv) + " d=" + std::to_string(s.d));
      std::vector<float> o_ref, lse_ref, o_wide, lse_wide;
      reference_attention(prob.args(p, o_ref, lse_ref));
      reference_attention(wide.args(p, o_wide, lse_wide));
      const test::Errors oracle = test::compare(o_ref, lse_ref, o_wide, lse_wide);
      EXPECT_EQ(oracle.o, 0.0);
      EXPECT_EQ(oracle.lse, 0.0);
      std::vector<float> dq_ref(s.numel()), dk_ref(s.kv_numel()), dv_ref(s.kv_numel());
      std::vector<float> dq_w(s.numel()), dk_w(s.numel()), dv_w(s.numel());
      reference_backward({prob.args(p, o_ref, lse_ref), grad.q.data(), dq_ref.data(), dk_ref.data(), dv_ref.data()});
      reference_backward({wide.args(p, o_wide, lse_wide), grad.q.data(), dq_w.data(), dk_w.data(), dv_w.data()});
      const double bound = grad_tolerance(DType::fp32, std::max({test::max_abs(dq_ref), test::max_abs(dk_ref),
                                                                  test::max_abs(dv_ref)}));
      double oracle_err = 0;
      for (size_t i = 0; i < dq_ref.size(); ++i) oracle_err = std::max(oracle_err, double(std::abs(dq_ref[i] - dq_w[i])));
      for (int64_t t = 0; t < s.B * s.N; ++t)
        for (int64_t g = 0; g < s.H_kv; ++g)
          for (int64_t c = 0; c < s.d; ++c) {
            double sk = 0, sv = 0;
            for (int64_t h = g * s.group(); h < (g + 1) * s.group(); ++h)
              sk += dk_w[(t * s.H + h) * s.d + c], sv += dv_w[(t * s.H + h) * s.d + c];
            const int64_t at = (t * s.H_kv + g) * s.d + c;
            oracle_err = std::max({oracle_err, std::abs(sk - dk_ref[at]), std::abs(sv - dv_ref[at])});
          }
      EXPECT_LE(oracle_err, 1e-5 * std::max(1.0, bound));

      for (const Kernel& k : kernels()) {
        if (k.device != Device::cpu || k.oracle || !k.unsupported(p, s, DType::fp32).empty()) continue;
        SCOPED_TRACE(k.name);
        std::vector<float> o, lse, dq(s.numel(), NAN), dk(s.kv_numel(), NAN), dv(s.kv_numel(), NAN);
        const AttentionArgs fwd = prob.args(p, o, lse);
        k.run(fwd);
        const test::Errors e = test::compare(o, lse, o_ref, lse_ref);
        EXPECT_LE(e.o, 1e-5);
        EXPECT_LE(e.lse, 1e-5);
        k.backward({fwd, grad.q.data(), dq.data(), dk.data(), dv.data()});
        for (auto [x, r, name] : {std::tuple{&dq, &dq_ref, "dQ"}, std::tuple{&dk, &dk_ref, "dK"}, std::tuple{&dv, &dv_ref, "dV"}})
          EXPECT_LE(test::max_abs_diff(*x, *r), bound) << name;
        ++ran;
      }
    }
  }
  EXPECT_GE(ran, 3 * 12 * 2);  // flash and vanilla on 10 single-level cases, dilated and vanilla on 2, per shape
  // H_kv not dividing H is refused by every kernel, with the field named.
  for (const Kernel& k : kernels())
    EXPECT_NE(k.unsupported(parse_pattern(nlohmann::json{{"kind", "full"}}), Shape{1, 8, 8, 4, 3}, DType::fp32)
                  .find("H_kv = 3 does not divide H = 8"),
              std::string::npos)
        << k.name;
}

TEST(Kernels, AttentionStepsOverSplitKeysMatchTheOracle) {
  // Two steps (keys [0, k_cut) then [k_cut, N)), each with two query blocks per head at their
  // positions, merged into zeroed accumulators: the whole attention, as a ring computes it.
  for (const Shape& s : {Shape{2, 67, 3, 17}, Shape{1, 130, 1, 64}, Shape{1, 1, 2, 3}}) {
    const test::Problem prob(s, 77 + s.N);
    for (const Pattern& p : test::with_and_without_causal({{{"kind", "full"}},
                                                           {{"kind", "local"}, {"left", 5}, {"right", 3}},
                                                           {{"kind", "strided"}, {"stride", 7}},
                                                           {{"kind", "strided"}, {"stride", 48}},
                                                           {{"kind", "fixed"}, {"block", 16}, {"summary", 2}}})) {
      SCOPED_TRACE(p.name() + " N=" + std::to_string(s.N));
      std::vector<float> o_ref, lse_ref;
      reference_attention(prob.args(p, o_ref, lse_ref));
      std::vector<float> o(s.numel(), 0.0f), lse(s.B * s.H * s.N, -std::numeric_limits<float>::infinity());
      const int64_t k_cut = s.N / 2, q_cut = s.N / 3;
      for (auto [k0, k1] : {std::pair{int64_t{0}, k_cut}, std::pair{k_cut, s.N}})
        attention_step(test::split_step(s, p, prob.q.data(), prob.k.data(), prob.v.data(), sizeof(float), o.data(),
                                        lse.data(), k0, k1, q_cut));
      const test::Errors e = test::compare(o, lse, o_ref, lse_ref);
      EXPECT_LE(e.o, test::o_tolerance_fp32(prob.v));
      EXPECT_LE(e.lse, lse_tolerance(DType::fp32));
    }
  }
  AttentionStep dilated;
  dilated.mask = parse_pattern(json{{"kind", "dilated"}, {"levels", "longnet"}});
  EXPECT_THROW(attention_step(dilated), InputError);
}

TEST(Kernels, EmptySetGivesZeroOutputAndMinusInfinityLse) {
  // Level (16, 3): head 0 keeps positions 0, 3, 6, ... of each segment; the others see nothing.
  const Shape s{1, 40, 1, 16};
  const test::Problem prob(s, 7);
  const Pattern p = parse_pattern(json{{"kind", "dilated"}, {"levels", {{16, 3}}}});
  for (const char* name : {"dilated", "vanilla", "reference"}) {
    std::vector<float> o, lse;
    find_kernel(name)->run(prob.args(p, o, lse));
    EXPECT_EQ(lse[1], -std::numeric_limits<float>::infinity()) << name;
    for (int c = 0; c < 16; ++c) EXPECT_EQ(o[1 * 16 + c], 0.0f) << name;
    EXPECT_TRUE(std::isfinite(lse[3])) << name;
  }
}

// Scores of magnitude 1e4. A softmax without max-subtraction overflows to inf/NaN here. The bound
// is not SPEC §4's (stated for N(0,1) inputs): an fp32 score of magnitude |s| carries rounding
// error ~ 2^-23 |s| before any softmax, so we allow 16 eps32 max|s| on LSE and on O / max|V|.
TEST(Kernels, HugeScoresStayFiniteAndCorrect) {
  const Shape s{1, 150, 2, 16};
  test::Problem prob(s, 99);
  for (float& x : prob.q) x *= 50.0f;
  for (float& x : prob.k) x *= 50.0f;
  for (const Pattern& p : {parse_pattern(json{{"kind", "full"}}), parse_pattern(json{{"kind", "full"}, {"causal", true}}),
                           parse_pattern(json{{"kind", "dilated"}, {"levels", {{32, 1}, {64, 2}}}})}) {
    std::vector<float> o_ref, lse_ref;
    reference_attention(prob.args(p, o_ref, lse_ref));
    const double max_s = test::max_abs(lse_ref);  // LSE >= the largest score of the row
    ASSERT_GT(max_s, 3e3) << "the test must produce huge scores";
    const double bound = 16 * 1.19e-7 * max_s;
    for (const Kernel& k : kernels()) {
      if (k.device != Device::cpu || !k.unsupported(p, s, DType::fp32).empty()) continue;
      SCOPED_TRACE(std::string(k.name) + " " + p.name());
      std::vector<float> o, lse;
      k.run(prob.args(p, o, lse));
      const test::Errors e = test::compare(o, lse, o_ref, lse_ref);
      EXPECT_LE(e.o, bound * std::max(1.0, test::max_abs(prob.v)));
      EXPECT_LE(e.lse, bound);
    }
  }
}

TEST(Merge, MergingTwoHalvesEqualsTheWhole) {
  // Softmax over keys A u B from softmaxes over A and over B, including an empty part.
  const float inf = std::numeric_limits<float>::infinity();
  float o[2] = {1.0f, 2.0f}, lse = 3.0f;
  const float part[2] = {5.0f, -1.0f};
  merge_row(o, lse, part, 3.0f + std::log(3.0f), 2);  // B has 3x A's mass
  EXPECT_NEAR(o[0], 0.25f * 1 + 0.75f * 5, 1e-6);
  EXPECT_NEAR(o[1], 0.25f * 2 + 0.75f * -1, 1e-6);
  EXPECT_NEAR(lse, 3.0f + std::log(4.0f), 1e-6);
  merge_row(o, lse, part, -inf, 2);
  EXPECT_NEAR(o[0], 4.0f, 1e-6);
  float o2[2] = {0, 0}, lse2 = -inf;
  merge_row(o2, lse2, part, 80.0f, 2);  // exp(80) would overflow fp32 if formed
  EXPECT_EQ(o2[0], 5.0f);
  merge_row(o2, lse2, part, 120.0f, 2);
  EXPECT_TRUE(std::isfinite(lse2));
  EXPECT_NEAR(lse2, 120.0f, 1e-3);
}

TEST(Kernels, RowsWhoseKeysAllScoreMinusInfinityAreNaNAsInTheOracle) {
  // Keys 0-9 of head 0 score -inf for every query (K = -inf against Q > 0 in dim 0). A row that sees
  // only them is NaN in the oracle (its softmax's max is -inf); a row that also sees another key
  // gives them no weight, even where one of a kernel's pieces (a strided residue class, a dilated
  // level) holds only them. Every CPU kernel: NaN in exactly the oracle's rows, the rest matching.
  const Shape s{1, 100, 2, 16};
  test::Problem prob(s, 5);
  for (int64_t t = 0; t < s.N; ++t) prob.q[t * s.H * s.d] = std::abs(prob.q[t * s.H * s.d]) + 0.5f;
  for (int64_t t = 0; t < 10; ++t) prob.k[t * s.H * s.d] = -std::numeric_limits<float>::infinity();
  int ran = 0;
  for (const Pattern& p : test::with_and_without_causal({{{"kind", "full"}},
                                                         {{"kind", "local"}, {"left", 3}, {"right", 0}},
                                                         {{"kind", "strided"}, {"stride", 4}},
                                                         {{"kind", "strided"}, {"stride", 48}},
                                                         {{"kind", "fixed"}, {"block", 8}, {"summary", 2}},
                                                         {{"kind", "dilated"}, {"levels", {{8, 1}, {16, 2}}}}})) {
    std::vector<float> o_ref, lse_ref;
    reference_attention(prob.args(p, o_ref, lse_ref));
    for (const Kernel& k : kernels()) {
      if (k.device != Device::cpu || k.oracle || !k.unsupported(p, s, DType::fp32).empty()) continue;
      SCOPED_TRACE(std::string(k.name) + " " + p.name());
      std::vector<float> o, lse;
      k.run(prob.args(p, o, lse));
      expect_nonfinite_as_oracle(o, o_ref, 1e-5);
      const int64_t nan_rows = expect_nonfinite_as_oracle(lse, lse_ref, test::kLseToleranceFp32);
      if (p.causal) {
        EXPECT_GT(nan_rows, 0);  // rows 0-9 see only keys 0-9
      }
      ++ran;
    }
  }
  EXPECT_GE(ran, 12 * 2);  // flash or dilated, and vanilla, on every pattern
}

TEST(Memory, MovesAndBuffersOnTheHost) {
  // The moves the distributed methods make on any device (kernels/memory.h); test_cuda.cpp runs the
  // same script on a GPU.
  EXPECT_EQ(test::memory_script({Device::cpu, nullptr}), test::memory_script_expected);
}

TEST(Kernels, AttentionByStepsMatchesTheOracle) {
  // What the distributed methods run on their head shards on GPU buffers (kernels/step.h), here on
  // the CPU's step: every pattern, GQA, and heads of a larger model (dilated offsets by global head).
  int ran = 0;
  for (Shape s : {Shape{1, 67, 12, 64}, Shape{2, 130, 3, 80}, Shape{1, 129, 2, 3}, Shape{1, 90, 4, 16, 2}}) {
    const test::Problem prob(s, 55 + s.N);
    for (const Pattern& p : patterns())
      for (int64_t head0 : {0, 5}) {
        SCOPED_TRACE(p.name() + " N=" + std::to_string(s.N) + " H=" + std::to_string(s.H) + " H_kv=" +
                     std::to_string(s.kv_heads()) + " head0=" + std::to_string(head0));
        std::vector<float> o_ref, lse_ref, o, lse;
        AttentionArgs ref = prob.args(p, o_ref, lse_ref), a = prob.args(p, o, lse);
        ref.head0 = a.head0 = head0;
        reference_attention(ref);
        attention_by_steps(a, AttentionStep{});
        const test::Errors e = test::compare(o, lse, o_ref, lse_ref);
        EXPECT_LE(e.o, test::o_tolerance_fp32(prob.v));
        EXPECT_LE(e.lse, test::kLseToleranceFp32);
        ++ran;
      }
  }
  EXPECT_EQ(ran, 4 * 26 * 2);  // four shapes, 13 patterns with and without causal, two head0
}
