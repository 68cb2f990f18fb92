// libFuzzer target: the .npy reader on arbitrary bytes. Any input must end in an array or an
// InputError; never a crash, a sanitizer report, a hang or an allocation beyond the file's size.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "harness/npy.h"
#include "kernels/input_error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/dev/shm/longattn-fuzz-npy." + std::to_string(getpid());
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    const longattn::NpyArray a = longattn::read_npy(path);
    size_t count = 1;
    for (int64_t s : a.shape) count *= static_cast<size_t>(s);
    if (count != a.data.size()) __builtin_trap();  // the shape must describe the data read
  } catch (const longattn::InputError&) {
  }
  return 0;
}
