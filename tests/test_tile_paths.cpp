// Every tile path, on every dtype it serves, through every kernel that runs the tile code, against
// the oracle run on the same rounded inputs (SPEC §4: 1e-4 for fp32, 2e-2 for bf16 and fp16). A path this
// CPU cannot run skips and says which feature it lacks.
#include <gtest/gtest.h>

#include "kernels/flash_tiles.h"
#include "kernels/registry.h"
#include "tests/check.h"

using namespace longattn;
using nlohmann::json;

namespace {

std::vector<Pattern> patterns() {
  return test::with_and_without_causal({
      {{"kind", "full"}},
      {{"kind", "local"}, {"left", 70}, {"right", 3}},
      {{"kind", "strided"}, {"stride", 9}},
      {{"kind", "fixed"}, {"block", 16}, {"summary", 3}},
      {{"kind", "dilated"}, {"levels", {{8, 2}, {40, 4}, {1000, 3}}}},  // unkept queries: empty rows
      {{"kind", "dilated"}, {"levels", "longnet"}},
  });
}

// N not a multiple of the 64-row tiles; d = 3, 17, 80, 128; one head; several 256-key AMX blocks.
const Shape kShapes[] = {{1, 67, 2, 3}, {1, 130, 3, 17}, {2, 75, 2, 80}, {1, 200, 1, 128}, {1, 1, 1, 16}, {1, 600, 2, 64}};

struct PathCase {
  const TilePath* path;
  DType dtype;
};

std::vector<PathCase> path_cases() {
  std::vector<PathCase> out;
  for (const TilePath& p : tile_paths()) {
    out.push_back({&p, p.dtype});
    if (p.dtype == DType::fp32) {  // the conversion path: bf16 and fp16 values on fp32 tiles
      out.push_back({&p, DType::bf16});
      out.push_back({&p, DType::fp16});
    }
  }
  return out;
}

class TilePaths : public testing::TestWithParam<PathCase> {
 protected:
  void TearDown() override { force_tile_path(nullptr); }
};

}  // namespace

TEST_P(TilePaths, MatchTheOracleOnRoundedInputs) {
  const PathCase pc = GetParam();
  if (!pc.path->available())
    GTEST_SKIP() << "tile path " << pc.path->name << " needs " << pc.path->needs << ", which this CPU lacks";
  force_tile_path(pc.path);
  for (const Shape& s : kShapes) {
    test::Problem prob(s, 77 + s.N + s.d);
    for (auto* t : {&prob.q, &prob.k, &prob.v}) round_all(pc.dtype, t->data(), int64_t(t->size()));
    const double o_tol = o_tolerance(pc.dtype, test::max_abs(prob.v)), lse_tol = lse_tolerance(pc.dtype);
    for (const Pattern& p : patterns()) {
      std::vector<float> o_ref, lse_ref;
      reference_attention(prob.args(p, o_ref, lse_ref));
      for (const char* name : {"flash", "dilated", "vanilla"}) {
        const Kernel& k = *find_kernel(name);
        if (!k.unsupported(p, s, pc.dtype).empty()) continue;
        SCOPED_TRACE(std::string(name) + " " + p.name() + " N=" + std::to_string(s.N) + " H=" + std::to_string(s.H) +
                     " d=" + std::to_string(s.d) + " " + pc.path->name + " " + dtype_name(pc.dtype));
        std::vector<float> o, lse;
        AttentionArgs a = prob.args(p, o, lse);
        a.dtype = pc.dtype;
        k.run(a);
        round_all(pc.dtype, o.data(), int64_t(o.size()));
        const test::Errors e = test::compare(o, lse, o_ref, lse_ref);
        EXPECT_LE(e.o, o_tol);
        EXPECT_LE(e.lse, lse_tol);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Every, TilePaths, testing::ValuesIn(path_cases()), [](const auto& info) {
  std::string n = std::string(info.param.path->name) + "_on_" + dtype_name(info.param.dtype);
  for (char& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
});

// The selector takes the native path where the CPU has it, else converts on fp32 tiles.
TEST(TilePathSelection, NativeWhereAvailableElseConversion) {
  EXPECT_EQ(select_tile_path(DType::fp32).dtype, DType::fp32);
  const TilePath& b = select_tile_path(DType::bf16);
  const char* want = kTileBf16Amx.available() ? "bf16-amx" : kTileBf16Avx512.available() ? "bf16-avx512bf16" : kTileFp32.name;
  EXPECT_EQ(std::string(b.name), want);
  EXPECT_EQ(find_tile_path("no-such-path"), nullptr);
}
