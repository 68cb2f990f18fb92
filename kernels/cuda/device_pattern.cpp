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
  d.base = p.level(0, n);
  d.base.w = d.base.r = 0;
  const std::vector<DilatedLevel> levels = p.dilated_levels(n);
  d.levels = static_cast<int>(levels.size());
  for (int l = 0; l < d.levels; ++l) {
    d.w[l] = levels[l].w;
    d.r[l] = levels[l].r;
  }
  return d;
}

}  // namespace longattn
