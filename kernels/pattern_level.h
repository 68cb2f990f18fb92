#pragma once
// PatternLevel: one level of a pattern (SPEC §2) as a plain value, and the predicates every kernel
// asks of a mask: contains, classify, key_range. This is their one implementation: Pattern answers
// through it on the host and DevicePattern in the CUDA kernels.
#include <cstdint>

#include "kernels/hd.h"

namespace longattn {

enum class PatternKind { full, local, strided, fixed, dilated };

// How a block of (query, key) positions relates to a single-level pattern.
enum class BlockKind { empty, full, partial };

// What the levels of a pattern share: its kind, the causal flag, the single-level kinds' sizes.
struct PatternParams {
  PatternKind kind = PatternKind::full;
  bool causal = false;
  int64_t left = 0, right = 0;     // local
  int64_t stride = 0;              // strided
  int64_t block = 0, summary = 0;  // fixed
};

struct PatternLevel : PatternParams {
  int64_t w = 0, r = 0;  // dilated: this level's segment length and rate

  // Is key j attended by query i of head h (sequence length n)?
  LONGATTN_HD bool contains(int64_t h, int64_t i, int64_t j, int64_t n) const {
    if (j < 0 || j >= n || i < 0 || i >= n) return false;
    if (causal && j > i) return false;
    switch (kind) {
      case PatternKind::full: return true;
      case PatternKind::local: return i - left <= j && j <= i + right;
      case PatternKind::strided: return (i - j < stride && j - i < stride) || (i - j) % stride == 0;
      case PatternKind::fixed: return j / block == i / block || j % block >= block - summary;
      case PatternKind::dilated: {
        const int64_t o = h % r, begin = (i / w) * w, end = begin + w < n ? begin + w : n;
        return kept(i, begin, o, r) && j >= begin && j < end && kept(j, begin, o, r);
      }
    }
    return false;
  }

  // Single-level kinds: is the block queries [i0, i1) x keys [j0, j1) empty, full or partial?
  // `full` and `empty` are exact; `partial` may be returned conservatively (always for dilated).
  LONGATTN_HD BlockKind classify(int64_t i0, int64_t i1, int64_t j0, int64_t j1) const {
    if (causal && j0 > i1 - 1) return BlockKind::empty;
    const bool causal_ok = !causal || j1 - 1 <= i0;  // every pair passes the causal test
    switch (kind) {
      case PatternKind::full:
        return causal_ok ? BlockKind::full : BlockKind::partial;
      case PatternKind::local: {
        const int64_t rr = causal ? 0 : right;
        // Row sets are intervals [i-left, i+rr] sliding with i: their union is one interval.
        if (j1 - 1 < i0 - left || j0 > i1 - 1 + rr) return BlockKind::empty;
        return (j0 >= i1 - 1 - left && j1 - 1 <= i0 + rr) ? BlockKind::full : BlockKind::partial;
      }
      case PatternKind::strided: {
        const int64_t band = stride - 1;
        const bool in_band = j0 >= i1 - 1 - band && j1 - 1 <= i0 + (causal ? 0 : band);
        return in_band ? BlockKind::full : BlockKind::partial;
      }
      case PatternKind::fixed: {
        const int64_t qb0 = i0 / block, qb1 = (i1 - 1) / block, kb0 = j0 / block, kb1 = (j1 - 1) / block;
        if (qb0 == qb1 && kb0 == kb1 && qb0 == kb0) return causal_ok ? BlockKind::full : BlockKind::partial;
        const bool other_blocks = kb1 < qb0 || kb0 > qb1;
        const bool no_summary = summary_before(j1) == summary_before(j0);
        return other_blocks && no_summary ? BlockKind::empty : BlockKind::partial;
      }
      case PatternKind::dilated:
        return BlockKind::partial;
    }
    return BlockKind::partial;
  }

  // Single-level kinds: keys [*j0, *j1) hold every key any query in [i0, i1) attends to (a bound,
  // not exact), so a kernel need not even classify the blocks outside it.
  LONGATTN_HD void key_range(int64_t i0, int64_t i1, int64_t n, int64_t* j0, int64_t* j1) const {
    int64_t lo = 0, hi = causal ? i1 : n;
    if (kind == PatternKind::local) {
      lo = i0 - left;
      const int64_t right_end = i1 + (causal ? 0 : right);
      hi = right_end < hi ? right_end : hi;
    }
    *j0 = lo > 0 ? lo : 0;
    *j1 = hi < n ? hi : n;
  }

  // `fixed`: the number of summary columns j < x (j mod block >= block - summary).
  LONGATTN_HD int64_t summary_before(int64_t x) const {
    const int64_t tail = x % block - (block - summary);
    return (x / block) * summary + (tail > 0 ? tail : 0);
  }

  // Dilated: is position i kept in the segment starting at seg_begin, offset o, rate `rate`?
  LONGATTN_HD static bool kept(int64_t i, int64_t seg_begin, int64_t o, int64_t rate) {
    const int64_t t = i - seg_begin - o;
    return t >= 0 && t % rate == 0;
  }
};

}  // namespace longattn
