#pragma once
// .npy files (NumPy format 1.0/2.0): how tensors travel between longattn, NumPy and PyTorch
// (SPEC §5). Reads little-endian float32 or float64 in C order; writes float32.
#include <cstdint>
#include <string>
#include <vector>

namespace longattn {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // converted to float32
};

// Throws InputError naming the file and the problem (not found, truncated, dtype, order, ...).
NpyArray read_npy(const std::string& path);
class AtomicFile;
// Writes atomically: to a temporary file that is renamed over `path` once complete.
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data);
// Writes the array into `f`; the caller commits (several outputs all-or-nothing).
void write_npy(AtomicFile& f, const std::vector<int64_t>& shape, const float* data);

}  // namespace longattn
