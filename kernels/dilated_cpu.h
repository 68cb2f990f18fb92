#pragma once
// LongNet's dilated attention on the CPU, and the segments of a level that dist-dilated also walks.
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/flash_cpu.h"

namespace longattn {

// One segment of one level for one head: kept global positions first + t*r, t in [0, count);
// [t0, t1) are the kept indices that fall inside the range the segments were asked for.
struct DilatedSegment {
  int64_t begin, end;  // the segment [begin, end)
  int64_t first;       // first kept position
  int64_t count;       // kept positions in the whole segment
  int64_t t0, t1;      // kept indices inside the asked range
};

// The segment of level lv starting at seg_begin, for head h (global index), with t0, t1 the kept
// indices inside [lo, hi).
DilatedSegment dilated_segment(const DilatedLevel& lv, int64_t h, int64_t seg_begin, int64_t n, int64_t lo,
                               int64_t hi);
// Segments of level lv (head h: offset h mod r) that keep at least one position in [begin, end).
std::vector<DilatedSegment> dilated_segments(const DilatedLevel& lv, int64_t h, int64_t begin, int64_t end,
                                             int64_t n);

struct DilatedScratch {
  PackedKV kv;
  FlashScratch flash;
  Pattern mask;
};

void dilated_attention(const AttentionArgs& args);
std::string dilated_unsupported(const Pattern& p, const Shape& s);

}  // namespace longattn
