#pragma once
// Strided and fixed (Sparse Transformer) attention as disjoint dense pieces merged by LSE; the
// `flash` kernel runs these patterns this way (see sparse_cpu.cpp).
#include <vector>

#include "kernels/attention.h"
#include "kernels/flash_cpu.h"

namespace longattn {

// a.lse must exist: the pieces merge through it (flash_attention makes one when not asked for).
void strided_attention(const AttentionArgs& a);
void fixed_attention(const AttentionArgs& a);

// The pieces, shared by the forward and the backward (backward_cpu.cpp). strided(l) on N tokens:
// the band |i - j| < l over the whole sequence; in a residue class (rows rho + t l) the keys t' < t
// (`before`: causal, keys at positions shifted by +1) and, non-causal, t' > t (`after`: local(0,
// inf), keys shifted by -1). l is the stride capped at N: l = N leaves only the band, l = 1 one class
// holding every key.
struct StridedPieces {
  int64_t l = 1;
  Pattern band, before, after;
};
StridedPieces strided_pieces(const Pattern& p, int64_t N);
// fixed(l, c) on N tokens: block g's summary columns g l + l - c + t, t < starts[g + 1] - starts[g],
// numbered from starts[g] when gathered (the last block may be short).
std::vector<int64_t> summary_starts(const Pattern& p, int64_t N);

// strided's keys outside the band, for the residue classes [rho0, rho0 + 16) of batch b, heads
// [h0, h1), one class per vector lane (strided_lanes.cpp), merged into a.o and a.lse (which must
// exist).
// False, with nothing written, where Q, K or V hold NaN or inf: the caller attends those classes
// one by one.
constexpr int64_t kStridedLanes = 16;
struct StridedLanes {  // per-thread working memory
  aligned_vector<float> q, k, v;  // [slab][d][lane]
  aligned_vector<float> s, o;     // scores of 4 queries x 64 keys, their outputs
  std::vector<float> lse, row;
};
bool strided_residue_lanes(const AttentionArgs& a, int64_t b, int64_t rho0, int64_t h0, int64_t h1, StridedLanes& w);
// Gives back every thread's kept lanes (release_kept_buffers calls it).
void release_strided_lanes();

}  // namespace longattn
