// Pattern: parsing (SPEC §5), exact pair counts, key enumeration and block classification, each
// against brute force over contains().
#include <gtest/gtest.h>

#include <algorithm>

#include "kernels/input_error.h"
#include "kernels/pattern.h"
#include "kernels/reach.h"
#include "tests/check.h"

using namespace longattn;
using nlohmann::json;

namespace {

std::vector<Pattern> all_patterns() {
  return test::with_and_without_causal({
      {{"kind", "full"}},
      {{"kind", "local"}, {"left", 5}, {"right", 3}},
      {{"kind", "local"}, {"left", 0}, {"right", 0}},
      {{"kind", "strided"}, {"stride", 4}},
      {{"kind", "strided"}, {"stride", 1}},
      {{"kind", "fixed"}, {"block", 8}, {"summary", 2}},
      {{"kind", "fixed"}, {"block", 5}, {"summary", 5}},
      {{"kind", "dilated"}, {"levels", {{8, 1}, {16, 2}}}},
      {{"kind", "dilated"}, {"levels", {{8, 2}, {40, 4}, {7, 3}}}},
      {{"kind", "dilated"}, {"levels", "longnet"}},
  });
}

}  // namespace

TEST(Pattern, PairsKeysAndContainsAgreeWithBruteForce) {
  for (const Pattern& p : all_patterns()) {
    for (int64_t n : {1, 2, 13, 37, 64}) {
      for (int64_t h : {0, 1, 2, 5}) {
        SCOPED_TRACE(p.name() + " n=" + std::to_string(n) + " h=" + std::to_string(h));
        int64_t brute = 0;
        for (int l = 0; l < p.level_count(n); ++l) {
          for (int64_t i = 0; i < n; ++i) {
            std::vector<int64_t> ks;
            p.keys(l, h, i, n, ks);
            std::vector<int64_t> want;
            for (int64_t j = 0; j < n; ++j)
              if (p.contains(l, h, i, j, n)) want.push_back(j);
            std::sort(ks.begin(), ks.end());
            ASSERT_EQ(ks, want) << "level " << l << " query " << i;
            brute += static_cast<int64_t>(want.size());
          }
        }
        EXPECT_EQ(p.pairs(h, n), brute);
      }
    }
  }
}

TEST(Pattern, ClassifyIsExactForFullAndEmpty) {
  for (const Pattern& p : all_patterns()) {
    if (p.kind == PatternKind::dilated) continue;
    const int64_t n = 50;
    for (int64_t i0 = 0; i0 < n; i0 += 3)
      for (int64_t i1 = i0 + 1; i1 <= std::min(n, i0 + 11); i1 += 4)
        for (int64_t j0 = 0; j0 < n; j0 += 2)
          for (int64_t j1 = j0 + 1; j1 <= std::min(n, j0 + 17); j1 += 5) {
            int64_t in = 0;
            for (int64_t i = i0; i < i1; ++i)
              for (int64_t j = j0; j < j1; ++j) in += p.contains(0, 0, i, j, n);
            const BlockKind k = p.classify(i0, i1, j0, j1);
            const int64_t all = (i1 - i0) * (j1 - j0);
            if (k == BlockKind::full) {
              ASSERT_EQ(in, all) << p.name() << " " << i0 << " " << i1 << " " << j0 << " " << j1;
            }
            if (k == BlockKind::empty) {
              ASSERT_EQ(in, 0) << p.name() << " " << i0 << " " << i1 << " " << j0 << " " << j1;
            }
            // Exactness where it matters for speed: full and causal/local blocks are never "partial".
            if (p.kind == PatternKind::full || p.kind == PatternKind::local) {
              if (in == all) {
                EXPECT_EQ(k, BlockKind::full) << p.name();
              }
              if (in == 0) {
                EXPECT_EQ(k, BlockKind::empty) << p.name();
              }
            }
          }
  }
}

TEST(Pattern, LongnetConfigurationFollowsSpec) {
  Pattern p = parse_pattern(json{{"kind", "dilated"}, {"levels", "longnet"}});
  auto lv = p.dilated_levels(5000);
  ASSERT_EQ(lv.size(), 3u);
  EXPECT_EQ(lv[0].w, 2048); EXPECT_EQ(lv[0].r, 1);
  EXPECT_EQ(lv[1].w, 4096); EXPECT_EQ(lv[1].r, 2);
  EXPECT_EQ(lv[2].w, 5000); EXPECT_EQ(lv[2].r, 4);
  lv = p.dilated_levels(1000);
  ASSERT_EQ(lv.size(), 1u);
  EXPECT_EQ(lv[0].w, 1000); EXPECT_EQ(lv[0].r, 1);
  lv = p.dilated_levels(1 << 20);
  ASSERT_EQ(lv.size(), 10u);
  EXPECT_EQ(lv[5].w, 65536); EXPECT_EQ(lv[5].r, 24);
  EXPECT_EQ(lv[9].w, 1 << 20); EXPECT_EQ(lv[9].r, 384);
}

