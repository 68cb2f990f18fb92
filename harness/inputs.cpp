#include "harness/inputs.h"

#include <cmath>

namespace longattn {
namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

float normal(uint64_t key) {
  const uint64_t r = splitmix64(key);
  // Two 32-bit uniforms in (0, 1], Box-Muller.
  const double u1 = ((r >> 32) + 1.0) / 4294967296.0, u2 = ((r & 0xffffffffu) + 1.0) / 4294967296.0;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
}

}  // namespace

void generate_rows(InputTensor t, uint64_t seed, const Shape& g, int64_t b, int64_t pos0, int64_t rows, float* out) {
  const int64_t row = g.H * g.d, base = (b * g.N + pos0) * row;
  const uint64_t stream = splitmix64(seed * 3 + static_cast<uint64_t>(t));
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < rows * row; ++e) out[e] = normal(stream ^ static_cast<uint64_t>(base + e) * 0x2545f4914f6cdd1dull);
}

void generate_slice(InputTensor t, uint64_t seed, const Shape& g, int64_t pos0, int64_t rows, float* out) {
  for (int64_t b = 0; b < g.B; ++b) generate_rows(t, seed, g, b, pos0, rows, out + b * rows * g.H * g.d);
}

}  // namespace longattn
