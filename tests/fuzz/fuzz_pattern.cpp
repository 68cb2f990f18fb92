// libFuzzer target: --pattern text through the JSON reader and the pattern parser, then every
// question the kernels ask of a pattern on small sequences. Bad input must be an InputError;
// huge sizes must neither overflow nor loop for long.
#include <cstdint>
#include <string>
#include <vector>

#include "harness/json_input.h"
#include "kernels/input_error.h"
#include "kernels/pattern.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace longattn;
  const std::string text(reinterpret_cast<const char*>(data), size);
  Pattern p;
  try {
    p = parse_pattern(parse_json_input(text, "--pattern"), "--pattern");
  } catch (const InputError&) {
    return 0;
  }
  (void)p.name();
  (void)to_json(p);
  std::vector<int64_t> keys;
  for (int64_t n : {1, 7, 33}) {
    const int levels = p.level_count(n);
    int64_t total = 0;
    for (int64_t h = 0; h < 3; ++h) {
      for (int l = 0; l < levels; ++l)
        for (int64_t i = 0; i < n; ++i) {
          keys.clear();
          p.keys(l, h, i, n, keys);
          for (int64_t j : keys)
            if (j < 0 || j >= n || !p.contains(l, h, i, j, n)) __builtin_trap();  // keys() and contains() agree
          total += static_cast<int64_t>(keys.size());
        }
      if (h == 0 && p.kind != PatternKind::dilated) (void)p.classify(0, n, 0, n);
    }
    if (total != p.pairs_all_heads(3, n)) __builtin_trap();  // the pair count is the keys' count
  }
  return 0;
}
