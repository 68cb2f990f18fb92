// Communication microbenchmarks as methods (longattn run suite/comm.json): each rank's message is
// its token shard [B, n, H, d] of fp32, so suite axes set the message size. Reported like
// nccl-tests: time, algorithm bandwidth (size / time) and bus bandwidth (algbw x (P-1)/P for the
// collectives, algbw for send/receive).
#include "suite/method.h"

namespace longattn {

void comm_all_gather(const MethodCall& c) {
  const int64_t elems = c.global.numel() / c.comm->size();
  auto& recv = c.buffers->buf[0];
  recv.resize(elems * c.comm->size());
  c.comm->all_gather(c.q, elems * sizeof(float), recv.data());
}

void comm_all_to_all(const MethodCall& c) {
  const int P = c.comm->size();
  const int64_t elems = c.global.numel() / P / P;  // the shard, cut in P blocks
  auto& recv = c.buffers->buf[0];
  recv.resize(elems * P);
  c.comm->all_to_all(c.q, elems * sizeof(float), recv.data());
}

void comm_send_recv(const MethodCall& c) {
  const int P = c.comm->size(), p = c.comm->rank();
  const int64_t elems = c.global.numel() / P;
  auto& recv = c.buffers->buf[0];
  recv.resize(elems);
  c.comm->start_send_recv(c.q, elems * sizeof(float), (p + 1) % P, recv.data(), elems * sizeof(float), (p - 1 + P) % P)
      ->wait();
}

}  // namespace longattn
