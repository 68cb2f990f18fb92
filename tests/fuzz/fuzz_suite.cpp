// libFuzzer target: a suite file through the suite loader (JSON reader, axes, patterns, cases).
// Bad input must be an InputError; an accepted suite's cases must have sizes whose products fit.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "harness/suite_file.h"
#include "kernels/checked.h"
#include "kernels/input_error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/dev/shm/longattn-fuzz-suite." + std::to_string(getpid()) + ".json";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    const longattn::Suite s = longattn::load_suite(path, 3);
    for (const longattn::Case& c : s.cases) {
      if (c.shape.numel() <= 0 || c.shape.numel() > longattn::kMaxElements || c.iterations < 1 || c.warmup < 0)
        __builtin_trap();
      (void)c.id(3);
    }
  } catch (const longattn::InputError&) {
  }
  return 0;
}
