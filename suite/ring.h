#pragma once
// The ring of ring attention, shared by dist-ring, dist-ring-zigzag and dist-usp (whose rings run
// across its Ulysses groups): a rank attends its queries to each K/V shard of the ring in turn while
// the next one is already on its way (suite/dist_ring.cpp).
#include "suite/method.h"

namespace longattn {

// `size` members; this rank is member `pos`; member x is world rank first + x * stride.
struct RingView {
  int size = 1, pos = 0, first = 0, stride = 1;
  int member(int x) const { return first + ((x % size + size) % size) * stride; }
  static RingView whole(const Communicator& comm) { return {comm.size(), comm.rank(), 0, 1}; }
};

// c.global is the ring's problem (N tokens, its heads); c.q/k/v/o/lse the member's tokens as
// held_tokens(layout, N, pos, size) says; c.comm the world the members are ranks of.
void ring_forward(const MethodCall& c, Layout layout, const RingView& ring);
void ring_backward(const MethodCall& c, Layout layout, const RingView& ring, const float* dout, float* dq, float* dk,
                   float* dv);

}  // namespace longattn
