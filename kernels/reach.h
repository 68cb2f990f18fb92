#pragma once
// How information flows through stacked attention layers with one pattern (LongNet's second claim:
// any two tokens connect in O(log N) layers). Token i's output after a layer depends on token j when
// some head attends (i, j) (the heads are mixed by the output projection); after L layers it
// depends on every token reachable in L such steps. Causal patterns only flow forward.
#include <cstdint>
#include <vector>

#include "kernels/pattern.h"

namespace longattn {

struct Reach {
  std::vector<int64_t> in_degree;  // per token: the distinct keys it attends, over heads [0, heads)
  // reached[l]: tokens whose output depends on token 0 after l + 1 layers (token 0 counted).
  std::vector<int64_t> reached;
  int64_t layers_to_last = -1;  // layers until token n-1 depends on token 0; -1: not within the layers computed
};

// Layers 1 .. max_layers, stopping early once token n-1 is reached and nothing grows. Cost: each
// layer enumerates the keys of the tokens not yet reached until one is found (Pattern::keys).
Reach reach(const Pattern& p, int64_t n, int64_t heads, int64_t max_layers);

}  // namespace longattn