TEST(Pattern, JsonRoundTrip) {
  for (const Pattern& p : all_patterns()) {
    const Pattern back = parse_pattern(to_json(p));
    EXPECT_EQ(back.name(), p.name());
  }
}

TEST(Pattern, BadSpellingsNameTheField) {
  struct Bad {
    json j;
    std::string needle;
  };
  const std::vector<Bad> bad = {
      {json::array(), "pattern: must be a JSON object"},
      {{{"kind", "banded"}}, "pattern.kind: unknown kind \"banded\""},
      {{{"causal", true}}, "pattern.kind: missing"},
      {{{"kind", "local"}, {"left", 3}}, "pattern.right: missing"},
      {{{"kind", "local"}, {"left", -1}, {"right", 0}}, "pattern.left: must be non-negative"},
      {{{"kind", "strided"}, {"stride", 0}}, "pattern.stride: must be positive"},
      {{{"kind", "strided"}, {"stride", 2.5}}, "pattern.stride: must be an integer"},
      {{{"kind", "fixed"}, {"block", 4}, {"summary", 5}}, "pattern.summary: must not exceed block"},
      {{{"kind", "full"}, {"window", 3}}, "pattern.window: unknown field"},
      {{{"kind", "full"}, {"causal", "yes"}}, "pattern.causal: must be true or false"},
      {{{"kind", "dilated"}}, "pattern.levels: missing"},
      {{{"kind", "dilated"}, {"levels", "longformer"}}, "pattern.levels: unknown configuration"},
      {{{"kind", "dilated"}, {"levels", {{8, 0}}}}, "pattern.levels[0]: segment length w and rate r must be positive"},
      {{{"kind", "dilated"}, {"levels", {{8, 1}, {3}}}}, "pattern.levels[1]: must be a pair"},
  };
  for (const Bad& b : bad) {
    try {
      parse_pattern(b.j);
      ADD_FAILURE() << "accepted " << b.j.dump();
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(b.needle), std::string::npos) << e.what();
    }
  }
}

TEST(Reach, MatchesBreadthFirstSearch) {
  // kernels/reach.h against a breadth-first search over the pattern's pairs (contains(), every
  // head and level): in-degree, tokens reached per layer, layers until token n-1 (causal: forward only).
  int compared = 0;
  for (const Pattern& p : all_patterns()) {
    for (int64_t n : {1, 2, 37, 130}) {
      for (int64_t heads : {1, 3}) {
        SCOPED_TRACE(p.name() + " n=" + std::to_string(n) + " heads=" + std::to_string(heads));
        std::vector<std::vector<int64_t>> queries_of(n);  // key j -> the queries that attend it
        std::vector<int64_t> degree(n, 0);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t j = 0; j < n; ++j) {
            bool edge = false;
            for (int64_t h = 0; h < heads; ++h)
              for (int l = 0; l < p.level_count(n); ++l) edge = edge || p.contains(l, h, i, j, n);
            if (edge) queries_of[j].push_back(i), ++degree[i];
          }
        std::vector<int64_t> dist(n, -1), queue = {0};
        dist[0] = 0;
        for (size_t at = 0; at < queue.size(); ++at)
          for (int64_t i : queries_of[queue[at]])
            if (dist[i] < 0) dist[i] = dist[queue[at]] + 1, queue.push_back(i);
        const Reach r = reach(p, n, heads, /*max_layers=*/200);
        EXPECT_EQ(r.in_degree, degree);
        ASSERT_FALSE(r.reached.empty());
        for (size_t l = 0; l < r.reached.size(); ++l)
          EXPECT_EQ(r.reached[l], std::count_if(dist.begin(), dist.end(), [&](int64_t x) { return x >= 0 && x <= int64_t(l + 1); }))
              << "layer " << l + 1;
        EXPECT_EQ(r.reached.back(), static_cast<int64_t>(queue.size()));  // it stops once nothing grows
        EXPECT_EQ(r.layers_to_last, dist[n - 1]);
        ++compared;
      }
    }
  }
  EXPECT_EQ(compared, 20 * 4 * 2);
  // Few layers: token n-1 not reached within them is -1, and the layer counts stop there.
  const Reach short_of = reach(parse_pattern(json{{"kind", "local"}, {"left", 2}, {"right", 0}}), 100, 1, 3);
  EXPECT_EQ(short_of.reached, (std::vector<int64_t>{3, 5, 7}));
  EXPECT_EQ(short_of.layers_to_last, -1);
}
