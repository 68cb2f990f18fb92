#include "kernels/reach.h"

#include <algorithm>

namespace longattn {

Reach reach(const Pattern& p, int64_t n, int64_t heads, int64_t max_layers) {
  Reach out;
  const int levels = p.level_count(n);
  std::vector<int64_t> keys;
  // In-degree: the distinct keys of each token over heads and levels.
  out.in_degree.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    keys.clear();
    for (int64_t h = 0; h < heads; ++h)
      for (int l = 0; l < levels; ++l) p.keys(l, h, i, n, keys);
    if (heads * levels > 1) {  // one level's keys are distinct already
      std::sort(keys.begin(), keys.end());
      keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    }
    out.in_degree[i] = static_cast<int64_t>(keys.size());
  }
  // Layer by layer: a token joins when one of its keys was reached in an earlier layer (not in
  // this one: `depth` tells them apart).
  std::vector<int64_t> depth(n, -1);
  if (n == 0) return out;
  depth[0] = 0;
  int64_t count = 1;
  for (int64_t layer = 1; layer <= max_layers; ++layer) {
    int64_t added = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (depth[i] >= 0) continue;
      bool joins = false;
      for (int64_t h = 0; h < heads && !joins; ++h)
        for (int l = 0; l < levels && !joins; ++l) {
          keys.clear();
          p.keys(l, h, i, n, keys);
          joins = std::any_of(keys.begin(), keys.end(), [&](int64_t j) { return depth[j] >= 0 && depth[j] < layer; });
        }
      if (joins) depth[i] = layer, ++added;
    }
    count += added;
    out.reached.push_back(count);
    if (depth[n - 1] >= 0 && out.layers_to_last < 0) out.layers_to_last = depth[n - 1];
    if (added == 0 || count == n) break;  // nothing more will join, or everything has
  }
  return out;
}

}  // namespace longattn
