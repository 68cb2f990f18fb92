#pragma once
// DevicePattern: a Pattern as a plain value a kernel can take by copy (no std::vector; dilated
// levels resolved for one sequence length). Its predicates are PatternLevel's, the ones Pattern
// uses on the host (kernels/pattern_level.h); tests/test_cuda.cpp still compares the two
// exhaustively on small sizes, as a check of the conversion.
#include <cstdint>

#include "kernels/pattern_level.h"

namespace longattn {

struct Pattern;

struct DevicePattern {
  static constexpr int kMaxLevels = 32;

  PatternLevel base;  // kind, causal and the single-level sizes; w, r unused
  int levels = 0;     // dilated: levels (w[l], r[l]) for the sequence length given
  int64_t w[kMaxLevels] = {}, r[kMaxLevels] = {};

  LONGATTN_HD PatternLevel level(int l) const {
    PatternLevel x = base;
    if (base.kind == PatternKind::dilated) x.w = w[l], x.r = r[l];
    return x;
  }
  // Pattern::contains: is key j in level `l`'s set for query i of head h (sequence length n)?
  LONGATTN_HD bool contains(int l, int64_t h, int64_t i, int64_t j, int64_t n) const {
    return level(l).contains(h, i, j, n);
  }
  // How many levels hold key j for query i: SPEC §1's weight of the pair (0 when masked).
  LONGATTN_HD int multiplicity(int64_t h, int64_t i, int64_t j, int64_t n) const {
    if (base.kind != PatternKind::dilated) return base.contains(h, i, j, n) ? 1 : 0;
    int m = 0;
    for (int l = 0; l < levels; ++l) m += contains(l, h, i, j, n) ? 1 : 0;
    return m;
  }
  // Single-level kinds (PatternLevel::key_range and classify).
  LONGATTN_HD void key_range(int64_t i0, int64_t i1, int64_t n, int64_t* j0, int64_t* j1) const {
    base.key_range(i0, i1, n, j0, j1);
  }
  LONGATTN_HD BlockKind classify(int64_t i0, int64_t i1, int64_t j0, int64_t j1) const {
    return base.classify(i0, i1, j0, j1);
  }
};

// The device copy of p for sequence length n. Throws InputError when the pattern has more dilated
// levels than kMaxLevels (see device_pattern_unsupported).
DevicePattern device_pattern(const Pattern& p, int64_t n);
// Empty when device_pattern(p, n) can represent p.
const char* device_pattern_unsupported(const Pattern& p, int64_t n);

}  // namespace longattn
