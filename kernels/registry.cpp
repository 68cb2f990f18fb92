#include "kernels/registry.h"

#include "kernels/dilated_cpu.h"
#include "kernels/flash_cpu.h"
#include "kernels/input_error.h"
#include "kernels/reference.h"
#include "kernels/vanilla_cpu.h"

namespace longattn {
namespace {

std::string any_pattern(const Pattern&, const Shape&) { return {}; }

// Ordered fastest first: auto takes the first that supports the case.
const Kernel kKernels[] = {
    {"dilated", "LongNet: per level, dense tiled attention on every segment's kept rows, levels merged",
     dilated_unsupported, dilated_attention},
    {"flash", "tiled online softmax, vectorised, skips key blocks the pattern leaves empty", flash_unsupported,
     flash_attention},
    {"vanilla", "sgemm scores (N x N per head), mask, softmax, sgemm with V", any_pattern, vanilla_attention},
    {"reference", "the double-precision oracle of SPEC §1, one row at a time", any_pattern, reference_attention},
};

}  // namespace

std::span<const Kernel> cpu_kernels() { return kKernels; }

const Kernel* find_kernel(const std::string& name) {
  for (const Kernel& k : kKernels)
    if (name == k.name) return &k;
  return nullptr;
}

const Kernel& auto_kernel(const Pattern& p, const Shape& s) {
  for (const Kernel& k : kKernels)
    if (k.unsupported(p, s).empty() && std::string(k.name) != "reference") return k;
  throw InputError("no kernel supports pattern " + p.name());
}

}  // namespace longattn
