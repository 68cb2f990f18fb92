#pragma once
// The single-device kernels, keyed by (name, device), every device in one table. One row answers
// both "can it run this?" and "run it", so the two never disagree (ggml's supports_op lesson), and
// `auto` picks from the same rows. Adding a kernel: one file, one row here, one CMake line.
#include <span>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/backward.h"

namespace longattn {

enum class Device { cpu, cuda };
const char* device_name(Device d);  // "cpu", "cuda"
// Throws InputError naming `field` for an unknown name.
Device parse_device(const std::string& name, const std::string& field);

// How a device kernel is timed: `warmup` untimed runs, then `iterations` timed ones, one
// device-event time each; with flush_l2 the GPU's L2 cache is overwritten before each timed run
// (outside its events), as nvbench and Triton's do_bench do, so inputs that fit in it are not timed
// hot. At least one run happens, so there is always an output.
struct DeviceTiming {
  int warmup = 0, iterations = 0;
  bool flush_l2 = true;
};

struct Kernel {
  const char* name;
  Device device;
  const char* summary;
  bool oracle;  // the float64 reference: what every other kernel is checked against, never `auto`'s pick
  // Empty when the kernel runs this case here; otherwise the reason it does not. Pattern, shape and
  // dtype are checked first (the same answer on every machine), then the machine (a CPU feature, a
  // GPU present, its memory).
  std::string (*unsupported)(const Pattern&, const Shape&, DType);
  // O (and LSE when args.lse is set) from host fp32 containers holding values of args.dtype. cpu:
  // computed in place, timed by the caller. cuda: uploaded, run once, downloaded.
  void (*run)(const AttentionArgs&);
  // cuda only (null on cpu, where the caller times run()): one device-event time in ms per timed
  // run (DeviceTiming); O and LSE of the last, as run() writes them.
  std::vector<double> (*time_on_device)(const AttentionArgs&, const DeviceTiming&);
  // The backward pass (SPEC §6) on host buffers, or null where the kernel has none (yet). cuda:
  // uploaded, run once, downloaded.
  void (*backward)(const BackwardArgs&);
  // cuda only, as time_on_device for the backward pass (null on cpu and where there is none).
  std::vector<double> (*time_backward_on_device)(const BackwardArgs&, const DeviceTiming&);
};

std::span<const Kernel> kernels();  // every device, each device's rows fastest first
const Kernel* find_kernel(const std::string& name, Device device = Device::cpu);  // null if unknown
// The fastest kernel of `device` that runs the case ("auto"); throws InputError when none does.
const Kernel& auto_kernel(const Pattern& p, const Shape& s, DType dtype = DType::fp32, Device device = Device::cpu);
// "dilated, flash, vanilla, reference" for one device, for messages.
std::string kernel_names(Device device);

}  // namespace longattn
