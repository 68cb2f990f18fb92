#include "kernels/cuda/device_pattern.h"

#include "kernels/input_error.h"
#include "kernels/pattern.h"

namespace longattn {

const char* device_pattern_unsupported(const Pattern& p, int64_t n) {
  if (p.level_count(n) > DevicePattern::kMaxLevels) return "more than 32 dilated levels";
  return "";
}

DevicePattern device_pattern(const Pattern& p, int64_t n) {
  if (*device_pattern_unsupported(p, n)) throw InputError(std::string("pattern: ") + device_pattern_unsupported(p, n));
  DevicePattern d;
  switch (p.kind) {
    case PatternKind::full: d.kind = DevicePattern::Kind::full; break;
    case PatternKind::local: d.kind = DevicePattern::Kind::local; break;
    case PatternKind::strided: d.kind = DevicePattern::Kind::strided; break;
    case PatternKind::fixed: d.kind = DevicePattern::Kind::fixed; break;
    case PatternKind::dilated: d.kind = DevicePattern::Kind::dilated; break;
  }
  d.causal = p.causal;
  d.left = p.left;
  d.right = p.right;
  d.stride = p.stride;
  d.block = p.block;
  d.summary = p.summary;
  const std::vector<DilatedLevel> levels = p.dilated_levels(n);
  d.levels = static_cast<int>(levels.size());
  for (int l = 0; l < d.levels; ++l) {
    d.w[l] = levels[l].w;
    d.r[l] = levels[l].r;
  }
  return d;
}

}  // namespace longattn
