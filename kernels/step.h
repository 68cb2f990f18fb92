#pragma once
// The attention step: the seam between the distributed methods and a device. Blocks of queries
// attend to blocks of keys and values, each at its own positions under one single-level mask, and
// every block's (o, lse) merges into the caller's accumulators (SPEC §1). A ring step, the
// segments dist-dilated gathered, a level of a dilated pattern: each is one step, a list of blocks.
// The buffers live on the step's device (the communicator's: host memory for self and MPI).
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/attention.h"
#include "kernels/registry.h"
#include "kernels/step_block.h"

namespace longattn {

struct AttentionStep {
  Device device = Device::cpu;
  DType dtype = DType::fp32;  // the values' type (fp32 containers hold them on every device)
  int64_t d = 0;
  float scale = 0;
  Pattern mask;  // single-level
  int threads = 0;               // cpu: 0 = every core OpenMP offers
  void* stream = nullptr;        // cuda: the cudaStream_t to run on (null: the default stream)
  std::vector<StepBlock> blocks;  // disjoint output rows
};

// The step's backward (SPEC §6) for the given blocks (step.blocks is not read): the blocks may share
// neither dQ rows nor dK/dV rows. CPU only for now; cuda throws InputError.
void attention_step_backward(const AttentionStep& step, std::span<const StepGradBlock> blocks);

// Attention of args' whole problem (any pattern, GQA, head0) as attention steps on like's device,
// stream and threads: one step for a single-level pattern, one per dilated level whose blocks are
// each segment's kept rows (strided views, dense within the segment, causal by kept index). O and
// LSE are set first (0, -inf) and merged into (SPEC §1); Q, K, V, O, LSE live on that device. What
// the distributed methods run on their head shards on GPU buffers; on the CPU they run the tuned
// kernels of the table instead.
void attention_by_steps(const AttentionArgs& args, const AttentionStep& like);

// Empty when an attention step on `device` runs values of `dtype` with head dim d; otherwise why not
// (cuda: the tile kernel's bf16/fp16 and d = 64 or 128; a build without CUDA).
std::string attention_step_unsupported(Device device, DType dtype, int64_t d);

// Runs every block of the step on its device and returns when the accumulators hold the result.
// Throws InputError for what the device cannot run (a dilated mask anywhere; on cuda, fp32 or a head
// dim other than 64 and 128; a build without CUDA).
void attention_step(const AttentionStep& step);

}  // namespace longattn
