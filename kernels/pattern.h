#pragma once
// Pattern: the one value type that says which keys each query attends to (SPEC §2). Every kernel,
// the oracle and every distributed algorithm read it; nothing else describes a mask.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/pattern_level.h"

namespace longattn {

// Pattern sizes (left, right, stride, block, summary, w, r) above this are read as this: no
// sequence is longer, so the pattern means the same, and index arithmetic stays far from overflow.
constexpr int64_t kMaxPatternSize = int64_t{1} << 50;

struct DilatedLevel {
  int64_t w = 0;  // segment length
  int64_t r = 0;  // dilation rate: keep every r-th row, head h starting at h mod r
};

struct Pattern : PatternParams {  // kind, causal, and the sizes of local, strided and fixed
  std::vector<DilatedLevel> levels;     // dilated, explicit levels
  bool longnet = false;                 // dilated, the named configuration (resolved per N)

  // Levels for sequence length n: explicit levels as given, `longnet` per SPEC §2.
  std::vector<DilatedLevel> dilated_levels(int64_t n) const;
  int level_count(int64_t n) const;
  // Level `level` as a plain value (kernels/pattern_level.h), whose predicates the ones below use.
  PatternLevel level(int level, int64_t n) const;

  // Is key j in level `level`'s set for query i of head h (sequence length n)?
  bool contains(int level, int64_t h, int64_t i, int64_t j, int64_t n) const;
  // The keys of that set, ascending, appended to `out` (cost proportional to the set's size).
  void keys(int level, int64_t h, int64_t i, int64_t n, std::vector<int64_t>& out) const;
  // Full and local patterns: the keys of query i form one interval, [lo, hi] (lo > hi: none).
  // False for the other kinds, whose sets are not intervals.
  bool key_interval(int64_t i, int64_t n, int64_t& lo, int64_t& hi) const;
  // Exact number of (query, key) pairs of head h, summed over levels (SPEC §1).
  int64_t pairs(int64_t h, int64_t n) const;
  // Sum of pairs() over heads [0, H).
  int64_t pairs_all_heads(int64_t H, int64_t n) const;
  // Single-level patterns only: is the block queries [i0, i1) x keys [j0, j1) empty, full or
  // partial? `full` and `empty` are exact; `partial` may be returned conservatively.
  BlockKind classify(int64_t i0, int64_t i1, int64_t j0, int64_t j1) const;

  std::string name() const;  // short, printable, unique per value: "local(256,0)+causal"
};

// SPEC §5 spelling. `where` is the field path used in error messages ("pattern", "cases[3].pattern").
Pattern parse_pattern(const nlohmann::json& j, const std::string& where = "pattern");
nlohmann::json to_json(const Pattern& p);
const char* kind_name(PatternKind k);

}  // namespace longattn
