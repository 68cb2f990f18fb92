#pragma once
// DevicePattern: Pattern's parameters as a plain value a kernel can take by copy (no std::vector;
// dilated levels resolved for one sequence length), with contains() and classify() written to
// mirror kernels/pattern.cpp case for case. tests/test_cuda.cpp compares the mirror with Pattern on
// the host, exhaustively on small sizes, so the two cannot drift apart unnoticed.
#include <cstdint>

#if defined(__CUDACC__)
#define LONGATTN_HD __host__ __device__ __forceinline__
#else
#define LONGATTN_HD inline
#endif

namespace longattn {

struct Pattern;

enum class DeviceBlock : int { empty, full, partial };  // BlockKind, on the device

struct DevicePattern {
  static constexpr int kMaxLevels = 32;
  enum class Kind : int { full, local, strided, fixed, dilated };

  Kind kind = Kind::full;
  bool causal = false;
  int64_t left = 0, right = 0;     // local
  int64_t stride = 0;              // strided
  int64_t block = 0, summary = 0;  // fixed
  int levels = 0;                  // dilated: levels (w[l], r[l]) for the sequence length given
  int64_t w[kMaxLevels] = {}, r[kMaxLevels] = {};

  // Pattern::contains: is key j in level `level`'s set for query i of head h (sequence length n)?
  LONGATTN_HD bool contains(int level, int64_t h, int64_t i, int64_t j, int64_t n) const {
    if (j < 0 || j >= n || i < 0 || i >= n) return false;
    if (causal && j > i) return false;
    switch (kind) {
      case Kind::full: return true;
      case Kind::local: return i - left <= j && j <= i + right;
      case Kind::strided: return (i - j < stride && j - i < stride) || (i - j) % stride == 0;
      case Kind::fixed: return j / block == i / block || j % block >= block - summary;
      case Kind::dilated: {
        const int64_t lw = w[level], lr = r[level], o = h % lr;
        const int64_t begin = (i / lw) * lw, end = begin + lw < n ? begin + lw : n;
        return kept(i, begin, o, lr) && j >= begin && j < end && kept(j, begin, o, lr);
      }
    }
    return false;
  }

  // How many levels hold key j for query i: SPEC §1's weight of the pair (0 when masked).
  LONGATTN_HD int multiplicity(int64_t h, int64_t i, int64_t j, int64_t n) const {
    if (kind != Kind::dilated) return contains(0, h, i, j, n) ? 1 : 0;
    int m = 0;
    for (int l = 0; l < levels; ++l) m += contains(l, h, i, j, n) ? 1 : 0;
    return m;
  }

  // Single-level kinds: keys [*j0, *j1) hold every key any query in [i0, i1) attends to (a bound,
  // not exact), so a kernel need not even classify the blocks outside it.
  LONGATTN_HD void key_range(int64_t i0, int64_t i1, int64_t n, int64_t* j0, int64_t* j1) const {
    int64_t lo = 0, hi = causal ? i1 : n;
    if (kind == Kind::local) {
      lo = i0 - left;
      const int64_t right_end = i1 + (causal ? 0 : right);
      hi = right_end < hi ? right_end : hi;
    }
    *j0 = lo > 0 ? lo : 0;
    *j1 = hi < n ? hi : n;
  }

  // Pattern::classify, single-level kinds: queries [i0, i1) x keys [j0, j1).
  LONGATTN_HD DeviceBlock classify(int64_t i0, int64_t i1, int64_t j0, int64_t j1) const {
    if (causal && j0 > i1 - 1) return DeviceBlock::empty;
    const bool causal_ok = !causal || j1 - 1 <= i0;
    switch (kind) {
      case Kind::full:
        return causal_ok ? DeviceBlock::full : DeviceBlock::partial;
      case Kind::local: {
        const int64_t rr = causal ? 0 : right;
        if (j1 - 1 < i0 - left || j0 > i1 - 1 + rr) return DeviceBlock::empty;
        return (j0 >= i1 - 1 - left && j1 - 1 <= i0 + rr) ? DeviceBlock::full : DeviceBlock::partial;
      }
      case Kind::strided: {
        const int64_t band = stride - 1;
        const bool in_band = j0 >= i1 - 1 - band && j1 - 1 <= i0 + (causal ? 0 : band);
        return in_band ? DeviceBlock::full : DeviceBlock::partial;
      }
      case Kind::fixed: {
        const int64_t qb0 = i0 / block, qb1 = (i1 - 1) / block, kb0 = j0 / block, kb1 = (j1 - 1) / block;
        if (qb0 == qb1 && kb0 == kb1 && qb0 == kb0) return causal_ok ? DeviceBlock::full : DeviceBlock::partial;
        const bool other_blocks = kb1 < qb0 || kb0 > qb1;
        const bool no_summary = summary_before(j1) == summary_before(j0);
        return other_blocks && no_summary ? DeviceBlock::empty : DeviceBlock::partial;
      }
      case Kind::dilated:
        return DeviceBlock::partial;
    }
    return DeviceBlock::partial;
  }

 private:
  LONGATTN_HD static bool kept(int64_t i, int64_t seg_begin, int64_t o, int64_t rate) {
    const int64_t t = i - seg_begin - o;
    return t >= 0 && t % rate == 0;
  }
  // `fixed`: number of summary columns j < x (j mod block >= block - summary).
  LONGATTN_HD int64_t summary_before(int64_t x) const {
    const int64_t tail = x % block - (block - summary);
    return (x / block) * summary + (tail > 0 ? tail : 0);
  }
};

// The device copy of p for sequence length n. Throws InputError when the pattern has more dilated
// levels than kMaxLevels (see device_pattern_unsupported).
DevicePattern device_pattern(const Pattern& p, int64_t n);
// Empty when device_pattern(p, n) can represent p.
const char* device_pattern_unsupported(const Pattern& p, int64_t n);

}  // namespace longattn
