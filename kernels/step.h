#pragma once
// The attention step: the seam between the distributed methods and a device. Blocks of queries
// attend to blocks of keys and values, each at its own positions under one single-level mask, and
// every block's (o, lse) merges into the caller's accumulators (SPEC §1). A ring step, the
// segments dist-dilated gathered, a level of a dilated pattern: each is one step, a list of blocks.
// The buffers live on the step's device (the communicator's: host memory for self and MPI).
#include <cstdint>
#include <vector>

#include "kernels/attention.h"
#include "kernels/registry.h"

namespace longattn {

// One head: nq query rows against nk key and value rows, each a strided view (rows `*_stride`
// elements apart). Row i of the queries sits at position q_pos0 + i of the mask, key j at k_pos0 + j,
// in a sequence of n_mask; `head` is the mask's head (dilated offsets: the global head index).
// Q, K, V hold the step's dtype (cpu: fp32 containers of its values); O and LSE are fp32.
struct StepBlock {
  const void* q = nullptr;
  int64_t q_stride = 0, nq = 0, q_pos0 = 0;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t kv_stride = 0, nk = 0, k_pos0 = 0;
  int64_t n_mask = 0, head = 0;
  float* o = nullptr;  // accumulators, merged into: o = 0 and lse = -inf where nothing is yet
  int64_t o_stride = 0;
  float* lse = nullptr;
  int64_t lse_stride = 1;
};

struct AttentionStep {
  Device device = Device::cpu;
  DType dtype = DType::fp32;  // the values' type (CPU: fp32 containers holding them)
  int64_t d = 0;
  float scale = 0;
  Pattern mask;  // single-level
  int threads = 0;               // cpu: 0 = every core OpenMP offers
  void* stream = nullptr;        // cuda: the cudaStream_t to run on (null: the default stream)
  std::vector<StepBlock> blocks;  // disjoint output rows
};

// Runs every block of the step on its device and returns when the accumulators hold the result.
// Throws InputError for what the device cannot run (a dilated mask anywhere; on cuda, fp32 or a head
// dim other than 64 and 128; a build without CUDA).
void attention_step(const AttentionStep& step);

}  // namespace longattn
