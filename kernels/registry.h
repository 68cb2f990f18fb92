#pragma once
// The single-device kernels by name. One table answers both "can it run this?" and "run it", so
// the two never disagree (ggml's supports_op lesson); `auto` picks from the same table.
#include <span>
#include <string>

#include "kernels/attention.h"

namespace longattn {

struct Kernel {
  const char* name;
  const char* summary;
  // Empty when the kernel runs this pattern and shape; otherwise the reason it does not.
  std::string (*unsupported)(const Pattern&, const Shape&);
  void (*run)(const AttentionArgs&);
};

std::span<const Kernel> cpu_kernels();
const Kernel* find_kernel(const std::string& name);  // null if unknown
// The fastest kernel that supports the pattern ("auto").
const Kernel& auto_kernel(const Pattern& p, const Shape& s);

}  // namespace longattn
