#pragma once
// StepBlock, the unit of an attention step (kernels/step.h), apart from it so that CUDA files take it
// without parsing the Pattern and kernel-table headers: the tile kernel reads its work as blocks.
#include <cstdint>

namespace longattn {

// One head: nq query rows against nk key and value rows, each a strided view (rows `*_stride`
// elements apart). Row i of the queries sits at position q_pos0 + i of the mask, key j at k_pos0 + j,
// in a sequence of n_mask; `head` is the mask's head (dilated offsets: the global head index).
// Q, K, V are fp32 containers holding values of the step's dtype, on every device (the CUDA tile
// kernel rounds them to bf16/fp16 as it loads them, which changes nothing); O and LSE are fp32.
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

// The backward of a block (SPEC §6): dO of its query rows (laid out as Q), the forward's LSE in
// fwd.lse and D = rowsum(dO ∘ O) of those rows (laid out as LSE), and the gradients accumulated
// into: dQ laid out as Q, dK and dV as K and V. fwd.o is not read.
struct StepGradBlock {
  StepBlock fwd;
  const float* dout = nullptr;
  const float* delta = nullptr;
  float* dq = nullptr;
  float* dk = nullptr;
  float* dv = nullptr;
};

}  // namespace longattn
